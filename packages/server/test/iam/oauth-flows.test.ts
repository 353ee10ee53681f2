import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { startTestServer, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, type TestServer } from '../support/server.js';
import { api, clientToken, postForm } from '../support/http.js';
import { createTenant, createUser, loginUser, pkce, submitLogin, type TenantOwner } from '../support/iam.js';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS = 'urn:ietf:params:oauth:token-type:access_token';

describe.each(['sqlite', 'postgres'] as const)('OAuth flows on %s', (store) => {
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer({ store });
    base = server.url;
    acme = await createTenant(base, 'acme');
  });
  afterAll(async () => server.close());

  it('issues a client_credentials token with Basic or body credentials, carrying the documented claims', async () => {
    const viaBasic = await postForm(base, '/oauth/token', { grant_type: 'client_credentials' }, { basic: [ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET] });
    const viaBody = await postForm(base, '/oauth/token', { grant_type: 'client_credentials', client_id: ADMIN_CLIENT_ID, client_secret: ADMIN_CLIENT_SECRET });
    expect(viaBasic.status).toBe(200);
    expect(viaBody.status).toBe(200);
    expect(viaBasic.headers.get('cache-control')).toBe('no-store');
    expect(viaBasic.body).toMatchObject({ token_type: 'Bearer', expires_in: 900 });
    const claims = decodeJwt(viaBasic.body.access_token);
    expect(claims).toMatchObject({ iss: base, aud: 'flowgate', tenant: 'default', client_id: ADMIN_CLIENT_ID });
    expect(typeof claims.jti).toBe('string');
    expect(claims.exp! - claims.iat!).toBe(900);
    expect(String(claims.scope).split(' ')).toEqual(expect.arrayContaining(['*:*', 'platform:admin']));
  });

  it('refuses credentials sent both in the header and in the body', async () => {
    const res = await postForm(
      base,
      '/oauth/token',
      { grant_type: 'client_credentials', client_id: ADMIN_CLIENT_ID, client_secret: ADMIN_CLIENT_SECRET },
      { basic: [ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET] },
    );
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ error: 'invalid_request', code: 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST' });
  });

  it('narrows a token to the scopes asked for and refuses scopes the client does not hold', async () => {
    const narrow = await postForm(base, '/oauth/token', { grant_type: 'client_credentials', scope: 'users:read' }, { basic: [acme.clientId, acme.clientSecret] });
    expect(narrow.body.scope).toBe('users:read');
    const wide = await postForm(base, '/oauth/token', { grant_type: 'client_credentials', scope: 'platform:admin' }, { basic: [acme.clientId, acme.clientSecret] });
    expect(wide.status).toBe(400);
    expect(wide.body.error).toBe('invalid_scope');
  });

  it('creates a service account whose secret is shown once and which holds only what its creator holds', async () => {
    const created = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'reporter', scopes: ['forms:read'] } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'reporter', scopes: ['forms:read'] });
    expect(created.body.client_secret).toMatch(/^fgs_/);
    const token = await clientToken(base, created.body.client_id, created.body.client_secret);
    expect(decodeJwt(token).scope).toBe('forms:read');

    const listed = await api(base, 'GET', '/api/v1/service-accounts', { token: acme.token });
    expect(listed.text).not.toContain(created.body.client_secret);
    expect(listed.body.items.map((a: { name: string }) => a.name)).toContain('reporter');

    // The reporter may create accounts? No: it lacks accounts:write. Give it that, and it
    // still cannot hand out more than forms:read.
    const granter = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'granter', scopes: ['accounts:write', 'forms:read'] } });
    const granterToken = await clientToken(base, granter.body.client_id, granter.body.client_secret);
    const escalate = await api(base, 'POST', '/api/v1/service-accounts', { token: granterToken, body: { name: 'sneaky', scopes: ['forms:write'] } });
    expect(escalate.status).toBe(403);
    expect(escalate.body.code).toBe('FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE');
    const allowed = await api(base, 'POST', '/api/v1/service-accounts', { token: granterToken, body: { name: 'ok', scopes: ['forms:read'] } });
    expect(allowed.status).toBe(201);
  });

  it('introspects tokens for authenticated service accounts and reports revoked ones inactive', async () => {
    const token = await clientToken(base, acme.clientId, acme.clientSecret);
    const active = await postForm(base, '/oauth/introspect', { token }, { basic: [acme.clientId, acme.clientSecret] });
    expect(active.body).toMatchObject({ active: true, tenant: 'acme', client_id: acme.clientId, token_type: 'Bearer' });

    const anonymous = await postForm(base, '/oauth/introspect', { token });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('Basic');

    const revoked = await postForm(base, '/oauth/revoke', { token }, { basic: [acme.clientId, acme.clientSecret] });
    expect(revoked.status).toBe(200);
    const after = await postForm(base, '/oauth/introspect', { token }, { basic: [acme.clientId, acme.clientSecret] });
    expect(after.body).toEqual({ active: false });
    const use = await api(base, 'GET', '/api/v1/me', { token });
    expect(use.status).toBe(401);
    expect(use.body.code).toBe('FLOWGATE_ERR_AUTH_TOKEN_REVOKED');
    expect(use.headers.get('www-authenticate')).toContain('error="invalid_token"');
  });

  it('answers revocation of an unknown token with 200, revealing nothing', async () => {
    const res = await postForm(base, '/oauth/revoke', { token: 'not-a-token' }, { basic: [acme.clientId, acme.clientSecret] });
    expect(res.status).toBe(200);
  });

  it('logs a user in with the authorization code flow and PKCE, with an ID token', async () => {
    const alice = await createUser(base, acme, 'alice', 'member');
    const tokens = await loginUser(base, 'acme', alice, 'openid');
    const access = decodeJwt(tokens.access_token as string);
    expect(access).toMatchObject({ sub: alice.id, tenant: 'acme', client_id: 'flowgate-cli', principal: 'user' });
    expect(String(access.scope)).toContain('flows:run');
    const id = decodeJwt(tokens.id_token as string);
    expect(id).toMatchObject({ sub: alice.id, aud: 'flowgate-cli', preferred_username: 'alice', iss: base });
    const me = await api(base, 'GET', '/api/v1/me', { token: tokens.access_token as string });
    expect(me.body).toMatchObject({ sub: alice.id, tenant: 'acme', principal_type: 'user', name: 'alice' });
  });

  it('refuses a code redeemed with the wrong PKCE verifier, and a code used twice', async () => {
    const bob = await createUser(base, acme, 'bob', 'viewer');
    const { challenge, verifier } = pkce();
    const redirectUri = 'http://127.0.0.1:40000/callback';
    const login = await submitLogin(base, { tenant: 'acme', username: bob.username, password: bob.password, redirectUri, challenge });
    expect(login.status).toBe(302);
    const location = new URL(login.location!);
    expect(location.searchParams.get('iss')).toBe(base);
    expect(location.searchParams.get('state')).toBe('state-1');
    const code = location.searchParams.get('code')!;
    const wrong = await postForm(base, '/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: pkce().verifier, client_id: 'flowgate-cli' });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error).toBe('invalid_grant');
    const right = await postForm(base, '/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: 'flowgate-cli' });
    expect(right.status).toBe(200);
    const again = await postForm(base, '/oauth/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri, code_verifier: verifier, client_id: 'flowgate-cli' });
    expect(again.body.error).toBe('invalid_grant');
    // The replay revoked what the first redemption produced.
    const refreshed = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: right.body.refresh_token, client_id: 'flowgate-cli' });
    expect(refreshed.body.error).toBe('invalid_grant');
  });

  it('shows the login form again with an error for a wrong password, and redirects nowhere', async () => {
    const { challenge } = pkce();
    const res = await submitLogin(base, { tenant: 'acme', username: 'alice', password: 'wrong password!!', redirectUri: 'http://127.0.0.1:40000/callback', challenge });
    expect(res.status).toBe(401);
    expect(res.location).toBeNull();
    expect(res.body).toContain('The tenant, username or password is wrong.');
  });

  it('refuses to redirect to an unregistered redirect URI', async () => {
    const { challenge } = pkce();
    const res = await submitLogin(base, { tenant: 'acme', username: 'alice', password: 'x', redirectUri: 'https://evil.example/callback', challenge });
    expect(res.status).toBe(400);
    expect(res.location).toBeNull();
  });

  it('rotates refresh tokens and revokes the whole family when an old one comes back', async () => {
    const carol = await createUser(base, acme, 'carol', 'member');
    const first = await loginUser(base, 'acme', carol);
    const second = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token as string, client_id: 'flowgate-cli' });
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    const replay = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token as string, client_id: 'flowgate-cli' });
    expect(replay.body.error).toBe('invalid_grant');
    const successor = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: second.body.refresh_token, client_id: 'flowgate-cli' });
    expect(successor.body.error).toBe('invalid_grant');
  });

  it('keeps the refresh token usable after a refused scope, and its scope after a narrowed refresh', async () => {
    const frank = await createUser(base, acme, 'frank', 'member');
    const first = await loginUser(base, 'acme', frank);
    const refused = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token as string, client_id: 'flowgate-cli', scope: 'users:write' });
    expect(refused.body.error).toBe('invalid_scope');
    const narrowed = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: first.refresh_token as string, client_id: 'flowgate-cli', scope: 'flows:run' });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body.scope).toBe('flows:run');
    const widenedBack = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: narrowed.body.refresh_token, client_id: 'flowgate-cli' });
    expect(widenedBack.body.scope.split(' ')).toEqual(expect.arrayContaining(['flows:run', 'flows:write', '*:read']));
  });

  it('does not let an account manager take over an owner account by resetting its secret', async () => {
    const target = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'ops-bot', scopes: [] } });
    await api(base, 'PUT', `/api/v1/members/${target.body.id}`, { token: acme.token, body: { role: 'owner' } });
    const manager = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'manager', scopes: ['accounts:write'] } });
    const managerToken = await clientToken(base, manager.body.client_id, manager.body.client_secret);
    const reset = await api(base, 'POST', `/api/v1/service-accounts/${target.body.id}/secret`, { token: managerToken });
    expect(reset.status).toBe(403);
    expect(reset.body.code).toBe('FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
    const byOwner = await api(base, 'POST', `/api/v1/service-accounts/${target.body.id}/secret`, { token: acme.token });
    expect(byOwner.status).toBe(200);
    expect(byOwner.body.client_secret).toMatch(/^fgs_/);
  });

  describe('token exchange', () => {
    let userToken: string;
    let actor: { client_id: string; client_secret: string };

    beforeAll(async () => {
      const dave = await createUser(base, acme, 'dave', 'member');
      userToken = (await loginUser(base, 'acme', dave)).access_token as string;
      const created = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'workflow-runner', scopes: ['tokens:exchange'] } });
      actor = created.body;
    });

    const exchange = (params: Record<string, string>, creds = actor) =>
      postForm(base, '/oauth/token', { grant_type: EXCHANGE, subject_token: userToken, subject_token_type: ACCESS, ...params }, { basic: [creds.client_id, creds.client_secret] });

    it('narrows a user token for a workflow, naming the workflow in act', async () => {
      const res = await exchange({ scope: 'flows:run:flow=my_analysis', expires_in: '60' });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ issued_token_type: ACCESS, token_type: 'Bearer', scope: 'flows:run:flow=my_analysis', expires_in: 60 });
      const claims = decodeJwt(res.body.access_token);
      expect(claims.sub).toBe(decodeJwt(userToken).sub);
      expect(claims.act).toEqual({ sub: expect.any(String), client_id: actor.client_id });
    });

    it('refuses to widen', async () => {
      const res = await exchange({ scope: 'users:write' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_scope');
      expect(res.body.error_description).toContain('users:write');
    });

    it('refuses to outlive the subject token', async () => {
      const res = await exchange({ scope: 'flows:run', expires_in: '100000' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_request');
    });

    it('refuses a subject token of another tenant', async () => {
      const other = await createTenant(base, `other-${store}`);
      const created = await api(base, 'POST', '/api/v1/service-accounts', { token: other.token, body: { name: 'runner', scopes: ['tokens:exchange'] } });
      const res = await exchange({ scope: 'flows:run' }, created.body);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_grant');
    });

    it('refuses actors without the tokens:exchange scope', async () => {
      const plain = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'plain', scopes: ['flows:run'] } });
      const res = await exchange({ scope: 'flows:run' }, plain.body);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('unauthorized_client');
    });
  });

  it('rotates signing keys while tokens signed by the old key keep working', async () => {
    const admin = await clientToken(base, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET);
    const before = await api(base, 'GET', '/.well-known/jwks.json');
    const rotated = await api(base, 'POST', '/api/v1/keys/rotate', { token: admin });
    expect(rotated.status).toBe(200);
    expect(rotated.body.items.filter((k: { status: string }) => k.status === 'active')).toHaveLength(1);
    const after = await api(base, 'GET', '/.well-known/jwks.json');
    expect(after.body.keys).toHaveLength(before.body.keys.length + 1);
    const me = await api(base, 'GET', '/api/v1/me', { token: admin });
    expect(me.status).toBe(200);
    const fresh = await clientToken(base, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET);
    expect(decodeJwt(fresh).jti).not.toBe(decodeJwt(admin).jti);
    const { kid } = JSON.parse(Buffer.from(fresh.split('.')[0]!, 'base64url').toString()) as { kid: string };
    expect(rotated.body.items.find((k: { status: string }) => k.status === 'active').kid).toBe(kid);
  });
});
