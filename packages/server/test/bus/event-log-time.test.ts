/**
 * The embedded bus finds a time in its log (a group made or moved to a time, a read or a
 * live watch from a time) without an index on the events' stamps: it searches by seq,
 * trusting stamps to be out of seq order by a few seconds at most. These check that the
 * answer is still the first event stamped at or after the time, in a log long enough for
 * the search to probe, with stamps a little out of order and seqs missing (retention).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busMigrations, type BusTables } from '../../src/bus/index.js';
import { EventLog } from '../../src/bus/backends/embedded/event-log.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

const T0 = 1_800_000_000_000;
const EVENTS = 3000;

describe.each(STORE_KINDS)('the embedded log by time on %s', (kind) => {
  let opened: TestStore;
  let log: EventLog;
  /** seq and stamp of every event left, in seq order. */
  let events: Array<{ seq: number; stamp: number }>;

  beforeAll(async () => {
    opened = await openTestStore(kind, { migrations: busMigrations });
    const db = opened.store.db<BusTables>();
    const topic = await db.insertInto('bus_log_topics').values({ tenant_id: 'acme', name: 'orders' }).returning('id').executeTakeFirstOrThrow();
    // One event every 10 ms, every other one stamped 5 s early (a publisher whose clock is behind).
    const rows = Array.from({ length: EVENTS }, (_, i) => ({ topic_id: Number(topic.id), tenant_id: 'acme', event_key: null, created_at: T0 + i * 10 - (i % 2 === 1 ? 5000 : 0), size: 2, body: JSON.stringify({ id: `e${i}`, headers: { createdAt: new Date(T0 + i * 10).toISOString() }, payload: i }) }));
    for (let i = 0; i < rows.length; i += 500) await db.insertInto('bus_log_events').values(rows.slice(i, i + 500)).execute();
    // Retention took a stretch out of the middle.
    const all = await db.selectFrom('bus_log_events').select(['seq', 'created_at']).orderBy('seq').execute();
    const gap = all.slice(1200, 1700).map((r) => Number(r.seq));
    await db.deleteFrom('bus_log_events').where('seq', '>=', gap[0]!).where('seq', '<=', gap.at(-1)!).execute();
    events = all.filter((r) => !gap.includes(Number(r.seq))).map((r) => ({ seq: Number(r.seq), stamp: Number(r.created_at) }));
    log = new EventLog(opened.store);
  });
  afterAll(async () => {
    await opened.cleanup();
  });

  /** What a scan of the whole log answers: the first event, in seq order, stamped at or after `time`. */
  const firstAtOrAfter = (time: number) => events.find((e) => e.stamp >= time);
  const times = [T0 - 60_000, T0 - 5000, T0, T0 + 5, T0 + 3000, T0 + 7000, T0 + 12_000, T0 + 14_000, T0 + 17_000, T0 + 22_000, T0 + 29_990, T0 + 29_995, T0 + 40_000];

  it.each(times.map((t) => [t - T0, t]))('starts a cursor at %i ms just before the first event stamped then or later', async (_offset, time) => {
    const first = firstAtOrAfter(time);
    const last = events.at(-1)!.seq;
    expect(await log.seqBefore({ kind: 'time', time })).toBe(first ? first.seq - 1 : last);
  });

  it.each(times.map((t) => [t - T0, t]))('reads from %i ms the events stamped then or later, in seq order', async (_offset, time) => {
    const read = await log.read({ tenant: 'acme', topic: 'orders', from: { kind: 'time', time }, limit: 5 });
    const expected = events.filter((e) => e.stamp >= time).slice(0, 5).map((e) => e.seq);
    expect(read.map((e) => e.seq)).toEqual(expected);
  });
});
