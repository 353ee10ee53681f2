/**
 * Flows that use other flows and wait on the world (issue 5): a `subflow` step runs another
 * flow and passes its output on (and its failure, and a re-run down to it); a failed
 * execution starts its flow's error flow; a concurrency limit queues what is over it, per
 * flow and per key; a `wait-for-event` step resumes on the matching event or times out.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

type Json = Record<string, unknown>;

describe.each(['sqlite', 'postgres'] as const)('flows on %s: subflows, error flows, concurrency and waits', (store) => {
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;
  let upstream: FakeUpstream;

  let componentsDir: string;

  beforeAll(async () => {
    upstream = await startUpstream();
    // A custom component whose output JSON cannot hold.
    componentsDir = await mkdtemp(join(tmpdir(), 'flowgate-compose-components-'));
    await writeFile(join(componentsDir, 'package.json'), '{"type":"module"}');
    await writeFile(join(componentsDir, 'counts.mjs'), "export default { name: 'counts', configSchema: { type: 'object' }, run: () => ({ n: 10n }) };");
    // And one whose output is too large to keep.
    await writeFile(join(componentsDir, 'floods.mjs'), "export default { name: 'floods', configSchema: { type: 'object' }, run: () => ({ text: 'x'.repeat(17 * 1024 * 1024) }) };");
    server = await startTestServer({ store, config: { flows: { pollMs: 20, componentsDir }, outbound: { allow: '127.0.0.1/32' } } });
    base = server.url;
    acme = await createTenant(base, `compose-${store}`);
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
    await rm(componentsDir, { recursive: true, force: true });
  });

  /** Creates a flow and starts it: manual runs and event waits need an active flow. */
  const create = async (body: unknown): Promise<string> => {
    const res = await api(base, 'POST', '/api/v1/flows', { token: acme.token, body });
    if (res.status !== 201) throw new Error(`flow refused: ${res.text}`);
    const id = res.body.id as string;
    await api(base, 'POST', `/api/v1/flows/${id}/start`, { token: acme.token });
    await waitFor('the flow to be active', async () => (await api(base, 'GET', `/api/v1/flows/${id}`, { token: acme.token })).body.status === 'active');
    return id;
  };
  const run = async (id: string, input: unknown): Promise<string> => {
    const res = await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input } });
    if (res.status !== 201) throw new Error(`run refused: ${res.text}`);
    return res.body.id as string;
  };
  const execution = async (id: string): Promise<Json> => (await api(base, 'GET', `/api/v1/executions/${id}`, { token: acme.token })).body as Json;
  const finished = async (id: string): Promise<Json> => {
    await waitFor(`execution ${id} to finish`, async () => ['succeeded', 'failed', 'cancelled'].includes((await execution(id)).status as string), 20_000);
    return execution(id);
  };
  const executionsOf = async (flowId: string): Promise<Json[]> => (await api(base, 'GET', `/api/v1/executions?flow=${flowId}&limit=100`, { token: acme.token })).body.items as Json[];
  const manual = (name: string, nodes: unknown[], extra: Json = {}) => ({ name, triggers: [{ type: 'manual' }], nodes, edges: edgesOf(nodes), ...extra });

  it('runs a subflow and passes its output on; the child records its parent', async () => {
    const child = await create(manual('double', [{ id: 'twice', component: 'transform', config: { expression: '{"n": n * 2}' } }]));
    const parent = await create(
      manual('uses-double', [
        { id: 'call', component: 'subflow', config: { flow: 'double', input: { n: '{{ n + 1 }}' } } },
        { id: 'after', component: 'transform', config: { expression: '{"result": n}' } },
      ]),
    );
    const done = await finished(await run(parent, { n: 4 }));
    expect(done).toMatchObject({ status: 'succeeded', output: { result: 10 } });
    const children = await executionsOf(child);
    expect(children).toHaveLength(1);
    expect(children[0]).toMatchObject({ status: 'succeeded', trigger: 'subflow', parent_execution_id: done.id });
  });

  it('fails a step whose edge condition fails at run time, once, without calling its upstream again', async () => {
    let calls = 0;
    upstream.answer((_req, res) => {
      calls += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ total: 'n/a' }));
    });
    const flow = await create({
      name: 'checks-total',
      triggers: [{ type: 'manual' }],
      nodes: [
        { id: 'quote', component: 'http', config: { method: 'POST', url: `${upstream.url}/quote` } },
        { id: 'big', component: 'transform', config: { expression: '{"big": true}' } },
      ],
      edges: [{ from: 'quote', to: 'big', condition: '$number(body.total) > 100' }],
    });
    const failed = await finished(await run(flow, {}));
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'EXPRESSION_FAILED', node: 'quote' });
    expect(calls).toBe(1);
  });

  it('fails a step whose output cannot be stored as JSON, or is too large to keep, instead of running it again', async () => {
    const flow = await create(manual('counts-big', [{ id: 'count', component: 'counts' }]));
    const failed = await finished(await run(flow, {}));
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'OUTPUT_NOT_JSON', node: 'count' });
    expect((failed.error as Json).message).toMatch(/BigInt/);

    const floods = await create(manual('floods-big', [{ id: 'flood', component: 'floods' }]));
    const tooLarge = await finished(await run(floods, {}));
    expect(tooLarge.status).toBe('failed');
    expect(tooLarge.error).toMatchObject({ code: 'OUTPUT_TOO_LARGE', node: 'flood' });
  });

  it("fails a subflow step with the child's failure, and a re-run re-runs the child from its failed step", async () => {
    // The upstream refuses the first call (a 4xx is not retried) and accepts the next.
    let calls = 0;
    upstream.answer((_req, res) => {
      calls += 1;
      res.writeHead(calls === 1 ? 409 : 200, { 'content-type': 'application/json' }).end(JSON.stringify({ call: calls }));
    });
    const child = await create(
      manual('picky', [
        { id: 'prepare', component: 'transform', config: { expression: '{"prepared": true}' } },
        { id: 'book', component: 'http', config: { method: 'POST', url: `${upstream.url}/book` } },
      ]),
    );
    const parent = await create(manual('uses-picky', [{ id: 'call', component: 'subflow', config: { flow: 'picky' } }]));
    const id = await run(parent, {});
    const failed = await finished(id);
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'SUBFLOW_FAILED', node: 'call' });
    expect((failed.error as Json).message).toMatch(/failed at node book: .*409/);

    const rerun = await api(base, 'POST', `/api/v1/executions/${id}/rerun`, { token: acme.token });
    expect(rerun.status).toBe(200);
    const again = await finished(id);
    expect(again.status).toBe('succeeded');
    expect((again.output as Json).body).toEqual({ call: 2 });
    // The same child ran again from its failed node: its first node was kept, not repeated.
    const children = await executionsOf(child);
    expect(children).toHaveLength(1);
    const steps = (await execution(children[0]!.id as string)).steps as Json[];
    expect(steps.filter((s) => s.node === 'prepare')).toHaveLength(1);
    expect(steps.filter((s) => s.node === 'book').map((s) => s.status)).toEqual(['succeeded']);
    expect(calls).toBe(2);
  });

  it('cancels the running subflow children of a cancelled parent, and a re-run runs both again', async () => {
    const child = await create(manual('child-awaits', [{ id: 'hold', component: 'wait-for-event', config: { topic: 'orders.released', match: { event: 'payload.order', value: '{{ order }}' }, timeoutMs: 60_000 } }]));
    const parent = await create(manual('parent-of-awaiting', [{ id: 'call', component: 'subflow', config: { flow: 'child-awaits', input: { order: '{{ order }}' } } }]));
    const id = await run(parent, { order: 'r-1' });
    await waitFor('the child to wait', async () => {
      const [started] = await executionsOf(child);
      return started !== undefined && ((await execution(started.id as string)).steps as Json[])[0]?.status === 'waiting';
    });
    const childId = (await executionsOf(child))[0]!.id as string;
    expect((await api(base, 'POST', `/api/v1/executions/${id}/cancel`, { token: acme.token })).status).toBe(200);
    expect((await execution(id)).status).toBe('cancelled');
    expect(await execution(childId)).toMatchObject({ status: 'cancelled', error: { code: 'PARENT_ENDED' } });
    expect(((await execution(childId)).steps as Json[])[0]?.status).toBe('cancelled');
    // Both ends are announced on the bus, as a success or a failure is.
    const cancelled = (await api(base, 'GET', '/api/v1/topics/execution.cancelled/events?limit=1000', { token: acme.token })).body.items as Array<{ event: { payload: Json } }>;
    expect(cancelled.filter((e) => [id, childId].includes(e.event.payload.execution_id as string)).map((e) => e.event.payload.execution_id).sort()).toEqual([id, childId].sort());

    expect((await api(base, 'POST', `/api/v1/executions/${id}/rerun`, { token: acme.token })).status).toBe(200);
    expect((await execution(childId)).status).toBe('running');
    await waitFor('the child to wait again', async () => ((await execution(childId)).steps as Json[])[0]?.status === 'waiting');
    await api(base, 'POST', '/api/v1/topics/orders.released/events', { token: acme.token, body: { payload: { order: 'r-1' } } });
    expect((await finished(id)).status).toBe('succeeded');
    expect((await execution(childId)).status).toBe('succeeded');
    expect(await executionsOf(child)).toHaveLength(1);
  });

  it('starts the error flow of a failed execution with what failed, and none for a success', async () => {
    const errors = await create(manual('on-error', [{ id: 'note', component: 'transform', config: { expression: '{"failed": execution.id, "flow": execution.flow_name, "why": execution.error.message}' } }]));
    const risky = await create(
      manual('risky', [{ id: 'boom', component: 'transform', config: { expression: 'fail ? $error("it broke") : {"ok": true}' } }], { settings: { errorFlow: 'on-error', retries: { count: 0 } } }),
    );
    const good = await finished(await run(risky, { fail: false }));
    expect(good.status).toBe('succeeded');
    const bad = await finished(await run(risky, { fail: true }));
    expect(bad.status).toBe('failed');
    await waitFor('the error flow to run', async () => (await executionsOf(errors)).length === 1);
    const report = await finished((await executionsOf(errors))[0]!.id as string);
    expect(report).toMatchObject({ status: 'succeeded', trigger: 'error', output: { failed: bad.id, flow: 'risky', why: expect.stringMatching(/it broke$/) } });
  });

  it('records a failure again when its error flow was started with the same idempotency key before', async () => {
    // One report per failed execution, however often it is re-run and fails again.
    const errors = await create(manual('on-error-keyed', [{ id: 'note', component: 'transform', config: { expression: '{"failed": execution.id}' } }], { settings: { idempotencyKey: 'execution.id' } }));
    const fragile = await create(manual('fragile-keyed', [{ id: 'boom', component: 'transform', config: { expression: '$error("broke again")' } }], { settings: { errorFlow: 'on-error-keyed', retries: { count: 0 } } }));
    const id = await run(fragile, {});
    expect((await finished(id)).status).toBe('failed');
    await waitFor('the error flow to run', async () => (await executionsOf(errors)).length === 1);

    expect((await api(base, 'POST', `/api/v1/executions/${id}/rerun`, { token: acme.token })).status).toBe(200);
    expect(await finished(id)).toMatchObject({ status: 'failed', error: { node: 'boom' } });
    expect(((await execution(id)).steps as Json[]).map((s) => [s.node, s.status, s.attempt])).toEqual([['boom', 'failed', 1]]);
    expect(await executionsOf(errors)).toHaveLength(1);
  });

  it('gives each re-run the flow timeout again, counted from that re-run', async () => {
    // The first two calls are refused (a 4xx is not retried), the second after 1.2 s; the
    // third takes 3 s, past the flow's 2 s timeout.
    let calls = 0;
    upstream.answer((_req, res) => {
      calls += 1;
      const refuse = () => res.writeHead(409, { 'content-type': 'application/json' }).end('{}');
      if (calls === 1) refuse();
      else if (calls === 2) setTimeout(refuse, 1200);
      else setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"booked": true}'), 3000);
    });
    const flow = await create(manual('timed-booking', [{ id: 'book', component: 'http', config: { method: 'POST', url: `${upstream.url}/book` } }], { settings: { timeoutMs: 2000 } }));
    const id = await run(flow, {});
    expect(await finished(id)).toMatchObject({ status: 'failed', error: { node: 'book' } });
    // Past the first run's deadline (the engine checks deadlines every second): the re-run
    // still runs its step to its end, which fails on its own.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect((await api(base, 'POST', `/api/v1/executions/${id}/rerun`, { token: acme.token })).status).toBe(200);
    expect(await finished(id)).toMatchObject({ status: 'failed', error: { node: 'book', message: expect.stringMatching(/409/) } });
    // The second re-run has 2 s again, not more: its 3 s call is cut off by the timeout.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    expect((await api(base, 'POST', `/api/v1/executions/${id}/rerun`, { token: acme.token })).status).toBe(200);
    expect(await finished(id)).toMatchObject({ status: 'failed', error: { code: 'FLOW_TIMEOUT' } });
  });

  it("reports a failed subflow once, through its parent's error flow", async () => {
    const errors = await create(manual('on-error-once', [{ id: 'note', component: 'transform', config: { expression: '{"failed": execution.id}' } }]));
    const settings = { errorFlow: 'on-error-once', retries: { count: 0 } };
    await create(manual('fragile', [{ id: 'boom', component: 'transform', config: { expression: '$error("fragile broke")' } }], { settings }));
    const parent = await create(manual('calls-fragile', [{ id: 'call', component: 'subflow', config: { flow: 'fragile' } }], { settings }));
    const failed = await finished(await run(parent, {}));
    expect(failed.status).toBe('failed');
    await waitFor('the error flow to run', async () => (await executionsOf(errors)).length > 0);
    expect((await finished((await executionsOf(errors))[0]!.id as string)).output).toEqual({ failed: failed.id });
    // Whatever else finishes meanwhile, the child's own failure starts no second report.
    await finished(await run(parent, {}));
    await waitFor('the second report', async () => (await executionsOf(errors)).length >= 2);
    expect(await executionsOf(errors)).toHaveLength(2);
  });

  it('holds executions over the concurrency limit as queued and runs them in turn', async () => {
    const slow = await create(manual('one-at-a-time', [{ id: 'wait', component: 'delay', config: { ms: 300 } }], { settings: { concurrency: { limit: 1 } } }));
    const ids = [await run(slow, { i: 1 }), await run(slow, { i: 2 }), await run(slow, { i: 3 })];
    const statuses = await Promise.all(ids.map(async (id) => (await execution(id)).status));
    expect(statuses).toEqual(['running', 'queued', 'queued']);
    const done = await Promise.all(ids.map(finished));
    expect(done.map((d) => d.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    // One at a time: each started its step after the one before had finished.
    const spans = done.map((d) => {
      const step = (d.steps as Json[])[0]!;
      return { started: Date.parse(step.started_at as string), finished: Date.parse(d.finished_at as string) };
    });
    expect(spans[1]!.started).toBeGreaterThanOrEqual(spans[0]!.finished);
    expect(spans[2]!.started).toBeGreaterThanOrEqual(spans[1]!.finished);
  });

  it('applies a keyed concurrency limit per key, and a cancelled queued execution frees nothing it did not hold', async () => {
    const flow = await create(manual('per-customer', [{ id: 'wait', component: 'delay', config: { ms: 400 } }], { settings: { concurrency: { limit: 1, key: 'customer' } } }));
    const a1 = await run(flow, { customer: 'a' });
    const a2 = await run(flow, { customer: 'a' });
    const b1 = await run(flow, { customer: 'b' });
    const a3 = await run(flow, { customer: 'a' });
    expect([(await execution(a1)).status, (await execution(a2)).status, (await execution(b1)).status, (await execution(a3)).status]).toEqual(['running', 'queued', 'running', 'queued']);
    expect((await api(base, 'POST', `/api/v1/executions/${a2}/cancel`, { token: acme.token })).status).toBe(200);
    // a1 still holds the key's only slot: cancelling the queued a2 lets nothing else in.
    expect((await execution(a3)).status).toBe('queued');
    expect((await finished(a2)).status).toBe('cancelled');
    expect((await finished(a3)).status).toBe('succeeded');
  });

  it('queues a re-run while the concurrency limit is full, and runs it when a slot frees', async () => {
    // The upstream refuses the first call for gate "early" (a 4xx is not retried) and accepts the rest.
    const refused = new Set<string>();
    upstream.answer((req, res) => {
      const gate = new URL(req.url ?? '/', 'http://upstream').searchParams.get('gate') ?? '';
      const refuse = gate === 'early' && !refused.has(gate);
      refused.add(gate);
      res.writeHead(refuse ? 409 : 200, { 'content-type': 'application/json' }).end(JSON.stringify({ gate }));
    });
    const flow = await create(
      manual(
        'gated-rerun',
        [
          { id: 'call', component: 'http', config: { method: 'POST', url: `${upstream.url}/open?gate={{ gate }}` } },
          { id: 'gate', component: 'wait-for-event', config: { topic: 'gates.opened', match: { event: 'payload.gate', value: '{{ body.gate }}' }, timeoutMs: 60_000 } },
        ],
        { settings: { concurrency: { limit: 1 } } },
      ),
    );
    const early = await run(flow, { gate: 'early' });
    expect(await finished(early)).toMatchObject({ status: 'failed', error: { node: 'call' } });
    const holder = await run(flow, { gate: 'holder' });
    expect((await execution(holder)).status).toBe('running');

    expect((await api(base, 'POST', `/api/v1/executions/${early}/rerun`, { token: acme.token })).status).toBe(200);
    // The holder has the only slot: the re-run waits its turn instead of running beside it.
    expect(await execution(early)).toMatchObject({ status: 'queued' });
    expect(((await execution(early)).steps as Json[]).find((s) => s.node === 'call')?.status).toBe('held');

    await waitFor('the holder to wait', async () => ((await execution(holder)).steps as Json[]).some((s) => s.node === 'gate' && s.status === 'waiting'));
    await api(base, 'POST', '/api/v1/topics/gates.opened/events', { token: acme.token, body: { payload: { gate: 'holder' } } });
    expect((await finished(holder)).status).toBe('succeeded');
    await waitFor('the re-run to take the slot and wait', async () => ((await execution(early)).steps as Json[]).some((s) => s.node === 'gate' && s.status === 'waiting'));
    expect((await execution(early)).status).toBe('running');
    await api(base, 'POST', '/api/v1/topics/gates.opened/events', { token: acme.token, body: { payload: { gate: 'early' } } });
    expect((await finished(early)).status).toBe('succeeded');
  });

  it('holds the step after one that finishes while its execution is paused, and runs it on resume', async () => {
    let release: (() => void) | undefined;
    upstream.answer((_req, res) => {
      release = () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"booked": true}');
    });
    const flow = await create(
      manual('slow-booking', [
        { id: 'book', component: 'http', config: { method: 'POST', url: `${upstream.url}/slow` } },
        { id: 'confirm', component: 'transform', config: { expression: '{"confirmed": body.booked}' } },
      ]),
    );
    const id = await run(flow, {});
    await waitFor('the call to reach the upstream', () => release !== undefined);
    expect((await api(base, 'POST', `/api/v1/executions/${id}/pause`, { token: acme.token })).status).toBe(200);
    release!();
    const stepsOf = async () => Object.fromEntries(((await execution(id)).steps as Json[]).map((s) => [s.node, s.status]));
    await waitFor('the call to be recorded', async () => (await stepsOf()).book === 'succeeded');
    expect(await stepsOf()).toEqual({ book: 'succeeded', confirm: 'held' });
    expect((await execution(id)).status).toBe('paused');

    expect((await api(base, 'POST', `/api/v1/executions/${id}/resume`, { token: acme.token })).status).toBe(200);
    expect(await finished(id)).toMatchObject({ status: 'succeeded', output: { confirmed: true } });
  });

  it('holds a step that was running when its execution paused and must be retried, and retries it on resume', async () => {
    let calls = 0;
    let release: (() => void) | undefined;
    upstream.answer((_req, res) => {
      calls += 1;
      // The first call fails (a 5xx is retried) once released; the next succeeds.
      release = calls === 1 ? () => res.writeHead(500, { 'content-type': 'application/json' }).end('{"busy": true}') : undefined;
      if (calls > 1) res.writeHead(200, { 'content-type': 'application/json' }).end('{"booked": true}');
    });
    const flow = await create(
      manual('flaky-booking', [{ id: 'book', component: 'http', config: { method: 'POST', url: `${upstream.url}/flaky` } }], {
        settings: { retries: { count: 3, backoffMs: 50, jitter: 0 } },
      }),
    );
    const id = await run(flow, {});
    await waitFor('the call to reach the upstream', () => release !== undefined);
    expect((await api(base, 'POST', `/api/v1/executions/${id}/pause`, { token: acme.token })).status).toBe(200);
    release!();
    const bookStep = async () => ((await execution(id)).steps as Json[]).find((s) => s.node === 'book');
    await waitFor('the failed attempt to be recorded', async () => (await bookStep())?.status !== 'running');
    // Well past the backoff: a paused execution runs nothing, so the retry has not been made.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await bookStep())?.status).toBe('held');
    expect(calls).toBe(1);
    expect((await execution(id)).status).toBe('paused');

    expect((await api(base, 'POST', `/api/v1/executions/${id}/resume`, { token: acme.token })).status).toBe(200);
    expect(await finished(id)).toMatchObject({ status: 'succeeded' });
    expect(calls).toBe(2);
  });

  it('resumes a wait-for-event step on the matching event, and times out without one', async () => {
    const flow = await create(
      manual('await-payment', [
        { id: 'paid', component: 'wait-for-event', config: { topic: 'payments.received', match: { event: 'payload.order', value: '{{ order }}' }, timeoutMs: 20_000 } },
        { id: 'done', component: 'transform', config: { expression: '{"amount": payload.amount}' } },
      ]),
    );
    const quick = await create(manual('await-never', [{ id: 'never', component: 'wait-for-event', config: { topic: 'payments.received', match: { event: 'payload.order', value: 'nobody' }, timeoutMs: 300 } }]));
    const patient = await create(
      manual('await-never-continue', [{ id: 'never', component: 'wait-for-event', config: { topic: 'payments.received', timeoutMs: 300, onTimeout: 'continue', match: { event: 'payload.order', value: 'nobody' } } }]),
    );
    const waiting = await run(flow, { order: 'o-1' });
    const other = await run(flow, { order: 'o-2' });
    await waitFor('both to wait', async () => {
      const steps = await Promise.all([waiting, other].map(async (id) => ((await execution(id)).steps as Json[])[0]?.status));
      return steps.every((s) => s === 'waiting');
    });
    const publish = await api(base, 'POST', '/api/v1/topics/payments.received/events', { token: acme.token, body: { payload: { order: 'o-1', amount: 42 } } });
    expect(publish.status).toBeLessThan(300);
    expect(await finished(waiting)).toMatchObject({ status: 'succeeded', output: { amount: 42 } });
    // The event named o-1: the execution waiting for o-2 still waits.
    expect((await execution(other)).status).toBe('running');

    // Paused and resumed while waiting, the step still waits for its event.
    const paused = await run(flow, { order: 'o-3' });
    await waitFor('it to wait', async () => ((await execution(paused)).steps as Json[])[0]?.status === 'waiting');
    expect((await api(base, 'POST', `/api/v1/executions/${paused}/pause`, { token: acme.token })).status).toBe(200);
    expect(((await execution(paused)).steps as Json[])[0]?.status).toBe('held');
    expect((await api(base, 'POST', `/api/v1/executions/${paused}/resume`, { token: acme.token })).status).toBe(200);
    expect(((await execution(paused)).steps as Json[])[0]?.status).toBe('waiting');
    await api(base, 'POST', '/api/v1/topics/payments.received/events', { token: acme.token, body: { payload: { order: 'o-3', amount: 7 } } });
    expect(await finished(paused)).toMatchObject({ status: 'succeeded', output: { amount: 7 } });

    expect(await finished(await run(quick, {}))).toMatchObject({ status: 'failed', error: { code: 'WAIT_TIMEOUT', node: 'never' } });
    expect(await finished(await run(patient, { kept: true }))).toMatchObject({ status: 'succeeded', output: { kept: true } });
    await api(base, 'POST', `/api/v1/executions/${other}/cancel`, { token: acme.token });
  });
});

function edgesOf(nodes: unknown[]): Array<{ from: string; to: string }> {
  const ids = (nodes as Array<{ id: string }>).map((n) => n.id);
  return ids.slice(1).map((to, i) => ({ from: ids[i]!, to }));
}
