/**
 * A realistic session (client credentials, a user created and logging in through the
 * browser flow, a refresh, a token exchange, failed logins and client authentications,
 * service accounts created and rotated) and then a look at every log line the server
 * wrote: no token, password, client secret or authorization code may appear in any of
 * them, in any of the encodings it travelled in. The logs must still hold the request
 * lines, so the test notices if logging were simply off.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, type TestServer } from '../support/server.js';
import { api, clientToken, postForm } from '../support/http.js';
import { createTenant, createUser, pkce, submitLogin } from '../support/iam.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
const REDIRECT = 'http://127.0.0.1:45678/callback';

describe('secrets never reach the logs', () => {
  let server: TestServer;
  let base: string;
  /** Every secret the session handled, by what it is. */
  const secrets = new Map<string, string>();
  let requestsMade = 0;

  /** Keeps a secret to look for later; set-up steps throw (not assert) when something is off. */
  const remember = (name: string, value: unknown) => {
    if (typeof value !== 'string' || value.length < 8) throw new Error(`the session did not produce a ${name}: ${String(value)}`);
    secrets.set(name, value);
  };
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(`session step failed: ${what}`);
  };

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    remember('bootstrap client secret', ADMIN_CLIENT_SECRET);

    // Client credentials, with Basic and with client_secret_post.
    remember('admin access token', await clientToken(base, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET));
    const viaPost = await postForm(base, '/oauth/token', { grant_type: 'client_credentials', client_id: ADMIN_CLIENT_ID, client_secret: ADMIN_CLIENT_SECRET });
    remember('admin access token (post)', viaPost.body.access_token);
    requestsMade += 2;

    // A tenant (its owner secret is created and shown once) and a user with a known password.
    const acme = await createTenant(base, 'acme');
    remember('tenant owner client secret', acme.clientSecret);
    remember('tenant owner access token', acme.token);
    const password = 'Sup3r secret: p@ss/word + more';
    remember('user password', password);
    const user = await createUser(base, acme, 'alice', 'member', password);
    requestsMade += 4;

    // The browser-style login, the code and its redemption.
    const { verifier, challenge } = pkce();
    remember('PKCE verifier', verifier);
    const login = await submitLogin(base, { tenant: 'acme', username: user.username, password, redirectUri: REDIRECT, challenge, nonce: 'nonce-123' });
    check(login.status === 302, 'login');
    const code = new URL(login.location!).searchParams.get('code');
    remember('authorization code', code);
    const redeemed = await postForm(base, '/oauth/token', { grant_type: 'authorization_code', code: code!, redirect_uri: REDIRECT, code_verifier: verifier, client_id: 'flowgate-cli' });
    check(redeemed.status === 200, 'code redemption');
    remember('user access token', redeemed.body.access_token);
    remember('user refresh token', redeemed.body.refresh_token);
    remember('ID token', redeemed.body.id_token);
    requestsMade += 3;

    // A refresh, and a replay of the spent refresh token.
    const refreshed = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: redeemed.body.refresh_token, client_id: 'flowgate-cli' });
    check(refreshed.status === 200, 'refresh');
    remember('refreshed access token', refreshed.body.access_token);
    remember('rotated refresh token', refreshed.body.refresh_token);
    await api(base, 'GET', '/api/v1/me', { token: refreshed.body.access_token });
    requestsMade += 2;

    // A service account that exchanges the user's token.
    const runner = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'runner', scopes: ['tokens:exchange'] } });
    check(runner.status === 201, 'service account creation');
    remember('created client secret', runner.body.client_secret);
    const exchanged = await postForm(
      base,
      '/oauth/token',
      { grant_type: EXCHANGE, subject_token: refreshed.body.access_token, subject_token_type: ACCESS, scope: 'flows:run' },
      { basic: [runner.body.client_id, runner.body.client_secret] },
    );
    check(exchanged.status === 200, 'token exchange');
    remember('exchanged access token', exchanged.body.access_token);
    requestsMade += 2;

    // Its secret rotated: the new one is shown once, too.
    const rotated = await api(base, 'POST', `/api/v1/service-accounts/${runner.body.id}/secret`, { token: acme.token });
    check(rotated.status === 200, 'secret rotation');
    remember('rotated client secret', rotated.body.client_secret);
    // The user's password changed.
    const newPassword = 'An0ther s3cret pass phrase!';
    remember('changed user password', newPassword);
    check((await api(base, 'PATCH', `/api/v1/users/${user.id}`, { token: acme.token, body: { password: newPassword } })).status === 200, 'password change');
    requestsMade += 2;

    // Failures: a wrong password, a wrong client secret, an unknown client, a bad bearer token.
    const wrongPassword = 'Wr0ng guess of the password';
    remember('wrong password', wrongPassword);
    const failedLogin = await submitLogin(base, { tenant: 'acme', username: 'alice', password: wrongPassword, redirectUri: REDIRECT, challenge: pkce().challenge });
    check(failedLogin.status === 401, 'wrong password refused');
    const wrongSecret = 'fgs_this-is-a-wrong-secret-guess';
    remember('wrong client secret', wrongSecret);
    check((await postForm(base, '/oauth/token', { grant_type: 'client_credentials' }, { basic: [acme.clientId, wrongSecret] })).status === 401, 'wrong secret refused');
    check((await postForm(base, '/oauth/token', { grant_type: 'client_credentials', client_id: 'fgc_unknown', client_secret: wrongSecret })).status === 401, 'unknown client refused');
    const forged = `${redeemed.body.access_token as string}x`;
    check((await api(base, 'GET', '/api/v1/me', { token: forged })).status === 401, 'forged token refused');
    requestsMade += 5;

    // Introspection and revocation carry tokens in their bodies.
    await postForm(base, '/oauth/introspect', { token: exchanged.body.access_token }, { basic: [acme.clientId, acme.clientSecret] });
    await postForm(base, '/oauth/introspect', { token: refreshed.body.refresh_token, token_type_hint: 'refresh_token' }, { basic: [acme.clientId, acme.clientSecret] });
    await postForm(base, '/oauth/revoke', { token: refreshed.body.refresh_token }, { basic: [acme.clientId, acme.clientSecret] });
    await postForm(base, '/oauth/revoke', { token: exchanged.body.access_token }, { basic: [acme.clientId, acme.clientSecret] });
    // A replay of a spent refresh token, which revokes its family.
    await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: redeemed.body.refresh_token, client_id: 'flowgate-cli' });
    requestsMade += 5;
  });
  afterAll(async () => server.close());

  /** The forms a secret travels in: itself, URL-encoded, form-encoded, in a Basic header, and a JWT's signature alone. */
  function encodings(value: string): string[] {
    const forms = new Set([value, encodeURIComponent(value), new URLSearchParams({ v: value }).toString().slice(2), JSON.stringify(value).slice(1, -1)]);
    const parts = value.split('.');
    if (parts.length === 3 && parts[2]!.length > 20) forms.add(parts[2]!);
    return [...forms];
  }

  it('handled every kind of secret the session was meant to exercise', () => {
    expect([...secrets.keys()]).toEqual(
      expect.arrayContaining([
        'bootstrap client secret',
        'tenant owner client secret',
        'created client secret',
        'user password',
        'wrong password',
        'wrong client secret',
        'authorization code',
        'user access token',
        'user refresh token',
        'rotated refresh token',
        'ID token',
        'exchanged access token',
      ]),
    );
  });

  it('wrote JSON log lines at info, with one request line per request carrying its trace id', () => {
    expect(server.logs.length).toBeGreaterThan(requestsMade);
    const lines = server.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.some((l) => l.level === 'info')).toBe(true);
    const requests = lines.filter((l) => l.msg === 'request');
    expect(requests.length).toBeGreaterThanOrEqual(requestsMade);
    for (const line of requests) expect(line.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(requests.map((l) => l.route)).toEqual(expect.arrayContaining(['/oauth/token', '/oauth/authorize', '/oauth/introspect', '/oauth/revoke', '/api/v1/users', '/api/v1/me']));
  });

  it('never logs a token, password, client secret or authorization code', () => {
    const leaks: string[] = [];
    for (const [name, value] of secrets) {
      for (const form of encodings(value)) {
        for (const [i, line] of server.logs.entries()) {
          if (line.includes(form)) leaks.push(`${name} (as ${form.slice(0, 12)}…) in log line ${i}: ${line.slice(0, 200)}`);
        }
      }
    }
    expect(leaks).toEqual([]);
  });

  it('never logs Basic credentials, even encoded', () => {
    const basic = Buffer.from(`${ADMIN_CLIENT_ID}:${ADMIN_CLIENT_SECRET}`).toString('base64');
    for (const line of server.logs) expect(line).not.toContain(basic);
  });

  it('keeps secrets out of the audit events too', () => {
    expect(server.audit.events.length).toBeGreaterThan(5);
    const audit = JSON.stringify(server.audit.events);
    const found = [...secrets].filter(([, value]) => encodings(value).some((form) => audit.includes(form))).map(([name]) => name);
    expect(found).toEqual([]);
  });
});
