/** IAM set-up steps shared by tests: tenants, owners, users, and a real browser-style login. */
import { randomBytes } from 'node:crypto';
import { s256Challenge } from '../../src/iam/index.js';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET } from './server.js';
import { api, clientToken, postForm } from './http.js';

export interface TenantOwner {
  readonly tenant: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly token: string;
}

/** A platform-admin token from the bootstrap credentials. */
export function adminToken(base: string): Promise<string> {
  return clientToken(base, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET);
}

/** Creates a tenant through the API and returns its owner service account with a token. */
export async function createTenant(base: string, id: string): Promise<TenantOwner> {
  const res = await api(base, 'POST', '/api/v1/tenants', { token: await adminToken(base), body: { id } });
  if (res.status !== 201) throw new Error(`tenant creation failed: ${res.status} ${res.text}`);
  const owner = res.body.owner as { client_id: string; client_secret: string };
  return { tenant: id, clientId: owner.client_id, clientSecret: owner.client_secret, token: await clientToken(base, owner.client_id, owner.client_secret) };
}

/** Creates a user with a role in the owner's tenant. */
export async function createUser(base: string, owner: TenantOwner, username: string, role: string, password = 'correct horse battery staple'): Promise<{ id: string; username: string; password: string }> {
  const res = await api(base, 'POST', '/api/v1/users', { token: owner.token, body: { username, password, role } });
  if (res.status !== 201) throw new Error(`user creation failed: ${res.status} ${res.text}`);
  return { id: res.body.id as string, username, password };
}

/** A PKCE verifier and its S256 challenge (RFC 7636). */
export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: s256Challenge(verifier) };
}

/**
 * Logs a user in the way a browser does: opens the login page, keeps its CSRF cookie,
 * submits the form, and returns the redirect the server answered with.
 */
export async function submitLogin(
  base: string,
  input: { tenant: string; username: string; password: string; redirectUri: string; challenge: string; clientId?: string; scope?: string; state?: string; nonce?: string },
): Promise<{ status: number; location: string | null; body: string }> {
  const query = new URLSearchParams({
    response_type: 'code',
    client_id: input.clientId ?? 'flowgate-cli',
    redirect_uri: input.redirectUri,
    code_challenge: input.challenge,
    code_challenge_method: 'S256',
    scope: input.scope ?? 'openid',
    state: input.state ?? 'state-1',
    ...(input.nonce ? { nonce: input.nonce } : {}),
  });
  return submitLoginAt(base, `${base}/oauth/authorize?${query.toString()}`, input);
}

/** Submits the login form found at an authorization URL (built by the test or a client library). */
export async function submitLoginAt(
  base: string,
  authorizeUrl: string,
  credentials: { tenant: string; username: string; password: string },
): Promise<{ status: number; location: string | null; body: string }> {
  const page = await fetch(authorizeUrl, { redirect: 'manual', headers: { accept: 'text/html' } });
  const html = await page.text();
  if (page.status !== 200) return { status: page.status, location: page.headers.get('location'), body: html };
  const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  const fields: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    fields[m[1]!] = m[2]!.replaceAll('&amp;', '&').replaceAll('&quot;', '"').replaceAll('&#39;', "'").replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  }
  const res = await postForm(base, '/oauth/authorize', { ...fields, tenant: credentials.tenant, username: credentials.username, password: credentials.password }, {
    headers: { cookie, accept: 'text/html' },
  });
  return { status: res.status, location: res.headers.get('location'), body: res.text };
}

/** Full login of a user through the CLI's public client; returns the token answer. */
export async function loginUser(base: string, tenant: string, user: { username: string; password: string }, scope = 'openid'): Promise<Record<string, any>> {
  const { verifier, challenge } = pkce();
  const redirectUri = 'http://127.0.0.1:45678/callback';
  const login = await submitLogin(base, { tenant, username: user.username, password: user.password, redirectUri, challenge, scope });
  if (login.status !== 302 || !login.location) throw new Error(`login failed: ${login.status} ${login.body.slice(0, 200)}`);
  const code = new URL(login.location).searchParams.get('code');
  if (!code) throw new Error(`no code in ${login.location}`);
  const res = await postForm(base, '/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: 'flowgate-cli' });
  if (res.status !== 200) throw new Error(`code redemption failed: ${res.status} ${res.text}`);
  return res.body as Record<string, any>;
}
