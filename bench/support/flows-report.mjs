// The flows bench's report: the printed table, the issue's targets, the results file.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { printProfile, printSql } from './cpu-profile.mjs';
import { ROOT } from './flowgate-server.mjs';
import { round } from './load.mjs';

export function report({ rows, machine, notes, problems, profiles, PARTIAL, tmp, settings }) {
  const fmt = (v, d = 0) => (v === null || v === undefined ? '—' : Number.isFinite(v) ? v.toFixed(d) : 'never');
  const ceiling = rows.ceiling.reqPerSec;
  const table = [['row', 'per s', '× ceiling', '× accept', 'p50 ms', 'p99 ms', 'server cores', 'server CPU/unit']];
  table.push(['ceiling: node:http 202', fmt(ceiling), '1.00', '', fmt(rows.ceiling.p50Ms, 2), fmt(rows.ceiling.p99Ms, 2), fmt(rows.ceiling.cpu.cores.server, 2), `${fmt(rows.ceiling.serverCpuUsPerRequest)} µs/req`]);
  const backends = settings.BACKENDS.filter((b) => rows[b]?.executions || rows[b]?.cron);
  for (const b of backends) {
    const r = rows[b];
    const name = b === 'embedded' ? 'embedded (SQLite)' : 'postgres + NATS';
    if (r.accept) table.push([`${name}: webhook accept alone`, fmt(r.accept.reqPerSec), fmt(r.accept.reqPerSec / ceiling, 2), '1.00', fmt(r.accept.p50Ms, 2), fmt(r.accept.p99Ms, 2), fmt(r.accept.cpu.cores.server, 2), `${fmt(r.accept.serverCpuUsPerRequest)} µs/req`]);
    if (r.executions) {
      const e = r.executions;
      e.ratioToCeiling = round(e.completedPerSec / ceiling, 3);
      if (r.accept) e.ratioToAccept = round(e.completedPerSec / r.accept.reqPerSec, 3);
      table.push([`${name}: completed executions`, fmt(e.completedPerSec), fmt(e.ratioToCeiling, 2), fmt(e.ratioToAccept, 2), fmt(e.latency.p50Ms, 1), fmt(e.latency.p99Ms, 1), fmt(e.cpu.cores.server, 2), `${fmt(e.serverCpuMsPerExecution, 2)} ms/exec`]);
    }
    if (r.paced) table.push([`${name}: at ${r.paced.rate} executions/s`, fmt(r.paced.rate), '', '', fmt(r.paced.latency.p50Ms, 1), fmt(r.paced.latency.p99Ms, 1), fmt(r.paced.cpu.cores.server, 2), '']);
    if (r.backlog) table.push([`${name}: ${r.backlog.executions} queued, drained`, fmt(r.backlog.completedPerSec), fmt(r.backlog.completedPerSec / ceiling, 3), '', '', '', fmt(r.backlog.cpu.cores.server, 2), `${fmt(r.backlog.serverCpuMsPerExecution, 2)} ms/exec`]);
    if (r.cron) table.push([`${name}: ${r.cron.flows} cron flows, firing delay`, `${fmt(r.cron.firedPerSec)} fired`, '', '', fmt(r.cron.delay.p50Ms, 1), fmt(r.cron.delay.p99Ms, 1), fmt(r.cron.cpu.cores.server, 2), '']);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
  console.log('');
  for (const row of table) console.log(row.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '));
  console.log(`(${settings.CONNECTIONS} connections, ${settings.DURATION} s after ${settings.WARMUP} s warm-up; latency of the flow rows: webhook sent → execution finished_at; of the HTTP rows: the answer)`);
  console.log('reference: n8n publishes ~220 executions/s for one instance (its own benchmark, other hardware and flows).');
  // How busy the rest of the machine was: before each row (the bench waits for it to be idle),
  // and during it (`rest`: PostgreSQL and NATS on the postgres rows, anything else on all).
  const busy = [['ceiling', rows.ceiling]];
  for (const b of backends) for (const k of ['executions', 'paced', 'backlog', 'accept', 'cron']) if (rows[b][k]) busy.push([`${b} ${k}`, rows[b][k]]);
  console.log(`cores busy elsewhere, before / during each row (of ${machine.cpus}): ${busy.map(([n, r]) => `${n} ${fmt(r.busyCoresBefore, 2)} / ${fmt(r.cpu?.cores.rest, 2)}`).join('; ')}`);
  for (const b of backends) {
    const e = rows[b].executions;
    if (e) console.log(`${b}: webhook → http step arrives p50 ${fmt(e.toHttpStep.p50Ms, 1)} / p99 ${fmt(e.toHttpStep.p99Ms, 1)} ms; 202 answered p50 ${fmt(e.accept202.p50Ms, 1)} / p99 ${fmt(e.accept202.p99Ms, 1)} ms; cores: ${JSON.stringify(e.cpu.cores)}`);
    const c = rows[b].cron;
    if (c) console.log(`${b} cron: ${c.flows} flows (${c.expression}) created over the API in ${c.createSeconds} s (${c.flowsCreatedPerSec}/s), started: every schedule active ${c.allActiveSeconds} s after the first start (${c.flowsActivatedPerSec}/s); the bus's groups ${c.busSettled ? `then took ${c.busSettleSeconds} s to catch up` : `had not caught up after ${c.busSettleSeconds} s`} (lag ${JSON.stringify(c.busLagWhenActive)}, at measurement ${JSON.stringify(c.busLagAtMeasurement)}); ${c.ticksDue} ticks due in ${c.windowSeconds} s, ${c.fired} fired, ${c.notFiredWithinGrace} not within 5 s, ${c.missedTicksReported} reported missed`);
  }

  const targets = {};
  const emb = rows.embedded;
  if (emb?.executions) {
    targets.embeddedThroughput = { target: '≥ 1,000 completed executions/s embedded', value: emb.executions.completedPerSec, met: emb.executions.completedPerSec >= 1000 };
  }
  for (const b of backends) {
    const r = rows[b];
    if (r.executions) targets[`${b}VsCeiling`] = { target: `≥ 0.5× the ingestion ceiling (${b})`, value: r.executions.ratioToCeiling, vsFlowgateAccept: r.executions.ratioToAccept ?? null, met: r.executions.ratioToCeiling >= 0.5 };
    if (r.paced) targets[`${b}PacedP99`] = { target: `p99 ≤ 50 ms at ${r.paced.rate} executions/s (${b})`, value: r.paced.latency.p99Ms, met: r.paced.latency.p99Ms !== null && r.paced.latency.p99Ms <= 50 };
    if (r.cron) targets[`${b}CronP99`] = { target: `10k cron flows: p99 firing delay ≤ 100 ms (${b}, ${r.cron.flows} flows)`, value: r.cron.delay.p99Ms, met: r.cron.flows < 10_000 ? null : r.cron.delay.p99Ms !== null && r.cron.delay.p99Ms <= 100 };
  }
  console.log('\nissue targets (informational, never a failure):');
  for (const t of Object.values(targets)) console.log(`  ${t.met === null ? 'N/A ' : t.met ? 'MET ' : 'MISS'}  ${t.target}: ${fmt(t.value, 2)}${t.vsFlowgateAccept !== undefined && t.vsFlowgateAccept !== null ? ` (× Flowgate's own webhook accept rate: ${fmt(t.vsFlowgateAccept, 2)})` : ''}`);
  for (const note of notes) console.log(`note: ${note}`);
  for (const [label, p] of Object.entries(profiles)) {
    printProfile(label, p.summary, p.file);
    if (p.sql) printSql(label, p.sql);
  }

  const valid = problems.length === 0;
  if (!valid) {
    console.log('\n' + '!'.repeat(78));
    console.log('INVALID RUN: requests or executions failed, so these numbers do not measure the flows:');
    for (const p of problems) console.log(`  - ${p}`);
    console.log('!'.repeat(78));
  }
  const result = {
    date: machine.date,
    machine,
    settings,
    valid,
    problems,
    rows,
    targets,
    reference: { n8nExecutionsPerSecond: 220, note: 'n8n, one instance, as published by n8n (other hardware, other flows)' },
    notes,
    ...(Object.keys(profiles).length > 0 ? { profiles: Object.fromEntries(Object.entries(profiles).map(([k, p]) => [k, { file: p.file, busySeconds: p.summary.busySeconds, sqlStatements: p.sql?.statements.slice(0, 25), topFunctions: p.summary.topFunctions.slice(0, 40), byOrigin: p.summary.byOrigin, flowgateInclusive: p.summary.flowgateInclusive.slice(0, 40) }])) } : {}),
  };
  if (PARTIAL) {
    const partial = join(os.tmpdir(), 'flowgate-flows-bench-partial.json');
    writeFileSync(partial, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`(BENCH_BACKENDS=${settings.BACKENDS.join(',')}: a partial run, bench/results/flows.json left as it was; results in ${partial})`);
  } else {
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/flows.json'), `${JSON.stringify(result, null, 2)}\n`);
    console.log('wrote bench/results/flows.json');
  }
  rmSync(tmp, { recursive: true, force: true });
  process.exit(valid ? 0 : 1);
}
