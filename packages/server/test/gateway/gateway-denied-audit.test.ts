/**
 * A flood of refused gateway requests writes a handful of `gateway.denied` records, not
 * one per request, and loses none: the first refusal of a caller and kind is recorded at
 * once, the rest of each window as one summary with its `count`, pending counts at
 * shutdown. Through the real server (frozen clock, then the real one with a short
 * window), and the grouping and memory bound on their own.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DeniedAudit, type Refusal } from '../../src/gateway/denied-audit.js';
import { ManualClock, MemoryAuditRecorder, type AuditEvent } from '../../src/kernel/index.js';
import { api } from '../support/http.js';
import { adminToken } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

/** Refusals a set of records stands for: one per record plus what each summary counted. */
const refusalsIn = (records: readonly AuditEvent[]) => records.reduce((sum, e) => sum + (typeof e.details?.count === 'number' ? e.details.count : 1), 0);

async function serveJwtRoute(server: TestServer, upstream: FakeUpstream): Promise<void> {
  const res = await api(server.url, 'PUT', '/api/v1/gateway/config', {
    token: await adminToken(server.url),
    body: { services: [{ name: 'svc', targets: [upstream.url] }], routes: [{ name: 'flood', service: 'svc', paths: ['/d/*'], policies: { auth: { type: 'jwt' } } }] },
  });
  if (res.status !== 200) throw new Error(res.text);
}

describe('gateway refusal audit', () => {
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(async () => upstream.close());

  describe('with the default window (10 s) and a frozen clock', () => {
    let server: TestServer;
    let clock: ManualClock;
    const denied = (code: string) => server.audit.events.filter((e) => e.action === 'gateway.denied' && e.details?.code === code);

    beforeAll(async () => {
      clock = new ManualClock(Date.UTC(2026, 10, 23));
      server = await startTestServer({ clock });
      await serveJwtRoute(server, upstream);
    });
    afterAll(async () => server.close());

    it('records the first of 50 anonymous 401s at once and counts the others; another kind of refusal is its own', async () => {
      for (let i = 0; i < 50; i++) expectProblem(await api(server.url, 'GET', `/d/${i}`), 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      expect(denied('FLOWGATE_ERR_AUTH_TOKEN_MISSING')).toEqual([
        expect.objectContaining({ tenant: null, actor: null, outcome: 'failure', target: 'route:flood', details: expect.objectContaining({ status: 401, path: '/d/0', ip: '127.0.0.1' }) }),
      ]);
      expect(denied('FLOWGATE_ERR_AUTH_TOKEN_MISSING')[0]?.details).not.toHaveProperty('count');
      expectProblem(await api(server.url, 'GET', '/d/x', { token: 'not-a-token' }), 401, 'FLOWGATE_ERR_AUTH_TOKEN_INVALID');
      expect(denied('FLOWGATE_ERR_AUTH_TOKEN_INVALID')).toHaveLength(1);
      expect(upstream.seen).toEqual([]);
    });

    it('writes one summary when the window is over, with the count and the first and last times', async () => {
      const windowStart = clock.now();
      clock.advance(10_000);
      // The next refusal of the same kind ends the window: its 49 are summarised, it opens the next.
      expectProblem(await api(server.url, 'GET', '/d/next'), 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      const records = denied('FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      expect(records).toHaveLength(2);
      expect(records[1]).toMatchObject({
        tenant: null,
        target: 'route:flood',
        details: { status: 401, code: 'FLOWGATE_ERR_AUTH_TOKEN_MISSING', ip: '127.0.0.1', path: '/d/49', count: 49, first_at: new Date(windowStart).toISOString(), last_at: new Date(windowStart).toISOString() },
      });
    });

    it('records the counts still pending when the server closes: every refusal is accounted for', async () => {
      await server.close();
      const records = denied('FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      expect(records.map((e) => e.details?.count)).toEqual([undefined, 49, 1]);
      expect(refusalsIn(records)).toBe(51);
      expect(refusalsIn(denied('FLOWGATE_ERR_AUTH_TOKEN_INVALID'))).toBe(1);
    });
  });

  describe('with a short window and the real clock', () => {
    const windowMs = 500;
    let server: TestServer;

    beforeAll(async () => {
      server = await startTestServer({ config: { gateway: { deniedAuditWindowMs: windowMs } } });
      await serveJwtRoute(server, upstream);
    });
    afterAll(async () => server.close());

    it('writes at most one summary per window, and their counts add up to the refusals once the window is over', async () => {
      const started = Date.now();
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => api(server.url, 'GET', `/d/${i}`)));
      const elapsed = Date.now() - started;
      expect(answers.map((a) => a.status)).toEqual(Array.from({ length: 50 }, () => 401));
      const records = () => server.audit.events.filter((e) => e.action === 'gateway.denied');
      await vi.waitFor(() => expect(refusalsIn(records())).toBe(50), { timeout: 10 * windowMs, interval: 50 });
      // The first record, then one summary per window the flood lasted (and the one it ended in).
      expect(records().length).toBeLessThanOrEqual(2 + Math.ceil(elapsed / windowMs));
      expect(records().length).toBeLessThan(50);
    });
  });

  describe('DeniedAudit', () => {
    const refusal = (overrides: Partial<Refusal> = {}): Refusal => ({
      tenant: null,
      actor: null,
      route: 'r',
      status: 401,
      code: 'FLOWGATE_ERR_AUTH_TOKEN_MISSING',
      reason: 'no token',
      method: 'GET',
      path: '/p',
      ip: '192.0.2.1',
      traceId: '0'.repeat(32),
      ...overrides,
    });

    it('records each refusal with a window of 0', () => {
      const audit = new MemoryAuditRecorder();
      const denials = new DeniedAudit(audit, new ManualClock(), 0);
      for (let i = 0; i < 3; i++) denials.refused(refusal());
      denials.close();
      expect(audit.events.map((e) => e.details?.count)).toEqual([undefined, undefined, undefined]);
    });

    it('groups by chain, actor, route, status, code and client address', () => {
      const audit = new MemoryAuditRecorder();
      const denials = new DeniedAudit(audit, new ManualClock(), 10_000);
      const kinds = [
        refusal(),
        refusal({ tenant: 'acme', actor: 'sa-1', status: 403, code: 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE' }),
        refusal({ tenant: 'acme', actor: 'sa-2', status: 403, code: 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE' }),
        refusal({ route: 'other' }),
        refusal({ status: 429, code: 'FLOWGATE_ERR_GATEWAY_RATE_LIMITED' }),
        refusal({ ip: '192.0.2.2' }),
      ];
      for (const kind of kinds) denials.refused(kind);
      // The same again, with another method and path: counted, not recorded.
      for (const kind of kinds) denials.refused({ ...kind, method: 'POST', path: '/q' });
      expect(audit.events).toHaveLength(kinds.length);
      denials.close();
      expect(audit.events.slice(kinds.length).map((e) => [e.tenant, e.target, e.details?.count, e.details?.path])).toEqual(
        kinds.map((k) => [k.tenant, `route:${k.route}`, 1, '/q']),
      );
    });

    it('forgets a group after a quiet window: its next refusal is recorded at once', () => {
      const audit = new MemoryAuditRecorder();
      const clock = new ManualClock();
      const denials = new DeniedAudit(audit, clock, 10_000);
      denials.refused(refusal());
      clock.advance(10_000);
      denials.refused(refusal());
      expect(audit.events.map((e) => e.details?.count)).toEqual([undefined, undefined]);
      denials.close();
      expect(audit.events).toHaveLength(2);
    });

    it('tracks at most maxKeys groups: the oldest is summarised early and forgotten, nothing is lost', () => {
      const audit = new MemoryAuditRecorder();
      const denials = new DeniedAudit(audit, new ManualClock(), 10_000, 2);
      const a = refusal({ ip: '192.0.2.1' });
      const b = refusal({ ip: '192.0.2.2' });
      const c = refusal({ ip: '192.0.2.3' });
      denials.refused(a);
      denials.refused(b);
      for (let i = 0; i < 3; i++) denials.refused(a);
      denials.refused(c);
      expect(audit.events.map((e) => [e.details?.ip, e.details?.count])).toEqual([
        ['192.0.2.1', undefined],
        ['192.0.2.2', undefined],
        ['192.0.2.1', 3],
        ['192.0.2.3', undefined],
      ]);
      denials.refused(a);
      denials.refused(b);
      denials.close();
      expect(refusalsIn(audit.events)).toBe(8);
    });

    it('records refusals one by one once closed', () => {
      const audit = new MemoryAuditRecorder();
      const denials = new DeniedAudit(audit, new ManualClock(), 10_000);
      denials.close();
      denials.refused(refusal());
      denials.refused(refusal());
      expect(audit.events).toHaveLength(2);
    });
  });
});
