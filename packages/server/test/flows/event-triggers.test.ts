/**
 * Event triggers (issue 5): an active flow with an `event` trigger starts one execution per
 * matching event of its tenant, and only for events that arrive while it is active, each
 * of its triggers on its own topic. Its topic can change between runs, and a consumer group it names that another active flow
 * reads with another topic fails its start, naming both, without stopping anyone else's
 * triggers.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNatsBusBackend } from '../../src/bus/index.js';
import { systemClock } from '../../src/kernel/index.js';
import { TEST_NATS_URL, waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { PG_URL, startTestServer, type TestServer } from '../support/server.js';

type Json = Record<string, unknown>;

describe.each(['sqlite', 'postgres'] as const)('event triggers on %s', (store) => {
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;
  let other: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer({ store, config: { flows: { pollMs: 20 } } });
    base = server.url;
    acme = await createTenant(base, `events-acme-${store}`);
    other = await createTenant(base, `events-other-${store}`);
  });
  afterAll(async () => {
    await server.close();
  });

  const onEvent = (name: string, topic: string, group?: string) => ({
    name,
    triggers: [{ type: 'event', topic, ...(group ? { group } : {}) }],
    nodes: [{ id: 'note', component: 'transform', config: { expression: '{"n": payload.n}' } }],
    edges: [],
  });
  const statusOf = async (owner: TenantOwner, id: string) => (await api(base, 'GET', `/api/v1/flows/${id}`, { token: owner.token })).body as Json;
  const start = async (owner: TenantOwner, id: string, until = 'active') => {
    await api(base, 'POST', `/api/v1/flows/${id}/start`, { token: owner.token });
    await waitFor(`flow ${id} to be ${until}`, async () => (await statusOf(owner, id)).status === until);
  };
  const stop = async (owner: TenantOwner, id: string) => {
    await api(base, 'POST', `/api/v1/flows/${id}/stop`, { token: owner.token });
    await waitFor(`flow ${id} to stop`, async () => (await statusOf(owner, id)).status === 'inactive');
  };
  const create = async (owner: TenantOwner, body: unknown): Promise<string> => {
    const res = await api(base, 'POST', '/api/v1/flows', { token: owner.token, body });
    if (res.status !== 201) throw new Error(`flow refused: ${res.text}`);
    return res.body.id as string;
  };
  const publish = async (owner: TenantOwner, topic: string, n: number) => {
    const res = await api(base, 'POST', `/api/v1/topics/${topic}/events`, { token: owner.token, body: { payload: { n } } });
    if (res.status >= 300) throw new Error(`publish refused: ${res.text}`);
  };
  /** The `n` of each succeeded execution of the flow, sorted. */
  const ran = async (owner: TenantOwner, flowId: string): Promise<number[]> => {
    const items = (await api(base, 'GET', `/api/v1/executions?flow=${flowId}&limit=100`, { token: owner.token })).body.items as Json[];
    const done = await Promise.all(items.map(async (item) => (await api(base, 'GET', `/api/v1/executions/${item.id as string}`, { token: owner.token })).body as Json));
    return done.filter((e) => e.status === 'succeeded').map((e) => (e.output as { n: number }).n).sort((a, b) => a - b);
  };

  it('starts one execution per matching event while active, none for events from before or while stopped', async () => {
    await publish(acme, 'orders.created', 1);
    const flow = await create(acme, onEvent('on-orders', 'orders.*'));
    await start(acme, flow);
    await publish(acme, 'orders.created', 2);
    await publish(acme, 'invoices.created', 99);
    await waitFor('the event to run the flow', async () => (await ran(acme, flow)).length >= 1);

    await stop(acme, flow);
    await publish(acme, 'orders.created', 3);
    await start(acme, flow);
    await publish(acme, 'orders.created', 4);
    await waitFor('the next event to run the flow', async () => (await ran(acme, flow)).length >= 2);
    // A marker published after the others, on a flow of its own, proves they were all seen.
    const marker = await create(acme, onEvent('marker', 'orders.*'));
    await start(acme, marker);
    await publish(acme, 'orders.created', 5);
    await waitFor('the marker to run', async () => (await ran(acme, marker)).length === 1);
    expect(await ran(acme, flow)).toEqual([2, 4, 5]);
  });

  it('runs for each of its event triggers, each on its own topic', async () => {
    const flow = await create(acme, {
      ...onEvent('two-topics', 'red.*'),
      triggers: [
        { type: 'event', topic: 'red.*' },
        { type: 'event', topic: 'blue.*' },
      ],
    });
    await start(acme, flow);
    await publish(acme, 'red.one', 1);
    await publish(acme, 'blue.one', 2);
    await waitFor('both triggers to run the flow', async () => (await ran(acme, flow)).length === 2);
    expect(await ran(acme, flow)).toEqual([1, 2]);
  });

  it('reads its new topic after an edit, and a group another active flow reads with another topic fails only the flow that names it', async () => {
    const flow = await create(acme, onEvent('edited', 'shipments.*'));
    await start(acme, flow);
    await stop(acme, flow);
    const edited = await api(base, 'PUT', `/api/v1/flows/${flow}`, { token: acme.token, body: onEvent('edited', 'parcels.*') });
    expect(edited.status).toBe(200);
    await start(acme, flow);

    const first = await create(acme, onEvent('reads-a', 'alpha.*', 'shared'));
    await start(acme, first);
    const second = await create(acme, onEvent('reads-b', 'beta.*', 'shared'));
    await start(acme, second, 'failed');
    expect((await statusOf(acme, second)).status_reason).toMatch(/"shared".*"reads-a".*alpha\.\*/);

    // Everyone else's triggers go on: the edited flow, the group's first reader, and another tenant's flow started after.
    const elsewhere = await create(other, onEvent('elsewhere', 'pay.*'));
    await start(other, elsewhere);
    await publish(acme, 'parcels.sent', 1);
    await publish(acme, 'alpha.x', 2);
    await publish(other, 'pay.done', 3);
    await waitFor('every trigger to run', async () => (await ran(acme, flow)).length === 1 && (await ran(acme, first)).length === 1 && (await ran(other, elsewhere)).length === 1, 20_000);
    expect(await ran(acme, flow)).toEqual([1]);
  });

  it('starts one of two flows started at once that name one group with two topics, and fails the other', async () => {
    const flows = [await create(acme, onEvent('together-a', 'gamma.*', 'together')), await create(acme, onEvent('together-b', 'delta.*', 'together'))];
    await Promise.all(flows.map((id) => api(base, 'POST', `/api/v1/flows/${id}/start`, { token: acme.token })));
    const settled = async () => Promise.all(flows.map(async (id) => (await statusOf(acme, id)).status as string));
    await waitFor('both starts to end', async () => (await settled()).every((s) => s === 'active' || s === 'failed'));
    const [a, b] = await Promise.all(flows.map((id) => statusOf(acme, id)));
    expect([a!.status, b!.status].sort()).toEqual(['active', 'failed']);
    expect((a!.status === 'failed' ? a : b)!.status_reason).toMatch(/"together".*"together-[ab]"/);
  });
});

describe('event triggers with two instances (PostgreSQL and NATS)', () => {
  let first: TestServer;
  let second: TestServer | undefined;
  let acme: TenantOwner;

  // Neither instance syncs its subscriptions on a timer during the test: each subscribes at
  // its start, and the one that takes `flow.stopping` drops its subscription at once, so
  // the other is left subscribed to a stopped flow (as it is for up to 2 s by default).
  const prefix = `t${randomBytes(4).toString('hex')}`;
  const settings = { flows: { pollMs: 20, eventSyncMs: 60_000 }, bus: { url: TEST_NATS_URL, prefix } };

  beforeAll(async () => {
    first = await startTestServer({ store: 'postgres', config: settings });
    acme = await createTenant(first.url, 'events-two-instances');
  });
  afterAll(async () => {
    await second?.close();
    await first.close();
    const nats = await connectNatsBusBackend({ url: TEST_NATS_URL, prefix, clock: systemClock, logger: pino({ level: 'silent' }) });
    await nats.destroyAll();
    await nats.close();
  });

  it('starts nothing for an event read, after the stop, by an instance still subscribed to the stopped flow', async () => {
    const token = acme.token;
    const created = await api(first.url, 'POST', '/api/v1/flows', {
      token,
      body: { name: 'stopped-elsewhere', triggers: [{ type: 'event', topic: 'orders.*' }], nodes: [{ id: 'note', component: 'transform', config: { expression: '{"n": payload.n}' } }], edges: [] },
    });
    const flow = created.body.id as string;
    const status = async () => ((await api(first.url, 'GET', `/api/v1/flows/${flow}`, { token })).body as Json).status;
    await api(first.url, 'POST', `/api/v1/flows/${flow}/start`, { token });
    await waitFor('the flow to be active', async () => (await status()) === 'active');
    const { schema, url } = first.flowgate.config.database;
    const started = await startTestServer({ store: 'postgres', config: { ...settings, database: { url: url ?? PG_URL, schema }, secrets: { masterKey: first.flowgate.config.secrets.masterKey } } });
    second = started;
    const executions = async () => ((await api(first.url, 'GET', `/api/v1/executions?flow=${flow}&limit=100`, { token })).body.items as Json[]).length;
    const publish = async (n: number) => expect((await api(first.url, 'POST', '/api/v1/topics/orders.created/events', { token, body: { payload: { n } } })).status).toBeLessThan(300);
    await publish(1);
    await waitFor('the event to run the flow', async () => (await executions()) === 1);

    await api(first.url, 'POST', `/api/v1/flows/${flow}/stop`, { token });
    await waitFor('the flow to stop', async () => (await status()) === 'inactive');
    await publish(2);
    const handedBack = async (server: TestServer) => Number(new RegExp(`flowgate_bus_handler_failures_total\\{group="flow-${flow}"\\} (\\d+)`).exec(await (await fetch(`${server.url}/metrics`)).text())?.[1] ?? 0);
    await waitFor('the event to reach the instance still subscribed', async () => (await handedBack(first)) + (await handedBack(started)) > 0 || (await executions()) > 1);
    expect(await executions()).toBe(1);
  });
});
