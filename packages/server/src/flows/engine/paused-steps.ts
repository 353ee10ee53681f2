import { sql, type RawBuilder } from 'kysely';
import type { Store } from '../../storage/index.js';

/**
 * The status of the execution of the `flow_steps` row being written, read in the writing
 * statement. On PostgreSQL the execution's row is read `for share`, which waits for a pause
 * or resume being committed and reads what it committed (a plain read in the same statement
 * would see the status from before it): so either the step is written knowing the pause,
 * or the pause waits until the step is written and then holds it. SQLite has one writer at
 * a time, so its plain read is already current.
 */
export function executionStatusOfStep(dialect: Store['dialect']): RawBuilder<string | null> {
  const lock = dialect === 'postgres' ? sql` for share` : sql``;
  return sql<string | null>`(select e.status from flow_executions e where e.id = flow_steps.execution_id${lock})`;
}

/**
 * `status` for a step that becomes ready or waiting again (a retry, a sleep, a wait, a
 * lapsed lease), or `held` while its execution is paused: a paused execution runs nothing,
 * and resume makes its held steps ready or waiting again.
 */
export function unlessPaused(dialect: Store['dialect'], status: 'ready' | 'waiting'): RawBuilder<string> {
  return sql<string>`case when ${executionStatusOfStep(dialect)} = 'paused' then 'held' else ${status} end`;
}
