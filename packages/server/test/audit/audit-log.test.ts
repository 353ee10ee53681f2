/**
 * The audit log end to end, on each store: actions become audit events on the bus, the
 * audit service chains each once, tenants read only their own, and `verify` names the
 * exact record that was changed, removed or inserted behind its back.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, canonicalJson, createCheckpointSigner, recordHash, type AuditTables } from '../../src/audit/index.js';
import { ManualClock, systemClock } from '../../src/kernel/index.js';
import { waitFor } from '../support/bus.js';
import { api, clientToken, postForm } from '../support/http.js';
import { adminToken, createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe.each(['sqlite', 'postgres'] as const)('audit log on %s', (store) => {
  let server: TestServer;
  let base: string;
  let alpha: TenantOwner;
  let beta: TenantOwner;
  let secretCount = 0;

  const db = () => server.flowgate.store.db<AuditTables>();
  const records = (tenant: string) => db().selectFrom('audit_records').selectAll().where('tenant_id', '=', tenant).orderBy('seq').execute();
  const verify = async (owner: TenantOwner) => (await api(base, 'GET', '/api/v1/audit/verify', { token: owner.token })).body;

  /** Makes `n` audited changes in the owner's tenant and waits until they are chained. */
  async function audited(owner: TenantOwner, n: number): Promise<void> {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = `s${secretCount++}`;
      names.push(name);
      const res = await api(base, 'POST', '/api/v1/secrets', { token: owner.token, body: { name, value: 'v' } });
      expect(res.status).toBe(201);
    }
    // Other records (token grants) travel alongside: wait for these very ones.
    await waitFor(`${n} audit records for ${owner.tenant}`, async () => {
      const bodies = (await records(owner.tenant)).map((r) => r.body);
      return names.every((name) => bodies.some((body) => body.includes(`"secret:${name}"`)));
    });
  }

  beforeAll(async () => {
    server = await startTestServer({ store, config: { audit: { checkpointEvery: 4 } } });
    base = server.url;
    alpha = await createTenant(base, `audit-alpha-${store}`);
    beta = await createTenant(base, `audit-beta-${store}`);
  });
  afterAll(() => server.close());

  it("chains each action once into its tenant's log, readable by that tenant only", async () => {
    await audited(alpha, 2);
    const page = await api(base, 'GET', '/api/v1/audit?action=secrets.*', { token: alpha.token });
    expect(page.status).toBe(200);
    expect(page.body.items.slice(0, 2)).toEqual([
      expect.objectContaining({ action: 'secrets.created', outcome: 'success', tenant: alpha.tenant, actor: decodeJwt(alpha.token).sub, target: `secret:s${secretCount - 1}`, traceId: expect.any(String) }),
      expect.objectContaining({ action: 'secrets.created', target: `secret:s${secretCount - 2}` }),
    ]);
    const ids = (await records(alpha.tenant)).map((r) => r.event_id);
    expect(new Set(ids).size).toBe(ids.length);
    const other = await api(base, 'GET', '/api/v1/audit?action=secrets.*', { token: beta.token });
    expect(other.body.items).toEqual([]);
  });

  it('refuses a time its format admits but no date parser reads, naming the parameter', async () => {
    for (const [query, field] of [['from=2026-12-07T00:00:00%2B00', 'from'], ['to=2026-12-31T23:59:60Z', 'to']]) {
      const res = await api(base, 'GET', `/api/v1/audit?${query}`, { token: alpha.token });
      expectProblem(res, 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expect(res.body.detail).toMatch(new RegExp(`^${field} must be an ISO 8601 time`));
    }
  });

  it('stores an event delivered twice only once', async () => {
    const log = new AuditLog(server.flowgate.store, systemClock, createCheckpointSigner(server.flowgate.iam.keys), { checkpointEvery: 1000, checkpointMs: 600_000 });
    const event = { id: `twice-${store}`, time: new Date().toISOString(), action: 'test.delivered_twice', tenant: `once-${store}`, actor: 'tester', outcome: 'success' as const };
    expect(await log.append(event)).toBe(true);
    expect(await log.append(event)).toBe(false);
    expect((await records(`once-${store}`)).map((r) => r.event_id)).toEqual([event.id]);
  });

  it('finds records by trace id and pages through them with a cursor', async () => {
    await audited(alpha, 3);
    const first = await api(base, 'GET', '/api/v1/audit?limit=2', { token: alpha.token });
    expect(first.body.items).toHaveLength(2);
    expect(first.body.next_cursor).toEqual(expect.any(String));
    const second = await api(base, 'GET', `/api/v1/audit?limit=2&cursor=${first.body.next_cursor}`, { token: alpha.token });
    expect(second.body.items[0].seq).toBeLessThan(first.body.items[1].seq);
    const traceId = first.body.items[0].traceId as string;
    const byTrace = await api(base, 'GET', `/api/v1/audit?trace_id=${traceId}`, { token: alpha.token });
    expect(byTrace.body.items.map((r: { id: string }) => r.id)).toEqual([first.body.items[0].id]);
  });

  it('exports the log as JSON Lines, oldest first', async () => {
    const res = await fetch(`${base}/api/v1/audit/export`, { headers: { authorization: `Bearer ${alpha.token}` } });
    expect(res.headers.get('content-type')).toContain('application/x-ndjson');
    const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as { seq: number });
    expect(lines.length).toBe((await records(alpha.tenant)).length);
    expect(lines.map((l) => l.seq)).toEqual([...lines.map((l) => l.seq)].sort((a, b) => a - b));
  });

  it('verifies an untouched chain up to its latest signed checkpoint', async () => {
    await audited(beta, 5);
    const report = await verify(beta);
    expect(report).toMatchObject({ ok: true, records: (await records(beta.tenant)).length });
    expect(report.checkpoints).toBeGreaterThanOrEqual(1);
    expect(report.verified_to.seq).toBeGreaterThanOrEqual(4);
  });

  it('names the record whose row was edited, and is content again once it is put back', async () => {
    const rows = await records(beta.tenant);
    const victim = rows[2]!;
    const forged = victim.body.replace('"outcome":"success"', '"outcome":"failure"');
    await db().updateTable('audit_records').set({ body: forged, outcome: 'failure' }).where('tenant_id', '=', beta.tenant).where('seq', '=', victim.seq).execute();
    expect((await verify(beta)).problem).toMatchObject({ kind: 'changed', seq: Number(victim.seq), event_id: victim.event_id });
    await db().updateTable('audit_records').set({ body: victim.body, outcome: victim.outcome }).where('tenant_id', '=', beta.tenant).where('seq', '=', victim.seq).execute();
    expect((await verify(beta)).ok).toBe(true);
  });

  it('names a removed record', async () => {
    const victim = (await records(beta.tenant))[1]!;
    await db().deleteFrom('audit_records').where('tenant_id', '=', beta.tenant).where('seq', '=', victim.seq).execute();
    expect((await verify(beta)).problem).toMatchObject({ kind: 'removed', seq: Number(victim.seq) });
    await db().insertInto('audit_records').values(victim).execute();
    expect((await verify(beta)).ok).toBe(true);
  });

  it('names an inserted record, even one that carries a well-formed hash', async () => {
    const rows = await records(beta.tenant);
    const last = rows[rows.length - 1]!;
    const seq = Number(last.seq) + 1;
    const body = canonicalJson({ ...(JSON.parse(last.body) as object), id: 'forged-event', seq });
    await db()
      .insertInto('audit_records')
      .values({ ...last, seq, event_id: 'forged-event', body, prev_hash: last.hash, hash: recordHash(last.hash, body) })
      .execute();
    expect((await verify(beta)).problem).toMatchObject({ kind: 'inserted', seq, event_id: 'forged-event' });
    await db().deleteFrom('audit_records').where('tenant_id', '=', beta.tenant).where('seq', '=', seq).execute();
  });

  it('catches a chain rewritten with fresh hashes by its signed checkpoint', async () => {
    const rows = await records(beta.tenant);
    const originals = rows.map((r) => ({ ...r }));
    // Change record 1 and recompute every hash after it, as someone who knows the scheme would.
    let prev = rows[0]!.prev_hash;
    for (const [i, row] of rows.entries()) {
      const body = i === 0 ? row.body.replace('"outcome":"success"', '"outcome":"failure"') : row.body;
      const hash = recordHash(prev, body);
      await db()
        .updateTable('audit_records')
        .set({ body, hash, prev_hash: prev, outcome: (JSON.parse(body) as { outcome: string }).outcome })
        .where('tenant_id', '=', beta.tenant)
        .where('seq', '=', row.seq)
        .execute();
      prev = hash;
    }
    await db().updateTable('audit_heads').set({ hash: prev }).where('tenant_id', '=', beta.tenant).execute();
    const report = await verify(beta);
    expect(report.problem).toMatchObject({ kind: 'checkpoint' });
    expect(report.problem.seq).toBeLessThanOrEqual(4);
    for (const row of originals) {
      await db().updateTable('audit_records').set(row).where('tenant_id', '=', row.tenant_id).where('seq', '=', row.seq).execute();
    }
    await db().updateTable('audit_heads').set({ hash: originals[originals.length - 1]!.hash }).where('tenant_id', '=', beta.tenant).execute();
    expect((await verify(beta)).ok).toBe(true);
  });

  it('names records removed from the start, or all of them, when retention is off', async () => {
    const rows = await records(beta.tenant);
    const checkpoint = await db().selectFrom('audit_checkpoints').select('seq').where('tenant_id', '=', beta.tenant).orderBy('seq').executeTakeFirstOrThrow();
    // Up to a signed checkpoint, as retention would: without retention it is a removal.
    await db().deleteFrom('audit_records').where('tenant_id', '=', beta.tenant).where('seq', '<=', checkpoint.seq).execute();
    expect((await verify(beta)).problem).toMatchObject({ kind: 'removed', seq: 1 });
    await db().deleteFrom('audit_records').where('tenant_id', '=', beta.tenant).execute();
    expect((await verify(beta)).problem).toMatchObject({ kind: 'removed', seq: 1 });
    for (const row of rows) await db().insertInto('audit_records').values(row).execute();
    expect((await verify(beta)).ok).toBe(true);
  });

  it('keeps audit topics for Flowgate: a tenant cannot publish a forged audit event', async () => {
    const res = await api(base, 'POST', '/api/v1/topics/audit.secrets.created/events', { token: alpha.token, body: { payload: { action: 'secrets.created' } } });
    expectProblem(res, 400, 'FLOWGATE_ERR_BUS_RESERVED_TOPIC');
  });

  it("lets platform admins read the platform's records (a failed sign-in of an unknown client), and no one else", async () => {
    const refused = await postForm(base, '/oauth/token', { grant_type: 'client_credentials', client_id: 'fgc_nobody', client_secret: 'wrong-secret-0123456789' });
    expect(refused.status).toBe(401);
    const admin = await adminToken(base);
    const failedSignIns = async () => (await api(base, 'GET', '/api/v1/audit?scope=platform&action=iam.client_auth.failed', { token: admin })).body.items as Array<{ actor: string; tenant: null }>;
    await waitFor('the platform record of the failed sign-in', async () => (await failedSignIns()).some((r) => r.actor === 'fgc_nobody'));
    expect((await failedSignIns()).find((r) => r.actor === 'fgc_nobody')).toMatchObject({ tenant: null, outcome: 'failure' });
    expectProblem(await api(base, 'GET', '/api/v1/audit?scope=platform', { token: alpha.token }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
  });
});

describe.each(['sqlite', 'postgres'] as const)('audit retention on %s', (store) => {
  it('deletes old records up to a signed checkpoint, and what remains still verifies from it', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const server = await startTestServer({ store, clock, config: { audit: { checkpointEvery: 4, retentionDays: 30 } } });
    try {
      const owner = await createTenant(server.url, `retained-${store}`);
      const db = server.flowgate.store.db<AuditTables>();
      const chain = () => db.selectFrom('audit_records').selectAll().where('tenant_id', '=', owner.tenant).orderBy('seq').execute();
      const secrets = async (token: string, names: string[]) => {
        for (const name of names) expect((await api(server.url, 'POST', '/api/v1/secrets', { token, body: { name, value: 'v' } })).status).toBe(201);
        await waitFor('the audit records', async () => {
          const bodies = (await chain()).map((r) => r.body);
          return names.every((name) => bodies.some((body) => body.includes(`"secret:${name}"`)));
        });
      };
      await secrets(owner.token, ['a1', 'a2', 'a3', 'a4', 'a5', 'a6']);
      const oldTime = clock.now();

      clock.advance(31 * 24 * 60 * 60 * 1000);
      const token = await clientToken(server.url, owner.clientId, owner.clientSecret);
      await secrets(token, ['b1', 'b2']);
      // Records arrive through the bus: the old ones are those stamped before the clock moved.
      const firstYoung = Math.min(...(await chain()).filter((r) => Number(r.occurred_at) > oldTime).map((r) => Number(r.seq)));
      const deleted = await server.flowgate.audit.applyRetention();

      // The cut is the newest checkpoint before the first young record that is old itself.
      const checkpoints = await db.selectFrom('audit_checkpoints').select(['seq', 'created_at']).where('tenant_id', '=', owner.tenant).orderBy('seq').execute();
      const cut = Math.max(...checkpoints.filter((c) => Number(c.seq) < firstYoung && Number(c.created_at) <= oldTime).map((c) => Number(c.seq)));
      const kept = await chain();
      expect(deleted).toBeGreaterThanOrEqual(cut);
      expect(Number(kept[0]!.seq)).toBe(cut + 1);
      const report = (await api(server.url, 'GET', '/api/v1/audit/verify', { token })).body;
      expect(report).toMatchObject({ ok: true, records: kept.length });
      expect(report.verified_to.seq).toBeGreaterThanOrEqual(cut);

      // The checkpoint the kept records hang from must be the signed one.
      await db.updateTable('audit_checkpoints').set({ signature: 'forged.signature.here' }).where('tenant_id', '=', owner.tenant).where('seq', '=', cut).execute();
      expect((await api(server.url, 'GET', '/api/v1/audit/verify', { token })).body.problem).toMatchObject({ kind: 'checkpoint', seq: cut });
    } finally {
      await server.close();
    }
  });
});

describe('audit checkpoints after the IAM rotated its key away', () => {
  it('still verify with the retired public key, whose private half is gone', async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const server = await startTestServer({ clock, config: { audit: { checkpointEvery: 2 } } });
    try {
      const owner = await createTenant(server.url, 'rotated-keys');
      const db = server.flowgate.store.db<AuditTables & { signing_keys: { kid: string; private_jwk: string } }>();
      for (const name of ['k1', 'k2', 'k3']) expect((await api(server.url, 'POST', '/api/v1/secrets', { token: owner.token, body: { name, value: 'v' } })).status).toBe(201);
      await waitFor('a checkpoint', async () => (await db.selectFrom('audit_checkpoints').select('seq').where('tenant_id', '=', owner.tenant).execute()).length > 0);
      const { kid: oldKid } = await server.flowgate.iam.keys.activeKey();
      await server.flowgate.iam.keys.rotate();
      clock.advance(10 * 24 * 60 * 60 * 1000);
      await server.flowgate.iam.keys.rotate();
      const old = await db.selectFrom('signing_keys').select('private_jwk').where('kid', '=', oldKid).executeTakeFirstOrThrow();
      expect(old.private_jwk).toBe('');
      const token = await clientToken(server.url, owner.clientId, owner.clientSecret);
      const report = (await api(server.url, 'GET', '/api/v1/audit/verify', { token })).body;
      expect(report).toMatchObject({ ok: true });
      expect(report.checkpoints).toBeGreaterThanOrEqual(1);
    } finally {
      await server.close();
    }
  });
});
