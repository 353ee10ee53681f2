/**
 * Issue 5, "done when": a replayed signed webhook is refused, and an `http` node aimed at
 * 169.254.169.254 or 127.0.0.1 is refused by default. Also: a secret used by a node never
 * shows in the execution record.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signBody } from '../../src/flows/index.js';
import { waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

const KEY = 'whsec-0123456789abcdef0123456789';

describe('flows: signed webhooks, the outbound guard and secrets', () => {
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer({ config: { flows: { pollMs: 20 } } });
    base = server.url;
    acme = await createTenant(base, 'flows-sec');
    const secret = await api(base, 'POST', '/api/v1/secrets', { token: acme.token, body: { name: 'hook_key', value: KEY } });
    if (secret.status !== 201) throw new Error(secret.text);
  });
  afterAll(async () => {
    await server.close();
  });

  const activeFlow = async (definition: Record<string, unknown>): Promise<string> => {
    const created = await api(base, 'POST', '/api/v1/flows', { token: acme.token, body: definition });
    if (created.status !== 201) throw new Error(created.text);
    const id = created.body.id as string;
    await api(base, 'POST', `/api/v1/flows/${id}/start`, { token: acme.token });
    await waitFor('the flow to be active', async () => (await api(base, 'GET', `/api/v1/flows/${id}`, { token: acme.token })).body.status === 'active');
    return id;
  };
  const finished = async (id: string) => {
    let body: any;
    await waitFor(`execution ${id} to finish`, async () => {
      body = (await api(base, 'GET', `/api/v1/executions/${id}`, { token: acme.token })).body;
      return ['succeeded', 'failed', 'cancelled'].includes(body.status as string);
    });
    return body;
  };

  it("does not let a caller's idempotency key claim a cron tick, so every tick still fires", async () => {
    const id = await activeFlow({ name: 'hook-and-clock', triggers: [{ type: 'webhook' }, { type: 'cron', expression: '* * * * * *' }], nodes: [{ id: 'a', component: 'transform', config: { expression: '$' } }] });
    // The key the scheduler would give the tick of the cron trigger (index 1) three seconds on.
    const tick = Math.ceil(Date.now() / 1000) * 1000 + 3000;
    const claimed = await api(base, 'POST', `/hook/${id}`, { body: {}, headers: { 'idempotency-key': `cron:1:${tick}` } });
    expect(claimed.status).toBe(202);
    const viaApi = await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: {} }, headers: { 'idempotency-key': `cron:1:${tick + 1000}` } });
    expect(viaApi.status).toBe(201);
    const scheduledAt = async () => {
      const items = (await api(base, 'GET', `/api/v1/executions?flow=${id}&limit=100`, { token: acme.token })).body.items as Array<{ id: string }>;
      const records = await Promise.all(items.map(async (item) => (await api(base, 'GET', `/api/v1/executions/${item.id}`, { token: acme.token })).body));
      return records.filter((r) => r.trigger === 'cron').map((r) => r.input.metadata.scheduled_at as string);
    };
    await waitFor('both claimed ticks to fire', async () => {
      const fired = await scheduledAt();
      return fired.includes(new Date(tick).toISOString()) && fired.includes(new Date(tick + 1000).toISOString());
    });
    await api(base, 'POST', `/api/v1/flows/${id}/stop`, { token: acme.token });
  });

  it("refuses a flow that would store a secret in clear: in a subflow's input, a published event or a wait's key", async () => {
    const res = await api(base, 'POST', '/api/v1/flows', {
      token: acme.token,
      body: {
        name: 'leaky',
        triggers: [{ type: 'manual' }],
        nodes: [
          { id: 'call', component: 'subflow', config: { flow: 'child', input: { key: '{{secrets.hook_key}}', n: '{{ n }}' } } },
          { id: 'tell', component: 'publish', config: { topic: 'keys.shared', payload: { auth: 'Bearer {{ secrets.hook_key }}' } } },
          { id: 'fine', component: 'http', config: { url: 'https://api.example.com/x', headers: { authorization: 'Bearer {{secrets.hook_key}}' } } },
          { id: 'wait', component: 'wait-for-event', config: { topic: 'keys.used', match: { event: 'payload.key', value: '{{secrets.hook_key}}' } } },
        ],
        edges: [],
      },
    });
    expectProblem(res, 400, 'FLOWGATE_ERR_FLOW_INVALID');
    const errors = res.body.errors as Array<{ path: string; message: string }>;
    // Only the three that store it: an http header is resolved for the call alone.
    expect(errors.map((e) => e.path).sort()).toEqual(['nodes[0].config.input.key', 'nodes[1].config.payload.auth', 'nodes[3].config.match.value']);
    expect(errors[0]?.message).toMatch(/may not reference a secret/);
  });

  it("refuses a body sent without a Content-Length as soon as it passes the flow's limit, before the caller has finished sending", async () => {
    const id = await activeFlow({ name: 'small-bodies', triggers: [{ type: 'webhook', maxBodyBytes: 1024 }], nodes: [{ id: 'a', component: 'transform', config: { expression: 'body' } }] });
    const { port } = new URL(base);
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: `/hook/${id}`, headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' } });
    req.on('error', () => undefined);
    const answered = new Promise<http.IncomingMessage>((resolve) => req.once('response', resolve));
    // 2 KiB sent, and the request left open: a server reading on to its 10 MiB cap would never answer.
    req.write('x'.repeat(2048));
    const res = await Promise.race([answered, new Promise<undefined>((resolve) => setTimeout(resolve, 10_000, undefined))]);
    req.destroy();
    expect(res?.statusCode).toBe(413);
    const chunks: Buffer[] = [];
    for await (const chunk of res!) chunks.push(chunk as Buffer);
    expect(res!.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(Buffer.concat(chunks).toString('utf8'))).toMatchObject({ status: 413, detail: 'This webhook accepts bodies up to 1024 bytes.' });
    expect((await api(base, 'GET', `/api/v1/executions?flow=${id}`, { token: acme.token })).body.items).toEqual([]);
  });

  it('accepts a signed webhook once and refuses its replay, a wrong signature and an old timestamp', async () => {
    const id = await activeFlow({ name: 'signed', triggers: [{ type: 'webhook', hmac: { secret: 'hook_key' } }], nodes: [{ id: 'a', component: 'transform', config: { expression: 'body' } }] });
    const body = JSON.stringify({ order: 7 });
    const now = Math.floor(Date.now() / 1000);
    const signature = signBody(body, KEY, now);
    const send = (headers: Record<string, string>) => api(base, 'POST', `/hook/${id}`, { body, headers });

    expect((await send({ 'x-flowgate-signature': signature })).status).toBe(202);
    expectProblem(await send({ 'x-flowgate-signature': signature }), 401, 'FLOWGATE_ERR_WEBHOOK_SIGNATURE');
    expectProblem(await send({}), 401, 'FLOWGATE_ERR_WEBHOOK_SIGNATURE');
    expectProblem(await send({ 'x-flowgate-signature': signBody(body, 'another key', now) }), 401, 'FLOWGATE_ERR_WEBHOOK_SIGNATURE');
    const old = await send({ 'x-flowgate-signature': signBody(body, KEY, now - 600) });
    expectProblem(old, 401, 'FLOWGATE_ERR_WEBHOOK_SIGNATURE');
    expect(old.body.detail).toMatch(/5 minutes/);
    expect((await api(base, 'GET', `/api/v1/executions?flow=${id}`, { token: acme.token })).body.items).toHaveLength(1);
    expect(server.audit.events.some((e) => e.action === 'flows.webhook.refused' && e.target === `flow:${id}`)).toBe(true);
  });

  it.each(['http://169.254.169.254/latest/meta-data/', 'http://127.0.0.1:9/'])('fails an http node aimed at %s without retrying, by default', async (url) => {
    const name = url.includes('169') ? 'metadata' : 'loopback';
    const id = await activeFlow({ name, triggers: [{ type: 'webhook' }], nodes: [{ id: 'call', component: 'http', config: { url } }], settings: { retries: { count: 5 } } });
    const run = await api(base, 'POST', `/hook/${id}`, { body: {} });
    const done = await finished(run.body.execution_id as string);
    expect(done.status).toBe('failed');
    expect(done.error).toMatchObject({ code: 'OUTBOUND_REFUSED', node: 'call' });
    expect(done.steps[0].attempt).toBe(1);
  });

  describe('with the upstream allowed', () => {
    let upstream: FakeUpstream;
    let allowed: TestServer;
    beforeAll(async () => {
      upstream = await startUpstream();
      upstream.answer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ echoed: req.headers['x-api-key'] })));
      allowed = await startTestServer({ config: { flows: { pollMs: 20 }, outbound: { allow: '127.0.0.1/32' } } });
    });
    afterAll(async () => {
      await allowed.close();
      await upstream.close();
    });

    /** Runs a one-node flow made by the tenant `owner` through its webhook (no retries), and answers the finished execution. */
    const runOnce = async (owner: TenantOwner, name: string, node: Record<string, unknown>) => {
      const created = await api(allowed.url, 'POST', '/api/v1/flows', { token: owner.token, body: { name, triggers: [{ type: 'webhook' }], nodes: [{ id: 'only', ...node }], settings: { retries: { count: 0 } } } });
      const id = created.body.id as string;
      await api(allowed.url, 'POST', `/api/v1/flows/${id}/start`, { token: owner.token });
      await waitFor('active', async () => (await api(allowed.url, 'GET', `/api/v1/flows/${id}`, { token: owner.token })).body.status === 'active');
      const run = await api(allowed.url, 'POST', `/hook/${id}`, { body: {} });
      let record: any;
      await waitFor('the execution to finish', async () => {
        record = await api(allowed.url, 'GET', `/api/v1/executions/${run.body.execution_id}`, { token: owner.token });
        return ['succeeded', 'failed'].includes(record.body.status);
      });
      return record;
    };

    it('sends the secret to the upstream but never shows it in the execution or the logs', async () => {
      const owner = await createTenant(allowed.url, 'flows-sec2');
      await api(allowed.url, 'POST', '/api/v1/secrets', { token: owner.token, body: { name: 'crm_key', value: 'sk-live-very-secret-value' } });
      const record = await runOnce(owner, 'uses-secret', { component: 'http', config: { url: `${upstream.url}/x`, headers: { 'x-api-key': '{{secrets.crm_key}}' } } });
      expect(record.body.status).toBe('succeeded');
      expect(upstream.seen.at(-1)?.headers['x-api-key']).toBe('sk-live-very-secret-value');
      expect(record.text).not.toContain('sk-live-very-secret-value');
      expect(record.body.steps[0].output.body).toEqual({ echoed: '[REDACTED]' });
      expect(allowed.logs.join('\n')).not.toContain('sk-live-very-secret-value');
      expect(allowed.audit.events.some((e) => e.action === 'secrets.read' && e.target === 'secret:crm_key' && e.actor === `flow:${record.body.flow_id}`)).toBe(true);
    });

    it("keeps a step's output whole when a secret also appears inside a number, redacting only the secret", async () => {
      const owner = await createTenant(allowed.url, 'flows-sec3');
      await api(allowed.url, 'POST', '/api/v1/secrets', { token: owner.token, body: { name: 'pin', value: '1234' } });
      const record = await runOnce(owner, 'pin-and-order', { component: 'transform', config: { expression: '{"pin": "{{secrets.pin}}", "order": 912345}' } });
      expect(record.body.status).toBe('succeeded');
      expect(record.body.steps[0].output).toEqual({ pin: '[REDACTED]', order: 912345 });
    });

    it("redacts a secret an upstream's error answer echoes escaped, or cut short where the error quotes it", async () => {
      const owner = await createTenant(allowed.url, 'flows-sec4');
      const secret = 'Pa$$w0rd"2024\\x-long-enough';
      await api(allowed.url, 'POST', '/api/v1/secrets', { token: owner.token, body: { name: 'pw', value: secret } });
      // The error quotes the first 300 characters of the answer: the secret starts at 290.
      upstream.answer((req, res) => {
        const echoed = JSON.stringify({ seen: req.headers['x-pw'] });
        res.writeHead(400, { 'content-type': 'application/json' }).end(`${echoed}${'p'.repeat(290 - echoed.length)}${String(req.headers['x-pw'])}`);
      });
      const record = await runOnce(owner, 'echoes-escaped', { component: 'http', config: { url: `${upstream.url}/login`, headers: { 'x-pw': '{{secrets.pw}}' } } });
      expect(record.body.status).toBe('failed');
      const message = record.body.error.message as string;
      expect(message).toMatch(/answered 400/);
      expect(message).toContain('[REDACTED]');
      for (const piece of ['Pa$$w0rd', 'w0rd\\"2024', '2024']) expect(record.text).not.toContain(piece);
    });
  });
});
