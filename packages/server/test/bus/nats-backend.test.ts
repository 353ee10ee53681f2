/**
 * The NATS JetStream bus backend against a real nats-server (127.0.0.1:4222): each test
 * has its own prefix (so its own streams) and tenant, and deletes its streams afterwards.
 * Nothing here asserts timing: conditions are polled with a generous timeout.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventEnvelope } from '@flowgate/contracts';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
// White-box: the subject layout is the NATS backend's own.
import { BusNames } from '../../src/bus/backends/nats/subjects.js';
import {
  connectNatsBusBackend,
  globFilter,
  regexFilter,
  topicFilter,
  type ConsumerHandle,
  type Delivery,
  type GroupSpec,
  type NatsBusBackend,
  type StoredEvent,
} from '../../src/bus/index.js';
import { systemClock } from '../../src/kernel/index.js';
import { rejection, sleep, uniqueTenant, waitFor } from '../support/bus.js';

const NATS_URL = process.env.FLOWGATE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const silent = pino({ level: 'silent' });

let backend: NatsBusBackend;
let tenant: string;
const handles: ConsumerHandle[] = [];

beforeEach(async () => {
  backend = await connectNatsBusBackend({ url: NATS_URL, clock: systemClock, logger: silent, prefix: `t${randomBytes(4).toString('hex')}` });
  tenant = uniqueTenant();
});
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close()));
  await backend.destroyAll();
  await backend.close();
});

function envelope(topic: string, payload: unknown, key?: string, forTenant = tenant): EventEnvelope {
  return {
    id: randomUUID(),
    headers: {
      name: topic,
      createdAt: new Date().toISOString(),
      serviceName: 'test',
      tenant: forTenant,
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      ...(key === undefined ? {} : { key }),
    },
    payload,
  };
}

function publish(topic: string, payloads: readonly unknown[], key?: string): Promise<StoredEvent[]> {
  return backend.append(payloads.map((p) => ({ tenant, topic, envelope: envelope(topic, p, key) })));
}

function spec(name: string, overrides: Partial<GroupSpec> = {}): GroupSpec {
  return { tenant, name, filter: topicFilter('orders.created'), startAt: { kind: 'earliest' }, ackTimeoutMs: 30_000, maxInFlight: 16, ...overrides };
}

/** Joins a group; the member records its deliveries and, unless told otherwise, acks them. */
async function join(group: GroupSpec, onDelivery?: (d: Delivery) => void) {
  const seen: Delivery[] = [];
  const handle = await backend.consume(group, (d) => {
    seen.push(d);
    if (onDelivery) onDelivery(d);
    else void d.ack();
  });
  handles.push(handle);
  return { seen, handle };
}

const payloadOf = (d: Delivery | StoredEvent) => ('event' in d ? d.event : d).envelope.payload as number;

describe('NATS bus backend', () => {
  it('appends and reads a topic back in order, from a position', async () => {
    const stored = await publish('ticks', Array.from({ length: 25 }, (_, i) => i));
    expect(stored.map((e) => e.seq)).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const all = await backend.read({ tenant, topic: 'ticks', from: { kind: 'earliest' }, limit: 100 });
    expect(all.map(payloadOf)).toEqual(stored.map(payloadOf));
    expect(all.map((e) => e.envelope.id)).toEqual(stored.map((e) => e.envelope.id));
    const some = await backend.read({ tenant, topic: 'ticks', from: { kind: 'seq', seq: 11 }, limit: 5 });
    expect(some.map(payloadOf)).toEqual([10, 11, 12, 13, 14]);
    expect(await backend.read({ tenant, topic: 'ticks', from: { kind: 'latest' }, limit: 10 })).toEqual([]);
    expect(await backend.read({ tenant, topic: 'ticks', from: { kind: 'seq', seq: 26 }, limit: 10 })).toEqual([]);
    expect(await backend.read({ tenant, topic: 'nothing.here', from: { kind: 'earliest' }, limit: 10 })).toEqual([]);
  });

  it('keeps one copy of an event appended twice (the id de-duplicates)', async () => {
    const event = { tenant, topic: 'orders.created', envelope: envelope('orders.created', 1) };
    const [first] = await backend.append([event]);
    const [again] = await backend.append([event]);
    expect(again!.seq).toBe(first!.seq);
    expect(await backend.read({ tenant, topic: 'orders.created', from: { kind: 'earliest' }, limit: 10 })).toHaveLength(1);
  });

  it('gives each event of a group to exactly one of its members', async () => {
    const a = await join(spec('workers', { maxInFlight: 4 }));
    const b = await join(spec('workers', { maxInFlight: 4 }));
    await publish('orders.created', Array.from({ length: 60 }, (_, i) => i));
    await waitFor('60 deliveries', () => a.seen.length + b.seen.length >= 60);
    await sleep(300);
    const all = [...a.seen, ...b.seen].map(payloadOf).sort((x, y) => x - y);
    expect(all).toEqual(Array.from({ length: 60 }, (_, i) => i));
    await waitFor('no lag', async () => (await backend.groups({ tenant }))[0]?.lag[0]?.pending === 0);
  });

  it('shares a group between two processes (two connections)', async () => {
    const other = await connectNatsBusBackend({ url: NATS_URL, clock: systemClock, logger: silent, prefix: backend.prefix });
    try {
      const seen: number[] = [];
      const onEach = (d: Delivery) => {
        seen.push(payloadOf(d));
        void d.ack();
      };
      handles.push(await backend.consume(spec('shared', { maxInFlight: 8 }), onEach));
      const remote = await other.consume(spec('shared', { maxInFlight: 8 }), onEach);
      await publish('orders.created', Array.from({ length: 200 }, (_, i) => i));
      await waitFor('200 deliveries', () => seen.length >= 200);
      await sleep(300);
      expect(seen.sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i));
      await remote.close();
    } finally {
      await other.close();
    }
  });

  it('never holds more than maxInFlight while pulls are queued ahead, and delivers each event once', async () => {
    const open: Delivery[] = [];
    let most = 0;
    const { seen } = await join(spec('window', { maxInFlight: 8 }), (d) => {
      open.push(d);
      most = Math.max(most, open.length);
    });
    await publish('orders.created', Array.from({ length: 300 }, (_, i) => i));
    // Acks in small groups, so capacity comes back a little at a time while pulls are open.
    await waitFor('300 deliveries', async () => {
      await Promise.all(open.splice(0, 3).map((d) => d.ack()));
      return seen.length >= 300;
    });
    await Promise.all(open.splice(0).map((d) => d.ack()));
    await sleep(300);
    expect(most).toBeLessThanOrEqual(8);
    expect(seen.map(payloadOf).sort((x, y) => x - y)).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });

  it('resolves an ack only once the server recorded it, many acks at once included', async () => {
    const held: Delivery[] = [];
    await join(spec('recorded', { maxInFlight: 500 }), (d) => held.push(d));
    await publish('orders.created', Array.from({ length: 400 }, (_, i) => i));
    await waitFor('400 deliveries', () => held.length >= 400);
    await Promise.all(held.map((d) => d.ack()));
    // No polling: once the acks resolved, the group has nothing left.
    expect((await backend.groups({ tenant }))[0]!.lag).toEqual([{ tenant, pending: 0, inFlight: 0 }]);
  });

  it('publishes again to a topic whose stream was deleted behind its back', async () => {
    await publish('orders.created', [1, 2]);
    const nc = await connect({ servers: NATS_URL.replace(/^nats:\/\//, '') });
    try {
      await (await jetstreamManager(nc)).streams.delete(new BusNames(backend.prefix).streamName(tenant, 'orders.created'));
    } finally {
      await nc.close();
    }
    const [again] = await publish('orders.created', [3]);
    expect(again!.seq).toBe(1);
    const left = await backend.read({ tenant, topic: 'orders.created', from: { kind: 'earliest' }, limit: 10 });
    expect(left.map(payloadOf)).toEqual([3]);
  });

  it('redelivers a nacked event with deliveries = 2', async () => {
    const { seen } = await join(spec('retry'), (d) => void (d.deliveries === 1 ? d.nack(0, 'boom') : d.ack()));
    await publish('orders.created', [7]);
    await waitFor('the redelivery', () => seen.length >= 2);
    expect(seen.map((d) => d.deliveries)).toEqual([1, 2]);
    expect(seen.map(payloadOf)).toEqual([7, 7]);
  });

  it('redelivers an event not acked within the ack timeout', async () => {
    const { seen } = await join(spec('slow', { ackTimeoutMs: 300 }), (d) => {
      if (d.deliveries >= 2) void d.ack();
    });
    await publish('orders.created', [1]);
    await waitFor('the redelivery', () => seen.length >= 2);
    expect(seen[1]!.deliveries).toBe(2);
    expect(payloadOf(seen[1]!)).toBe(1);
  });

  it('refuses to join a group with another filter', async () => {
    await join(spec('billing'));
    const error = await rejection(backend.consume(spec('billing', { filter: globFilter('orders.*') }), () => undefined));
    expect(error.code).toBe('FLOWGATE_ERR_BUS_GROUP_CONFLICT');
  });

  it('gives glob and regex groups only matching topics, including topics created later', async () => {
    await publish('orders.created', [1]);
    const glob = await join(spec('globbers', { filter: globFilter('orders.*'), startAt: { kind: 'latest' } }));
    const regex = await join(spec('regexers', { filter: regexFilter('.*\\.failed'), startAt: { kind: 'latest' } }));
    await publish('orders.created', [2]);
    await publish('orders.failed', [3]);
    await publish('payments.failed', [4]);
    await publish('orders.eu.created', [5]);
    await waitFor('the glob group', () => glob.seen.length >= 2);
    await waitFor('the regex group', () => regex.seen.length >= 2);
    await sleep(500);
    expect(glob.seen.map(payloadOf).sort()).toEqual([2, 3]);
    expect(regex.seen.map(payloadOf).sort()).toEqual([3, 4]);
  });

  it('reads every tenant in a platform group', async () => {
    const other = uniqueTenant();
    const platform = await join({ ...spec('audit'), tenant: null, filter: globFilter('audit.**') });
    await backend.append([
      { tenant, topic: 'audit.login', envelope: envelope('audit.login', 1) },
      { tenant: other, topic: 'audit.iam.login', envelope: envelope('audit.iam.login', 2, undefined, other) },
    ]);
    await waitFor('both tenants', () => platform.seen.length >= 2);
    expect(platform.seen.map((d) => d.event.tenant).sort()).toEqual([tenant, other].sort());
  });

  it('replays from the start after a seek to earliest', async () => {
    const { seen } = await join(spec('replay'));
    await publish('orders.created', [1, 2, 3]);
    await waitFor('the first pass', () => seen.length >= 3);
    await backend.seek({ tenant, name: 'replay' }, { kind: 'earliest' });
    await waitFor('the replay', () => seen.length >= 6);
    expect(seen.map(payloadOf)).toEqual([1, 2, 3, 1, 2, 3]);
    await backend.seek({ tenant, name: 'replay' }, { kind: 'latest' });
    await publish('orders.created', [4]);
    await waitFor('the event after the seek to latest', () => seen.length >= 7);
    await sleep(300);
    expect(seen.map(payloadOf).slice(6)).toEqual([4]);
    const missing = await rejection(backend.seek({ tenant, name: 'nope' }, { kind: 'earliest' }));
    expect(missing.code).toBe('FLOWGATE_ERR_RESOURCE_NOT_FOUND');
  });

  it('reports lag per tenant, then none once everything is acked', async () => {
    const held: Delivery[] = [];
    await join(spec('lagging', { maxInFlight: 2 }), (d) => held.push(d));
    await publish('orders.created', [1, 2, 3, 4, 5]);
    await waitFor('two deliveries', () => held.length >= 2);
    await waitFor('lag of 5, 2 in flight', async () => {
      const [state] = await backend.groups({ tenant });
      return state?.lag[0]?.pending === 5 && state.lag[0].inFlight === 2;
    });
    const [state] = await backend.groups({ tenant });
    expect(state).toMatchObject({ tenant, name: 'lagging', filter: 'orders.created', lag: [{ tenant, pending: 5, inFlight: 2 }] });
    const ackAll = async () => {
      for (const d of held.splice(0)) await d.ack();
      return false;
    };
    await waitFor('every event acked', async () => (await ackAll()) || (await backend.groups({ tenant }))[0]?.lag[0]?.pending === 0);
    expect((await backend.groups({ tenant }))[0]!.lag).toEqual([{ tenant, pending: 0, inFlight: 0 }]);
    expect(await backend.deleteGroup({ tenant, name: 'lagging' })).toBe(true);
    expect(await backend.groups({ tenant })).toEqual([]);
    expect(await backend.deleteGroup({ tenant, name: 'lagging' })).toBe(false);
  });

  it('hands what a closing member holds to another member at once', async () => {
    const first = await join(spec('handover', { ackTimeoutMs: 60_000 }), () => undefined);
    await publish('orders.created', [1, 2, 3]);
    await waitFor('the first member holds all three', () => first.seen.length >= 3);
    const second = await join(spec('handover', { ackTimeoutMs: 60_000 }));
    await first.handle.close();
    await waitFor('the second member', () => second.seen.length >= 3);
    expect(second.seen.map(payloadOf).sort()).toEqual([1, 2, 3]);
    expect(second.seen.every((d) => d.deliveries === 2)).toBe(true);
  });

  it('holds back an event whose key is held unacked by the same member', async () => {
    const { seen } = await join(spec('keyed'), () => undefined);
    await publish('orders.created', [1, 2], 'k');
    await publish('orders.created', [3], 'other');
    await waitFor('the first of each key', () => seen.length >= 2);
    await sleep(300);
    expect(seen.map(payloadOf)).toEqual([1, 3]);
    await seen[0]!.ack();
    await waitFor('the second of key k', () => seen.length >= 3);
    expect(payloadOf(seen[2]!)).toBe(2);
  });

  it('watches matching topics from the latest position, new topics included', async () => {
    await publish('metrics.cpu', [0]);
    const events: StoredEvent[] = [];
    handles.push(await backend.watch({ tenant, filter: globFilter('metrics.*'), from: { kind: 'latest' } }, (e) => events.push(e)));
    await publish('metrics.cpu', [1]);
    await publish('metrics.mem', [2]);
    await publish('other.topic', [3]);
    await waitFor('both events', () => events.length >= 2);
    await sleep(300);
    expect(events.map(payloadOf).sort()).toEqual([1, 2]);
  });

  it('trims a topic to its retention', async () => {
    await publish('bulk', Array.from({ length: 50 }, (_, i) => ({ i, pad: 'x'.repeat(200) })));
    const result = await backend.trim({ tenant, topic: 'bulk' }, { maxBytes: 2000 }, Date.now());
    expect(result.deleted).toBeGreaterThan(0);
    const left = await backend.read({ tenant, topic: 'bulk', from: { kind: 'earliest' }, limit: 100 });
    expect(left.length).toBe(50 - result.deleted);
    expect((left.at(-1)!.envelope.payload as { i: number }).i).toBe(49);
  });

  it('says the bus is unavailable, without credentials, when NATS cannot be reached', async () => {
    const error = await rejection(connectNatsBusBackend({ url: 'nats://bob:hunter2@127.0.0.1:1', clock: systemClock, logger: silent }));
    expect(error.code).toBe('FLOWGATE_ERR_BUS_UNAVAILABLE');
    expect(error.message).toContain('127.0.0.1:1');
    expect(error.message).not.toContain('hunter2');
  });
});
