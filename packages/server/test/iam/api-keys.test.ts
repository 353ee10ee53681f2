/**
 * API keys of service accounts, on each store: created over HTTP and shown once, listed as
 * metadata only, revoked; `iam.apiKeys.verify()` (what the gateway calls) accepts a live
 * key and refuses a wrong secret, a revoked or expired key, and a disabled or deleted
 * account, with a frozen clock moving past the cache time and the key's expiry. Another
 * tenant's accounts and keys are 404.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_KEY_CACHE_MS } from '../../src/iam/index.js';
import type { IamTables } from '../../src/iam/iam.tables.js';
import { ManualClock } from '../../src/kernel/index.js';
import { api, clientToken } from '../support/http.js';
import { createTenant, createUser, loginUser, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';

const KEY = /^fgk_([0-9a-f-]{36})_([A-Za-z0-9_-]{43})$/;
const DAY_MS = 24 * 60 * 60 * 1000;

interface Account {
  readonly id: string;
  readonly client_id: string;
}

describe.each(['sqlite', 'postgres'] as const)('API keys on %s', (store) => {
  let server: TestServer;
  let base: string;
  let clock: ManualClock;
  let alpha: TenantOwner;
  let beta: TenantOwner;
  /** Every answer the tests got, to check no key leaks into a later one. */
  const answers: string[] = [];

  // The clock moves by days in some tests: every call takes a fresh owner token.
  const tokenOf = (owner: TenantOwner) => clientToken(base, owner.clientId, owner.clientSecret);
  const call = async (owner: TenantOwner | string, method: string, path: string, body?: unknown) => {
    const token = typeof owner === 'string' ? owner : await tokenOf(owner);
    const res = await api(base, method, path, { token, ...(body !== undefined ? { body } : {}) });
    answers.push(res.text);
    return res;
  };
  const keysOf = (accountId: string) => `/api/v1/service-accounts/${accountId}/api-keys`;
  const newAccount = async (owner: TenantOwner, name: string, scopes: string[]): Promise<Account> => {
    const res = await call(owner, 'POST', '/api/v1/service-accounts', { name, scopes });
    expect(res.status).toBe(201);
    return res.body;
  };
  const newKey = async (owner: TenantOwner, accountId: string, body: Record<string, unknown>): Promise<{ id: string; key: string }> => {
    const res = await call(owner, 'POST', keysOf(accountId), body);
    expect(res.status).toBe(201);
    return res.body;
  };
  const verify = (key: string) => server.flowgate.iam.apiKeys.verify(key);
  const expectRefused = (key: string, detail: RegExp) =>
    expect(verify(key)).rejects.toMatchObject({ code: 'FLOWGATE_ERR_AUTH_API_KEY_INVALID', status: 401, message: expect.stringMatching(detail) });
  const db = () => server.flowgate.store.db<IamTables>();

  beforeAll(async () => {
    clock = new ManualClock(Date.UTC(2026, 10, 23));
    server = await startTestServer({ store, clock });
    base = server.url;
    alpha = await createTenant(base, `keys-alpha-${store}`);
    beta = await createTenant(base, `keys-beta-${store}`);
  });
  afterAll(async () => server.close());

  it('creates a key shown once, lists its metadata only, and verify() answers the account', async () => {
    const account = await newAccount(alpha, 'orders-bot', ['forms:read', 'forms:write']);
    const created = await call(alpha, 'POST', keysOf(account.id), { name: 'orders gateway', scopes: ['forms:read'] });
    expect(created.status).toBe(201);
    const key = created.body.key as string;
    const [, keyId, secret] = KEY.exec(key) ?? [];
    expect(created.body).toEqual({
      id: keyId,
      service_account_id: account.id,
      name: 'orders gateway',
      scopes: ['forms:read'],
      last4: key.slice(-4),
      created_at: new Date(clock.now()).toISOString(),
      expires_at: null,
      revoked_at: null,
      key,
    });

    const listed = await call(alpha, 'GET', keysOf(account.id));
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({ items: [{ ...created.body, key: undefined }], next_cursor: null });
    expect(listed.body.items[0]).not.toHaveProperty('key');
    expect(listed.text).not.toContain(secret);

    expect(await verify(key)).toEqual({
      kind: 'service_account',
      sub: account.id,
      tenant: alpha.tenant,
      scopes: ['forms:read'],
      clientId: account.client_id,
      act: undefined,
      jti: null,
      issuer: base,
      iat: Math.floor(clock.now() / 1000),
      exp: Math.ceil((clock.now() + API_KEY_CACHE_MS) / 1000),
      name: 'orders-bot',
    });
    // Served from the cache the second time, the same answer.
    expect((await verify(key)).scopes).toEqual(['forms:read']);

    const events = server.audit.events.filter((e) => e.target === `api_key:${keyId}`);
    expect(events).toEqual([
      expect.objectContaining({ action: 'iam.api_key.created', tenant: alpha.tenant, outcome: 'success', details: { service_account: account.id, scopes: 'forms:read', expires_at: null } }),
    ]);
  });

  it("holds every scope of the account by default, and refuses scopes the account does not hold", async () => {
    const account = await newAccount(alpha, 'defaults-bot', ['forms:read', 'flows:run']);
    const all = await newKey(alpha, account.id, { name: 'everything' });
    expect((await verify(all.key)).scopes).toEqual(['forms:read', 'flows:run']);

    const tooMuch = await call(alpha, 'POST', keysOf(account.id), { name: 'greedy', scopes: ['forms:read', 'forms:write'] });
    expectProblem(tooMuch, 403, 'FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE');
    expect(tooMuch.body.scopes).toEqual(['forms:write']);
    expectProblem(await call(alpha, 'POST', keysOf(account.id), { name: 'forever', expires_in_days: 0 }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
    expectProblem(await call(alpha, 'POST', keysOf(account.id), { name: 'bad', scopes: ['not a scope'] }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
    const listed = await call(alpha, 'GET', keysOf(account.id));
    expect(listed.body.items.map((k: { name: string }) => k.name)).toEqual(['everything']);
  });

  it('refuses a malformed key and a wrong secret, even while the right one is cached', async () => {
    const account = await newAccount(alpha, 'secret-bot', ['forms:read']);
    const { key } = await newKey(alpha, account.id, { name: 'k' });
    await verify(key);
    const last = key.slice(-1);
    const wrong = key.slice(0, -1) + (last === 'A' ? 'B' : 'A');
    await expectRefused(wrong, /not known/);
    const unknownId = key.replace(KEY, (_m, _id: string, s: string) => `fgk_00000000-0000-7000-8000-000000000000_${s}`);
    await expectRefused(unknownId, /not known/);
    for (const malformed of ['', 'fgk_', 'not-a-key', `${key}x`, ` ${key}`, key.toUpperCase(), `Bearer ${key}`, `fgk_${'a'.repeat(300)}`]) {
      await expectRefused(malformed, /not a Flowgate API key/);
    }
  });

  it('refuses a revoked key at once on this instance; revoking again changes nothing', async () => {
    const account = await newAccount(alpha, 'revoked-bot', ['forms:read']);
    const { id, key } = await newKey(alpha, account.id, { name: 'soon revoked' });
    await verify(key);
    expect((await call(alpha, 'DELETE', `${keysOf(account.id)}/${id}`)).status).toBe(204);
    await expectRefused(key, /revoked/);
    expect((await call(alpha, 'DELETE', `${keysOf(account.id)}/${id}`)).status).toBe(204);
    const listed = await call(alpha, 'GET', keysOf(account.id));
    expect(listed.body.items).toEqual([expect.objectContaining({ id, revoked_at: new Date(clock.now()).toISOString() })]);
    expect(server.audit.events.filter((e) => e.target === `api_key:${id}`).map((e) => e.action)).toEqual(['iam.api_key.created', 'iam.api_key.revoked']);
    expectProblem(await call(alpha, 'DELETE', `${keysOf(account.id)}/no-such-key`), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
  });

  it('refuses an expired key, even one verified a moment before it expired', async () => {
    const account = await newAccount(alpha, 'expiring-bot', ['forms:read']);
    const created = await call(alpha, 'POST', keysOf(account.id), { name: 'one day', expires_in_days: 1 });
    expect(created.body.expires_at).toBe(new Date(clock.now() + DAY_MS).toISOString());
    clock.advance(DAY_MS - 1000);
    expect((await verify(created.body.key)).exp).toBe(Math.ceil((clock.now() + 1000) / 1000));
    clock.advance(1000);
    await expectRefused(created.body.key, /expired/);
  });

  it('refuses the keys of a disabled account once the cache time has passed, and of a deleted one at once', async () => {
    const account = await newAccount(alpha, 'disabled-bot', ['forms:read']);
    const { key } = await newKey(alpha, account.id, { name: 'k' });
    await verify(key);
    await db().updateTable('service_accounts').set({ disabled: 1 }).where('id', '=', account.id).execute();
    // Another instance (here: the database behind this one's back) is seen within the cache time.
    expect((await verify(key)).sub).toBe(account.id);
    clock.advance(API_KEY_CACHE_MS);
    await expectRefused(key, /disabled/);

    const doomed = await newAccount(alpha, 'deleted-bot', ['forms:read']);
    const doomedKey = await newKey(alpha, doomed.id, { name: 'k' });
    await verify(doomedKey.key);
    expect((await call(alpha, 'DELETE', `/api/v1/service-accounts/${doomed.id}`)).status).toBe(204);
    await expectRefused(doomedKey.key, /not known/);
    expect(await db().selectFrom('api_keys').select('id').where('id', '=', doomedKey.id).execute()).toEqual([]);
  });

  it("never grants more than the account holds now: a demoted account's key narrows at once", async () => {
    const account = await newAccount(alpha, 'member-bot', ['forms:read']);
    expect((await call(alpha, 'PUT', `/api/v1/members/${account.id}`, { role: 'member' })).status).toBe(200);
    const { key } = await newKey(alpha, account.id, { name: 'runner', scopes: ['forms:read', 'flows:run'] });
    expect((await verify(key)).scopes).toEqual(['forms:read', 'flows:run']);
    expect((await call(alpha, 'PUT', `/api/v1/members/${account.id}`, { role: 'viewer' })).status).toBe(200);
    expect((await verify(key)).scopes).toEqual(['forms:read']);
  });

  it('needs the rights of managing the account', async () => {
    const target = await newAccount(alpha, 'powerful-bot', ['forms:read', 'forms:write']);
    const manager = await call(alpha, 'POST', '/api/v1/service-accounts', { name: 'key-manager', scopes: ['accounts:read', 'accounts:write', 'forms:read'] });
    const managerToken = await clientToken(base, manager.body.client_id, manager.body.client_secret);
    expectProblem(await call(managerToken, 'POST', keysOf(target.id), { name: 'k', scopes: ['forms:read'] }), 403, 'FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE');
    expect((await call(managerToken, 'GET', keysOf(target.id))).status).toBe(200);

    const user = await createUser(base, { ...alpha, token: await tokenOf(alpha) }, `viewer-${store}`, 'viewer');
    const viewer = (await loginUser(base, alpha.tenant, user)).access_token as string;
    expectProblem(await call(viewer, 'POST', keysOf(target.id), { name: 'k' }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    expect((await call(viewer, 'GET', keysOf(target.id))).status).toBe(200);

    // An admin does not act for an owner.
    const admin = await createUser(base, { ...alpha, token: await tokenOf(alpha) }, `admin-${store}`, 'admin');
    const adminToken = (await loginUser(base, alpha.tenant, admin)).access_token as string;
    const owner = (await call(alpha, 'GET', '/api/v1/me')).body.sub as string;
    expectProblem(await call(adminToken, 'POST', keysOf(owner), { name: 'k' }), 403, 'FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE');
    expect((await call(adminToken, 'POST', keysOf(target.id), { name: 'k' })).status).toBe(201);
  });

  it("answers 404 for another tenant's account and key, and leaves the key working", async () => {
    const account = await newAccount(alpha, 'isolated-bot', ['forms:read']);
    const { id, key } = await newKey(alpha, account.id, { name: 'alpha only' });
    const betaAccount = await newAccount(beta, 'beta-bot', ['forms:read']);
    const notFound = (res: Awaited<ReturnType<typeof api>>) => expectProblem(res, 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');

    notFound(await call(beta, 'GET', keysOf(account.id)));
    notFound(await call(beta, 'POST', keysOf(account.id), { name: 'stolen' }));
    notFound(await call(beta, 'DELETE', `${keysOf(account.id)}/${id}`));
    // Its own account, another tenant's key.
    notFound(await call(beta, 'DELETE', `${keysOf(betaAccount.id)}/${id}`));
    // The same tenant, another account's key.
    const other = await newAccount(alpha, 'other-bot', ['forms:read']);
    notFound(await call(alpha, 'DELETE', `${keysOf(other.id)}/${id}`));

    expect((await call(beta, 'GET', keysOf(betaAccount.id))).body.items).toEqual([]);
    expect((await verify(key)).tenant).toBe(alpha.tenant);
    expect((await call(alpha, 'GET', keysOf(account.id))).body.items).toEqual([expect.objectContaining({ id, revoked_at: null })]);
  });

  it('never shows a key again: not in lists, audit events or logs', async () => {
    const account = await newAccount(alpha, 'quiet-bot', ['forms:read']);
    const { key } = await newKey(alpha, account.id, { name: 'quiet' });
    answers.pop(); // the one answer that shows it
    await call(alpha, 'GET', keysOf(account.id));
    const secret = KEY.exec(key)![2]!;
    const seen = [...answers, ...server.logs, JSON.stringify(server.audit.events)].join('\n');
    expect(seen).not.toContain(secret);
  });
});
