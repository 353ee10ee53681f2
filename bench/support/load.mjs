// Load drivers and statistics for the benches: autocannon's or wrk's closed loop (the HTTP rows),
// a closed loop whose "answer" is an execution's completion, and a paced open loop.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);

import { sleep } from './flowgate-server.mjs';

export { sleep };

/** Wall-clock time in epoch ms with sub-ms resolution: the same clock as the server's Date.now(). */
export const epochMs = () => performance.timeOrigin + performance.now();

export const percentile = (sorted, p) => (sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]);
export const round = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? null : Number.isFinite(v) ? Math.round(v * 10 ** d) / 10 ** d : v);

/** p50/p90/p99/max of a list of ms values (Infinity counts as "never"). */
export function stats(values) {
  const sorted = Float64Array.from(values).sort();
  return {
    samples: sorted.length,
    p50Ms: round(percentile(sorted, 50), 2),
    p90Ms: round(percentile(sorted, 90), 2),
    p99Ms: round(percentile(sorted, 99), 2),
    maxMs: sorted.length ? round(sorted[sorted.length - 1], 2) : null,
  };
}

/**
 * Closed loop with autocannon: `connections` connections, each sending its next request
 * when the answer to the last one arrived, for `seconds`. Counts 2xx answers; latencies
 * are recorded per answer in fractional ms (autocannon's histogram keeps whole ms).
 */
export async function autocannonLoop(autocannon, { url, method = 'POST', headers, body, connections, seconds }) {
  const lat = [];
  const statuses = {};
  const instance = autocannon({ url, method, headers, body, connections, duration: seconds, pipelining: 1, timeout: 10 });
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
    if (statusCode >= 200 && statusCode < 300) lat.push(responseTime);
  });
  const result = await instance;
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0);
  return { seconds: result.duration, ok: lat.length, reqPerSec: lat.length / result.duration, non2xx: answered - lat.length, errors: result.errors, timeouts: result.timeouts, statuses, ...stats(lat) };
}

/** CPU seconds of this process's children that have exited and been reaped (/proc/self/stat cutime + cstime). */
function reapedChildrenSeconds() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
}

/** wrk's path, or undefined (Debian's package `wrk`). */
export function findWrk() {
  try {
    return execFileSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

// Printed by wrk's done() hook: its HdrHistogram of every answer's latency (µs) and its counts.
const WRK_SCRIPT = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK-RESULT {"requests":%d,"durationUs":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

/**
 * Closed loop with wrk (C, one thread, its own process): `connections` connections, each
 * sending its next request when the answer to the last one arrived, for `seconds` (whole
 * seconds). Latencies come from wrk's histogram (µs). wrk tells answers with status ≥ 400
 * apart from the others but not each status (a Lua `response` hook would, at a cost per
 * answer that would make the load generator the bottleneck), so `statuses` has two classes.
 * `loadCpuSeconds` is wrk's CPU time.
 */
export async function wrkLoop(wrk, { url, method = 'GET', headers = {}, body, connections, seconds }) {
  const dir = mkdtempSync(join(os.tmpdir(), 'flowgate-wrk-'));
  const script = join(dir, 'load.lua');
  const request = [`wrk.method = ${JSON.stringify(method)}`, body === undefined ? '' : `wrk.body = ${JSON.stringify(typeof body === 'string' ? body : JSON.stringify(body))}`].join('\n');
  writeFileSync(script, `${request}\n${WRK_SCRIPT}`);
  const args = ['-t1', `-c${connections}`, `-d${Math.max(1, Math.round(seconds))}s`, '--timeout', '10s', '-s', script];
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  const cpu0 = reapedChildrenSeconds();
  const out = await new Promise((resolve, reject) => {
    const child = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    child.stdout.on('data', (c) => (text += c));
    child.stderr.on('data', (c) => (text += c));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}: ${text.trim().slice(-500)}`))));
  });
  const loadCpuSeconds = reapedChildrenSeconds() - cpu0;
  rmSync(dir, { recursive: true, force: true });
  const line = out.split('\n').find((l) => l.startsWith('WRK-RESULT '));
  if (!line) throw new Error(`wrk printed no result: ${out.trim().slice(-500)}`);
  const r = JSON.parse(line.slice('WRK-RESULT '.length));
  const duration = r.durationUs / 1e6;
  const non2xx = r.status;
  const ok = r.requests - non2xx;
  const ms = (us) => round(us / 1000, 3);
  return {
    seconds: duration,
    ok,
    reqPerSec: ok / duration,
    answered: r.requests,
    non2xx,
    errors: r.connect + r.read + r.write,
    timeouts: r.timeout,
    statuses: { '<400': ok, '>=400': non2xx },
    p50Ms: ms(r.p50Us),
    p90Ms: ms(r.p90Us),
    p99Ms: ms(r.p99Us),
    maxMs: ms(r.maxUs),
    loadCpuSeconds,
  };
}

/** One kept-alive connection that posts JSON and answers {status, body, ms}. */
export function connection(base) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return {
    post(path, payload) {
      return new Promise((resolve) => {
        const t0 = performance.now();
        const data = JSON.stringify(payload);
        const req = http.request(`${base}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('end', () => {
            let body;
            try {
              body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              body = undefined;
            }
            resolve({ status: res.statusCode, body, ms: performance.now() - t0 });
          });
          res.on('error', (error) => resolve({ status: 0, error, ms: performance.now() - t0 }));
        });
        req.on('error', (error) => resolve({ status: 0, error, ms: performance.now() - t0 }));
        req.end(data);
      });
    },
    close: () => agent.destroy(),
  };
}

/**
 * Waits for executions to finish by polling the store (a read-only connection of the
 * bench's own) every `intervalMs` for the ids still waited on. It only paces the closed
 * loop; latencies are taken from the execution records afterwards.
 */
export function completionWatcher(reader, intervalMs = 2) {
  const waiting = new Map();
  let running = true;
  let polls = 0;
  const loop = (async () => {
    while (running) {
      if (waiting.size > 0) {
        polls++;
        const rows = await reader.finished([...waiting.keys()]);
        for (const row of rows) {
          const done = waiting.get(row.id);
          waiting.delete(row.id);
          done?.(row);
        }
      }
      await sleep(intervalMs);
    }
  })();
  return {
    wait: (id) => new Promise((resolve) => waiting.set(id, resolve)),
    get pending() {
      return waiting.size;
    },
    get polls() {
      return polls;
    },
    async close() {
      running = false;
      await loop;
    },
  };
}

/**
 * Closed loop on completion: `connections` senders, each on its own kept-alive connection,
 * posts a webhook, and once it is accepted (202) waits until its execution has finished
 * before posting the next. Runs `warmupSeconds` unrecorded, then `seconds` recorded;
 * answers what was sent when (the measured window is [t0, t1] in epoch ms).
 */
export async function completionLoop({ base, path, connections, warmupSeconds, seconds, watcher, makeBody, onWindow }) {
  const sent = [];
  const failures = { non202: 0, errors: 0, statuses: {} };
  let n = 0;
  let phase = 'warmup';
  let stop = false;
  const conns = Array.from({ length: connections }, () => connection(base));
  const user = async (conn) => {
    while (!stop) {
      const k = n++;
      const body = makeBody(k);
      // Recorded when sent in the measured window (an answer to a warm-up request is not).
      const measured = phase === 'measure';
      const res = await conn.post(path, body);
      if (res.status !== 202) {
        failures.statuses[res.status] = (failures.statuses[res.status] ?? 0) + 1;
        if (res.status === 0) failures.errors++;
        else failures.non202++;
        await sleep(10);
        continue;
      }
      if (measured) sent.push({ id: res.body.execution_id, sent: body.sent, acceptMs: res.ms });
      await watcher.wait(res.body.execution_id);
    }
  };
  const users = conns.map(user);
  await sleep(warmupSeconds * 1000);
  phase = 'measure';
  onWindow?.start();
  const t0 = epochMs();
  await sleep(seconds * 1000);
  const t1 = epochMs();
  onWindow?.stop();
  phase = 'after';
  stop = true;
  await Promise.all(users);
  for (const c of conns) c.close();
  return { t0, t1, sent, failures };
}

/**
 * Open loop at a fixed rate over `connections` kept-alive connections (round-robin):
 * `fire(k, conn)` is called `rate` times a second whatever the answers, so nothing
 * queues in the sender. The first `warmupSeconds` are sent but flagged unrecorded.
 */
export async function pacedLoop({ base, rate, seconds, warmupSeconds, connections, fire, onWindow }) {
  const conns = Array.from({ length: connections }, () => connection(base));
  const inFlight = new Set();
  const pace = async (count, recorded, offset) => {
    const start = performance.now();
    let k = 0;
    while (k < count) {
      const due = Math.min(count, Math.ceil(((performance.now() - start) / 1000) * rate));
      while (k < due) {
        const i = offset + k++;
        const p = fire(i, conns[i % conns.length], recorded);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
      await sleep(1);
    }
  };
  const warm = Math.round(rate * warmupSeconds);
  await pace(warm, false, 0);
  onWindow?.start();
  const t0 = epochMs();
  await pace(Math.round(rate * seconds), true, warm);
  const t1 = epochMs();
  onWindow?.stop();
  await Promise.all([...inFlight]);
  for (const c of conns) c.close();
  return { t0, t1 };
}

// --- CPU accounting from /proc ---------------------------------------------------------
export const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** What the results file says of the machine a run was on. */
export function machineInfo() {
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    loadAverageAtStart: os.loadavg().map((l) => round(l, 2)),
    date: new Date().toISOString(),
  };
}

/** The installed version of a package the benches compare with, or null. */
export function packageVersion(pkg) {
  try {
    return require(`${pkg}/package.json`).version;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used, with its children's when asked. */
export function cpuSeconds(pid, withChildren = false) {
  const read = (p) => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
    } catch {
      return undefined;
    }
  };
  let ticks = read(pid)?.ticks ?? 0;
  if (withChildren) {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const s = read(entry);
      if (s?.ppid === pid) ticks += s.ticks;
    }
  }
  return ticks / CLK_TCK;
}

/** Busy CPU seconds of the whole machine (every core), from /proc/stat. */
export function machineBusySeconds() {
  try {
    const [user, nice, system, , , irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
    return (user + nice + system + irq + softirq + steal) / CLK_TCK;
  } catch {
    return 0;
  }
}

/**
 * The CPU used by the given processes ({name: pid}), by the bench itself (`bench`) and by
 * the rest of the machine (`rest`: other processes, kernel threads, PostgreSQL and NATS)
 * between `start()` and `stop()`, in cores.
 */
export function cpuMeter(procs) {
  let before;
  return {
    start() {
      before = { procs: Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid)])), self: process.cpuUsage(), machine: machineBusySeconds(), t: performance.now() };
    },
    stop() {
      const seconds = (performance.now() - before.t) / 1000;
      const used = Object.fromEntries(Object.entries(procs).map(([k, pid]) => [k, cpuSeconds(pid) - before.procs[k]]));
      const self = process.cpuUsage(before.self);
      used.bench = (self.user + self.system) / 1e6;
      const machineSeconds = machineBusySeconds() - before.machine;
      used.rest = Math.max(0, machineSeconds - Object.values(used).reduce((a, b) => a + b, 0));
      return { seconds: round(seconds, 2), serverCpuSeconds: round(used.server, 3), cores: Object.fromEntries(Object.entries(used).map(([k, s]) => [k, round(s / seconds, 2)])) };
    },
  };
}

/**
 * Waits (up to `maxSeconds`) until the rest of the machine (not this process, not `pids`)
 * is idle (under `threshold` busy cores over a second): other sessions' test runs on a
 * 2-core machine would otherwise decide the result. Answers the busy cores last seen.
 */
export async function waitForQuiet(maxSeconds, pids = [], threshold = 0.25) {
  const until = performance.now() + maxSeconds * 1000;
  const ours = () => pids.reduce((a, pid) => a + cpuSeconds(pid), 0);
  for (;;) {
    const b0 = machineBusySeconds();
    const o0 = ours();
    const self0 = process.cpuUsage();
    await sleep(1000);
    const self = process.cpuUsage(self0);
    const busy = Math.max(0, machineBusySeconds() - b0 - (ours() - o0) - (self.user + self.system) / 1e6);
    if (busy <= threshold || performance.now() > until) return round(busy, 2);
  }
}
