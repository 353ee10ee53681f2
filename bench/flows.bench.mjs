#!/usr/bin/env node
// Flows benchmark (issue 5). In one run, on loopback, Flowgate's built server as a process
// (`node packages/server/dist/main.js`) on each backend, next to the baselines:
//   - ceiling: a plain node:http server answering 202 to the same webhook POSTs, the same load
//     (autocannon, closed loop, BENCH_CONNECTIONS connections): what HTTP on this machine
//     accepts at most;
//   - accept: Flowgate's webhook alone, the same load, on a flow whose first step waits on an
//     upstream that never answers: past the engine's first 256 steps nothing runs, so only
//     the 202 path (an execution, its first step and its event in one transaction) is measured;
//   - executions: a 3-node flow (transform → http POST to a local upstream → publish on the
//     bus), closed loop on completion: BENCH_CONNECTIONS senders each post a webhook and post
//     the next once its execution has finished; completed executions/s and webhook-to-completion
//     latency (the execution record's finished_at minus the time the webhook was sent);
//   - paced: the same flow at a fixed BENCH_RATE (200) webhooks/s, open loop: latency when
//     nothing queues;
//   - backlog: the same flow's upstream stops answering while BENCH_BACKLOG (20 000) webhooks
//     come in, so their http steps queue; then it answers again: how fast the queue drains
//     (completed/s, per second, and as a ratio to the closed loop);
//   - cron: BENCH_CRON_FLOWS (10 000) active flows with a cron trigger with seconds, each
//     firing once a minute, spread so that 1/60 of them fire every second (10 000 flows: ~167
//     firings/s), created and started over the API; firing delay (an execution's creation
//     time minus its tick's due time) over BENCH_CRON_SECONDS.
// Backends: embedded (SQLite + the in-process bus) and postgres (PostgreSQL + NATS JetStream,
// a fresh schema per server, dropped after; the run's NATS streams deleted after).
// Results are informational: timing never fails the run, but a failed request or execution
// makes it INVALID (exit 1). Writes bench/results/flows.json (a BENCH_BACKENDS subset writes
// to the temp dir instead). See bench/README.md, "Flows".
// Env: BENCH_DURATION (s, 10), BENCH_WARMUP (s, 3), BENCH_CONNECTIONS (50), BENCH_RATE (200; 0
// skips), BENCH_RATE_SECONDS (10), BENCH_BACKENDS (embedded,postgres), BENCH_CRON_FLOWS (10000;
// 0 skips), BENCH_CRON_SECONDS (20), BENCH_CRON_EXPRESSION ("spread": flow i gets "<i mod 60>
// * * * * *"; or one expression for all, e.g. "*/1 * * * * *": every flow every second),
// BENCH_CRON_BACKENDS (embedded), BENCH_CRON_SETTLE (s, 120: how long to wait for the bus's
// consumer groups to work off what creating the flows left them before measuring),
// BENCH_QUIET_WAIT (s, 120: before each measured row, wait up to this long for the rest of
// the machine to be idle), BENCH_PG_URL (postgres://127.0.0.1:5432/test),
// BENCH_NATS_URL (nats://127.0.0.1:4222), BENCH_PROFILE (1 = a CPU profile of the server
// during the measured executions run; or a list of phases: executions,paced,backlog,accept,cron),
// BENCH_BACKLOG (20000; 0 skips), BENCH_BACKLOG_TIMEOUT (s, 300).
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { summarizeProfile } from './support/cpu-profile.mjs';
import { api, bootstrapAdmin, createActiveFlow, createTenant, freePort, MAIN, ROOT, scrapeMetrics, sleep, startFlowgate, tail } from './support/flowgate-server.mjs';
import { autocannonLoop, completionLoop, completionWatcher, connection, cpuMeter, epochMs, machineInfo, packageVersion, pacedLoop, round, stats, waitForQuiet } from './support/load.mjs';
import { report } from './support/flows-report.mjs';
import { openReader } from './support/store-reader.mjs';

const CHILDREN = join(import.meta.dirname, 'support/flows-children.mjs');
const DIST = join(ROOT, 'packages/server/dist');

/** The webhook body every row posts (~200 bytes of JSON); `sent` is when it left the bench (epoch ms). */
const makeBody = (n) => ({ n, sent: epochMs(), order: { id: `ord-${n}`, customer: 'c-4711', currency: 'EUR', total: 129.9, items: [{ sku: 'BX-1', qty: 2 }, { sku: 'BX-7', qty: 1 }] } });

await main();

// --- Orchestrator ---------------------------------------------------------------------
async function main() {
  const { default: autocannon } = await import('autocannon');
  const num = (name, def) => {
    const v = Number(process.env[name] ?? def);
    if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number, got ${process.env[name]}`);
    return v;
  };
  const list = (name, def) => (process.env[name] ?? def).split(',').map((s) => s.trim()).filter(Boolean);
  const DURATION = num('BENCH_DURATION', 10);
  const WARMUP = num('BENCH_WARMUP', 3);
  const CONNECTIONS = Math.max(1, num('BENCH_CONNECTIONS', 50));
  const RATE = num('BENCH_RATE', 200);
  const RATE_SECONDS = num('BENCH_RATE_SECONDS', 10);
  const BACKENDS = list('BENCH_BACKENDS', 'embedded,postgres');
  const BACKLOG = Math.floor(num('BENCH_BACKLOG', 20_000));
  const BACKLOG_TIMEOUT = num('BENCH_BACKLOG_TIMEOUT', 300);
  const CRON_FLOWS = Math.floor(num('BENCH_CRON_FLOWS', 10_000));
  const CRON_SECONDS = num('BENCH_CRON_SECONDS', 20);
  const CRON_EXPRESSION = process.env.BENCH_CRON_EXPRESSION ?? 'spread';
  const CRON_BACKENDS = list('BENCH_CRON_BACKENDS', 'embedded').filter((b) => BACKENDS.includes(b));
  const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://127.0.0.1:5432/test';
  // pg takes the user from PGUSER or USER when the URL names none; this shell may set neither.
  if (!new URL(PG_URL).username && !process.env.PGUSER && !process.env.USER) process.env.PGUSER = os.userInfo().username;
  const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
  const CRON_SETTLE = num('BENCH_CRON_SETTLE', 120);
  const QUIET_WAIT = num('BENCH_QUIET_WAIT', 120);
  const PROFILE = process.env.BENCH_PROFILE === '1' ? ['executions'] : list('BENCH_PROFILE', '').filter((p) => p !== '0');
  for (const b of BACKENDS) if (!['embedded', 'postgres'].includes(b)) throw new Error(`BENCH_BACKENDS: unknown backend ${b} (embedded, postgres)`);
  const PARTIAL = !(BACKENDS.includes('embedded') && BACKENDS.includes('postgres'));
  if (!existsSync(MAIN)) {
    console.error('flows bench: packages/server/dist not found; run `npm run build` first (or `npm run bench:flows`).');
    process.exit(1);
  }
  const { nextFiring } = await import(join(DIST, 'flows/cron.js'));

  const tmp = mkdtempSync(join(os.tmpdir(), 'flowgate-flows-bench-'));
  const children = new Set();
  const cleanups = [];
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });
  const notes = [];
  const problems = [];
  const machine = machineInfo();
  const version = packageVersion;
  console.log(`flows bench: ${CONNECTIONS} connections, ${WARMUP} s warm-up + ${DURATION} s per row; ${RATE}/s for ${RATE_SECONDS} s; ${CRON_FLOWS} cron flows (${CRON_EXPRESSION}) for ${CRON_SECONDS} s on ${CRON_BACKENDS.join(',') || 'none'}; backends ${BACKENDS.join(',')}; node ${process.version}, ${machine.cpus} cpus, load ${machine.loadAverageAtStart.join(' ')}`);

  /** Forks support/flows-children.mjs in a role; resolves once it listens. */
  async function forkRole(role) {
    const log = join(tmp, `${role}.log`);
    const fd = openSync(log, 'a');
    const child = fork(CHILDREN, [role], { stdio: ['ignore', fd, fd, 'ipc'] });
    children.add(child);
    const port = await new Promise((resolve, reject) => {
      child.on('message', (m) => m?.type === 'ready' && resolve(m.port));
      child.once('exit', (code) => reject(new Error(`${role} exited (${code}) before it was ready\n${tail(log)}`)));
    });
    let nextId = 0;
    return {
      port,
      pid: child.pid,
      ask(message) {
        const id = ++nextId;
        return new Promise((resolve) => {
          const on = (m) => {
            if (m?.id !== id) return;
            child.off('message', on);
            resolve(m);
          };
          child.on('message', on);
          child.send({ ...message, id });
        });
      },
      async stop() {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
        children.delete(child);
      },
    };
  }

  // --- Profiling: dist/main.js under a profiler switched on and off with SIGUSR2 --------
  const profiles = {};
  const profileDir = join(os.tmpdir(), `flowgate-flows-profiles-${Date.now()}`);
  if (PROFILE.length > 0) mkdirSync(profileDir, { recursive: true });
  async function profiled(srv, phase, label, work) {
    if (!PROFILE.includes(phase)) return work();
    srv.profiles = (srv.profiles ?? 0) + 1;
    const file = join(srv.profileDir, `profile-${srv.profiles}.cpuprofile`);
    srv.child.kill('SIGUSR2');
    await sleep(100);
    try {
      return await work();
    } finally {
      srv.child.kill('SIGUSR2');
      const until = performance.now() + 30_000;
      while (!existsSync(file) && performance.now() < until) await sleep(100);
      await sleep(500);
      try {
        const sqlFile = file.replace(/profile-(\d+)\.cpuprofile$/, 'sql-$1.json');
        const sql = existsSync(sqlFile) ? JSON.parse(readFileSync(sqlFile, 'utf8')) : undefined;
        profiles[`${label} ${phase}`] = { file, summary: summarizeProfile(file), sql };
      } catch (error) {
        notes.push(`profile of ${label} ${phase} not read: ${error.message}`);
      }
    }
  }

  // --- Backends -----------------------------------------------------------------------
  async function reachable(url) {
    const u = new URL(url);
    return new Promise((resolve) => {
      const s = net.connect(Number(u.port), u.hostname);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
      s.setTimeout(2000, () => (s.destroy(), resolve(false)));
    });
  }
  const available = {};
  for (const b of BACKENDS) {
    if (b === 'embedded') available[b] = true;
    else {
      const pg = await reachable(PG_URL);
      const nats = await reachable(NATS_URL);
      available[b] = pg && nats;
      if (!available[b]) notes.push(`postgres backend skipped: ${pg ? '' : `PostgreSQL at ${PG_URL} does not answer; `}${nats ? '' : `NATS at ${NATS_URL} does not answer`}`);
    }
  }

  /** A fresh store for one server: a data dir, plus on postgres a new schema (dropped at the end). */
  async function freshStore(backend, label) {
    const dataDir = join(tmp, `${label}-data`);
    mkdirSync(dataDir, { recursive: true });
    if (backend === 'embedded') return { where: { kind: 'sqlite', dataDir }, env: { FLOWGATE_DATA_DIR: dataDir } };
    const schema = `bench_flows_${randomBytes(4).toString('hex')}`;
    // BENCH_KEEP_SCHEMA=1 leaves it for a look at the records afterwards.
    if (!process.env.BENCH_KEEP_SCHEMA) cleanups.push(async () => {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: PG_URL });
      await client.connect();
      await client.query(`drop schema if exists ${schema} cascade`);
      await client.end();
    });
    return {
      where: { kind: 'postgres', url: PG_URL, schema },
      env: { FLOWGATE_DATA_DIR: dataDir, FLOWGATE_DATABASE_URL: PG_URL, FLOWGATE_DATABASE_SCHEMA: schema, FLOWGATE_BUS_URL: NATS_URL, FLOWGATE_MASTER_KEY: randomBytes(32).toString('base64') },
    };
  }

  /** Deletes the NATS streams of a tenant of this run (its topics' streams are named after it). */
  function dropNatsStreams(tenant) {
    cleanups.push(async () => {
      const { connect } = await import('@nats-io/transport-node');
      const { jetstreamManager } = await import('@nats-io/jetstream');
      const nc = await connect({ servers: NATS_URL.replace(/^nats:\/\//, '') });
      try {
        const jsm = await jetstreamManager(nc);
        const names = [];
        for await (const s of jsm.streams.list()) if (s.config.name.startsWith(`FG_EV_${tenant}__`)) names.push(s.config.name);
        for (const name of names) await jsm.streams.delete(name);
      } finally {
        await nc.close();
      }
    });
  }

  async function server(backend, label) {
    const store = await freshStore(backend, label);
    const { admin, env: adminEnv } = bootstrapAdmin();
    const port = await freePort();
    const profiling = PROFILE.length > 0;
    const serverProfileDir = join(profileDir, label);
    if (profiling) mkdirSync(serverProfileDir, { recursive: true });
    const s = await startFlowgate({
      log: join(tmp, `${label}.log`),
      env: {
        FLOWGATE_HOST: '127.0.0.1',
        FLOWGATE_PORT: String(port),
        FLOWGATE_LOG_LEVEL: 'warn',
        FLOWGATE_OUTBOUND_ALLOW: '127.0.0.1/32',
        ...adminEnv,
        ...store.env,
        ...(profiling ? { BENCH_PROFILE_DIR: serverProfileDir } : {}),
        ...(process.env.PGUSER ? { PGUSER: process.env.PGUSER } : {}),
      },
      ...(profiling ? { script: join(ROOT, 'bench/support/profiled-main.mjs') } : {}),
    });
    children.add(s.child);
    const tenantId = `bench-${randomBytes(3).toString('hex')}`;
    if (backend === 'postgres') dropNatsStreams(tenantId);
    const { token } = await createTenant(s.base, admin, tenantId);
    return { ...s, backend, label, store, tenantId, token, profileDir: serverProfileDir };
  }

  // --- Rows -----------------------------------------------------------------------------
  const upstream = await forkRole('upstream');
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
  const webhookBody = JSON.stringify(makeBody(1));
  const jsonHeaders = { 'content-type': 'application/json' };
  const rows = {};

  async function httpRow(name, url, pid) {
    const busyBefore = await waitForQuiet(QUIET_WAIT, [pid, upstream.pid]);
    if (WARMUP > 0) await autocannonLoop(autocannon, { url, headers: jsonHeaders, body: webhookBody, connections: CONNECTIONS, seconds: WARMUP });
    const meter = cpuMeter({ server: pid, upstream: upstream.pid });
    meter.start();
    const run = await autocannonLoop(autocannon, { url, headers: jsonHeaders, body: webhookBody, connections: CONNECTIONS, seconds: DURATION });
    const cpu = meter.stop();
    if (run.non2xx + run.errors > 0) problems.push(`${name}: ${run.non2xx} non-2xx answers, ${run.errors} errors (${JSON.stringify(run.statuses)})`);
    const row = { busyCoresBefore: busyBefore, reqPerSec: round(run.reqPerSec, 0), answered: run.ok, p50Ms: run.p50Ms, p99Ms: run.p99Ms, maxMs: run.maxMs, non2xx: run.non2xx, errors: run.errors, cpu, serverCpuUsPerRequest: round((cpu.serverCpuSeconds / run.ok) * 1e6, 0) };
    console.log(`  ${name}: ${row.reqPerSec} req/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms (server ${cpu.cores.server} cores)`);
    return row;
  }

  /** Latencies from the execution records: finished_at − sent, and the upstream's arrival − sent. */
  async function completionStats(reader, flowId, sent, arrivals) {
    const records = new Map((await reader.executionsOf(flowId)).map((r) => [r.id, r]));
    const total = [];
    const toCall = [];
    const statuses = {};
    for (const s of sent) {
      const r = records.get(s.id);
      statuses[r?.status ?? 'missing'] = (statuses[r?.status ?? 'missing'] ?? 0) + 1;
      if (r?.status === 'succeeded') total.push(r.finished_at - s.sent);
      const at = arrivals.get(s.id);
      if (at !== undefined) toCall.push(at - s.sent);
    }
    return { records, statuses, completion: stats(total), toHttpStep: stats(toCall), accept: stats(sent.map((s) => s.acceptMs)) };
  }

  async function arrivalsMap() {
    return new Map((await upstream.ask({ type: 'arrivals' })).arrivals);
  }

  async function waitFinished(reader, ids, timeoutMs = 120_000) {
    const left = new Set(ids);
    const until = performance.now() + timeoutMs;
    while (left.size > 0 && performance.now() < until) {
      const batch = [...left].slice(0, 500);
      for (const r of await reader.finished(batch)) left.delete(r.id);
      if (left.size > 0) await sleep(50);
    }
    return left.size;
  }

  const pipeline = (upstreamPath = '/echo', name = 'bench-pipeline') => ({
    name,
    triggers: [{ type: 'webhook' }],
    nodes: [
      { id: 'shape', component: 'transform', config: { expression: '{"n": body.n, "sent": body.sent, "order": body.order.id, "total": body.order.total}' } },
      { id: 'call', component: 'http', config: { method: 'POST', url: `${upstreamUrl}${upstreamPath}`, body: { n: '{{ n }}', order: '{{ order }}', execution: '{{ $execution.id }}' } } },
      { id: 'announce', component: 'publish', config: { topic: 'bench.orders.checked', payload: { execution: '{{ $execution.id }}', stock: '{{ body.stock }}' } } },
    ],
    edges: [
      { from: 'shape', to: 'call' },
      { from: 'call', to: 'announce' },
    ],
    settings: { retries: { count: 2, backoffMs: 100 } },
  });
  const intake = () => ({
    name: 'bench-intake',
    triggers: [{ type: 'webhook' }],
    nodes: [{ id: 'held', component: 'http', timeoutMs: 3_600_000, config: { method: 'POST', url: `${upstreamUrl}/hold` } }],
    settings: { retries: { count: 0 } },
  });

  async function flowRows(backend) {
    const label = backend;
    const srv = await server(backend, label);
    const reader = await openReader(srv.store.where);
    const out = {};
    try {
      const pipelineId = await createActiveFlow(srv.base, srv.token, pipeline());
      const intakeId = await createActiveFlow(srv.base, srv.token, intake());
      const path = `/hook/${pipelineId}`;
      // One execution first: the flow works end to end, or the run stops here.
      const check = await api(srv.base, 'POST', path, srv.token, makeBody(0));
      if ((await waitFinished(reader, [check.execution_id], 30_000)) > 0) throw new Error(`${label}: the check execution did not finish`);
      const [checked] = await reader.finished([check.execution_id]);
      if (checked.status !== 'succeeded') throw new Error(`${label}: the check execution ${checked.status}: ${JSON.stringify(await api(srv.base, 'GET', `/api/v1/executions/${check.execution_id}`, srv.token)).slice(0, 1500)}`);
      await arrivalsMap();

      // Completed executions/s: closed loop on completion.
      const busyBefore = await waitForQuiet(QUIET_WAIT, [srv.pid, upstream.pid]);
      process.stdout.write(`  ${label} executions (closed loop on completion, ${CONNECTIONS} in flight) ... `);
      const meter = cpuMeter({ server: srv.pid, upstream: upstream.pid });
      const watcher = completionWatcher(reader);
      let cpu;
      const loop = await profiled(srv, 'executions', label, () =>
        completionLoop({ base: srv.base, path, connections: CONNECTIONS, warmupSeconds: WARMUP, seconds: DURATION, watcher, makeBody, onWindow: { start: () => meter.start(), stop: () => (cpu = meter.stop()) } }),
      );
      await watcher.close();
      const seconds = (loop.t1 - loop.t0) / 1000;
      const { records, statuses, completion, toHttpStep, accept } = await completionStats(reader, pipelineId, loop.sent, await arrivalsMap());
      let completedInWindow = 0;
      let failedInWindow = 0;
      for (const r of records.values()) {
        if (r.finished_at === null || r.finished_at < loop.t0 || r.finished_at > loop.t1) continue;
        if (r.status === 'succeeded') completedInWindow++;
        else failedInWindow++;
      }
      if (loop.failures.non202 + loop.failures.errors > 0) problems.push(`${label} executions: ${loop.failures.non202} non-202 answers, ${loop.failures.errors} errors (${JSON.stringify(loop.failures.statuses)})`);
      if (failedInWindow > 0 || (statuses.succeeded ?? 0) !== loop.sent.length) problems.push(`${label} executions: not every execution succeeded: ${JSON.stringify(statuses)}`);
      out.executions = {
        busyCoresBefore: busyBefore,
        completedPerSec: round(completedInWindow / seconds, 0),
        completed: completedInWindow,
        acceptedPerSec: round(loop.sent.length / seconds, 0),
        statuses,
        latency: completion,
        toHttpStep,
        accept202: accept,
        cpu,
        serverCpuMsPerExecution: round((cpu.serverCpuSeconds / completedInWindow) * 1000, 2),
        watcherPolls: watcher.polls,
      };
      console.log(`${out.executions.completedPerSec} completed/s; webhook→completion p50 ${completion.p50Ms} ms, p99 ${completion.p99Ms} ms (server ${cpu.cores.server} cores, ${out.executions.serverCpuMsPerExecution} ms CPU per execution)`);

      // Latency at a fixed pace: open loop, nothing queues in the sender.
      if (RATE > 0 && RATE_SECONDS > 0) {
        const pacedBusyBefore = await waitForQuiet(QUIET_WAIT, [srv.pid, upstream.pid]);
        process.stdout.write(`  ${label} paced (${RATE}/s for ${RATE_SECONDS} s) ... `);
        const sent = [];
        const failures = { non202: 0, errors: 0 };
        const pmeter = cpuMeter({ server: srv.pid, upstream: upstream.pid });
        let pcpu;
        const paced = await profiled(srv, 'paced', label, () =>
          pacedLoop({
            base: srv.base,
            rate: RATE,
            seconds: RATE_SECONDS,
            warmupSeconds: Math.min(WARMUP, 2),
            connections: CONNECTIONS,
            onWindow: { start: () => pmeter.start(), stop: () => (pcpu = pmeter.stop()) },
            fire: async (k, conn, recorded) => {
              const body = makeBody(k);
              const res = await conn.post(path, body);
              if (res.status !== 202) {
                if (res.status === 0) failures.errors++;
                else failures.non202++;
              } else if (recorded) sent.push({ id: res.body.execution_id, sent: body.sent, acceptMs: res.ms });
            },
          }),
        );
        const unfinished = await waitFinished(reader, sent.map((s) => s.id));
        const { statuses: ps, completion: pc, toHttpStep: ph, accept: pa } = await completionStats(reader, pipelineId, sent, await arrivalsMap());
        if (failures.non202 + failures.errors > 0) problems.push(`${label} paced: ${failures.non202} non-202 answers, ${failures.errors} errors`);
        if (unfinished > 0 || (ps.succeeded ?? 0) !== sent.length) problems.push(`${label} paced: not every execution succeeded (${unfinished} unfinished): ${JSON.stringify(ps)}`);
        const { records: pr } = await completionStats(reader, pipelineId, [], new Map());
        const finishedInWindow = [...pr.values()].filter((r) => r.finished_at !== null && r.finished_at >= paced.t0 && r.finished_at <= paced.t1).length;
        const unfinishedAtEnd = sent.filter((x) => !(pr.get(x.id)?.finished_at <= paced.t1)).length;
        out.paced = { busyCoresBefore: pacedBusyBefore, rate: RATE, seconds: RATE_SECONDS, executions: sent.length, completedPerSec: round(finishedInWindow / ((paced.t1 - paced.t0) / 1000), 0), unfinishedAtEnd, statuses: ps, latency: pc, toHttpStep: ph, accept202: pa, cpu: pcpu };
        if (out.paced.completedPerSec < 0.95 * RATE) notes.push(`${label} paced: the server completed ${out.paced.completedPerSec} executions/s while ${RATE}/s came in (${unfinishedAtEnd} unfinished when sending stopped): it did not keep up, so this latency is mostly queueing`);
        console.log(`${out.paced.completedPerSec} completed/s; webhook→completion p50 ${pc.p50Ms} ms, p99 ${pc.p99Ms} ms (202 answered: p50 ${pa.p50Ms} ms, p99 ${pa.p99Ms} ms)`);
      }

      // A backlog: the flow's upstream stops answering (its calls are held open), BENCH_BACKLOG
      // webhooks come in meanwhile, and past the engine's in-flight room their http steps
      // queue as ready; then the upstream answers again, and the bench measures how fast the
      // engine works the queue off, from that moment until the last execution has finished.
      // What a user sees after an outage of a service their flows call.
      if (BACKLOG > 0) {
        const gatedId = await createActiveFlow(srv.base, srv.token, pipeline('/gate', 'bench-gated'));
        const gatedPath = `/hook/${gatedId}`;
        await upstream.ask({ type: 'gate', open: false });
        process.stdout.write(`  ${label} backlog (${BACKLOG} executions queued behind an upstream outage, then drained) ... `);
        const sent = [];
        const failures = { non202: 0, errors: 0 };
        const conns = Array.from({ length: CONNECTIONS }, () => connection(srv.base));
        let next = 0;
        const intakeStart = epochMs();
        await Promise.all(
          conns.map(async (conn) => {
            while (next < BACKLOG) {
              const body = makeBody(next++);
              const res = await conn.post(gatedPath, body);
              if (res.status === 202) sent.push({ id: res.body.execution_id, sent: body.sent, acceptMs: res.ms });
              else if (res.status === 0) failures.errors++;
              else failures.non202++;
            }
          }),
        );
        const intakeSeconds = (epochMs() - intakeStart) / 1000;
        for (const c of conns) c.close();
        // Until every transform step has run and only http steps wait: the queue is built.
        let queued = await reader.openSteps();
        for (let i = 0; i < 600 && (queued.ready ?? 0) + (queued.running ?? 0) + (queued.waiting ?? 0) !== sent.length; i++) {
          await sleep(50);
          queued = await reader.openSteps();
        }
        const backlogBusyBefore = await waitForQuiet(QUIET_WAIT, [srv.pid, upstream.pid]);
        const bmeter = cpuMeter({ server: srv.pid, upstream: upstream.pid });
        let bcpu;
        let opened = 0;
        await profiled(srv, 'backlog', label, async () => {
          bmeter.start();
          opened = epochMs();
          await upstream.ask({ type: 'gate', open: true });
          await waitFinished(reader, sent.map((x) => x.id), BACKLOG_TIMEOUT * 1000);
          bcpu = bmeter.stop();
        });
        const { records, statuses } = await completionStats(reader, gatedId, sent, new Map());
        const finishes = sent.map((x) => records.get(x.id)?.finished_at).filter((f) => typeof f === 'number').sort((x, y) => x - y);
        const unfinished = sent.length - finishes.length;
        const last = finishes.at(-1) ?? opened;
        const drainSeconds = (last - opened) / 1000;
        // Completions in each whole second after the upstream came back: a drain that slows
        // while the queue is long, or speeds up as it shortens, shows here.
        const perSecond = [];
        for (const f of finishes) {
          const at = Math.max(0, Math.floor((f - opened) / 1000));
          perSecond[at] = (perSecond[at] ?? 0) + 1;
        }
        if (failures.non202 + failures.errors > 0) problems.push(`${label} backlog: ${failures.non202} non-202 answers, ${failures.errors} errors`);
        if (unfinished > 0 || (statuses.succeeded ?? 0) !== sent.length) problems.push(`${label} backlog: not every execution succeeded (${unfinished} unfinished after ${BACKLOG_TIMEOUT} s): ${JSON.stringify(statuses)}`);
        out.backlog = {
          busyCoresBefore: backlogBusyBefore,
          executions: sent.length,
          intakeSeconds: round(intakeSeconds, 2),
          openStepsWhenUpstreamBack: queued,
          drainSeconds: round(drainSeconds, 2),
          completedPerSec: round(finishes.length / drainSeconds, 0),
          ratioToClosedLoop: round(finishes.length / drainSeconds / out.executions.completedPerSec, 2),
          completionsPerSecond: Array.from(perSecond, (n) => n ?? 0),
          unfinished,
          statuses,
          cpu: bcpu,
          serverCpuMsPerExecution: round((bcpu.serverCpuSeconds / finishes.length) * 1000, 2),
        };
        console.log(
          `queued ${JSON.stringify(queued)} after ${out.backlog.intakeSeconds} s of webhooks; drained in ${out.backlog.drainSeconds} s: ${out.backlog.completedPerSec} completed/s (${out.backlog.ratioToClosedLoop}× the closed loop, ${out.backlog.serverCpuMsPerExecution} ms CPU per execution); per second: ${out.backlog.completionsPerSecond.join(' ')}`,
        );
      }

      // Flowgate's webhook accept rate alone: the intake flow's steps never finish, so past the
      // engine's first maxInFlight (256) of them it claims nothing and runs nothing.
      out.accept = await profiled(srv, 'accept', label, () => httpRow(`${label} webhook accept alone`, `${srv.base}/hook/${intakeId}`, srv.pid));
      out.accept.openStepsAfter = await reader.openSteps();
      const intakeStatuses = {};
      for (const r of await reader.executionsOf(intakeId)) intakeStatuses[r.status] = (intakeStatuses[r.status] ?? 0) + 1;
      out.accept.executionStatuses = intakeStatuses;
      if (Object.keys(intakeStatuses).some((k) => k !== 'running')) problems.push(`${label} accept: the intake flow's executions should all still run: ${JSON.stringify(intakeStatuses)}`);
      await upstream.ask({ type: 'release' });
    } finally {
      await reader.close();
      await srv.stop();
    }
    return out;
  }

  // --- Cron -------------------------------------------------------------------------------
  async function cronRow(backend) {
    const label = `${backend}-cron`;
    const srv = await server(backend, label);
    const reader = await openReader(srv.store.where);
    try {
      const expressionOf = (i) => (CRON_EXPRESSION === 'spread' ? `${i % 60} * * * * *` : CRON_EXPRESSION);
      const definition = (i) => ({
        name: `cron-${String(i).padStart(5, '0')}`,
        triggers: [{ type: 'cron', expression: expressionOf(i) }],
        nodes: [{ id: 'tick', component: 'transform', config: { expression: '{"at": metadata.scheduled_at}' } }],
      });
      // Over the API, as an operator would, CONCURRENCY requests at a time: all the flows
      // first, then every start (each start goes through the lifecycle: flow.starting on the
      // bus, four parts answering, flow.started), then wait until every schedule is active.
      const CONCURRENCY = 16;
      const inParallel = async (count, work) => {
        let next = 0;
        await Promise.all(
          Array.from({ length: CONCURRENCY }, async () => {
            while (next < count) await work(next++);
          }),
        );
      };
      process.stdout.write(`  ${label}: ${CRON_FLOWS} flows: creating ... `);
      const ids = new Array(CRON_FLOWS);
      let t = performance.now();
      await inParallel(CRON_FLOWS, async (i) => (ids[i] = (await api(srv.base, 'POST', '/api/v1/flows', srv.token, definition(i))).id));
      const createMs = performance.now() - t;
      process.stdout.write(`${round(createMs / 1000, 1)} s; starting ... `);
      t = performance.now();
      await inParallel(CRON_FLOWS, (i) => api(srv.base, 'POST', `/api/v1/flows/${ids[i]}/start`, srv.token));
      const startMs = performance.now() - t;
      let active = 0;
      const activeUntil = performance.now() + 20 * 60_000;
      while ((active = await reader.activeSchedules()) < CRON_FLOWS && performance.now() < activeUntil) await sleep(200);
      const activeMs = performance.now() - t;
      console.log(`${round(startMs / 1000, 1)} s; all ${active} schedules active ${round(activeMs / 1000, 1)} s after the first start`);
      if (active < CRON_FLOWS) problems.push(`${label}: only ${active} of ${CRON_FLOWS} cron schedules became active`);

      // Creating and starting 10k flows in a few minutes leaves the bus's consumer groups
      // (the audit log's above all) a backlog to work through; the firing delay is measured
      // once it is gone (the groups' lag, from /metrics), as in steady operation. How big it
      // was and how long it took is reported.
      process.stdout.write(`  ${label}: waiting for the bus's consumer groups to catch up ... `);
      const lagOf = async () => {
        const byGroup = {};
        for (const [k, v] of Object.entries(await scrapeMetrics(srv.base, 'flowgate_bus_consumer_lag'))) {
          const group = /group="([^"]*)"/.exec(k)?.[1] ?? k;
          byGroup[group] = (byGroup[group] ?? 0) + v;
        }
        return byGroup;
      };
      const settleStart = performance.now();
      // The gauge is sampled every 5 s (FLOWGATE's bus.lagIntervalMs): quiet means under 50
      // events behind in four looks 2 s apart, so at least one fresh sample says so.
      let lagAtActive = await lagOf();
      let quiet = 0;
      while (quiet < 4 && performance.now() - settleStart < CRON_SETTLE * 1000) {
        await sleep(2000);
        const lag = await lagOf();
        if (Object.keys(lagAtActive).length === 0) lagAtActive = lag;
        const total = Object.values(lag).reduce((a, b) => a + b, 0);
        quiet = Object.keys(lag).length > 0 && total < 50 ? quiet + 1 : 0;
      }
      const settleMs = performance.now() - settleStart;
      const lagAfterSettle = await lagOf();
      const settled = quiet >= 4;
      console.log(`${settled ? '' : 'NOT caught up, gave up after '}${round(settleMs / 1000, 1)} s (lag when every schedule was active: ${JSON.stringify(lagAtActive)}; now: ${JSON.stringify(lagAfterSettle)})`);
      if (!settled) notes.push(`${label}: the bus's consumer groups had not caught up ${CRON_SETTLE} s after the flows were active (lag ${JSON.stringify(lagAtActive)} then, ${JSON.stringify(lagAfterSettle)} when the firing delay was measured): the delay is measured with that backlog being worked off`);

      const busyBefore = await waitForQuiet(QUIET_WAIT, [srv.pid, upstream.pid]);
      await sleep(WARMUP * 1000);
      const metricsBefore = await scrapeMetrics(srv.base, 'flowgate_flow_cron');
      // Ticks are due on whole seconds: the window starts on the next one.
      const w0 = Math.ceil(epochMs() / 1000) * 1000 + 1000;
      const w1 = w0 + CRON_SECONDS * 1000;
      await sleep(w0 - epochMs());
      const meter = cpuMeter({ server: srv.pid });
      let cpu;
      await profiled(srv, 'cron', label, async () => {
        meter.start();
        await sleep(w1 - epochMs());
        cpu = meter.stop();
      });
      // Late firings of ticks due in the window still count, up to a grace period.
      const GRACE_MS = 5000;
      await sleep(GRACE_MS);
      const metricsAfter = await scrapeMetrics(srv.base, 'flowgate_flow_cron');
      const openSteps = await reader.openSteps();
      const fired = await reader.cronExecutions(w0 - 60_000);
      // The ticks due in the window, per expression.
      const dueCount = new Map();
      for (let i = 0; i < CRON_FLOWS; i++) {
        const expr = expressionOf(i);
        if (!dueCount.has(expr)) {
          let n = 0;
          for (let t = nextFiring(expr, 'UTC', w0 - 1); t !== null && t < w1; t = nextFiring(expr, 'UTC', t)) n++;
          dueCount.set(expr, n);
        }
      }
      let expected = 0;
      for (let i = 0; i < CRON_FLOWS; i++) expected += dueCount.get(expressionOf(i));
      const delays = [];
      for (const r of fired) {
        const due = Number(String(r.idempotency_key).split(':')[2]);
        if (due >= w0 && due < w1) delays.push(r.created_at - due);
      }
      const firedInTime = delays.length;
      // Ticks not fired within the grace period count as never fired.
      for (let i = firedInTime; i < expected; i++) delays.push(Infinity);
      const missedDelta = Object.entries(metricsAfter)
        .filter(([k]) => k.startsWith('flowgate_flow_cron_missed_total'))
        .reduce((a, [k, v]) => a + v - (metricsBefore[k] ?? 0), 0);
      const row = {
        flows: CRON_FLOWS,
        expression: CRON_EXPRESSION === 'spread' ? '"<i mod 60> * * * * *" (each flow once a minute)' : CRON_EXPRESSION,
        createSeconds: round(createMs / 1000, 1),
        flowsCreatedPerSec: round(CRON_FLOWS / (createMs / 1000), 0),
        startRequestsSeconds: round(startMs / 1000, 1),
        allActiveSeconds: round(activeMs / 1000, 1),
        flowsActivatedPerSec: round(CRON_FLOWS / (activeMs / 1000), 0),
        busLagWhenActive: lagAtActive,
        busSettled: settled,
        busSettleSeconds: round(settleMs / 1000, 1),
        busLagAtMeasurement: lagAfterSettle,
        busyCoresBefore: busyBefore,
        windowSeconds: CRON_SECONDS,
        ticksDue: expected,
        firedPerSec: round(firedInTime / CRON_SECONDS, 0),
        fired: firedInTime,
        notFiredWithinGrace: expected - firedInTime,
        missedTicksReported: missedDelta,
        delay: stats(delays),
        openStepsAfter: openSteps,
        cpu,
      };
      if (row.notFiredWithinGrace > 0) notes.push(`${label}: ${row.notFiredWithinGrace} of ${expected} ticks due in the window were not fired within ${GRACE_MS / 1000} s (counted as never in the percentiles); the scheduler reported ${missedDelta} missed ticks`);
      console.log(`  ${label}: ${expected} ticks due in ${CRON_SECONDS} s, ${firedInTime} fired (${row.firedPerSec}/s); delay p50 ${row.delay.p50Ms} ms, p99 ${row.delay.p99Ms} ms, max ${row.delay.maxMs} ms (server ${cpu.cores.server} cores; steps left open: ${JSON.stringify(openSteps)})`);
      return row;
    } finally {
      await reader.close();
      await srv.stop(30_000);
    }
  }

  // --- Run ----------------------------------------------------------------------------------
  try {
    const ceiling = await forkRole('ceiling');
    rows.ceiling = await httpRow('ceiling: node:http answering 202', `http://127.0.0.1:${ceiling.port}/hook/x`, ceiling.pid);
    await ceiling.stop();
    for (const backend of BACKENDS) {
      if (!available[backend]) continue;
      rows[backend] = await flowRows(backend);
    }
    if (CRON_FLOWS > 0 && CRON_SECONDS > 0) {
      for (const backend of CRON_BACKENDS) {
        if (!available[backend]) continue;
        rows[backend] = { ...rows[backend], cron: await cronRow(backend) };
      }
    }
  } finally {
    await upstream.stop().catch(() => undefined);
    for (const cleanup of cleanups) await cleanup().catch((error) => notes.push(`clean-up failed: ${error.message}`));
  }
  report({ rows, machine, notes, problems, profiles, PARTIAL, tmp, settings: { DURATION, WARMUP, CONNECTIONS, RATE, RATE_SECONDS, BACKLOG, BACKENDS, CRON_FLOWS, CRON_SECONDS, CRON_EXPRESSION, CRON_BACKENDS, PG_URL, NATS_URL, autocannon: version('autocannon') } });
}

