import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FlowgateError, PROBLEM_CONTENT_TYPE, toProblem } from '../errors/index.js';
import { safeEqual } from '../kernel/index.js';
import { acceptFormBodies, type HttpApp } from '../http/index.js';
import { formParams, singleValued } from './oauth.routes.js';
import type { PasswordLogin } from './password-login.js';
import type { OAuthService } from './oauth-service.js';
import { findPublicClient, type PublicClient } from './public-clients.js';

export interface AuthorizeRoutesDeps {
  readonly issuer: () => string;
  readonly oauth: OAuthService;
  readonly passwords: PasswordLogin;
}

const CSRF_COOKIE = 'flowgate_login_csrf';
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
/** The authorization request parameters carried from the form back to the login POST. */
const CARRIED = ['response_type', 'client_id', 'redirect_uri', 'scope', 'state', 'code_challenge', 'code_challenge_method', 'nonce'] as const;

type AuthorizeParams = Partial<Record<(typeof CARRIED)[number], string>>;

interface ValidRequest {
  readonly client: PublicClient;
  readonly redirectUri: string;
  readonly params: AuthorizeParams;
}

/**
 * The authorization endpoint (RFC 6749 §4.1 with PKCE, OIDC Core §3.1.2): a plain HTML
 * login form (tenant, username, password). Errors that make the redirect URI
 * untrustworthy are shown here; every other error goes back to the client by redirect,
 * with `iss` (RFC 9207) so it can tell which server answered.
 */
export async function registerAuthorizeRoutes(app: HttpApp, deps: AuthorizeRoutesDeps): Promise<void> {
  app.get('/oauth/authorize', { config: { scope: 'public' }, schema: { tags: ['oauth'], summary: 'Login page of the authorization code flow' } }, (request, reply) => {
    const query = singleValued(request.query);
    const valid = validateClient(query, deps.issuer());
    const redirectError = validateRequest(valid);
    if (redirectError) return redirectWith(reply, valid.redirectUri, { error: 'invalid_request', error_description: redirectError, state: query.state, iss: deps.issuer() });
    const csrf = randomBytes(24).toString('base64url');
    void reply.header('set-cookie', `${CSRF_COOKIE}=${csrf}; Path=/oauth; HttpOnly; SameSite=Strict; Max-Age=900`);
    // A client may suggest the tenant (`flowgate login --tenant acme`); the user can change it.
    return sendPage(reply, 200, loginPage({ params: valid.params, clientName: valid.client.name, csrf, error: null, tenant: query.tenant ?? '', username: '' }));
  });

  await app.register(async (instance) => {
    const forms = instance as unknown as HttpApp;
    forms.removeAllContentTypeParsers();
    await acceptFormBodies(forms);
    forms.post('/oauth/authorize', { config: { scope: 'public' }, schema: { tags: ['oauth'], summary: 'Submits the login form' } }, async (request, reply) => {
      const form = formParams(request);
      const valid = validateClient(form, deps.issuer());
      const redirectError = validateRequest(valid);
      if (redirectError) return redirectWith(reply, valid.redirectUri, { error: 'invalid_request', error_description: redirectError, state: form.state, iss: deps.issuer() });
      const cookie = readCookie(request, CSRF_COOKIE);
      if (!cookie || !form.csrf || !safeEqual(cookie, form.csrf)) {
        throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'The login form expired or was not sent from this server; open the login page again.');
      }
      const tenant = (form.tenant ?? '').trim();
      const username = (form.username ?? '').trim();
      try {
        const user = await deps.passwords.login(tenant, username, form.password ?? '', request.id);
        const code = await deps.oauth.issueCode({
          user,
          clientId: valid.client.clientId,
          redirectUri: valid.redirectUri,
          codeChallenge: valid.params.code_challenge!,
          scope: valid.params.scope ?? 'openid',
          nonce: valid.params.nonce ?? null,
        });
        void reply.header('set-cookie', `${CSRF_COOKIE}=; Path=/oauth; HttpOnly; SameSite=Strict; Max-Age=0`);
        return redirectWith(reply, valid.redirectUri, { code, state: valid.params.state, iss: deps.issuer() });
      } catch (err) {
        if (!(err instanceof FlowgateError) || (err.code !== 'FLOWGATE_ERR_OAUTH_LOGIN_FAILED' && err.code !== 'FLOWGATE_ERR_AUTH_THROTTLED')) throw err;
        for (const [name, value] of Object.entries(err.headers)) void reply.header(name, value);
        if (!wantsHtml(request)) return reply.code(err.status).type(PROBLEM_CONTENT_TYPE).send(toProblem(err, request.id, '/oauth/authorize'));
        return sendPage(reply, err.status, loginPage({ params: valid.params, clientName: valid.client.name, csrf: form.csrf, error: err.detail, tenant, username }));
      }
    });
  });
}

/** Client and redirect URI: if either is wrong, nothing may be sent to that URI. */
function validateClient(params: Record<string, string | undefined>, issuer: string): ValidRequest {
  const client = findPublicClient(params.client_id);
  if (!client) throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'Unknown client_id; only Flowgate\'s own public clients use this login page.');
  const redirectUri = params.redirect_uri;
  if (!redirectUri || !client.allowsRedirect(redirectUri, issuer)) {
    throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'redirect_uri is missing or not registered for this client.');
  }
  const carried: AuthorizeParams = {};
  for (const key of CARRIED) if (params[key] !== undefined) carried[key] = params[key];
  return { client, redirectUri, params: carried };
}

/** The rest of the request; a problem here is reported to the client by redirect. */
function validateRequest({ params }: ValidRequest): string | undefined {
  if (params.response_type !== 'code') return 'response_type must be "code".';
  if (!params.code_challenge || !S256_CHALLENGE.test(params.code_challenge)) return 'PKCE is required: send a code_challenge (S256).';
  if (params.code_challenge_method !== 'S256') return 'code_challenge_method must be S256.';
  if ((params.nonce?.length ?? 0) > 512 || (params.state?.length ?? 0) > 1024 || (params.scope?.length ?? 0) > 2048) {
    return 'nonce, state or scope is too long.';
  }
  return undefined;
}

function redirectWith(reply: FastifyReply, uri: string, params: Record<string, string | undefined>): FastifyReply {
  const url = new URL(uri);
  for (const [key, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(key, value);
  return reply.header('cache-control', 'no-store').redirect(url.toString(), 302);
}

function readCookie(request: FastifyRequest, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

function wantsHtml(request: FastifyRequest): boolean {
  return (request.headers.accept ?? '').includes('text/html');
}

function sendPage(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply
    .code(status)
    .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(html);
}

const escape = (text: string) =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function loginPage(input: {
  params: AuthorizeParams;
  clientName: string;
  csrf: string | undefined;
  error: string | null;
  tenant: string;
  username: string;
}): string {
  const hidden = Object.entries(input.params)
    .map(([k, v]) => `<input type="hidden" name="${escape(k)}" value="${escape(v ?? '')}">`)
    .join('\n      ');
  const error = input.error ? `<p class="error" role="alert">${escape(input.error)}</p>` : '';
  return `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Sign in to Flowgate</title>
  <style>
    body { font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 100vh; margin: 0; background: #f4f5f7; }
    form { background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px #0002; width: 20rem; }
    label { display: block; margin-top: 1rem; font-size: .9rem; }
    input[type=text], input[type=password] { width: 100%; box-sizing: border-box; padding: .5rem; margin-top: .25rem; }
    button { margin-top: 1.5rem; width: 100%; padding: .6rem; }
    .error { color: #b00020; }
  </style>
</head>
<body>
  <main>
    <form method="post" action="/oauth/authorize">
      <h1>Sign in</h1>
      <p>to continue to ${escape(input.clientName)}</p>
      ${error}
      <label>Tenant <input type="text" name="tenant" autocomplete="organization" required value="${escape(input.tenant)}"></label>
      <label>Username <input type="text" name="username" autocomplete="username" required value="${escape(input.username)}"></label>
      <label>Password <input type="password" name="password" autocomplete="current-password" required></label>
      <input type="hidden" name="csrf" value="${escape(input.csrf ?? '')}">
      ${hidden}
      <button type="submit">Sign in</button>
    </form>
  </main>
</body>
</html>`;
}
