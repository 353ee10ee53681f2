import type { Kysely, Transaction } from 'kysely';
import { FlowgateError } from '../../errors/index.js';
import type { Clock } from '../../kernel/index.js';
import { retryOnConflict, type Store } from '../../storage/index.js';
import type { FlowsTables } from '../flows.tables.js';
import { isFinished } from './execution-model.js';

type Trx = Transaction<FlowsTables>;

/**
 * How changes to one execution take turns: its cancel, pause, resume, re-run and flow
 * timeout, the recording of its steps' outcomes, and the start of its subflows. On
 * PostgreSQL each locks the execution's row; SQLite has one writer at a time already.
 */
export class ExecutionLocks {
  constructor(
    private readonly store: Store,
    private readonly db: Kysely<FlowsTables>,
    private readonly clock: Clock,
  ) {}

  /**
   * Runs `work` in a transaction on the execution's row, serialised with other changes to
   * it. A deadlock with another change or a recording (PostgreSQL cancels one of the two)
   * is a lost race, not an error: the change is made again, on what the other committed.
   */
  changeExecution<T>(executionId: string, work: (trx: Trx, now: number) => Promise<T>): Promise<T> {
    return retryOnConflict(() =>
      this.db.transaction().execute(async (trx) => {
        await this.lockExecution(trx, executionId);
        return work(trx, this.clock.now());
      }),
    );
  }

  /**
   * Serialises changes to one execution (its cancel, pause, re-run) and the recording of
   * its steps' outcomes until the transaction ends.
   */
  lockExecution(trx: Trx, executionId: string): Promise<void> {
    return this.lockExecutions(trx, [executionId]);
  }

  /**
   * Locks executions' rows until the transaction ends, in id order (so two batches cannot
   * deadlock). On PostgreSQL, two transactions that each record a step of one execution
   * (or one records while another cancels it) would otherwise each miss what the other
   * writes: both last steps recorded and neither finishing the execution, or a next step
   * inserted after the cancel cancelled the open ones. The later one now waits, and its
   * statements see what the first committed.
   */
  async lockExecutions(trx: Trx, executionIds: readonly string[]): Promise<void> {
    if (this.store.dialect !== 'postgres' || executionIds.length === 0) return;
    const ids = [...new Set(executionIds)].sort();
    await trx.selectFrom('flow_executions').select('id').where('id', 'in', ids).orderBy('id').forNoKeyUpdate().execute();
  }

  /**
   * Refuses to start a subflow for a parent that has ended: its `subflow` step may have
   * been running when the parent was cancelled or failed, which cancelled the children it
   * had then. The parent's row is locked, so its end waits for this start or sees it.
   */
  async parentGoesOn(trx: Trx, parentId: string): Promise<void> {
    await this.lockExecution(trx, parentId);
    const parent = await trx.selectFrom('flow_executions').select('status').where('id', '=', parentId).executeTakeFirst();
    if (parent && !isFinished(parent.status)) return;
    throw new FlowgateError('FLOWGATE_ERR_EXECUTION_STATUS_CONFLICT', `The parent execution ${parentId} has ended: no subflow of it starts.`);
  }
}
