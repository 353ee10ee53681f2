// The bench's own read-only view of Flowgate's state store (the SQLite file, or the
// PostgreSQL schema), to read execution records' timestamps: nothing here writes.
import { join } from 'node:path';

const FINISHED = ['succeeded', 'failed', 'cancelled'];

/** `{kind: 'sqlite', dataDir}` or `{kind: 'postgres', url, schema}`. */
export async function openReader(where) {
  return where.kind === 'sqlite' ? openSqlite(join(where.dataDir, 'flowgate.db')) : openPostgres(where.url, where.schema);
}

async function openSqlite(file) {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  const finished = db.prepare(`select id, status, finished_at from flow_executions where id in (select value from json_each(?)) and status in (${FINISHED.map((s) => `'${s}'`).join(', ')})`);
  const ofFlow = db.prepare('select id, status, created_at, finished_at, input from flow_executions where flow_id = ?');
  const cron = db.prepare("select flow_id, idempotency_key, created_at from flow_executions where trigger = 'cron' and created_at >= ?");
  const activeSchedules = db.prepare('select count(*) as n from flow_schedules where active = 1');
  const openSteps = db.prepare("select status, count(*) as n from flow_steps where status in ('ready', 'running', 'waiting') group by status");
  return {
    finished: async (ids) => finished.all(JSON.stringify(ids)),
    executionsOf: async (flowId) => ofFlow.all(flowId),
    cronExecutions: async (since) => cron.all(since),
    activeSchedules: async () => activeSchedules.get().n,
    openSteps: async () => Object.fromEntries(openSteps.all().map((r) => [r.status, r.n])),
    close: async () => db.close(),
  };
}

async function openPostgres(url, schema) {
  const { default: pg } = await import('pg');
  const pool = new pg.Pool({ connectionString: url, max: 2, options: `-c search_path=${schema}` });
  pool.on('error', () => undefined);
  const num = (rows, ...keys) => rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, keys.includes(k) && v !== null ? Number(v) : v])));
  return {
    finished: async (ids) => num((await pool.query('select id, status, finished_at from flow_executions where id = any($1) and status = any($2)', [ids, FINISHED])).rows, 'finished_at'),
    executionsOf: async (flowId) => num((await pool.query('select id, status, created_at, finished_at, input from flow_executions where flow_id = $1', [flowId])).rows, 'created_at', 'finished_at'),
    cronExecutions: async (since) => num((await pool.query("select flow_id, idempotency_key, created_at from flow_executions where trigger = 'cron' and created_at >= $1", [since])).rows, 'created_at'),
    activeSchedules: async () => Number((await pool.query('select count(*) as n from flow_schedules where active = 1')).rows[0].n),
    openSteps: async () => Object.fromEntries((await pool.query("select status, count(*) as n from flow_steps where status in ('ready', 'running', 'waiting') group by status")).rows.map((r) => [r.status, Number(r.n)])),
    close: () => pool.end(),
  };
}
