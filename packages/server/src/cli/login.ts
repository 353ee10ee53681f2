/**
 * `flowgate login` and `flowgate logout`. A person signs in with the authorization code
 * flow and PKCE (RFC 7636) through a browser, the code coming back to a one-shot
 * listener on the loopback interface (RFC 8252 §7.3); a service account signs in with
 * its client credentials, which are checked once and saved.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { WhoAmI } from '@flowgate/contracts';
import { CLI_CLIENT_ID, clientCredentials, clientCredentialsGrant, entryFor, type ClientContext, type TokenAnswer } from './auth.js';
import type { StoredCredentials } from './credentials.js';
import { CliError } from './io.js';
import { printJson } from './output.js';

export interface LoginOptions {
  readonly tenant?: string;
  /** Whether to try opening a browser (also needs a terminal on standard output). */
  readonly browser: boolean;
  readonly timeoutMs: number;
}

export const DEFAULT_LOGIN_TIMEOUT_MS = 5 * 60_000;

export async function login(ctx: ClientContext, options: LoginOptions): Promise<void> {
  const client = clientCredentials(ctx);
  let entry: StoredCredentials;
  if (client) {
    const answer = await clientCredentialsGrant(ctx.http, client.id, client.secret);
    entry = entryFor('client', answer, ctx.io.now(), { client_id: client.id, client_secret: client.secret });
  } else {
    entry = entryFor('user', await browserLogin(ctx, options), ctx.io.now());
  }
  const me = await ctx.http.request<WhoAmI>('GET', '/api/v1/me', { token: entry.access_token });
  if (options.tenant !== undefined && me.tenant !== options.tenant) {
    await revokeQuietly(ctx, entry);
    throw new CliError(`signed in to tenant "${me.tenant}", not "${options.tenant}"; nothing was saved`);
  }
  ctx.store.set(ctx.baseUrl, entry);
  if (ctx.options.json) printJson(ctx.io.stdout, me);
  else ctx.io.stdout.write(`Signed in to ${ctx.baseUrl} as ${me.name} (${me.principal_type.replace('_', ' ')}, tenant ${me.tenant}).\n`);
}

export async function logout(ctx: ClientContext): Promise<void> {
  const entry = ctx.store.get(ctx.baseUrl);
  if (!entry) {
    if (ctx.options.json) printJson(ctx.io.stdout, { url: ctx.baseUrl, signed_out: false });
    else ctx.io.stdout.write(`Not signed in to ${ctx.baseUrl}.\n`);
    return;
  }
  const revoked = await revokeQuietly(ctx, entry);
  ctx.store.delete(ctx.baseUrl);
  if (ctx.options.json) printJson(ctx.io.stdout, { url: ctx.baseUrl, signed_out: true, revoked });
  else ctx.io.stdout.write(`Signed out of ${ctx.baseUrl}.\n`);
}

/** Revokes a saved sign-in at the server (RFC 7009); says on stderr when it could not. */
async function revokeQuietly(ctx: ClientContext, entry: StoredCredentials): Promise<boolean> {
  const revoke = async (token: string, hint: string) => {
    if (entry.kind === 'client' && entry.client_id && entry.client_secret) {
      await ctx.http.request('POST', '/oauth/revoke', { form: { token, token_type_hint: hint }, basic: [entry.client_id, entry.client_secret] });
    } else {
      await ctx.http.request('POST', '/oauth/revoke', { form: { token, token_type_hint: hint, client_id: CLI_CLIENT_ID } });
    }
  };
  try {
    // The refresh token first: revoking it ends the whole session.
    if (entry.refresh_token) await revoke(entry.refresh_token, 'refresh_token');
    if (entry.expires_at > ctx.io.now() / 1000) await revoke(entry.access_token, 'access_token');
    return true;
  } catch (err) {
    ctx.io.stderr.write(`flowgate: warning: could not revoke the session at the server: ${(err as Error).message}\n`);
    return false;
  }
}

/** Runs the authorization code flow with PKCE and returns the token answer. */
async function browserLogin(ctx: ClientContext, options: LoginOptions): Promise<TokenAnswer> {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const state = randomBytes(16).toString('base64url');
  const listener = await listenOnLoopback();
  try {
    const authorize = new URL(`${ctx.baseUrl}/oauth/authorize`);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: CLI_CLIENT_ID,
      redirect_uri: listener.redirectUri,
      scope: 'openid',
      state,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...(options.tenant !== undefined ? { tenant: options.tenant } : {}),
    }).toString();
    ctx.io.stderr.write(`Open this URL to sign in: ${authorize.toString()}\n`);
    if (options.browser && ctx.io.stdout.isTTY === true) ctx.io.openBrowser(authorize.toString());

    return await listener.receive({
      state,
      issuer: ctx.baseUrl,
      timeoutMs: options.timeoutMs,
      warn: (text) => ctx.io.stderr.write(`flowgate: warning: ${text}\n`),
      exchange: (code) =>
        ctx.http.request<TokenAnswer>('POST', '/oauth/token', {
          form: { grant_type: 'authorization_code', code, redirect_uri: listener.redirectUri, code_verifier: verifier, client_id: CLI_CLIENT_ID },
        }),
    });
  } finally {
    listener.close();
  }
}

interface ReceiveOptions<T> {
  readonly state: string;
  readonly issuer: string;
  readonly timeoutMs: number;
  readonly warn: (text: string) => void;
  readonly exchange: (code: string) => Promise<T>;
}

interface LoopbackListener {
  readonly redirectUri: string;
  /** Waits for the redirect that carries this login's code, and redeems it. */
  receive<T>(options: ReceiveOptions<T>): Promise<T>;
  close(): void;
}

/** A listener on 127.0.0.1 at a free port, answering only `GET /callback`. */
async function listenOnLoopback(): Promise<LoopbackListener> {
  let handle: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer((req, res) => {
    if (handle) handle(req, res);
    else page(res, 503, 'Not ready', 'This sign-in has not started yet.');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new CliError(`cannot listen on 127.0.0.1 for the sign-in answer: ${err.message}`)));
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    redirectUri: `http://127.0.0.1:${port}/callback`,
    receive<T>(options: ReceiveOptions<T>): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        let done = false;
        const timer = setTimeout(() => {
          done = true;
          reject(new CliError(`no sign-in within ${Math.round(options.timeoutMs / 1000)} s; run "flowgate login" again`));
        }, options.timeoutMs);
        const finish = (outcome: () => void) => {
          clearTimeout(timer);
          outcome();
        };
        handle = (req, res) => {
          const url = new URL(req.url ?? '/', 'http://127.0.0.1');
          if (req.method !== 'GET' || url.pathname !== '/callback') return page(res, 404, 'Not found', 'Nothing here.');
          if (done) return page(res, 410, 'Already finished', 'This sign-in is already finished; you can close this tab.');
          const q = url.searchParams;
          if (q.get('state') !== options.state) {
            // Not this login's answer (a stale tab, or someone else's link): keep waiting.
            options.warn('ignored a sign-in answer whose state does not match this login');
            return page(res, 400, 'Sign-in failed', 'This answer does not belong to the sign-in in progress. Run flowgate login again.');
          }
          done = true;
          if (q.get('iss') !== options.issuer) {
            const iss = q.get('iss');
            const message = iss === null ? 'the sign-in answer did not say which server sent it (no iss)' : `the sign-in answer came from issuer ${iss}, not ${options.issuer}; if that is the server's public URL, use it as --url`;
            return page(res, 400, 'Sign-in failed', 'The answer did not come from the expected server.', () => finish(() => reject(new CliError(message))));
          }
          const error = q.get('error');
          if (error !== null) {
            const description = q.get('error_description') ?? error;
            return page(res, 400, 'Sign-in failed', description, () => finish(() => reject(new CliError(`sign-in failed: ${description} (${error})`))));
          }
          const code = q.get('code');
          if (code === null) {
            return page(res, 400, 'Sign-in failed', 'The answer carried no code.', () => finish(() => reject(new CliError('the sign-in answer carried no code'))));
          }
          options.exchange(code).then(
            (answer) => page(res, 200, 'Signed in', 'Signed in; you can close this tab.', () => finish(() => resolve(answer))),
            (err: unknown) => page(res, 500, 'Sign-in failed', 'The code could not be redeemed; see the terminal.', () => finish(() => reject(err instanceof Error ? err : new Error(String(err))))),
          );
        };
      });
    },
    close() {
      handle = undefined;
      server.close();
      server.closeAllConnections();
    },
  };
}

const escapeHtml = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function page(res: ServerResponse, status: number, title: string, message: string, then?: () => void): void {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flowgate: ${escapeHtml(title)}</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3rem"><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>
`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
    'referrer-policy': 'no-referrer',
    connection: 'close',
  });
  res.end(html, then);
}
