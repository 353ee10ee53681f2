import type { AuthPolicy } from '@flowgate/contracts';
import { FlowgateError } from '../../errors/index.js';
import type { Principal } from '../../iam/index.js';
import type { GatewayExchange } from '../exchange.js';
import { PolicyOptionError, type PolicyDeps, type PolicyFactory, type PolicyStep } from './policy.js';

/** The issuer name that stands for this server in `auth.issuers`. */
export const OWN_ISSUER = 'flowgate';
const DEFAULT_API_KEY_HEADER = 'x-api-key';
const REALM = 'Bearer realm="flowgate"';
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * The last Authorization header seen on each connection and the token in it. A client
 * sends the same header on every request of a kept-alive connection: comparing it with
 * the last one is cheaper than parsing it again, and the token string found then has its
 * hash cached, so the credential cache's lookup does not hash a ~600-character key anew.
 */
const lastBearer = new WeakMap<object, { readonly header: string; readonly token: string }>();

/**
 * `auth`: who is calling. `none` lets anyone through (an explicit choice: a route
 * without any auth policy is refused when applied); `jwt` takes Flowgate's own tokens and
 * those of the trusted external issuers, verified once and then served from a cache until
 * they expire; `api-key` takes a service account's API key from a header. The caller's
 * credentials never travel upstream unless `upstream-auth: forward` says so.
 */
export const authPolicy: PolicyFactory<AuthPolicy> = {
  name: 'auth',
  order: 40,
  create(options, _site, deps) {
    switch (options.type) {
      case 'none':
        return () => undefined;
      case 'jwt':
        return jwtStep(allowedIssuers(options.issuers, deps), deps);
      case 'api-key':
        return apiKeyStep(headerName(options.header), deps);
      case 'jwt-or-api-key': {
        const header = headerName(options.header);
        const byKey = apiKeyStep(header, deps);
        const byToken = jwtStep(allowedIssuers(options.issuers, deps), deps);
        return (exchange) => (exchange.req.headers[header] !== undefined ? byKey(exchange) : byToken(exchange));
      }
    }
  },
};

function headerName(header: string | undefined): string {
  const name = (header ?? DEFAULT_API_KEY_HEADER).toLowerCase();
  if (name === 'authorization' || name === 'cookie') throw new PolicyOptionError(`API keys cannot be read from the ${name} header.`, 'header');
  return name;
}

/** The accepted `iss` values, or undefined for every issuer the server trusts. */
function allowedIssuers(issuers: readonly string[] | undefined, deps: PolicyDeps): (() => ReadonlySet<string>) | undefined {
  if (!issuers) return undefined;
  issuers.forEach((issuer, index) => {
    if (!deps.credentials.knownIssuers.has(issuer)) {
      throw new PolicyOptionError(`"${issuer}" is not an issuer this server trusts; use '${OWN_ISSUER}' or one of iam.trustedIssuers.`, `issuers[${index}]`);
    }
  });
  // This server's issuer URL may only be known once it listens: resolve it per call.
  const external = issuers.filter((i) => i !== OWN_ISSUER);
  const own = issuers.includes(OWN_ISSUER);
  return () => new Set(own ? [...external, deps.credentials.ownIssuer()] : external);
}

function jwtStep(issuers: (() => ReadonlySet<string>) | undefined, deps: PolicyDeps): PolicyStep {
  return (exchange) => {
    const header = exchange.req.headers.authorization;
    if (header === undefined) {
      throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_MISSING', 'This route needs a bearer token: Authorization: Bearer <token>.', { headers: { 'www-authenticate': REALM } });
    }
    const connection = exchange.req.socket;
    let token: string;
    const last = lastBearer.get(connection);
    if (last !== undefined && last.header === header) {
      token = last.token;
    } else {
      const match = BEARER.exec(header);
      if (!match?.[1]) throw challenge(new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_INVALID', 'The Authorization header must be "Bearer <token>".'));
      token = match[1];
      lastBearer.set(connection, { header, token });
    }
    const accept = (principal: Principal) => {
      if (issuers && !issuers().has(principal.issuer)) {
        throw challenge(new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_INVALID', 'This route does not accept tokens of that issuer.'));
      }
      exchange.principal = principal;
    };
    let verified: Principal | Promise<Principal>;
    try {
      verified = deps.credentials.verifyToken(token);
    } catch (err) {
      throw challenge(err);
    }
    if (verified instanceof Promise) {
      return verified.then(accept, (err: unknown) => {
        throw challenge(err);
      });
    }
    accept(verified);
    return undefined;
  };
}

function apiKeyStep(header: string, deps: PolicyDeps): PolicyStep {
  return async (exchange: GatewayExchange) => {
    const value = exchange.req.headers[header];
    // The key is the caller's credential: it never goes upstream.
    delete exchange.upstreamHeaders[header];
    if (typeof value !== 'string' || value === '') {
      throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_MISSING', `This route needs an API key in the ${header} header.`, {
        headers: { 'www-authenticate': `ApiKey header="${header}"` },
      });
    }
    try {
      exchange.principal = await deps.credentials.verifyApiKey(value);
    } catch (err) {
      if (!(err instanceof FlowgateError) || err.status !== 401) throw err;
      throw new FlowgateError(err.code, err.detail, { cause: err.cause, headers: { 'www-authenticate': `ApiKey header="${header}"` } });
    }
  };
}

/** RFC 6750 §3: a 401 says which scheme and why the token was refused. */
function challenge(err: unknown): unknown {
  if (!(err instanceof FlowgateError) || err.status !== 401) return err;
  const description = err.detail.replaceAll('"', "'");
  return new FlowgateError(err.code, err.detail, {
    cause: err.cause,
    headers: { 'www-authenticate': `${REALM}, error="invalid_token", error_description="${description}"` },
  });
}
