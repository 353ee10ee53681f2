/**
 * Tenants cannot see or touch each other: another tenant's objects answer 404 exactly as
 * objects that do not exist, lists hold only the caller's own, and tokens of one tenant
 * are opaque to the other's introspection and revocation. Then the role rules inside a
 * tenant: nobody grants above their own role, a tenant keeps an owner, disabled users
 * are locked out, and a narrowed token grants only what it carries.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { api, clientToken, postForm } from '../support/http.js';
import { createTenant, createUser, loginUser, pkce, submitLogin, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';

describe('tenant isolation and role rules', () => {
  let server: TestServer;
  let base: string;
  let alpha: TenantOwner;
  let beta: TenantOwner;
  let betaUser: { id: string; username: string; password: string };
  let betaAccount: { id: string; client_id: string; client_secret: string };
  let betaOwnerId: string;
  let alphaUser: { id: string; username: string; password: string };
  let alphaAccount: { id: string; client_id: string; client_secret: string };

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    alpha = await createTenant(base, 'alpha');
    beta = await createTenant(base, 'beta');
    betaUser = await createUser(base, beta, 'bob', 'member');
    alphaUser = await createUser(base, alpha, 'alice', 'member');
    betaAccount = (await api(base, 'POST', '/api/v1/service-accounts', { token: beta.token, body: { name: 'beta-bot', scopes: ['forms:read'] } })).body;
    alphaAccount = (await api(base, 'POST', '/api/v1/service-accounts', { token: alpha.token, body: { name: 'alpha-bot', scopes: ['forms:read'] } })).body;
    betaOwnerId = (await api(base, 'GET', '/api/v1/me', { token: beta.token })).body.sub;
  });
  afterAll(async () => server.close());

  const notFound = (res: Awaited<ReturnType<typeof api>>) => expectProblem(res, 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');

  describe("another tenant's objects are 404 to an owner", () => {
    it('hides another tenant exactly like a tenant that does not exist', async () => {
      const other = await api(base, 'GET', '/api/v1/tenants/beta', { token: alpha.token });
      const missing = await api(base, 'GET', '/api/v1/tenants/no-such-tenant', { token: alpha.token });
      notFound(other);
      notFound(missing);
      expect(other.body.detail).toBe(missing.body.detail);
      expect((await api(base, 'GET', '/api/v1/tenants/alpha', { token: alpha.token })).status).toBe(200);
    });

    it("answers 404 for another tenant's user on GET, PATCH and DELETE, and leaves the user untouched", async () => {
      notFound(await api(base, 'GET', `/api/v1/users/${betaUser.id}`, { token: alpha.token }));
      notFound(await api(base, 'PATCH', `/api/v1/users/${betaUser.id}`, { token: alpha.token, body: { display_name: 'pwned' } }));
      notFound(await api(base, 'PATCH', `/api/v1/users/${betaUser.id}`, { token: alpha.token, body: { password: 'attacker password 1' } }));
      notFound(await api(base, 'PATCH', `/api/v1/users/${betaUser.id}`, { token: alpha.token, body: { disabled: true } }));
      notFound(await api(base, 'DELETE', `/api/v1/users/${betaUser.id}`, { token: alpha.token }));

      const seen = await api(base, 'GET', `/api/v1/users/${betaUser.id}`, { token: beta.token });
      expect(seen.status).toBe(200);
      expect(seen.body).toMatchObject({ username: 'bob', display_name: null, disabled: false, role: 'member' });
      expect((await loginUser(base, 'beta', betaUser)).access_token).toEqual(expect.any(String));
    });

    it("answers 404 for another tenant's service account on GET, DELETE and secret rotation, and its secret keeps working", async () => {
      notFound(await api(base, 'GET', `/api/v1/service-accounts/${betaAccount.id}`, { token: alpha.token }));
      notFound(await api(base, 'POST', `/api/v1/service-accounts/${betaAccount.id}/secret`, { token: alpha.token }));
      notFound(await api(base, 'DELETE', `/api/v1/service-accounts/${betaAccount.id}`, { token: alpha.token }));
      notFound(await api(base, 'GET', `/api/v1/service-accounts/${betaOwnerId}`, { token: alpha.token }));
      notFound(await api(base, 'POST', `/api/v1/service-accounts/${betaOwnerId}/secret`, { token: alpha.token }));

      expect((await api(base, 'GET', `/api/v1/service-accounts/${betaAccount.id}`, { token: beta.token })).status).toBe(200);
      expect(await clientToken(base, betaAccount.client_id, betaAccount.client_secret)).toEqual(expect.any(String));
      expect(await clientToken(base, beta.clientId, beta.clientSecret)).toEqual(expect.any(String));
    });

    it("answers 404 when setting or removing the role of another tenant's principal", async () => {
      for (const id of [betaUser.id, betaAccount.id, betaOwnerId]) {
        notFound(await api(base, 'PUT', `/api/v1/members/${id}`, { token: alpha.token, body: { role: 'viewer' } }));
        notFound(await api(base, 'PUT', `/api/v1/members/${id}`, { token: alpha.token, body: { role: 'owner' } }));
        notFound(await api(base, 'DELETE', `/api/v1/members/${id}`, { token: alpha.token }));
      }
      const members = await api(base, 'GET', '/api/v1/members', { token: beta.token });
      const roles = Object.fromEntries(members.body.items.map((m: any) => [m.principal_id, m.role]));
      expect(roles[betaUser.id]).toBe('member');
      expect(roles[betaOwnerId]).toBe('owner');
      // Nothing of beta was pulled into alpha either.
      const alphaMembers = await api(base, 'GET', '/api/v1/members', { token: alpha.token });
      expect(alphaMembers.body.items.map((m: any) => m.principal_id)).not.toEqual(expect.arrayContaining([betaUser.id]));
    });

    it("lists only the caller's own tenant, users, service accounts and members", async () => {
      const betaIds = [betaUser.id, betaAccount.id, betaOwnerId];
      const tenants = await api(base, 'GET', '/api/v1/tenants', { token: alpha.token });
      expect(tenants.body.items.map((t: any) => t.id)).toEqual(['alpha']);

      const users = await api(base, 'GET', '/api/v1/users', { token: alpha.token });
      expect(users.body.items.map((u: any) => u.username)).toContain('alice');
      const accounts = await api(base, 'GET', '/api/v1/service-accounts', { token: alpha.token });
      expect(accounts.body.items.map((a: any) => a.id)).toContain(alphaAccount.id);
      const members = await api(base, 'GET', '/api/v1/members', { token: alpha.token });
      expect(members.body.items.map((m: any) => m.principal_id)).toContain(alphaUser.id);

      for (const listed of [users, accounts, members]) {
        expect(listed.status).toBe(200);
        for (const id of betaIds) expect(listed.text).not.toContain(id);
        expect(listed.text).not.toContain('beta');
        expect(listed.text).not.toContain('bob');
      }
    });
  });

  describe("another tenant's tokens", () => {
    it("introspects another tenant's access and refresh tokens as inactive", async () => {
      const betaAccess = await clientToken(base, beta.clientId, beta.clientSecret);
      const betaLogin = await loginUser(base, 'beta', betaUser);
      for (const token of [betaAccess, betaLogin.access_token as string, betaLogin.refresh_token as string]) {
        const foreign = await postForm(base, '/oauth/introspect', { token }, { basic: [alpha.clientId, alpha.clientSecret] });
        expect(foreign.status).toBe(200);
        expect(foreign.body).toEqual({ active: false });
        const own = await postForm(base, '/oauth/introspect', { token }, { basic: [beta.clientId, beta.clientSecret] });
        expect(own.body.active).toBe(true);
      }
    });

    it("does nothing when asked to revoke another tenant's tokens", async () => {
      const betaAccess = await clientToken(base, beta.clientId, beta.clientSecret);
      const betaLogin = await loginUser(base, 'beta', betaUser);
      for (const token of [betaAccess, betaLogin.access_token as string, betaLogin.refresh_token as string]) {
        const res = await postForm(base, '/oauth/revoke', { token }, { basic: [alpha.clientId, alpha.clientSecret] });
        expect(res.status).toBe(200);
      }
      expect((await api(base, 'GET', '/api/v1/me', { token: betaAccess })).status).toBe(200);
      expect((await api(base, 'GET', '/api/v1/me', { token: betaLogin.access_token as string })).status).toBe(200);
      const refreshed = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: betaLogin.refresh_token as string, client_id: 'flowgate-cli' });
      expect(refreshed.status).toBe(200);
    });

    it("cannot use another tenant's user token as the subject of a token exchange", async () => {
      const exchanger = (await api(base, 'POST', '/api/v1/service-accounts', { token: alpha.token, body: { name: 'exchanger', scopes: ['tokens:exchange'] } })).body;
      const betaLogin = await loginUser(base, 'beta', betaUser);
      const res = await postForm(
        base,
        '/oauth/token',
        {
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          subject_token: betaLogin.access_token as string,
          subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
          scope: 'flows:run',
        },
        { basic: [exchanger.client_id, exchanger.client_secret] },
      );
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_grant');
    });
  });

  describe('role rules', () => {
    it('does not let a member of a tenant create tenants', async () => {
      const member = await loginUser(base, 'alpha', alphaUser);
      const res = await api(base, 'POST', '/api/v1/tenants', { token: member.access_token as string, body: { id: 'member-made' } });
      expectProblem(res, 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expect(res.body.error).toBe('insufficient_scope');
      const challenge = res.headers.get('www-authenticate') ?? '';
      expect(challenge.startsWith('Bearer realm="flowgate"')).toBe(true);
      expect(challenge).toContain('error="insufficient_scope"');
      expect(challenge).toContain('scope="platform:admin"');
    });

    it("does not let a tenant owner create tenants: '*:*' does not reach platform scopes", async () => {
      const res = await api(base, 'POST', '/api/v1/tenants', { token: alpha.token, body: { id: 'owner-made' } });
      expectProblem(res, 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expect(res.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
    });

    it('does not let an admin make an owner, by creation or by role change', async () => {
      const admin = await createUser(base, alpha, 'adam', 'admin');
      const token = (await loginUser(base, 'alpha', admin)).access_token as string;
      const created = await api(base, 'POST', '/api/v1/users', { token, body: { username: 'newowner', password: 'a long enough password', role: 'owner' } });
      expectProblem(created, 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
      const promoted = await api(base, 'PUT', `/api/v1/members/${alphaUser.id}`, { token, body: { role: 'owner' } });
      expectProblem(promoted, 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
      const self = await api(base, 'PUT', `/api/v1/members/${admin.id}`, { token, body: { role: 'owner' } });
      expectProblem(self, 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
      // ...and cannot touch the owner either.
      const ownerId = (await api(base, 'GET', '/api/v1/me', { token: alpha.token })).body.sub;
      expectProblem(await api(base, 'PUT', `/api/v1/members/${ownerId}`, { token, body: { role: 'viewer' } }), 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
      expectProblem(await api(base, 'DELETE', `/api/v1/members/${ownerId}`, { token }), 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
      // An admin may still make admins and members: the refusal is about rank, not a blanket ban.
      const ok = await api(base, 'POST', '/api/v1/users', { token, body: { username: 'newadmin', password: 'a long enough password', role: 'admin' } });
      expect(ok.status).toBe(201);
      const members = await api(base, 'GET', '/api/v1/members', { token: alpha.token });
      expect(members.body.items.filter((m: any) => m.role === 'owner')).toHaveLength(1);
    });

    it('keeps the last owner: it can be neither demoted nor deleted', async () => {
      const gamma = await createTenant(base, 'gamma');
      const ownerId = (await api(base, 'GET', '/api/v1/me', { token: gamma.token })).body.sub;
      expectProblem(await api(base, 'PUT', `/api/v1/members/${ownerId}`, { token: gamma.token, body: { role: 'admin' } }), 409, 'FLOWGATE_ERR_IAM_LAST_OWNER');
      expectProblem(await api(base, 'DELETE', `/api/v1/members/${ownerId}`, { token: gamma.token }), 409, 'FLOWGATE_ERR_IAM_LAST_OWNER');
      expectProblem(await api(base, 'DELETE', `/api/v1/service-accounts/${ownerId}`, { token: gamma.token }), 409, 'FLOWGATE_ERR_IAM_LAST_OWNER');

      // With a second owner (a user), the account may step down; then the user is the last owner.
      const olga = await createUser(base, gamma, 'olga', 'owner');
      const olgaToken = (await loginUser(base, 'gamma', olga)).access_token as string;
      const stepDown = await api(base, 'PUT', `/api/v1/members/${ownerId}`, { token: olgaToken, body: { role: 'admin' } });
      expect(stepDown.status).toBe(200);
      expectProblem(await api(base, 'PUT', `/api/v1/members/${olga.id}`, { token: olgaToken, body: { role: 'member' } }), 409, 'FLOWGATE_ERR_IAM_LAST_OWNER');
      expectProblem(await api(base, 'DELETE', `/api/v1/users/${olga.id}`, { token: olgaToken }), 409, 'FLOWGATE_ERR_IAM_LAST_OWNER');
      expectProblem(await api(base, 'DELETE', `/api/v1/members/${olga.id}`, { token: olgaToken }), 409, 'FLOWGATE_ERR_IAM_LAST_OWNER');

      const members = await api(base, 'GET', '/api/v1/members', { token: olgaToken });
      expect(members.body.items.filter((m: any) => m.role === 'owner').map((m: any) => m.principal_id)).toEqual([olga.id]);
    });

    it('locks out a disabled user: no login, and the refresh token stops working', async () => {
      const dora = await createUser(base, alpha, 'dora', 'member');
      const session = await loginUser(base, 'alpha', dora);
      const disabled = await api(base, 'PATCH', `/api/v1/users/${dora.id}`, { token: alpha.token, body: { disabled: true } });
      expect(disabled.status).toBe(200);
      expect(disabled.body.disabled).toBe(true);

      const login = await submitLogin(base, { tenant: 'alpha', username: 'dora', password: dora.password, redirectUri: 'http://127.0.0.1:40000/callback', challenge: pkce().challenge });
      expect(login.status).toBe(401);
      expect(login.location).toBeNull();
      expect(login.body).toContain('The tenant, username or password is wrong.');

      const refreshed = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: session.refresh_token as string, client_id: 'flowgate-cli' });
      expect(refreshed.status).toBe(400);
      expect(refreshed.body.error).toBe('invalid_grant');
      const inspected = await postForm(base, '/oauth/introspect', { token: session.refresh_token as string }, { basic: [alpha.clientId, alpha.clientSecret] });
      expect(inspected.body).toEqual({ active: false });

      // Enabled again, she can log in again (the lock-out was the flag, nothing else).
      expect((await api(base, 'PATCH', `/api/v1/users/${dora.id}`, { token: alpha.token, body: { disabled: false } })).status).toBe(200);
      expect((await loginUser(base, 'alpha', dora)).access_token).toEqual(expect.any(String));
    });

    it('does not let a token narrowed to users:write create an owner, even from the owner', async () => {
      const narrowed = await clientToken(base, alpha.clientId, alpha.clientSecret, 'users:write');
      const res = await api(base, 'POST', '/api/v1/users', { token: narrowed, body: { username: 'sneaky-owner', password: 'a long enough password', role: 'owner' } });
      expectProblem(res, 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
      const list = await api(base, 'GET', '/api/v1/users', { token: alpha.token });
      expect(list.body.items.map((u: any) => u.username)).not.toContain('sneaky-owner');
      // Nor raise an existing user to owner with a members:write-only token.
      const membersOnly = await clientToken(base, alpha.clientId, alpha.clientSecret, 'members:write');
      expectProblem(await api(base, 'PUT', `/api/v1/members/${alphaUser.id}`, { token: membersOnly, body: { role: 'owner' } }), 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
    });
  });
});
