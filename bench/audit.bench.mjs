#!/usr/bin/env node
// Audit log benchmark (issue 6). In one run, on this machine:
//   - appends BENCH_RECORDS (default 100000) audit events through AuditLog.append, the
//     path the audit service takes (one transaction per event, a signed checkpoint every
//     1000 records), into a fresh SQLite store;
//   - verifies the whole chain (verifyChain: read, re-hash, check every checkpoint);
//   - baseline: reading the same rows and hashing their bodies with SHA-256, no checks;
//   - catch-up: BENCH_CATCHUP (default 20000) audit events already on the embedded bus, in
//     one tenant among BENCH_CATCHUP_OTHERS (10) other events each (what bulk changes leave
//     behind), stored by the audit service's consumer group; compared with the direct
//     appends above.
// Results are informational (never a pass/fail on speed); bench/results/audit.json.
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { generateKeyPair } from 'jose';

const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'packages/server/dist');
const RECORDS = Number(process.env.BENCH_RECORDS ?? 100_000);
const CATCHUP = Number(process.env.BENCH_CATCHUP ?? 20_000);
const CATCHUP_OTHERS = Number(process.env.BENCH_CATCHUP_OTHERS ?? 10);

const { AuditLog, AuditService, auditPublishItem, createCheckpointSigner, verifyChain } = await import(join(DIST, 'audit/index.js'));
const { EmbeddedBusBackend, EventBus } = await import(join(DIST, 'bus/index.js'));
const { default: pino } = await import('pino');
const { systemClock } = await import(join(DIST, 'kernel/index.js'));
const { ALL_MIGRATIONS } = await import(join(DIST, 'migrations.js'));
const { openStore } = await import(join(DIST, 'storage/index.js'));

const tmp = mkdtempSync(join(os.tmpdir(), 'flowgate-audit-bench-'));
const store = await openStore({ dataDir: tmp });
await store.migrate(ALL_MIGRATIONS);

// The IAM's part, as the audit log sees it: an active ES256 key and its public JWK.
const { privateKey, publicKey } = await generateKeyPair('ES256');
const kid = `bench-${randomBytes(4).toString('hex')}`;
const signer = createCheckpointSigner({ activeKey: async () => ({ kid, key: privateKey }), historicPublicKey: async (k) => (k === kid ? publicKey : undefined) });
const log = new AuditLog(store, systemClock, signer, { checkpointEvery: 1000, checkpointMs: 600_000 });

const tenant = 'bench-tenant';
let t0 = performance.now();
for (let i = 0; i < RECORDS; i++) {
  await log.append({
    id: `evt-${i}`,
    time: new Date().toISOString(),
    tenant,
    action: i % 10 === 0 ? 'iam.login.failed' : 'secrets.read',
    actor: `user-${i % 97}`,
    outcome: i % 10 === 0 ? 'failure' : 'success',
    target: `secret:s${i % 13}`,
    traceId: randomBytes(16).toString('hex'),
    details: { ip: '203.0.113.7', attempt: i % 5 },
  });
}
const appendSeconds = (performance.now() - t0) / 1000;

t0 = performance.now();
const report = await verifyChain(store, signer, tenant, { now: Date.now() });
const verifySeconds = (performance.now() - t0) / 1000;
if (!report.ok || report.records !== RECORDS) throw new Error(`verify failed: ${JSON.stringify(report)}`);

// Baseline: the same rows read in the same pages and hashed, nothing checked.
t0 = performance.now();
const db = store.db();
let after = 0;
let hashed = 0;
for (;;) {
  const rows = await db.selectFrom('audit_records').select(['seq', 'prev_hash', 'body']).where('tenant_id', '=', tenant).where('seq', '>', after).orderBy('seq').limit(2000).execute();
  for (const row of rows) createHash('sha256').update(row.prev_hash).update('\n').update(row.body).digest('hex');
  hashed += rows.length;
  if (rows.length < 2000) break;
  after = Number(rows[rows.length - 1].seq);
}
const baselineSeconds = (performance.now() - t0) / 1000;
await store.close();

// Catch-up: the audit service working off a backlog on the embedded bus.
const catchupStore = await openStore({ dataDir: join(tmp, 'catchup') });
await catchupStore.migrate(ALL_MIGRATIONS);
const logger = pino({ level: 'silent' });
const bus = new EventBus({ backend: new EmbeddedBusBackend({ store: catchupStore, clock: systemClock, logger }), store: catchupStore, clock: systemClock, logger });
bus.start();
for (let i = 0; i < CATCHUP; i += 100) {
  const items = [];
  for (let j = i; j < Math.min(CATCHUP, i + 100); j++) {
    for (let k = 0; k < CATCHUP_OTHERS; k++) items.push({ topic: `execution.step${k % 3}`, payload: { j, k } });
    const event = { id: `evt-${j}`, time: new Date().toISOString(), tenant, action: `flows.flow.a${j % 5}`, actor: 'user-1', outcome: 'success', target: `flow:f${j}` };
    items.push(auditPublishItem(event));
  }
  await bus.publishBatch(tenant, items, { system: true, serviceName: 'audit' });
}
const service = new AuditService({ store: catchupStore, bus, clock: systemClock, logger, signer, retentionDays: 0, checkpointEvery: 1000, checkpointMs: 600_000 });
t0 = performance.now();
await service.start();
const catchupDb = catchupStore.db();
for (;;) {
  const { n } = await catchupDb.selectFrom('audit_records').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow();
  if (Number(n) >= CATCHUP) break;
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const catchupSeconds = (performance.now() - t0) / 1000;
await service.stop();
await bus.close();
await catchupStore.close();
rmSync(tmp, { recursive: true, force: true });

const results = {
  date: new Date().toISOString(),
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
  records: RECORDS,
  append: { seconds: appendSeconds, recordsPerSec: RECORDS / appendSeconds },
  verify: { seconds: verifySeconds, recordsPerSec: RECORDS / verifySeconds, checkpoints: report.checkpoints },
  baselineReadAndHash: { seconds: baselineSeconds, records: hashed },
  catchup: { records: CATCHUP, otherEventsEach: CATCHUP_OTHERS, seconds: catchupSeconds, recordsPerSec: CATCHUP / catchupSeconds },
  ratios: { verifyVsReadAndHash: verifySeconds / baselineSeconds, catchupVsAppend: CATCHUP / catchupSeconds / (RECORDS / appendSeconds) },
};
console.log(`append: ${RECORDS} records in ${appendSeconds.toFixed(1)} s (${results.append.recordsPerSec.toFixed(0)}/s, one transaction each)`);
console.log(`verify: ${RECORDS} records and ${report.checkpoints} signed checkpoints in ${verifySeconds.toFixed(2)} s (${results.verify.recordsPerSec.toFixed(0)}/s)`);
console.log(`baseline read + SHA-256 only: ${baselineSeconds.toFixed(2)} s; verify takes ${results.ratios.verifyVsReadAndHash.toFixed(2)}× that`);
console.log(`catch-up: ${CATCHUP} audit events on the bus (${CATCHUP_OTHERS} other events each) stored in ${catchupSeconds.toFixed(1)} s (${results.catchup.recordsPerSec.toFixed(0)}/s, ${results.ratios.catchupVsAppend.toFixed(2)}× direct appends)`);
mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
writeFileSync(join(ROOT, 'bench/results/audit.json'), `${JSON.stringify(results, null, 2)}\n`);
