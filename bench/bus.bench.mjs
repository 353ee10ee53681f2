#!/usr/bin/env node
// Event bus benchmark (issue 4). In one run, on this machine:
//   - ceilings: raw better-sqlite3 (WAL, synchronous=FULL) single-row commits and
//     1000-row transactions; raw nats.js JetStream async publish + pull consume with ack;
//   - Flowgate embedded (SQLite): durable publish with 8 concurrent publishers, end to end
//     (published, delivered, acked), and publish→deliver latency at a fixed 5k events/s;
//   - Flowgate on NATS JetStream: the same, when NATS answers at BENCH_NATS_URL.
// Results are informational (never a pass/fail on speed); bench/results/bus.json.
// Env: BENCH_EVENTS (default 50000), BENCH_NATS_URL (default nats://127.0.0.1:4222),
// BENCH_BACKENDS (default "embedded,nats"): a subset only prints, it writes no results file.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import pino from 'pino';

const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'packages/server/dist');
const EVENTS = Number(process.env.BENCH_EVENTS ?? 50_000);
const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'embedded,nats').split(',').map((b) => b.trim());
const PARTIAL = !(BACKENDS.includes('embedded') && BACKENDS.includes('nats'));
const PUBLISHERS = 8;
const WINDOW = 256;
const LATENCY_RATE = 5000;
const LATENCY_SECONDS = 4;
const PAYLOAD = { sensor: 'greenhouse-7', value: 21.5, unit: 'C', note: 'x'.repeat(100) };

const { EmbeddedBusBackend, EventBus } = await import(join(DIST, 'bus/index.js'));
const busIndex = await import(join(DIST, 'bus/index.js'));
const { systemClock } = await import(join(DIST, 'kernel/index.js'));
const { ALL_MIGRATIONS } = await import(join(DIST, 'migrations.js'));
const { openStore } = await import(join(DIST, 'storage/index.js'));
const logger = pino({ level: 'warn' });

const results = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, events: EVENTS, rows: {} };
const tmp = mkdtempSync(join(os.tmpdir(), 'flowgate-bus-bench-'));

function percentile(sorted, p) {
  return sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** EVENTS publishes from PUBLISHERS publishers, each keeping WINDOW of them in flight. */
async function publishWindowed(publishOne) {
  const mine = EVENTS / PUBLISHERS;
  await Promise.all(
    Array.from({ length: PUBLISHERS }, async () => {
      for (let i = 0; i < mine; i += WINDOW) {
        await Promise.all(Array.from({ length: Math.min(WINDOW, mine - i) }, publishOne));
      }
    }),
  );
}

// --- Ceilings -------------------------------------------------------------------------
function rawSqlite() {
  const db = new Database(join(tmp, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('create table e (seq integer primary key autoincrement, body text not null)');
  const insert = db.prepare('insert into e (body) values (?)');
  const body = JSON.stringify({ id: randomBytes(16).toString('hex'), payload: PAYLOAD });
  const singles = Math.min(3000, EVENTS);
  let t0 = performance.now();
  for (let i = 0; i < singles; i++) insert.run(body);
  const commitsPerSec = singles / ((performance.now() - t0) / 1000);
  const batch = db.transaction((n) => {
    for (let i = 0; i < n; i++) insert.run(body);
  });
  t0 = performance.now();
  for (let done = 0; done < EVENTS; done += 1000) batch(1000);
  const rowsPerSec = EVENTS / ((performance.now() - t0) / 1000);
  db.close();
  return { commitsPerSec, rowsPerSec };
}

async function rawNats() {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstream, jetstreamManager, AckPolicy } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: NATS_URL.replace(/^nats:\/\//, '') });
  const jsm = await jetstreamManager(nc);
  const name = `BENCH_${randomBytes(4).toString('hex').toUpperCase()}`;
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  const js = jetstream(nc);
  const data = new TextEncoder().encode(JSON.stringify({ id: randomBytes(16).toString('hex'), payload: PAYLOAD }));
  let t0 = performance.now();
  await publishWindowed(() => js.publish(`${name}.load`, data));
  const publishPerSec = EVENTS / ((performance.now() - t0) / 1000);
  await jsm.consumers.add(name, { durable_name: 'bench', ack_policy: AckPolicy.Explicit });
  const consumer = await js.consumers.get(name, 'bench');
  t0 = performance.now();
  let got = 0;
  const messages = await consumer.consume({ max_messages: 1000 });
  for await (const m of messages) {
    m.ack();
    if (++got === EVENTS) break;
  }
  const consumePerSec = EVENTS / ((performance.now() - t0) / 1000);
  await jsm.streams.delete(name);
  await nc.drain();
  return { publishPerSec, consumePerSec };
}

// --- Flowgate -------------------------------------------------------------------------
async function flowgateRun(label, makeBackend, store) {
  const bus = new EventBus({ backend: await makeBackend(), store, clock: systemClock, logger });
  const tenant = `bench-${randomBytes(3).toString('hex')}`;

  // 1. Durable publish, 8 publishers each keeping WINDOW publishes in flight.
  let t0 = performance.now();
  await publishWindowed(() => bus.publish(tenant, { topic: 'load', payload: PAYLOAD }));
  const publishPerSec = EVENTS / ((performance.now() - t0) / 1000);

  // 1b. Drain: a new group consumes (and acks) that backlog.
  t0 = performance.now();
  let drained = 0;
  let drainedAll;
  const drainDone = new Promise((resolve) => (drainedAll = resolve));
  const drain = await bus.subscribe({ tenant, group: 'drain', filter: 'load', maxInFlight: 1024 }, () => {
    if (++drained === EVENTS) drainedAll();
  });
  await drainDone;
  const drainPerSec = EVENTS / ((performance.now() - t0) / 1000);
  await drain.close();

  // 2. End to end: a new group drains what was published and more published meanwhile.
  t0 = performance.now();
  let consumed = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const sub = await bus.subscribe({ tenant, group: 'e2e', filter: 'e2e', maxInFlight: 1024 }, () => {
    if (++consumed === EVENTS) done();
  });
  await publishWindowed(() => bus.publish(tenant, { topic: 'e2e', payload: PAYLOAD }));
  await finished;
  const endToEndPerSec = EVENTS / ((performance.now() - t0) / 1000);
  await sub.close();

  // 3. Latency at a fixed rate: publish→deliver per event.
  const sentAt = new Map();
  const latencies = [];
  const lat = await bus.subscribe({ tenant, group: 'lat', filter: 'lat', startAt: { kind: 'latest' }, maxInFlight: 1024 }, (event) => {
    const t = sentAt.get(event.payload.n);
    if (t !== undefined) latencies.push(performance.now() - t);
  });
  const total = LATENCY_RATE * LATENCY_SECONDS;
  const tick = 10; // ms; LATENCY_RATE/100 events per tick
  const perTick = (LATENCY_RATE * tick) / 1000;
  let n = 0;
  const start = performance.now();
  while (n < total) {
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * LATENCY_RATE) + perTick);
    while (n < due) {
      const k = n++;
      sentAt.set(k, performance.now());
      void bus.publish(tenant, { topic: 'lat', payload: { n: k } });
    }
    await new Promise((r) => setTimeout(r, tick));
  }
  const until = performance.now() + 30_000;
  while (latencies.length < total && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  await lat.close();
  await bus.close();
  latencies.sort((a, b) => a - b);
  return { label, publishPerSec, drainPerSec, endToEndPerSec, latencyP50Ms: percentile(latencies, 50), latencyP99Ms: percentile(latencies, 99), latencySamples: latencies.length };
}

const sqlite = rawSqlite();
results.rows.rawSqlite = sqlite;
console.log(`raw better-sqlite3: ${sqlite.commitsPerSec.toFixed(0)} commits/s, ${sqlite.rowsPerSec.toFixed(0)} rows/s in 1000-row transactions`);

let nats;
try {
  nats = await rawNats();
  results.rows.rawNats = nats;
  console.log(`raw nats.js JetStream: ${nats.publishPerSec.toFixed(0)} publishes/s, ${nats.consumePerSec.toFixed(0)} acked consumes/s`);
} catch (error) {
  console.log(`raw nats.js JetStream: skipped (${error.message})`);
}

if (BACKENDS.includes('embedded')) {
  const embeddedStore = await openStore({ dataDir: join(tmp, 'embedded') });
  await embeddedStore.migrate(ALL_MIGRATIONS);
  results.rows.embedded = await flowgateRun('embedded (SQLite)', () => new EmbeddedBusBackend({ store: embeddedStore, clock: systemClock, logger }), embeddedStore);
  await embeddedStore.close();
}
const embedded = results.rows.embedded;

if (BACKENDS.includes('nats') && nats && typeof busIndex.connectNatsBusBackend === 'function') {
  const natsStore = await openStore({ dataDir: join(tmp, 'nats') });
  await natsStore.migrate(ALL_MIGRATIONS);
  const prefix = `b${randomBytes(3).toString('hex')}`;
  let backend;
  const natsRow = await flowgateRun(
    'NATS JetStream',
    async () => (backend = await busIndex.connectNatsBusBackend({ url: NATS_URL, clock: systemClock, logger, prefix })),
    natsStore,
  );
  await backend?.destroyAll?.().catch(() => undefined);
  await natsStore.close();
  results.rows.nats = natsRow;
}

// --- Report ---------------------------------------------------------------------------
const fmt = (v, d = 0) => (v === null || v === undefined ? '—' : v.toFixed(d));
const table = [['backend', 'publish ev/s', 'vs ceiling', 'drain ev/s', 'end-to-end ev/s', 'vs ceiling', 'p50 ms', 'p99 ms']];
if (embedded) table.push(['embedded (SQLite)', fmt(embedded.publishPerSec), `${fmt(embedded.publishPerSec / sqlite.rowsPerSec, 2)}× raw sqlite`, fmt(embedded.drainPerSec), fmt(embedded.endToEndPerSec), '', fmt(embedded.latencyP50Ms, 2), fmt(embedded.latencyP99Ms, 2)]);
if (results.rows.nats) {
  const r = results.rows.nats;
  table.push(['NATS JetStream', fmt(r.publishPerSec), `${fmt(r.publishPerSec / nats.publishPerSec, 2)}× raw nats.js`, fmt(r.drainPerSec), fmt(r.endToEndPerSec), `${fmt(r.endToEndPerSec / Math.min(nats.publishPerSec, nats.consumePerSec), 2)}× raw`, fmt(r.latencyP50Ms, 2), fmt(r.latencyP99Ms, 2)]);
}
results.ratios = {
  ...(embedded ? { embeddedPublishVsRawSqliteRows: embedded.publishPerSec / sqlite.rowsPerSec, embeddedPublishVsRawSqliteCommits: embedded.publishPerSec / sqlite.commitsPerSec } : {}),
  ...(nats ? { natsDrainVsRawNatsConsume: results.rows.nats ? results.rows.nats.drainPerSec / nats.consumePerSec : undefined } : {}),
  ...(results.rows.nats && nats ? { natsPublishVsRawNats: results.rows.nats.publishPerSec / nats.publishPerSec } : {}),
};
const widths = table[0].map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
for (const row of table) console.log(row.map((c, i) => String(c).padEnd(widths[i])).join('  '));
console.log(`(latency at ${LATENCY_RATE} events/s for ${LATENCY_SECONDS} s; ${PUBLISHERS} publishers × ${WINDOW} in flight)`);

if (PARTIAL) {
  console.log(`(BENCH_BACKENDS=${BACKENDS.join(',')}: a partial run, bench/results/bus.json left as it was)`);
} else {
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/bus.json'), `${JSON.stringify({ date: new Date().toISOString(), ...results }, null, 2)}\n`);
}
rmSync(tmp, { recursive: true, force: true });
