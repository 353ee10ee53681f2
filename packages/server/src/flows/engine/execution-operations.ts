import { EXECUTION_EVENTS } from '@flowgate/contracts';
import type { Transaction } from 'kysely';
import type { Clock } from '../../kernel/index.js';
import type { FlowsTables } from '../flows.tables.js';
import { OPEN_STEPS, type ExecutionRow } from './execution-model.js';
import type { ExecutionStore } from './execution.store.js';

type Trx = Transaction<FlowsTables>;

/**
 * What callers do to an execution, each in one transaction under the execution's lock:
 * cancel, pause, resume, re-run; and failing the executions past their flow timeout.
 * Each answers false when the execution's status does not allow it.
 */
export class ExecutionOperations {
  constructor(
    private readonly executions: ExecutionStore,
    private readonly clock: Clock,
  ) {}

  /** Cancels an unfinished execution and its open steps. */
  async cancel(executionId: string): Promise<boolean> {
    return this.executions.locks.changeExecution(executionId, async (trx, now) => {
      await this.executions.cancelOpenSteps(trx, executionId, now);
      return this.executions.finish(trx, executionId, 'cancelled', undefined, { code: 'CANCELLED', message: 'The execution was cancelled.' });
    });
  }

  /** Holds the open steps of a running execution; running steps finish, and what follows them is held too. */
  async pause(executionId: string): Promise<boolean> {
    return this.executions.locks.changeExecution(executionId, async (trx, now) => {
      const changed = await trx.updateTable('flow_executions').set({ status: 'paused', updated_at: now }).where('id', '=', executionId).where('status', '=', 'running').executeTakeFirst();
      if (Number(changed.numUpdatedRows) !== 1) return false;
      await trx.updateTable('flow_steps').set({ status: 'held' }).where('execution_id', '=', executionId).where('status', 'in', ['ready', 'waiting']).execute();
      return true;
    });
  }

  async resume(executionId: string): Promise<boolean> {
    return this.executions.locks.changeExecution(executionId, async (trx, now) => {
      const changed = await trx.updateTable('flow_executions').set({ status: 'running', updated_at: now }).where('id', '=', executionId).where('status', '=', 'paused').executeTakeFirst();
      if (Number(changed.numUpdatedRows) !== 1) return false;
      // A held sleeper (its output is kept) or waiter (its wait is kept) goes back to waiting; the others to ready.
      const held = trx.updateTable('flow_steps').where('execution_id', '=', executionId).where('status', '=', 'held');
      await held.set({ status: 'ready' }).where('output', 'is', null).where('wait_state', 'is', null).execute();
      await held.set({ status: 'waiting' }).where((eb) => eb.or([eb('output', 'is not', null), eb('wait_state', 'is not', null)])).execute();
      const open = await trx.selectFrom('flow_steps').select('id').where('execution_id', '=', executionId).where('status', 'in', OPEN_STEPS).limit(1).executeTakeFirst();
      if (!open) await this.executions.finish(trx, executionId, 'succeeded', undefined, null);
      return true;
    });
  }

  /**
   * Runs a failed or cancelled execution again from its failed (or cancelled) steps, keeping
   * every step that succeeded; its failed or cancelled subflow children run again the same
   * way, so a parent's subflow step finds its child running and waits for it again.
   */
  async rerun(executionId: string): Promise<boolean> {
    return this.executions.locks.changeExecution(executionId, (trx, now) => this.reopen(trx, executionId, now));
  }

  private async reopen(trx: Trx, executionId: string, now: number): Promise<boolean> {
    const before = await trx.selectFrom('flow_executions').selectAll().where('id', '=', executionId).executeTakeFirst();
    if (!before || (before.status !== 'failed' && before.status !== 'cancelled')) return false;
    const open = await trx.selectFrom('flow_steps').select('id').where('execution_id', '=', executionId).where('status', 'in', ['failed', 'cancelled']).limit(1).executeTakeFirst();
    // A re-run takes a concurrency slot like a start: over the limit it is queued, its steps held.
    const queued = open !== undefined && before.concurrency_key !== null && (await this.overLimit(trx, before));
    // The flow timeout counts from the re-run: the first run's deadline may be long past.
    // (The span of the first run's deadline stands in for it where no engine tells it.)
    const timeoutMs = before.deadline_at === null ? undefined : ((await this.executions.timeoutOf?.(trx, before)) ?? Number(before.deadline_at) - Number(before.created_at));
    const deadline = timeoutMs === undefined ? null : now + timeoutMs;
    await trx
      .updateTable('flow_executions')
      .set({ status: queued ? 'queued' : 'running', error: null, finished_at: null, updated_at: now, deadline_at: deadline })
      .where('id', '=', executionId)
      .execute();
    await trx
      .updateTable('flow_steps')
      .set({ status: queued ? 'held' : 'ready', attempt: 0, due_at: now, finished_at: null, error: null, output: null, wait_key: null, wait_state: null })
      .where('execution_id', '=', executionId)
      .where('status', 'in', ['failed', 'cancelled'])
      .execute();
    const row = await trx.selectFrom('flow_executions').selectAll().where('id', '=', executionId).executeTakeFirstOrThrow();
    await this.executions.events.publish(trx, row, EXECUTION_EVENTS.started, { rerun: true });
    const children = await trx.selectFrom('flow_executions').select('id').where('parent_execution_id', '=', executionId).where('status', 'in', ['failed', 'cancelled']).execute();
    for (const child of children) {
      await this.executions.locks.lockExecution(trx, child.id);
      await this.reopen(trx, child.id, now);
    }
    if (!open) await this.executions.finish(trx, executionId, 'succeeded', undefined, null);
    return true;
  }

  private async overLimit(trx: Trx, execution: ExecutionRow): Promise<boolean> {
    const limit = await this.executions.limitOf?.(trx, execution);
    return limit !== undefined && execution.concurrency_key !== null && (await this.executions.gates.slotsTaken(trx, execution.flow_id, execution.concurrency_key)) >= limit;
  }

  /**
   * Fails executions past their deadline (the flow's timeout). One that cannot be failed
   * is reported to `onError` and does not hold up the others.
   */
  async expireDeadlines(onError: (executionId: string, error: unknown) => void): Promise<string[]> {
    const now = this.clock.now();
    const late = await this.executions.db.selectFrom('flow_executions').select('id').where('status', 'in', ['queued', 'running', 'paused']).where('deadline_at', '<', now).limit(100).execute();
    const failed: string[] = [];
    for (const { id } of late) {
      try {
        const done = await this.executions.locks.changeExecution(id, async (trx, at) => {
          await this.executions.cancelOpenSteps(trx, id, at);
          return this.executions.finish(trx, id, 'failed', undefined, { code: 'FLOW_TIMEOUT', message: 'The execution ran past the flow timeout.' });
        });
        if (done) failed.push(id);
      } catch (error) {
        onError(id, error);
      }
    }
    return failed;
  }
}
