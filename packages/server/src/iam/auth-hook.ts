import type { FastifyReply, FastifyRequest } from 'fastify';
import { FlowgateError } from '../errors/index.js';
import { principalHas, type Principal } from './principal.js';
import type { TokenVerifier } from './token-verifier.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is calling; set by the auth hook on every route that is not public. */
    principal: Principal | null;
  }
}

const REALM = 'Bearer realm="flowgate"';

/** RFC 6750 §3: a 401 says which scheme, and why the token was refused. */
function bearerChallenge(error: FlowgateError): string {
  if (error.code === 'FLOWGATE_ERR_AUTH_TOKEN_MISSING') return REALM;
  const description = error.detail.replaceAll('"', "'");
  return `${REALM}, error="invalid_token", error_description="${description}"`;
}

/** Reads the bearer token of a request: `undefined` when there is none. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
  if (!match) {
    throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_INVALID', 'The Authorization header must be "Bearer <token>".', {
      headers: { 'www-authenticate': `${REALM}, error="invalid_token", error_description="The Authorization header must be 'Bearer <token>'."` },
    });
  }
  return match[1];
}

/** Verifies the bearer token of a request, or throws a 401 with its challenge. */
export async function authenticateBearer(verifier: TokenVerifier, request: FastifyRequest): Promise<Principal> {
  const token = bearerToken(request);
  if (token === undefined) {
    throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_MISSING', 'This endpoint needs a bearer token: Authorization: Bearer <token>.', {
      headers: { 'www-authenticate': REALM },
    });
  }
  try {
    return await verifier.verify(token);
  } catch (err) {
    if (err instanceof FlowgateError && err.status === 401) {
      throw new FlowgateError(err.code, err.detail, { cause: err.cause, headers: { 'www-authenticate': bearerChallenge(err) } });
    }
    throw err;
  }
}

/**
 * The guard of every route: public routes pass; others need a valid bearer token and,
 * when the route names one, a scope the token grants (403 `insufficient_scope` if not).
 * It runs before the body is read, so strangers cannot make the server parse anything.
 */
export function createAuthHook(verifier: TokenVerifier) {
  return async function authHook(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    const scope = request.routeOptions.config.scope;
    if (scope === 'public' || (scope === undefined && !request.url.startsWith('/api/'))) return;
    const principal = await authenticateBearer(verifier, request);
    request.principal = principal;
    if (typeof scope === 'string' && !principalHas(principal, scope)) {
      throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `This needs the "${scope}" scope, which your token does not carry.`, {
        headers: { 'www-authenticate': `${REALM}, error="insufficient_scope", scope="${scope}"` },
        extensions: { required_scope: scope },
      });
    }
  };
}

/** The principal of an authenticated request (routes behind the auth hook only). */
export function callerOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_MISSING', 'This endpoint needs a bearer token.', { headers: { 'www-authenticate': REALM } });
  return request.principal;
}
