/**
 * Flows through the public API (issue 5, story S4): a flow is created, started through
 * `starting` / `flow.starting` … `flow.started` / `active`, serves its webhook only while
 * active, runs its nodes durably, and stops through the mirror image.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, clientToken } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { waitFor } from '../support/bus.js';

const hookFlow = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  triggers: [{ type: 'webhook' }],
  nodes: [
    { id: 'shape', component: 'transform', config: { expression: '{"greeting": "hello " & body.name, "a": body.a}' } },
    { id: 'announce', component: 'publish', config: { topic: 'greetings.made' } },
  ],
  edges: [{ from: 'shape', to: 'announce' }],
  ...extra,
});

describe.each(['sqlite', 'postgres'] as const)('flows on %s: repository, lifecycle, webhooks and executions', (store) => {
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;
  let other: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer({ store, config: { flows: { pollMs: 20 } } });
    base = server.url;
    acme = await createTenant(base, 'flows-acme');
    other = await createTenant(base, 'flows-other');
  });
  afterAll(async () => {
    await server.close();
  });

  const create = async (owner: TenantOwner, body: unknown) => api(base, 'POST', '/api/v1/flows', { token: owner.token, body });
  const status = async (owner: TenantOwner, id: string) => (await api(base, 'GET', `/api/v1/flows/${id}`, { token: owner.token })).body.status as string;
  const startAndWait = async (owner: TenantOwner, id: string) => {
    const started = await api(base, 'POST', `/api/v1/flows/${id}/start`, { token: owner.token });
    if (started.status !== 202) throw new Error(`start refused: ${started.text}`);
    await waitFor('the flow to be active', async () => (await status(owner, id)) === 'active');
  };
  const execution = async (owner: TenantOwner, id: string) => (await api(base, 'GET', `/api/v1/executions/${id}`, { token: owner.token })).body;
  const finished = async (owner: TenantOwner, id: string) => {
    await waitFor(`execution ${id} to finish`, async () => ['succeeded', 'failed', 'cancelled'].includes((await execution(owner, id)).status));
    return execution(owner, id);
  };

  it('refuses an invalid definition with every problem and its place', async () => {
    const res = await create(acme, {
      name: 'broken',
      triggers: [{ type: 'cron', expression: '0 61 * * *', timezone: 'Europe/Berlin' }, { type: 'cron', expression: '* * *', timezone: 'Mars/Olympus' }],
      nodes: [
        { id: 'a', component: 'transform', config: { expression: '$foo(' } },
        { id: 'b', component: 'teleport' },
      ],
      edges: [
        { from: 'a', to: 'b' },
        { from: 'a', to: 'nowhere' },
      ],
    });
    expectProblem(res, 400, 'FLOWGATE_ERR_FLOW_INVALID');
    const paths = (res.body.errors as Array<{ path: string; message: string }>).map((e) => e.path);
    expect(paths).toEqual(expect.arrayContaining(['triggers[0].expression', 'triggers[1].timezone', 'nodes[0].config.expression', 'nodes[1].component', 'edges[1].to']));
    const cron = (res.body.errors as Array<{ path: string; message: string }>).find((e) => e.path === 'triggers[0].expression');
    expect(cron?.message).toMatch(/hour field "61".*at character 3/);
  });

  it('refuses a cycle', async () => {
    const res = await create(acme, {
      name: 'loop',
      triggers: [],
      nodes: [
        { id: 'a', component: 'transform', config: { expression: '$' } },
        { id: 'b', component: 'transform', config: { expression: '$' } },
      ],
      edges: [
        { from: 'a', to: 'b' },
        { from: 'b', to: 'a' },
      ],
    });
    expectProblem(res, 400, 'FLOWGATE_ERR_FLOW_INVALID');
    expect(res.body.detail).toMatch(/cycle/);
  });

  it('starts a flow through starting and flow.starting to flow.started and active, and stops it the same way', async () => {
    const created = await create(acme, hookFlow('lifecycle'));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ version: 1, status: 'inactive' });
    const id = created.body.id as string;
    const events: string[] = [];
    const consumer = await server.flowgate.bus.subscribe({ tenant: 'flows-acme', group: 'test-lifecycle', filter: 'flow.*', startAt: { kind: 'latest' } }, (event) => {
      if ((event.payload as { flow: { id: string } }).flow.id === id) events.push(`${event.headers.name}:${(event.payload as { flow: { status: string } }).flow.status}`);
    });
    try {
      const start = await api(base, 'POST', `/api/v1/flows/${id}/start`, { token: acme.token });
      expect(start.status).toBe(202);
      expect(start.body.status).toBe('starting');
      await waitFor('the flow to be active', async () => (await status(acme, id)) === 'active');
      expectProblem(await api(base, 'POST', `/api/v1/flows/${id}/start`, { token: acme.token }), 409, 'FLOWGATE_ERR_FLOW_STATUS_CONFLICT');
      expectProblem(await api(base, 'PUT', `/api/v1/flows/${id}`, { token: acme.token, body: hookFlow('lifecycle-renamed') }), 409, 'FLOWGATE_ERR_FLOW_STATUS_CONFLICT');
      // The same definition again (an apply of an unchanged file) changes nothing, active or not.
      const same = await api(base, 'PUT', `/api/v1/flows/${id}`, { token: acme.token, body: hookFlow('lifecycle') });
      expect(same.status).toBe(200);
      expect(same.body).toMatchObject({ version: 1, status: 'active' });

      const stop = await api(base, 'POST', `/api/v1/flows/${id}/stop`, { token: acme.token });
      expect(stop.body.status).toBe('stopping');
      await waitFor('the flow to be inactive', async () => (await status(acme, id)) === 'inactive');
      await waitFor('four lifecycle events', () => events.length >= 4);
      expect(events).toEqual(['flow.starting:starting', 'flow.started:active', 'flow.stopping:stopping', 'flow.stopped:inactive']);
    } finally {
      await consumer.close();
    }
  });

  it('serves the webhook only while the flow is active, and runs its nodes with the POST and GET messages', async () => {
    const id = (await create(acme, hookFlow('greeter'))).body.id as string;
    expectProblem(await api(base, 'POST', `/hook/${id}`, { body: { name: 'Ada' } }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    await startAndWait(acme, id);

    const posted = await api(base, 'POST', `/hook/${id}?src=test`, { body: { name: 'Ada' } });
    expect(posted.status).toBe(202);
    const done = await finished(acme, posted.body.execution_id as string);
    expect(done.status).toBe('succeeded');
    expect(done.input).toMatchObject({ query: { src: 'test' }, body: { name: 'Ada' } });
    expect(done.steps.map((s: { node: string; status: string }) => `${s.node}:${s.status}`)).toEqual(['shape:succeeded', 'announce:succeeded']);
    expect(done.steps[0].output).toEqual({ greeting: 'hello Ada' });

    const got = await api(base, 'GET', `/hook/${id}?a=1`);
    expect(got.status).toBe(202);
    const viaGet = await finished(acme, got.body.execution_id as string);
    expect(viaGet.input.body).toEqual({ a: '1' });
    expect(viaGet.input.query).toBeUndefined();
    expect(viaGet.steps[0].output).toEqual({ greeting: 'hello ', a: '1' });

    await api(base, 'POST', `/api/v1/flows/${id}/stop`, { token: acme.token });
    await waitFor('the flow to be inactive', async () => (await status(acme, id)) === 'inactive');
    expectProblem(await api(base, 'POST', `/hook/${id}`, { body: { name: 'Ada' } }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
  });

  it("serves webhooks of several flows that arrive together, each to its own flow, and refuses an inactive one's among them", async () => {
    const active: string[] = [];
    for (const name of ['together-a', 'together-b', 'together-c']) {
      const id = (await create(acme, hookFlow(name))).body.id as string;
      await startAndWait(acme, id);
      active.push(id);
    }
    const inactive = (await create(acme, hookFlow('together-off'))).body.id as string;
    const [refused, ...answers] = await Promise.all([inactive, ...active, ...active].map((id) => api(base, 'POST', `/hook/${id}`, { body: { name: id } })));
    expectProblem(refused!, 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expect(answers.map((a) => a.status)).toEqual(Array(6).fill(202));
    const ran = await Promise.all(answers.map(async (a) => (await execution(acme, a.body.execution_id as string)).flow_id as string));
    expect(ran).toEqual([...active, ...active]);
  });

  it('starts nothing new for a repeated Idempotency-Key', async () => {
    const id = (await create(acme, hookFlow('once'))).body.id as string;
    await startAndWait(acme, id);
    const first = await api(base, 'POST', `/hook/${id}`, { body: { name: 'A' }, headers: { 'idempotency-key': 'order-77' } });
    const second = await api(base, 'POST', `/hook/${id}`, { body: { name: 'B' }, headers: { 'idempotency-key': 'order-77' } });
    expect(first.status).toBe(202);
    expect(second.status).toBe(202);
    expect(second.body.execution_id).toBe(first.body.execution_id);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    // The longest key taken (256 characters; longer ones are cut to it) works alike.
    const long = 'k'.repeat(300);
    const third = await api(base, 'POST', `/hook/${id}`, { body: { name: 'C' }, headers: { 'idempotency-key': long } });
    const fourth = await api(base, 'POST', `/hook/${id}`, { body: { name: 'D' }, headers: { 'idempotency-key': long } });
    expect(third.status).toBe(202);
    expect(fourth.body.execution_id).toBe(third.body.execution_id);
    const list = await api(base, 'GET', `/api/v1/executions?flow=${id}`, { token: acme.token });
    expect(list.body.items).toHaveLength(2);
  });

  it("hides one tenant's flows and executions from another", async () => {
    const id = (await create(acme, hookFlow('private'))).body.id as string;
    await startAndWait(acme, id);
    const run = await api(base, 'POST', `/hook/${id}`, { body: { name: 'x' } });
    expectProblem(await api(base, 'GET', `/api/v1/flows/${id}`, { token: other.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expectProblem(await api(base, 'POST', `/api/v1/flows/${id}/stop`, { token: other.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expectProblem(await api(base, 'GET', `/api/v1/executions/${run.body.execution_id}`, { token: other.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expect((await api(base, 'GET', '/api/v1/executions', { token: other.token })).body.items).toEqual([]);
  });

  it('answers a synchronous webhook with the respond node', async () => {
    const created = await create(acme, {
      name: 'sync-answer',
      triggers: [{ type: 'webhook', respond: 'sync', timeoutMs: 10_000 }],
      nodes: [
        { id: 'double', component: 'transform', config: { expression: '{"twice": body.n * 2}' } },
        { id: 'answer', component: 'respond', config: { status: 201, body: '{{ $ }}' } },
      ],
      edges: [{ from: 'double', to: 'answer' }],
    });
    expect(created.status).toBe(201);
    await startAndWait(acme, created.body.id as string);
    const res = await api(base, 'POST', `/hook/${created.body.id}`, { body: { n: 21 } });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ twice: 42 });
  });

  it("serves a flow's synchronous answer as inert content that sets no cookie on Flowgate's origin", async () => {
    const created = await create(acme, {
      name: 'sync-page',
      triggers: [{ type: 'webhook', respond: 'sync', timeoutMs: 10_000 }],
      nodes: [{ id: 'answer', component: 'respond', config: { headers: { 'content-type': 'text/html', 'set-cookie': 'flowgate_login_csrf=x; Path=/oauth', 'content-security-policy': 'default-src *', 'x-kind': 'page' }, body: '<script>alert(1)</script>' } }],
    });
    expect(created.status).toBe(201);
    await startAndWait(acme, created.body.id as string);
    const res = await fetch(`${base}/hook/${created.body.id}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('x-kind')).toBe('page');
    expect(res.headers.get('content-security-policy')).toBe('sandbox');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('set-cookie')).toBeNull();
    const informational = await create(acme, { name: 'sync-102', triggers: [{ type: 'webhook', respond: 'sync' }], nodes: [{ id: 'answer', component: 'respond', config: { status: 102 } }] });
    expectProblem(informational, 400, 'FLOWGATE_ERR_FLOW_INVALID');
  });

  it('runs a manual execution with flows:run and checks its input schema', async () => {
    const created = await create(acme, {
      name: 'manual-run',
      triggers: [{ type: 'manual', inputSchema: { type: 'object', required: ['visit'], properties: { visit: { type: 'string' } } } }],
      nodes: [{ id: 'echo', component: 'transform', config: { expression: 'visit' } }],
    });
    const id = created.body.id as string;
    expectProblem(await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: { visit: 'a1' } } }), 409, 'FLOWGATE_ERR_FLOW_STATUS_CONFLICT');
    await startAndWait(acme, id);
    expectProblem(await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: { run: 1 } } }), 422, 'FLOWGATE_ERR_FLOW_INPUT_INVALID');
    const run = await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: { visit: 'a1' } } });
    expect(run.status).toBe(201);
    const done = await finished(acme, run.body.id as string);
    expect(done).toMatchObject({ status: 'succeeded', output: 'a1', flow_version: 1, trigger: 'manual' });
  });

  it('refuses an execution time filter its format admits but no date parser reads, naming it', async () => {
    for (const [query, field] of [['since=2026-12-07T00:00:00%2B00', 'since'], ['until=2026-12-31T23:59:60Z', 'until']]) {
      const res = await api(base, 'GET', `/api/v1/executions?${query}`, { token: acme.token });
      expectProblem(res, 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expect(res.body.detail).toMatch(new RegExp(`^${field} must be an ISO 8601 time`));
    }
    expect((await api(base, 'GET', '/api/v1/executions?since=2026-12-07T00:00:00%2B00:00', { token: acme.token })).status).toBe(200);
  });

  it('shows a step output over 64 KiB cut, counting bytes, not characters', async () => {
    const created = await create(acme, { name: 'euros', triggers: [{ type: 'manual' }], nodes: [{ id: 'many', component: 'transform', config: { expression: '$join($map([1..30000], function($i) { "€" }))' } }] });
    const id = created.body.id as string;
    await startAndWait(acme, id);
    const run = await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: {} } });
    const done = await finished(acme, run.body.id as string);
    expect(done.status).toBe('succeeded');
    // 30,000 characters, 90,000 bytes of UTF-8 (and two quotes).
    expect(done.steps[0].output).toMatchObject({ truncated: true, bytes: 90_002 });
  });

  it('does not re-run an execution whose flow was deleted', async () => {
    const created = await create(acme, { name: 'deleted-later', triggers: [{ type: 'manual' }], nodes: [{ id: 'boom', component: 'transform', config: { expression: '$error("no")' } }] });
    const id = created.body.id as string;
    await startAndWait(acme, id);
    const run = await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: {} } });
    expect((await finished(acme, run.body.id as string)).status).toBe('failed');
    await api(base, 'POST', `/api/v1/flows/${id}/stop`, { token: acme.token });
    await waitFor('the flow to stop', async () => (await status(acme, id)) === 'inactive');
    expect((await api(base, 'DELETE', `/api/v1/flows/${id}`, { token: acme.token })).status).toBe(204);
    const rerun = await api(base, 'POST', `/api/v1/executions/${run.body.id}/rerun`, { token: acme.token });
    expectProblem(rerun, 409, 'FLOWGATE_ERR_EXECUTION_STATUS_CONFLICT');
    expect(rerun.body.detail).toMatch(/flow of this execution was deleted/);
    expect((await execution(acme, run.body.id as string)).status).toBe('failed');
  });

  it('answers a token that may run no flow the same for a flow that exists and one that does not', async () => {
    const account = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'publisher-only', scopes: ['events:publish'] } });
    const token = await clientToken(base, account.body.client_id, account.body.client_secret);
    const existing = (await create(acme, { name: 'probed', triggers: [{ type: 'manual' }], nodes: [{ id: 'a', component: 'transform', config: { expression: '$' } }] })).body.id as string;
    for (const target of [existing, 'probed', 'no-such-flow']) {
      expectProblem(await api(base, 'POST', `/api/v1/flows/${target}/executions`, { token, body: { input: {} } }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    }
  });

  it("lets a token that may run one flow follow its executions, and no other flow's", async () => {
    const flow = (name: string) => ({ name, triggers: [{ type: 'manual' }], nodes: [{ id: 'a', component: 'transform', config: { expression: '$' } }] });
    const mine = (await create(acme, flow('run-and-follow'))).body.id as string;
    const theirs = (await create(acme, flow('not-for-the-runner'))).body.id as string;
    await startAndWait(acme, mine);
    await startAndWait(acme, theirs);
    const account = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'one-flow-runner', scopes: ['flows:run:flow=run-and-follow'] } });
    const token = await clientToken(base, account.body.client_id, account.body.client_secret);
    const run = await api(base, 'POST', `/api/v1/flows/${mine}/executions`, { token, body: { input: { n: 1 } } });
    expect(run.status).toBe(201);
    await waitFor('the runner to see its execution finish', async () => (await api(base, 'GET', `/api/v1/executions/${run.body.id}`, { token })).body.status === 'succeeded');
    const other = await api(base, 'POST', `/api/v1/flows/${theirs}/executions`, { token: acme.token, body: { input: {} } });
    expectProblem(await api(base, 'GET', `/api/v1/executions/${other.body.id}`, { token }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    expectProblem(await api(base, 'GET', '/api/v1/executions', { token }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
  });

  it('shows the steps of a long execution a page at a time', async () => {
    const nodes = Array.from({ length: 80 }, (_, i) => ({ id: `n${i}`, component: 'transform', config: { expression: `{"at": ${i}}` }, pre: { expression: '$' } }));
    const created = await create(acme, { name: 'long-chain', triggers: [{ type: 'manual' }], nodes, edges: nodes.slice(1).map((n, i) => ({ from: nodes[i]!.id, to: n.id })) });
    const id = created.body.id as string;
    await startAndWait(acme, id);
    const run = await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: {} } });
    const done = await finished(acme, run.body.id as string);
    expect(done.status).toBe('succeeded');
    // 80 nodes, each a pre hook and a main step: 160 steps, shown 100 at a time.
    expect(done.steps).toHaveLength(100);
    expect(done.steps_next).toBe(100);
    const rest = (await api(base, 'GET', `/api/v1/executions/${run.body.id}?steps_from=100`, { token: acme.token })).body;
    expect(rest.steps).toHaveLength(60);
    expect(rest.steps_next).toBeNull();
    expect(new Set([...done.steps, ...rest.steps].map((s: { id: string }) => s.id)).size).toBe(160);
    expect(rest.steps.at(-1)).toMatchObject({ node: 'n79', phase: 'main' });
  });

  it('refuses a wait-for-event hook, which would never hear its event', async () => {
    const res = await create(acme, { name: 'hooked-wait', triggers: [{ type: 'manual' }], nodes: [{ id: 'a', component: 'transform', config: { expression: '$' }, post: { component: 'wait-for-event', config: { topic: 'orders.paid' } } }] });
    expectProblem(res, 400, 'FLOWGATE_ERR_FLOW_INVALID');
    expect(JSON.stringify(res.body)).toContain('wait-for-event cannot be a hook');
  });

  it('keeps input schemas with the same $id apart: saved again, and in two tenants, each checks and runs', async () => {
    const definition = (required: string) => ({
      name: 'with-schema-id',
      triggers: [{ type: 'manual', inputSchema: { $id: 'https://example.com/order.json', type: 'object', required: [required] } }],
      nodes: [{ id: 'echo', component: 'transform', config: { expression: '$' } }],
    });
    const mine = (await create(acme, definition('order'))).body.id as string;
    expect((await api(base, 'PUT', `/api/v1/flows/${mine}`, { token: acme.token, body: definition('order') })).status).toBe(200);
    const theirs = await create(other, definition('visit'));
    expect(theirs.status).toBe(201);
    for (const [owner, id, good, bad] of [
      [acme, mine, { order: 1 }, { visit: 1 }],
      [other, theirs.body.id as string, { visit: 1 }, { order: 1 }],
    ] as const) {
      await startAndWait(owner, id);
      expect((await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: owner.token, body: { input: good } })).status).toBe(201);
      expectProblem(await api(base, 'POST', `/api/v1/flows/${id}/executions`, { token: owner.token, body: { input: bad } }), 422, 'FLOWGATE_ERR_FLOW_INPUT_INVALID');
    }
  });
});
