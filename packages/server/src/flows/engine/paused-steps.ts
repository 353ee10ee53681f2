import { sql, type RawBuilder } from 'kysely';
import type { Store } from '../../storage/index.js';

/**
 * The status of the execution of the `flow_steps` row being written, read in the writing
 * statement, for a statement that locks the execution itself (in a CTE, as a batch of
 * successes does): its snapshot is from before it waited for that lock, so on PostgreSQL
 * the row is read `for share`, which reads what a pause or resume committed meanwhile.
 */
export function executionStatusOfStep(dialect: Store['dialect']): RawBuilder<string | null> {
  const lock = dialect === 'postgres' ? sql` for share` : sql``;
  return sql<string | null>`(select e.status from flow_executions e where e.id = flow_steps.execution_id${lock})`;
}

/**
 * `status` for a step that becomes ready or waiting again (a retry, a sleep, a wait, a
 * lapsed lease), or `held` while its execution is paused: a paused execution runs nothing,
 * and resume makes its held steps ready or waiting again. The caller has locked the
 * execution in an earlier statement (ExecutionLocks), so this statement reads its status
 * as a pause or resume left it.
 */
export function unlessPaused(status: 'ready' | 'waiting'): RawBuilder<string> {
  return sql<string>`case when (select e.status from flow_executions e where e.id = flow_steps.execution_id) = 'paused' then 'held' else ${status} end`;
}
