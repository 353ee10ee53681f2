// Runs Flowgate's dist/main.js with profilers the bench switches on and off with SIGUSR2,
// so a profile covers one measured run only, not start-up or set-up:
//   - a CPU profile (node:inspector in this process), written to
//     <BENCH_PROFILE_DIR>/profile-<n>.cpuprofile when switched off (n from 1);
//   - on the embedded store, the time the event loop spends inside each better-sqlite3
//     statement (run/get/all: the statement's work, and for COMMIT its fsync), by SQL text,
//     written to <BENCH_PROFILE_DIR>/sql-<n>.json. The CPU profile cannot say which SQL a
//     native `run` or `all` sample belongs to: kysely calls them from a promise continuation.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { MAIN } from './flowgate-server.mjs';

const session = new Session();
session.connect();
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));

// The same better-sqlite3 module the server loads (resolved from its package).
const Database = createRequire(MAIN)('better-sqlite3');
const sqlTimes = new Map();
let timing = false;
{
  const probe = new Database(':memory:');
  const proto = Object.getPrototypeOf(probe.prepare('select 1'));
  probe.close();
  for (const method of ['run', 'get', 'all']) {
    const original = proto[method];
    proto[method] = function timed(...args) {
      if (!timing) return original.apply(this, args);
      const t0 = performance.now();
      try {
        return original.apply(this, args);
      } finally {
        const ms = performance.now() - t0;
        const key = this.source.replace(/\s+/g, ' ').trim().slice(0, 160);
        const entry = sqlTimes.get(key) ?? { sql: key, calls: 0, ms: 0, maxMs: 0 };
        entry.calls++;
        entry.ms += ms;
        if (ms > entry.maxMs) entry.maxMs = ms;
        sqlTimes.set(key, entry);
      }
    };
  }
}

let profiling = false;
let count = 0;
let started = 0;
process.on('SIGUSR2', async () => {
  if (!profiling) {
    profiling = true;
    sqlTimes.clear();
    timing = true;
    started = performance.now();
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 500 });
    await post('Profiler.start');
  } else {
    profiling = false;
    timing = false;
    const seconds = (performance.now() - started) / 1000;
    const { profile } = await post('Profiler.stop');
    const n = ++count;
    const statements = [...sqlTimes.values()].sort((a, b) => b.ms - a.ms);
    writeFileSync(join(process.env.BENCH_PROFILE_DIR, `sql-${n}.json`), JSON.stringify({ seconds, statements }));
    writeFileSync(join(process.env.BENCH_PROFILE_DIR, `profile-${n}.cpuprofile`), JSON.stringify(profile));
  }
});
await import(MAIN);
