import { OIDC_SCOPES, ROLE_SCOPES, API_SCOPES } from '@flowgate/contracts';
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { FlowgateError } from '../errors/index.js';
import { acceptFormBodies, type HttpApp } from '../http/index.js';
import { callerOf } from './auth-hook.js';
import type { ClientAuthenticator } from './client-auth.js';
import { TOKEN_TYPE_ACCESS, type OAuthService } from './oauth-service.js';
import { SIGNING_ALG, type SigningKeyStore } from './signing-keys.js';

export interface OAuthRoutesDeps {
  readonly issuer: () => string;
  readonly oauth: OAuthService;
  readonly clients: ClientAuthenticator;
  readonly keys: SigningKeyStore;
}

const GRANT_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const GRANTS = ['authorization_code', 'client_credentials', 'refresh_token', GRANT_EXCHANGE];

/**
 * Reads OAuth parameters (a form body or a query) as single-valued strings; a repeated
 * parameter is refused with invalid_request (RFC 6749 §3.1).
 */
export function singleValued(params: unknown): Record<string, string | undefined> {
  if (params === undefined || params === null) return {};
  if (typeof params !== 'object') throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'The body must be application/x-www-form-urlencoded.');
  const out: Record<string, string | undefined> = {};
  for (const [key, value] of Object.entries(params as Record<string, unknown>)) {
    if (typeof value !== 'string') throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', `The parameter "${key}" must appear once.`);
    out[key] = value;
  }
  return out;
}

/** The form body of an OAuth request, single-valued. */
export function formParams(request: FastifyRequest): Record<string, string | undefined> {
  return singleValued(request.body);
}

function noStore(reply: FastifyReply): FastifyReply {
  // RFC 6749 §5.1: token answers must not be cached.
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

/**
 * The documented form parameters. Validation is attached, not enforced (`attachValidation`
 * on each route): {@link formParams} checks them so that errors carry the OAuth `error`
 * member (RFC 6749 §5.2), e.g. `invalid_request` for a repeated parameter.
 */
const FormSchema = (description: string, properties: Record<string, string>) => ({
  consumes: ['application/x-www-form-urlencoded'],
  description,
  tags: ['oauth'],
  body: {
    type: 'object',
    properties: Object.fromEntries(Object.entries(properties).map(([k, d]) => [k, { type: 'string', description: d }])),
  },
});

/**
 * OAuth 2 / OpenID Connect endpoints: discovery (RFC 8414, OIDC Discovery), the JWKS,
 * the token endpoint, introspection (RFC 7662), revocation (RFC 7009) and userinfo.
 */
export async function registerOAuthRoutes(app: HttpApp, deps: OAuthRoutesDeps): Promise<void> {
  const discovery = () => {
    const issuer = deps.issuer();
    return {
      issuer,
      authorization_endpoint: `${issuer}/oauth/authorize`,
      token_endpoint: `${issuer}/oauth/token`,
      jwks_uri: `${issuer}/.well-known/jwks.json`,
      userinfo_endpoint: `${issuer}/oauth/userinfo`,
      introspection_endpoint: `${issuer}/oauth/introspect`,
      revocation_endpoint: `${issuer}/oauth/revoke`,
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: GRANTS,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: [SIGNING_ALG],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
      code_challenge_methods_supported: ['S256'],
      scopes_supported: [...OIDC_SCOPES, ...new Set([...Object.values(ROLE_SCOPES).flat(), ...Object.values(API_SCOPES)])],
      claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'auth_time', 'nonce', 'tenant', 'preferred_username', 'name'],
      authorization_response_iss_parameter_supported: true,
    };
  };
  const publicGet = { config: { scope: 'public' as const } };
  app.get('/.well-known/openid-configuration', { ...publicGet, schema: { tags: ['oauth'], summary: 'OpenID Connect discovery' } }, discovery);
  app.get('/.well-known/oauth-authorization-server', { ...publicGet, schema: { tags: ['oauth'], summary: 'RFC 8414 metadata' } }, discovery);
  const jwks = async (_req: FastifyRequest, reply: FastifyReply) =>
    // Short caching: verifiers pick up a rotation within the minute.
    reply.header('cache-control', 'public, max-age=60').type('application/jwk-set+json').send(await deps.keys.jwks());
  app.get('/.well-known/jwks.json', { ...publicGet, schema: { tags: ['oauth'], summary: 'The JSON Web Key Set of the signing keys' } }, jwks);
  // The same set under /oauth, where some clients look for it by habit.
  app.get('/oauth/jwks', { ...publicGet, schema: { hide: true } }, jwks);

  app.get(
    '/oauth/userinfo',
    {
      config: { scope: null },
      schema: {
        tags: ['oauth'],
        summary: 'OpenID Connect userinfo of the bearer',
        security: [{ bearer: [] }],
        response: { 200: Type.Object({ sub: Type.String(), tenant: Type.String(), preferred_username: Type.Optional(Type.String()) }) },
      },
    },
    (request) => {
      const caller = callerOf(request);
      return { sub: caller.sub, tenant: caller.tenant, ...(caller.name ? { preferred_username: caller.name } : {}) };
    },
  );

  await app.register(async (instance) => {
    const forms = instance as unknown as HttpApp;
    forms.removeAllContentTypeParsers();
    await acceptFormBodies(forms);

    forms.post(
      '/oauth/token',
      {
        config: { scope: 'public' },
        attachValidation: true,
        schema: FormSchema('The token endpoint: authorization_code (PKCE), client_credentials, refresh_token, token-exchange (RFC 8693).', {
          grant_type: 'authorization_code | client_credentials | refresh_token | urn:ietf:params:oauth:grant-type:token-exchange',
          scope: 'Space-separated scopes; the held ones by default',
          code: 'authorization_code',
          redirect_uri: 'authorization_code',
          code_verifier: 'authorization_code (PKCE)',
          refresh_token: 'refresh_token',
          subject_token: 'token-exchange',
          subject_token_type: `token-exchange: ${TOKEN_TYPE_ACCESS}`,
          actor_token: 'token-exchange, optional',
          actor_token_type: 'token-exchange, optional',
          expires_in: 'token-exchange: lifetime asked for, seconds; never beyond the subject token',
          client_id: 'client_secret_post or public clients',
          client_secret: 'client_secret_post',
        }),
      },
      async (request, reply) => {
        const params = formParams(request);
        const grant = params.grant_type;
        if (!grant) throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'grant_type is required.');
        if (!GRANTS.includes(grant)) {
          throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNSUPPORTED_GRANT_TYPE', `Unsupported grant_type "${grant}"; use one of ${GRANTS.join(', ')}.`);
        }
        const client = await deps.clients.authenticate(request, grant === 'authorization_code' || grant === 'refresh_token');
        let body;
        switch (grant) {
          case 'client_credentials':
            body = await deps.oauth.clientCredentials(client, params.scope, request.id);
            break;
          case 'authorization_code':
            body = await deps.oauth.authorizationCode(client, params, request.id);
            break;
          case 'refresh_token':
            body = await deps.oauth.refresh(client, params.refresh_token, params.scope, request.id);
            break;
          default:
            body = await deps.oauth.exchange(client, params, request.id);
        }
        return noStore(reply).send(body);
      },
    );

    forms.post(
      '/oauth/introspect',
      {
        config: { scope: 'public' },
        attachValidation: true,
        schema: FormSchema('RFC 7662 token introspection, for authenticated service accounts.', {
          token: 'The token to inspect',
          token_type_hint: 'access_token | refresh_token',
        }),
      },
      async (request, reply) => {
        const params = formParams(request);
        const client = await deps.clients.authenticate(request, false);
        return noStore(reply).send(await deps.oauth.introspect(client, params.token, params.token_type_hint, request.id));
      },
    );

    forms.post(
      '/oauth/revoke',
      {
        config: { scope: 'public' },
        attachValidation: true,
        schema: FormSchema('RFC 7009 token revocation. Unknown tokens are answered 200 too.', {
          token: 'The token to revoke',
          token_type_hint: 'access_token | refresh_token',
        }),
      },
      async (request, reply) => {
        const params = formParams(request);
        const client = await deps.clients.authenticate(request, true);
        await deps.oauth.revoke(client, params.token, request.id);
        return reply.code(200).send();
      },
    );
  });
}
