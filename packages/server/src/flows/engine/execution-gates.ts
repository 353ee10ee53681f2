import type { ExecutionStatus } from '@flowgate/contracts';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../kernel/index.js';
import type { Store } from '../../storage/index.js';
import type { FlowsTables, WaitState } from '../flows.tables.js';

type Trx = Transaction<FlowsTables>;

/** Executions that hold one of their flow's concurrency slots. */
const OCCUPYING: readonly ExecutionStatus[] = ['running', 'paused'];

/**
 * What holds executions and steps back until something else happens: a flow's
 * concurrency slots (an execution over the limit is queued) and the keys waiting steps
 * wait on (a subflow's end, an event). Each works inside the caller's transaction, under a
 * lock on its key, so two processes cannot both take the last slot, and a wait and its
 * resolution cannot miss each other.
 */
export class ExecutionGates {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  /**
   * How many executions hold a slot under a concurrency key. The count and what follows it
   * run under a lock on the key, so two starts cannot both take the last slot.
   */
  async slotsTaken(trx: Trx, flowId: string, key: string): Promise<number> {
    await this.store.lockTransaction(trx as unknown as Kysely<unknown>, `flow-concurrency:${flowId}:${key}`);
    const row = await trx
      .selectFrom('flow_executions')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('flow_id', '=', flowId)
      .where('concurrency_key', '=', key)
      .where('status', 'in', OCCUPYING as ExecutionStatus[])
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** Lets queued executions under a concurrency key run, oldest first, while slots are free. */
  async admitQueued(trx: Trx, flowId: string, key: string, limit: number): Promise<string[]> {
    const free = limit - (await this.slotsTaken(trx, flowId, key));
    if (free <= 0) return [];
    const queued = await trx
      .selectFrom('flow_executions')
      .select('id')
      .where('flow_id', '=', flowId)
      .where('concurrency_key', '=', key)
      .where('status', '=', 'queued')
      .orderBy('created_at')
      .orderBy('id')
      .limit(free)
      .execute();
    const ids = queued.map((q) => q.id);
    if (ids.length === 0) return [];
    const now = this.clock.now();
    await trx.updateTable('flow_executions').set({ status: 'running', updated_at: now }).where('id', 'in', ids).where('status', '=', 'queued').execute();
    await trx.updateTable('flow_steps').set({ status: 'ready', due_at: now }).where('execution_id', 'in', ids).where('status', '=', 'held').execute();
    return ids;
  }

  /**
   * Resolves the steps waiting on `key` (in the tenant): each wakes at once and completes
   * with the result. A step whose wait already timed out (it is running) is left alone.
   */
  async resolveWaits(trx: Trx, tenant: string, key: string, result: NonNullable<WaitState['result']>): Promise<number> {
    await this.lockWait(trx, tenant, key);
    const waiting = await trx.selectFrom('flow_steps').select(['id', 'wait_state']).where('tenant', '=', tenant).where('wait_key', '=', key).where('status', 'in', ['waiting', 'held']).execute();
    const now = this.clock.now();
    let resolved = 0;
    for (const step of waiting) {
      const state = { ...(JSON.parse(step.wait_state ?? '{"onTimeout":"fail"}') as WaitState), result };
      const changed = await trx
        .updateTable('flow_steps')
        .set({ wait_key: null, wait_state: JSON.stringify(state), due_at: now })
        .where('id', '=', step.id)
        .where('wait_key', '=', key)
        .where('status', 'in', ['waiting', 'held'])
        .executeTakeFirst();
      resolved += Number(changed.numUpdatedRows);
    }
    return resolved;
  }

  lockWait(trx: Trx, tenant: string, key: string): Promise<void> {
    return this.store.lockTransaction(trx as unknown as Kysely<unknown>, `flow-wait:${tenant}:${key}`);
  }
}
