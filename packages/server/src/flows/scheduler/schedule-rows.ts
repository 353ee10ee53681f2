import type { CronTrigger } from '@flowgate/contracts';
import { sql, type Transaction } from 'kysely';
import type { Store } from '../../storage/index.js';
import type { FlowRecord } from '../flow.repository.js';
import type { FlowsTables } from '../flows.tables.js';

type Trx = Transaction<FlowsTables>;

/** A schedule row due to fire (one cron trigger of a started flow): what it says, with numbers as numbers (PostgreSQL bigints arrive as strings in some setups). */
export interface Due {
  readonly flowId: string;
  readonly triggerIndex: number;
  readonly generation: number;
  readonly expression: string;
  readonly timezone: string;
  readonly missed: 'skip' | 'run-once';
  readonly dueAt: number;
}

/** Due rows in due order; on PostgreSQL locked for this transaction, skipping those another process is firing. */
export async function dueRows(trx: Trx, dialect: Store['dialect'], now: number, limit: number, backedOff: Iterable<string>): Promise<Due[]> {
  let query = trx
    .selectFrom('flow_schedules')
    .select(['flow_id', 'trigger_index', 'generation', 'expression', 'timezone', 'missed', 'next_due_at'])
    .where('active', '=', 1)
    .where('next_due_at', '<=', now);
  // Rows that failed to fire a moment ago (keys `flow:trigger`) wait out their back-off.
  const skipped = [...backedOff].map((key) => {
    const at = key.lastIndexOf(':');
    return { flowId: key.slice(0, at), index: Number(key.slice(at + 1)) };
  });
  if (skipped.length > 0) {
    query = query.where((eb) => eb.not(eb.or(skipped.map((s) => eb.and([eb('flow_id', '=', s.flowId), eb('trigger_index', '=', s.index)])))));
  }
  // Ordered by the index alone, so the limit ends the scan (no sort of every due row).
  query = query.orderBy('next_due_at').limit(limit);
  if (dialect === 'postgres') query = query.forUpdate().skipLocked();
  const rows = await query.execute();
  return rows.map((row) => ({
    flowId: row.flow_id,
    triggerIndex: Number(row.trigger_index),
    generation: Number(row.generation),
    expression: row.expression,
    timezone: row.timezone,
    missed: row.missed === 'run-once' ? 'run-once' : 'skip',
    dueAt: Number(row.next_due_at),
  }));
}

/** Moves each row to its next due time if it is still at the one read; answers the rows moved. */
export async function advance(trx: Trx, plans: readonly { due: Due; next: number | null }[]): Promise<Set<string>> {
  const cases = sql.join(
    plans.map(({ due, next }) => sql`when flow_id = ${due.flowId} and trigger_index = ${due.triggerIndex} then ${next}`),
    sql` `,
  );
  const expected = sql.join(
    plans.map(({ due }) => sql`(flow_id = ${due.flowId} and trigger_index = ${due.triggerIndex} and next_due_at = ${due.dueAt})`),
    sql` or `,
  );
  // `+active` keeps SQLite from planning on the (active, next_due_at) index, which walks
  // every active schedule (6.9 ms for 32 rows among 10,000); without it each OR term is a
  // primary-key lookup (0.19 ms). PostgreSQL reads it as plain `active`.
  const result = await sql<{ flow_id: string; trigger_index: number | string }>`
    update flow_schedules
       set next_due_at = case ${cases} else next_due_at end
     where +active = 1 and (${expected})
    returning flow_id, trigger_index`.execute(trx);
  return new Set(result.rows.map((r) => `${r.flow_id}:${Number(r.trigger_index)}`));
}

/** A row's key: its flow and trigger. */
export function rowKey(due: Due): string {
  return `${due.flowId}:${due.triggerIndex}`;
}

/** One execution per tick and trigger: a repeated firing of the same tick finds the first. */
export function idempotencyKey(due: Due): string {
  return `cron:${due.triggerIndex}:${due.dueAt}`;
}

/** The flow's cron triggers, with their position among all its triggers. */
export function cronTriggers(flow: FlowRecord): { index: number; trigger: CronTrigger }[] {
  const found: { index: number; trigger: CronTrigger }[] = [];
  flow.definition.triggers.forEach((trigger, index) => {
    if (trigger.type === 'cron') found.push({ index, trigger });
  });
  return found;
}

/**
 * How late a tick that fell due while the scheduler ran may still fire: a held-up process
 * catches up; one stopped longer (a suspended machine) treats its ticks as missed.
 */
const MAX_LATE_MS = 60_000;

/**
 * Whether a due tick was missed (Flowgate was down) rather than late: due more than
 * `tolerance` ago, and before the scheduler began (`startedAt`) or more than a minute ago.
 */
export function wasMissed(due: Due, now: number, tolerance: number, startedAt: number): boolean {
  const late = now - due.dueAt;
  return late > tolerance && (due.dueAt < startedAt || late > MAX_LATE_MS);
}
