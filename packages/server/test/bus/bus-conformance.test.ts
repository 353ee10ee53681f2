/**
 * The bus conformance suite (issue 4): the same semantics, checked on every backend.
 * A backend that cannot do something says so through its capabilities, and the test
 * that needs it is skipped with that reason.
 */
import type { DeadLetterPayload, EventEnvelope } from '@flowgate/contracts';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ConsumerHandle, DeliveryContext } from '../../src/bus/index.js';
import { BUS_KINDS, openTestBus, rejection, sleep, uniqueTenant, waitFor, type TestBus } from '../support/bus.js';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe.each(BUS_KINDS)('event bus on %s', (kind) => {
  let t: TestBus;
  let tenant: string;
  const handles: ConsumerHandle[] = [];

  beforeEach(async () => {
    t = await openTestBus(kind);
    tenant = uniqueTenant();
  });
  afterEach(async () => {
    await Promise.all(handles.splice(0).map((h) => h.close()));
    await t.close();
  });

  /** Subscribes and records what the handler saw. */
  async function collect(options: Parameters<TestBus['bus']['subscribe']>[0], onEvent?: (e: EventEnvelope, c: DeliveryContext) => unknown) {
    const seen: { event: EventEnvelope; context: DeliveryContext }[] = [];
    const handle = await t.bus.subscribe(options, async (event, context) => {
      seen.push({ event, context });
      await onEvent?.(event, context);
    });
    handles.push(handle);
    return { seen, handle };
  }

  describe('publishing', () => {
    it('wraps the payload in an envelope with a UUIDv7 id, the tenant and the caller trace', async () => {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const envelope = await t.bus.publish(tenant, { topic: 'orders.created', payload: { id: 1 }, key: 'c-1' }, { traceparent, serviceName: 'shop' });
      expect(envelope.id).toMatch(UUID_V7);
      expect(envelope.headers).toMatchObject({ name: 'orders.created', tenant, serviceName: 'shop', key: 'c-1' });
      expect(envelope.headers.traceparent).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
      expect(Date.parse(envelope.headers.createdAt)).not.toBeNaN();
      const [stored] = await t.bus.read(tenant, 'orders.created', { kind: 'earliest' }, 10);
      expect(stored?.envelope).toEqual(envelope);
    });

    it('gives each event of a batch its own trace when the items carry one', async () => {
      const traceA = '4bf92f3577b34da6a3ce929d0e0e4736';
      const traceB = '0af7651916cd43dd8448eb211c80319c';
      const sent = await t.bus.publishBatch(
        tenant,
        [
          { topic: 'traced', payload: 1, traceparent: `00-${traceA}-00f067aa0ba902b7-01` },
          { topic: 'traced', payload: 2, traceparent: `00-${traceB}-b7ad6b7169203331-01` },
          { topic: 'traced', payload: 3 },
        ],
        { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' },
      );
      expect(sent.map((e) => e.headers.traceparent.split('-')[1])).toEqual([traceA, traceB, '11111111111111111111111111111111']);
      const stored = await t.bus.read(tenant, 'traced', { kind: 'earliest' }, 10);
      expect(stored.map((e) => e.envelope.headers.traceparent)).toEqual(sent.map((e) => e.headers.traceparent));
    });

    it('reads a topic back in publish order, from a position', async () => {
      const sent = await t.bus.publishBatch(
        tenant,
        Array.from({ length: 30 }, (_, i) => ({ topic: 'ticks', payload: { i } })),
      );
      const all = await t.bus.read(tenant, 'ticks', { kind: 'earliest' }, 100);
      expect(all.map((e) => e.envelope.id)).toEqual(sent.map((e) => e.id));
      const fromTenth = await t.bus.read(tenant, 'ticks', { kind: 'seq', seq: all[10]!.seq }, 5);
      expect(fromTenth.map((e) => (e.envelope.payload as { i: number }).i)).toEqual([10, 11, 12, 13, 14]);
    });

    it('refuses a bad topic name, a reserved topic, and writes nothing of a batch with one bad event', async () => {
      expect((await rejection(t.bus.publish(tenant, { topic: 'Orders Created', payload: {} }))).code).toBe('FLOWGATE_ERR_BUS_INVALID_TOPIC');
      expect((await rejection(t.bus.publish(tenant, { topic: '_dlq.x', payload: {} }))).code).toBe('FLOWGATE_ERR_BUS_RESERVED_TOPIC');
      await rejection(t.bus.publishBatch(tenant, [{ topic: 'ok.topic', payload: 1 }, { topic: 'bad..topic', payload: 2 }]));
      expect(await t.bus.read(tenant, 'ok.topic', { kind: 'earliest' }, 10)).toEqual([]);
    });

    it('keeps tenants apart: the same topic name is a different topic per tenant', async () => {
      const other = uniqueTenant();
      await t.bus.publish(tenant, { topic: 'orders.created', payload: { for: 'a', tenant: other } });
      expect(await t.bus.read(other, 'orders.created', { kind: 'earliest' }, 10)).toEqual([]);
      const { seen } = await collect({ tenant: other, group: 'g', filter: 'orders.created', startAt: { kind: 'earliest' } });
      await t.bus.publish(other, { topic: 'orders.created', payload: { for: 'b' } });
      await waitFor('the other tenant to get its own event', () => seen.length === 1);
      await sleep(100);
      expect(seen.map((s) => s.event.payload)).toEqual([{ for: 'b' }]);
      expect(seen[0]!.event.headers.tenant).toBe(other);
    });
  });

  describe('schemas', () => {
    it('refuses an event that does not match the topic JSON Schema, naming the path, and writes nothing', async () => {
      await t.bus.topics.configure(tenant, 'orders.created', {
        schema: { kind: 'json', definition: { type: 'object', required: ['amount'], properties: { amount: { type: 'number' } } } },
      });
      const error = await rejection(t.bus.publish(tenant, { topic: 'orders.created', payload: { amount: 'ten' } }));
      expect(error.code).toBe('FLOWGATE_ERR_BUS_SCHEMA_MISMATCH');
      expect(error.errors).toContainEqual(expect.objectContaining({ path: '/payload/amount' }));
      expect(await t.bus.read(tenant, 'orders.created', { kind: 'earliest' }, 10)).toEqual([]);
      const ok = await t.bus.publish(tenant, { topic: 'orders.created', payload: { amount: 10 } });
      expect(ok.headers.schema).toBe('json:orders.created@1');
    });

    it('checks Avro schemas too', async () => {
      await t.bus.topics.configure(tenant, 'sensors.datapoint', {
        schema: { kind: 'avro', definition: { type: 'record', name: 'Point', fields: [{ name: 'value', type: 'double' }, { name: 'unit', type: 'string' }] } },
      });
      const error = await rejection(t.bus.publish(tenant, { topic: 'sensors.datapoint', payload: { value: 'x', unit: 'C' } }));
      expect(error.code).toBe('FLOWGATE_ERR_BUS_SCHEMA_MISMATCH');
      expect(error.errors?.[0]?.path).toBe('/payload/value');
      await expect(t.bus.publish(tenant, { topic: 'sensors.datapoint', payload: { value: 21.5, unit: 'C' } })).resolves.toBeDefined();
    });

    it('refuses a schema that does not compile when the topic is configured', async () => {
      const error = await rejection(t.bus.topics.configure(tenant, 'x', { schema: { kind: 'avro', definition: { type: 'nonsense' } } }));
      expect(error.code).toBe('FLOWGATE_ERR_REQUEST_INVALID');
    });
  });

  describe('consumer groups', () => {
    it('gives each event to one member of a group, and every event to every group', async () => {
      const a = await collect({ tenant, group: 'billing', filter: 'orders.created' });
      const b = await collect({ tenant, group: 'billing', filter: 'orders.created' });
      const audit = await collect({ tenant, group: 'audit', filter: 'orders.created' });
      await t.bus.publishBatch(
        tenant,
        Array.from({ length: 200 }, (_, i) => ({ topic: 'orders.created', payload: i })),
      );
      await waitFor('both groups to get every event', () => a.seen.length + b.seen.length >= 200 && audit.seen.length >= 200);
      await sleep(200);
      const billing = [...a.seen, ...b.seen].map((s) => s.event.payload as number).sort((x, y) => x - y);
      expect(billing).toEqual(Array.from({ length: 200 }, (_, i) => i));
      expect(audit.seen).toHaveLength(200);
    });

    it('matches globs and regular expressions, including topics created after the group', async () => {
      const glob = await collect({ tenant, group: 'glob', filter: 'audit.*' });
      const regex = await collect({ tenant, group: 'regex', filter: '/.*datapoint.*/' });
      for (const topic of ['audit.login', 'audit.iam.login', 'orders.created', 'farm.datapoint.temp', 'datapoint']) {
        // audit.* topics are Flowgate's own to write (tenants may only read them).
        await t.bus.publish(tenant, { topic, payload: topic }, { system: topic.startsWith('audit.') });
      }
      await waitFor('both groups', () => glob.seen.length === 1 && regex.seen.length === 2);
      await sleep(150);
      expect(glob.seen.map((s) => s.event.headers.name)).toEqual(['audit.login']);
      expect(regex.seen.map((s) => s.event.headers.name).sort()).toEqual(['datapoint', 'farm.datapoint.temp']);
    });

    it('lets a platform group read every tenant', async () => {
      const other = uniqueTenant();
      const { seen } = await collect({ tenant: null, group: `platform-${tenant}`, filter: '/.*datapoint.*/' });
      await t.bus.publish(tenant, { topic: 'a.datapoint', payload: 1 });
      await t.bus.publish(other, { topic: 'b.datapoint', payload: 2 });
      await waitFor('events of both tenants', () => seen.length === 2);
      expect(seen.map((s) => s.context.tenant).sort()).toEqual([tenant, other].sort());
    });

    it('refuses to join an existing group with another filter', async () => {
      await collect({ tenant, group: 'g1', filter: 'a.b' });
      expect((await rejection(t.bus.subscribe({ tenant, group: 'g1', filter: 'a.*' }, () => undefined))).code).toBe('FLOWGATE_ERR_BUS_GROUP_CONFLICT');
    });

    it('starts a new group at the latest event when asked, and resumes an existing one where it was', async () => {
      await t.bus.publish(tenant, { topic: 'x', payload: 'old' });
      const first = await collect({ tenant, group: 'late', filter: 'x', startAt: { kind: 'latest' } });
      await t.bus.publish(tenant, { topic: 'x', payload: 'new' });
      await waitFor('the new event', () => first.seen.length === 1);
      await sleep(100);
      expect(first.seen.map((s) => s.event.payload)).toEqual(['new']);
      await first.handle.close();
      await t.bus.publish(tenant, { topic: 'x', payload: 'while away' });
      const again = await collect({ tenant, group: 'late', filter: 'x', startAt: { kind: 'latest' } });
      await waitFor('the event published while away', () => again.seen.length === 1);
      expect(again.seen[0]!.event.payload).toBe('while away');
    });
  });

  describe('delivery guarantees', () => {
    it('redelivers after a failure, then moves a poison event to the dead letters while the rest flow', async () => {
      const { seen } = await collect({ tenant, group: 'worker', filter: 'jobs', maxDeliveries: 3, retryDelayMs: 10 }, (event) => {
        if (event.payload === 'poison') throw new Error('cannot digest poison');
      });
      const dead = await collect({ tenant, group: 'dead-reader', filter: '_dlq.worker' });
      await t.bus.publishBatch(tenant, [
        { topic: 'jobs', payload: 'a' },
        { topic: 'jobs', payload: 'poison' },
        { topic: 'jobs', payload: 'b' },
      ]);
      await waitFor('the dead letter', () => dead.seen.length === 1);
      const poisonTries = seen.filter((s) => s.event.payload === 'poison').map((s) => s.context.deliveries);
      expect(poisonTries).toEqual([1, 2, 3]);
      expect(seen.filter((s) => s.event.payload !== 'poison').map((s) => s.event.payload).sort()).toEqual(['a', 'b']);
      const letter = dead.seen[0]!.event.payload as DeadLetterPayload;
      expect(letter).toMatchObject({ group: 'worker', deliveries: 3, reason: 'cannot digest poison' });
      expect(letter.event.payload).toBe('poison');
      await sleep(150);
      expect(seen.filter((s) => s.event.payload === 'poison')).toHaveLength(3);
    });

    it('redelivers an event that is not acked within the ack timeout', async () => {
      const { seen } = await collect({ tenant, group: 'slow', filter: 'jobs', manualAck: true, ackTimeoutMs: 300 }, async (_event, context) => {
        if (context.deliveries >= 2) await context.ack();
      });
      await t.bus.publish(tenant, { topic: 'jobs', payload: 'once' });
      await waitFor('a second delivery', () => seen.length === 2);
      expect(seen.map((s) => s.context.deliveries)).toEqual([1, 2]);
      await sleep(500);
      expect(seen).toHaveLength(2);
    });

    it('redelivers a nacked event after its delay', async () => {
      const { seen } = await collect({ tenant, group: 'nacker', filter: 'jobs', manualAck: true }, async (_event, context) => {
        if (context.deliveries === 1) await context.nack(50, 'not yet');
        else await context.ack();
      });
      await t.bus.publish(tenant, { topic: 'jobs', payload: 'later' });
      await waitFor('the redelivery', () => seen.length === 2);
      expect(seen[1]!.context.deliveries).toBe(2);
    });

    it('keeps a nacked event waiting for its delay when the consumer leaves and comes back', async () => {
      const first = await collect({ tenant, group: 'patient', filter: 'jobs', manualAck: true }, async (_event, context) => {
        await context.nack(60_000, 'come back in a minute');
      });
      await t.bus.publish(tenant, { topic: 'jobs', payload: 'later' });
      await waitFor('the first delivery', () => first.seen.length === 1);
      await first.handle.close();
      const again = await collect({ tenant, group: 'patient', filter: 'jobs' });
      await sleep(1500);
      expect(again.seen).toEqual([]);
      const [state] = await t.bus.groups({ tenant });
      expect(state!.lag.map((l) => [l.tenant, l.pending])).toEqual([[tenant, 1]]);
    });

    // Skipped on NATS: JetStream counts a nacked message among the acks it still awaits.
    it.skipIf(kind === 'nats')('does not count an event waiting for its retry as in flight', async () => {
      let nacked = false;
      await collect({ tenant, group: 'retrying', filter: 'jobs', manualAck: true }, async (_event, context) => {
        await context.nack(60_000, 'later');
        nacked = true;
      });
      await t.bus.publish(tenant, { topic: 'jobs', payload: 'x' });
      await waitFor('the nack to be recorded', () => nacked);
      expect((await t.bus.groups({ tenant }))[0]!.lag).toEqual([{ tenant, pending: 1, inFlight: 0 }]);
    });

    it('hands events that share a key to the handler one at a time, in publish order', async () => {
      const order = new Map<string, number[]>();
      const busy = new Set<string>();
      let overlaps = 0;
      await collect({ tenant, group: 'ordered', filter: 'orders', maxInFlight: 16 }, async (event) => {
        const key = event.headers.key!;
        if (busy.has(key)) overlaps++;
        busy.add(key);
        await sleep(Math.random() * 5);
        order.set(key, [...(order.get(key) ?? []), event.payload as number]);
        busy.delete(key);
      });
      const items = Array.from({ length: 120 }, (_, i) => ({ topic: 'orders', key: `customer-${i % 4}`, payload: i }));
      await t.bus.publishBatch(tenant, items);
      await waitFor('every event', () => [...order.values()].reduce((n, l) => n + l.length, 0) === 120);
      expect(overlaps).toBe(0);
      for (const [key, seen] of order) {
        expect(seen).toEqual(items.filter((i) => i.key === key).map((i) => i.payload));
      }
    });

    // NATS keeps a stream per topic, so there a key's order holds within one topic (README, known gaps).
    it.skipIf(kind === 'nats').each([3, 40])('keeps a key in publish order across the %i topics a group reads, among other topics', async (topics) => {
      const order = new Map<string, number[]>();
      await collect({ tenant, group: 'across', filter: 'orders.**', maxInFlight: 16 }, (event) => {
        const key = event.headers.key!;
        order.set(key, [...(order.get(key) ?? []), event.payload as number]);
      });
      const items = Array.from({ length: 240 }, (_, i) =>
        i % 2 === 0 ? { topic: `orders.t${(i * 7) % topics}`, key: `customer-${i % 3}`, payload: i } : { topic: `noise.t${i % 5}`, key: `customer-${i % 3}`, payload: i },
      );
      await t.bus.publishBatch(tenant, items);
      const wanted = items.filter((i) => i.topic.startsWith('orders.'));
      await waitFor('every order', () => [...order.values()].reduce((n, l) => n + l.length, 0) === wanted.length);
      for (const [key, seen] of order) {
        expect(seen).toEqual(wanted.filter((i) => i.key === key).map((i) => i.payload));
      }
    });

    it.skipIf(kind === 'nats')('still delivers events that waited behind a key whose first event vanished unsettled', async () => {
      const { seen } = await collect({ tenant, group: 'orphans', filter: 'w', manualAck: true, maxInFlight: 4 });
      const sent = await t.bus.publishBatch(tenant, [1, 2, 3].map((n) => ({ topic: 'w', key: 'k', payload: n })));
      await waitFor('the first event', () => seen.length === 1);
      // What an ack racing a claim on PostgreSQL can leave: the head's row gone, its waiters not told.
      const [head] = await t.bus.read(tenant, 'w', { kind: 'earliest' }, 1);
      await sql`delete from bus_pending where seq = ${head!.seq}`.execute(t.store.db());
      await waitFor('the events behind it', () => seen.length === 2);
      await seen[1]!.context.ack();
      await waitFor('the last event', () => seen.length === 3);
      expect(seen.map((s) => s.event.id)).toEqual(sent.map((e) => e.id));
    });

    it('replays a group from the start, from a seq and from a time', async () => {
      const { seen } = await collect({ tenant, group: 'replayer', filter: 'r' });
      const sent = await t.bus.publishBatch(tenant, [1, 2, 3, 4].map((n) => ({ topic: 'r', payload: n })));
      await waitFor('first pass', () => seen.length === 4);
      await t.bus.seek({ tenant, name: 'replayer' }, { kind: 'earliest' });
      await waitFor('the replay', () => seen.length === 8);
      const stored = await t.bus.read(tenant, 'r', { kind: 'earliest' }, 10);
      await t.bus.seek({ tenant, name: 'replayer' }, { kind: 'seq', seq: stored[2]!.seq });
      await waitFor('replay from the third', () => seen.length === 10);
      expect(seen.slice(8).map((s) => s.event.payload)).toEqual([3, 4]);
      await t.bus.seek({ tenant, name: 'replayer' }, { kind: 'time', time: Date.parse(sent[0]!.headers.createdAt) });
      await waitFor('replay by time', () => seen.length === 14);
    });
  });

  describe('lag, retention and transactions', () => {
    it('reports lag per group and tenant, and zero once everything is acked', async () => {
      const held: DeliveryContext[] = [];
      await collect({ tenant, group: 'laggy', filter: 'l', manualAck: true, maxInFlight: 2 }, (_e, context) => void held.push(context));
      await t.bus.publishBatch(tenant, [1, 2, 3, 4, 5].map((n) => ({ topic: 'l', payload: n })));
      await waitFor('two in flight', () => held.length === 2);
      const [state] = await t.bus.groups({ tenant });
      expect(state).toMatchObject({ name: 'laggy', tenant, filter: 'l' });
      expect(state!.lag).toEqual([{ tenant, pending: 5, inFlight: 2 }]);
      for (let acked = 0; acked < 5; acked++) {
        await waitFor('a delivery to ack', () => held.length > acked);
        await held[acked]!.ack();
      }
      await waitFor('zero lag', async () => (await t.bus.groups({ tenant }))[0]!.lag.every((l) => l.pending === 0));
    });

    it('describes one group by name, with its lag, and no other', async () => {
      await collect({ tenant, group: 'named-a', filter: 'na' });
      await collect({ tenant, group: 'named-b', filter: 'nb' });
      await t.bus.publishBatch(tenant, [1, 2].map((n) => ({ topic: 'nb', payload: n })));
      const states = await t.bus.groups({ tenant, name: 'named-a' });
      expect(states.map((g) => [g.name, g.filter])).toEqual([['named-a', 'na']]);
      expect(await t.bus.groups({ tenant, name: 'named-c' })).toEqual([]);
      expect((await t.bus.groups({ tenant: `${tenant}-other`, name: 'named-a' })).length).toBe(0);
      expect((await t.bus.groups({ tenant })).map((g) => g.name).sort()).toEqual(['named-a', 'named-b']);
    });

    it("counts a selective group's lag from its own topics only, among other topics' events", async () => {
      const held: DeliveryContext[] = [];
      await collect({ tenant, group: 'picky', filter: 'picked', manualAck: true, maxInFlight: 1 }, (_e, context) => void held.push(context));
      await t.bus.publishBatch(
        tenant,
        Array.from({ length: 24 }, (_, i) => ({ topic: i % 6 === 0 ? 'picked' : 'passed-over', payload: i })),
      );
      await waitFor('one in flight', () => held.length === 1);
      const state = (await t.bus.groups({ tenant })).find((g) => g.name === 'picky');
      expect(state!.lag).toEqual([{ tenant, pending: 4, inFlight: 1 }]);
    });

    it('drops events beyond a topic retention, and a group keeps its position', async () => {
      const { seen } = await collect({ tenant, group: 'keeper', filter: 'metrics' });
      await t.bus.publishBatch(tenant, Array.from({ length: 50 }, (_, i) => ({ topic: 'metrics', payload: { i, pad: 'x'.repeat(100) } })));
      await waitFor('the first 50', () => seen.length === 50);
      await t.bus.topics.configure(tenant, 'metrics', { maxBytes: 2000 });
      expect(await t.bus.applyRetention()).toBeGreaterThan(30);
      const left = await t.bus.read(tenant, 'metrics', { kind: 'earliest' }, 100);
      expect(left.length).toBeGreaterThan(0);
      expect(left.length).toBeLessThan(20);
      expect((left[left.length - 1]!.envelope.payload as { i: number }).i).toBe(49);
      await t.bus.publish(tenant, { topic: 'metrics', payload: { i: 50 } });
      await waitFor('the next event', () => seen.length === 51);
      await sleep(100);
      expect(seen).toHaveLength(51);

      // By age: NATS expires in the background, so wait for the topic to empty.
      await t.bus.topics.configure(tenant, 'metrics', { maxBytes: null, maxAgeMs: 100 });
      await sleep(150);
      await t.bus.applyRetention();
      await waitFor('the aged events to go', async () => (await t.bus.read(tenant, 'metrics', { kind: 'earliest' }, 100)).length === 0);
    });

    it('publishes with a state change in one transaction: a rollback leaves no event', async () => {
      const db = t.store.db<unknown>();
      await sql`create table shop_orders_${sql.raw(tenant.replaceAll('-', '_'))} (id integer primary key)`.execute(db);
      const table = sql.raw(`shop_orders_${tenant.replaceAll('-', '_')}`);
      const { seen } = await collect({ tenant, group: 'tx', filter: 'orders.created' });
      await db
        .transaction()
        .execute(async (trx) => {
          await sql`insert into ${table} (id) values (1)`.execute(trx);
          await t.bus.publish(tenant, { topic: 'orders.created', payload: 'rolled back' }, { tx: trx });
          throw new Error('abort');
        })
        .catch(() => undefined);
      await db.transaction().execute(async (trx) => {
        await sql`insert into ${table} (id) values (2)`.execute(trx);
        await t.bus.publish(tenant, { topic: 'orders.created', payload: 'committed' }, { tx: trx });
      });
      await waitFor('the committed event', () => seen.length === 1);
      await sleep(1200);
      expect(seen.map((s) => s.event.payload)).toEqual(['committed']);
      const rows = await sql<{ id: number }>`select id from ${table}`.execute(db);
      expect(rows.rows.map((r) => Number(r.id))).toEqual([2]);
    });
  });

  describe('watching', () => {
    it('follows new events of a pattern without a group', async () => {
      const got: string[] = [];
      const handle = await t.bus.watch(tenant, 'sensors.*', { kind: 'latest' }, (e) => got.push(e.topic));
      handles.push(handle);
      await t.bus.publish(tenant, { topic: 'sensors.a', payload: 1 });
      await t.bus.publish(tenant, { topic: 'other', payload: 2 });
      await t.bus.publish(tenant, { topic: 'sensors.b', payload: 3 });
      await waitFor('two sensor events', () => got.length === 2);
      expect(got).toEqual(['sensors.a', 'sensors.b']);
    });
  });
});

describe('tenant quotas', () => {
  it('answers 429 with Retry-After when a tenant publishes faster than its rate, and not for another tenant', async () => {
    const t = await openTestBus('embedded-sqlite', { quotas: { publishRate: 5, maxBacklog: 0 } });
    try {
      const noisy = uniqueTenant();
      await t.bus.publishBatch(noisy, Array.from({ length: 5 }, () => ({ topic: 'x', payload: 1 })));
      const error = await rejection(t.bus.publish(noisy, { topic: 'x', payload: 1 }));
      expect(error.code).toBe('FLOWGATE_ERR_BUS_QUOTA_EXCEEDED');
      expect(error.status).toBe(429);
      expect(Number(error.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      await expect(t.bus.publish(uniqueTenant(), { topic: 'x', payload: 1 })).resolves.toBeDefined();
    } finally {
      await t.close();
    }
  });

  it('refuses publishing once the tenant backlog reaches its limit', async () => {
    const t = await openTestBus('embedded-sqlite', { quotas: { publishRate: 0, maxBacklog: 10 } });
    try {
      const tenant = uniqueTenant();
      const handle = await t.bus.subscribe({ tenant, group: 'stuck', filter: 'x', manualAck: true, maxInFlight: 1 }, () => undefined);
      await t.bus.publishBatch(tenant, Array.from({ length: 10 }, () => ({ topic: 'x', payload: 1 })));
      await t.bus.sampleLag();
      expect((await rejection(t.bus.publish(tenant, { topic: 'x', payload: 1 }))).code).toBe('FLOWGATE_ERR_BUS_QUOTA_EXCEEDED');
      await handle.close();
    } finally {
      await t.close();
    }
  });
});
