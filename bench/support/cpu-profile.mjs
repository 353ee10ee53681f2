// Summarizes a .cpuprofile (idle time left out): self time per function, per origin (a
// package, Node internals, or a Flowgate module), each hot function's nearest Flowgate
// caller (what in Flowgate asks for that work), and the inclusive time of Flowgate functions.
import { readFileSync } from 'node:fs';
import { ROOT } from './flowgate-server.mjs';

export function summarizeProfile(file) {
  const self = new Map();
  const byOrigin = new Map();
  const inclusive = new Map();
  const blame = new Map();
  let total = 0;
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const info = new Map();
  const describe = (id) => {
    let d = info.get(id);
    if (d) return d;
    const { callFrame } = nodes.get(id);
    const url = callFrame.url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '');
    const name = `${callFrame.functionName || '(anonymous)'}${url ? ` ${url.replace('packages/server/dist/', '')}:${callFrame.lineNumber + 1}` : ''}`;
    const ours = url.startsWith('packages/');
    const origin = !url
      ? callFrame.functionName.startsWith('(') ? callFrame.functionName : '(native/V8)'
      : url.startsWith('node:')
        ? 'node internals'
        : (/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? (ours ? `flowgate ${url.split('/dist/')[1]?.split('/').slice(0, -1).join('/') ?? url}` : url));
    const up = parent.get(id);
    const stack = up === undefined ? [] : describe(up).stack;
    const ourCaller = ours ? name : up === undefined ? '(none)' : describe(up).ourCaller;
    d = { name, origin, ours, ourCaller, stack: ours && !stack.includes(name) ? [...stack, name] : stack, idle: callFrame.functionName === '(idle)' };
    info.set(id, d);
    return d;
  };
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    const d = describe(profile.samples[i]);
    if (d.idle) continue;
    total += dt;
    self.set(d.name, (self.get(d.name) ?? 0) + dt);
    byOrigin.set(d.origin, (byOrigin.get(d.origin) ?? 0) + dt);
    const key = `${d.name}\n${d.ourCaller}`;
    blame.set(key, (blame.get(key) ?? 0) + dt);
    for (const name of d.stack) inclusive.set(name, (inclusive.get(name) ?? 0) + dt);
  }
  const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, percent: Math.round((us / total) * 1000) / 10, ms: Math.round(us / 1000) }));
  const callers = new Map();
  for (const [key, us] of blame) {
    const [name, caller] = key.split('\n');
    const list = callers.get(name) ?? [];
    list.push({ caller, percent: Math.round((us / total) * 1000) / 10 });
    callers.set(name, list);
  }
  const topFunctions = sorted(self).map((f) => ({ ...f, via: (callers.get(f.name) ?? []).sort((a, b) => b.percent - a.percent).slice(0, 3) }));
  return { busySeconds: total / 1e6, topFunctions, byOrigin: sorted(byOrigin), flowgateInclusive: sorted(inclusive) };
}

export function printProfile(label, summary, file) {
  console.log(`\n${label}: CPU profile of the server (${summary.busySeconds.toFixed(1)} s busy, idle left out; ${file}):`);
  console.log('self time by function (top 25), and the nearest Flowgate caller:');
  for (const f of summary.topFunctions.slice(0, 25)) console.log(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}   <- ${f.via.map((v) => `${v.caller} ${v.percent.toFixed(1)}%`).join(', ')}`);
  console.log('by origin:');
  for (const f of summary.byOrigin.slice(0, 14)) console.log(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}`);
  console.log('Flowgate functions, inclusive (with what they call):');
  for (const f of summary.flowgateInclusive.slice(0, 30)) console.log(`  ${f.percent.toFixed(1).padStart(5)}%  ${f.name}`);
}

/** The SQL statements the event loop waited on longest (better-sqlite3 is synchronous: this is blocked time). */
export function printSql(label, { seconds, statements }) {
  const total = statements.reduce((a, s) => a + s.ms, 0);
  console.log(`${label}: time inside SQLite statements: ${(total / 1000).toFixed(2)} s of ${seconds.toFixed(1)} s (${((total / 1000 / seconds) * 100).toFixed(0)}% of the event loop); top 15:`);
  console.log('     ms/s   calls/s   µs/call  max ms  sql');
  for (const s of statements.slice(0, 15)) {
    console.log(`  ${(s.ms / seconds).toFixed(1).padStart(7)}  ${(s.calls / seconds).toFixed(0).padStart(8)}  ${((s.ms / s.calls) * 1000).toFixed(0).padStart(8)}  ${s.maxMs.toFixed(1).padStart(6)}  ${s.sql}`);
  }
}
