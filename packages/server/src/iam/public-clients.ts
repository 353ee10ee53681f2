/**
 * Flowgate's own public OAuth clients (RFC 6749 §2.1): they cannot keep a secret, so
 * they must use the authorization code flow with PKCE, and their redirect URIs are
 * fixed here, not registered by anyone.
 */
export interface PublicClient {
  readonly clientId: string;
  readonly name: string;
  /** Whether `uri` is one of this client's redirect URIs; `issuer` is the server's URL. */
  allowsRedirect(uri: string, issuer: string): boolean;
}

/**
 * The CLI receives the code on a loopback listener on any free port (RFC 8252 §7.3):
 * `http://127.0.0.1:<port>/callback` or `http://[::1]:<port>/callback`. `localhost` is
 * refused, as §8.3 recommends, since it may resolve elsewhere.
 */
const cli: PublicClient = {
  clientId: 'flowgate-cli',
  name: 'Flowgate CLI',
  allowsRedirect(uri) {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      return false;
    }
    return (
      url.protocol === 'http:' &&
      (url.hostname === '127.0.0.1' || url.hostname === '[::1]') &&
      url.port !== '' &&
      url.pathname === '/callback' &&
      url.username === '' &&
      url.password === '' &&
      url.hash === ''
    );
  },
};

/** The admin web UI, served by this server, receives the code at `/ui/callback`. */
const web: PublicClient = {
  clientId: 'flowgate-web',
  name: 'Flowgate web UI',
  allowsRedirect(uri, issuer) {
    return uri === `${issuer}/ui/callback`;
  },
};

const CLIENTS = new Map([cli, web].map((c) => [c.clientId, c]));

/** The public client with this id, if any. */
export function findPublicClient(clientId: string | undefined): PublicClient | undefined {
  return clientId === undefined ? undefined : CLIENTS.get(clientId);
}
