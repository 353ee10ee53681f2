/**
 * Revoking an API key against verifications under way: once the revoke has returned, no
 * request on this instance is let through with the key, even one whose read of the store
 * began before the revoke and is still out. The store's read is held open through the
 * repository (a seam, not a sleep), so each interleaving is forced. Also: a verified key
 * is trusted for the cache time from when its read began, which bounds how long other
 * instances may accept a revoked key.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { API_KEY_CACHE_MS } from '../../src/iam/index.js';
import { ApiKeyRepository, ApiKeyVerifier, type ApiKeyWithAccount } from '../../src/iam/api-keys.js';
import { ManualClock } from '../../src/kernel/index.js';
import { api } from '../support/http.js';
import { adminToken, createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

type FindForVerification = (this: ApiKeyRepository, id: string) => Promise<ApiKeyWithAccount | undefined>;
/** The repository's own read, taken before any spy replaces it, for the spies to call through. */
const original: FindForVerification = Reflect.get(ApiKeyRepository.prototype, 'findForVerification');

/** Holds the next read of a key's row after it has been read, until released. */
function holdNextRead() {
  let release = (): void => undefined;
  const released = new Promise<void>((resolve) => (release = resolve));
  let markRead = (): void => undefined;
  const read = new Promise<void>((resolve) => (markRead = resolve));
  let held = false;
  const reads = vi.spyOn(ApiKeyRepository.prototype, 'findForVerification').mockImplementation(async function (this: ApiKeyRepository, id: string): Promise<ApiKeyWithAccount | undefined> {
    const row = await original.call(this, id);
    if (!held) {
      held = true;
      markRead();
      await released;
    }
    return row;
  });
  return { read, release, reads };
}

describe('API-key revocation against verifications under way', () => {
  let server: TestServer;
  let upstream: FakeUpstream;
  let clock: ManualClock;
  let acme: TenantOwner;
  let accountId: string;

  const newKey = async (): Promise<{ id: string; key: string }> => {
    const res = await api(server.url, 'POST', `/api/v1/service-accounts/${accountId}/api-keys`, { token: acme.token, body: { name: 'gw' } });
    expect(res.status).toBe(201);
    return res.body;
  };
  const call = (key: string) => api(server.url, 'GET', '/p/a', { headers: { 'x-api-key': key } });

  beforeAll(async () => {
    clock = new ManualClock(Date.UTC(2026, 10, 23));
    server = await startTestServer({ clock });
    upstream = await startUpstream();
    const admin = await adminToken(server.url);
    acme = await createTenant(server.url, 'revoke-acme');
    const account = await api(server.url, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'caller', scopes: ['forms:read'] } });
    accountId = account.body.id;
    const res = await api(server.url, 'PUT', '/api/v1/gateway/config', {
      token: admin,
      body: { services: [{ name: 'svc', targets: [upstream.url] }], routes: [{ name: 'r', service: 'svc', paths: ['/p/*'], policies: { auth: { type: 'api-key' } } }] },
    });
    if (res.status !== 200) throw new Error(res.text);
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('refuses the key once the revoke has returned: to a request after it, to one whose read was under way, and from then on', async () => {
    const { id, key } = await newKey();
    const hold = holdNextRead();
    const verifications = vi.spyOn(ApiKeyVerifier.prototype, 'verify');

    // Its read of the store happens before the revoke: the row says the key is live.
    const during = call(key);
    await hold.read;
    const revoked = await api(server.url, 'DELETE', `/api/v1/service-accounts/${accountId}/api-keys/${id}`, { token: acme.token });
    expect(revoked.status).toBe(204);

    // After the revoke returned, while that read is still out: must not share it.
    const after = call(key);
    await vi.waitFor(() => expect(verifications).toHaveBeenCalledTimes(2));
    hold.release();

    expectProblem(await after, 401, 'FLOWGATE_ERR_AUTH_API_KEY_INVALID');
    expectProblem(await during, 401, 'FLOWGATE_ERR_AUTH_API_KEY_INVALID');
    expectProblem(await call(key), 401, 'FLOWGATE_ERR_AUTH_API_KEY_INVALID');
    expect(upstream.seen).toEqual([]);
  });

  it('trusts a verified key for the cache time from when its read began, also for a verification that joined that read', async () => {
    const { key } = await newKey();
    const hold = holdNextRead();
    const readBegan = clock.now();
    const first = server.flowgate.iam.apiKeys.verify(key);
    await hold.read;
    clock.advance(3000);
    // Joins the read under way (one read for a burst) rather than reading again.
    const joined = server.flowgate.iam.apiKeys.verify(key);
    hold.release();

    const until = Math.ceil((readBegan + API_KEY_CACHE_MS) / 1000);
    expect((await first).exp).toBe(until);
    expect((await joined).exp).toBe(until);
    expect(hold.reads).toHaveBeenCalledTimes(1);

    // The cache time after the read began, the store is asked again: a revoke made on
    // another instance at the time of that read stops working here by then.
    clock.advance(API_KEY_CACHE_MS - 3000);
    await server.flowgate.iam.apiKeys.verify(key);
    expect(hold.reads).toHaveBeenCalledTimes(2);
  });

  /** Calls `during` while each read of a key's row is out, after the row was read. */
  const forgetDuringReads = (during: () => void) =>
    vi.spyOn(ApiKeyRepository.prototype, 'findForVerification').mockImplementation(async function (this: ApiKeyRepository, id: string) {
      const row = await original.call(this, id);
      during();
      return row;
    });

  it('takes its read when, while it was out, other keys and other accounts were revoked', async () => {
    const { key } = await newKey();
    const reads = forgetDuringReads(() => {
      server.flowgate.iam.apiKeys.forget('00000000-0000-7000-8000-000000000000');
      server.flowgate.iam.apiKeys.forgetAccount(acme.tenant, '00000000-0000-7000-8000-000000000001');
    });
    const principal = await server.flowgate.iam.apiKeys.verify(key);
    expect(principal.sub).toBe(accountId);
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it('reads again when, while its read was out, more keys were revoked than the instance keeps track of one by one', async () => {
    const { key } = await newKey();
    let reads = 0;
    const spy = forgetDuringReads(() => {
      // Only the first read sees them: 1,001 other keys, one past what is kept by name.
      if (reads++ > 0) return;
      for (let i = 0; i <= 1000; i++) server.flowgate.iam.apiKeys.forget(`00000000-0000-7000-8000-${String(i).padStart(12, '0')}`);
    });
    const principal = await server.flowgate.iam.apiKeys.verify(key);
    expect(principal.sub).toBe(accountId);
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('reads again when its own account was changed while its read was out', async () => {
    const { key } = await newKey();
    let changes = 0;
    const reads = forgetDuringReads(() => {
      if (changes++ === 0) server.flowgate.iam.apiKeys.forgetAccount(acme.tenant, accountId);
    });
    await server.flowgate.iam.apiKeys.verify(key);
    expect(reads).toHaveBeenCalledTimes(2);
  });

  it('answers 503 rather than trust a read when revokes of its key keep landing during every read', async () => {
    const { id, key } = await newKey();
    const reads = forgetDuringReads(() => server.flowgate.iam.apiKeys.forget(id));
    await expect(server.flowgate.iam.apiKeys.verify(key)).rejects.toMatchObject({ code: 'FLOWGATE_ERR_SERVER_NOT_READY', status: 503 });
    expect(reads).toHaveBeenCalledTimes(4);
    reads.mockRestore();
    expect((await call(key)).status).toBe(200);
  });
});
