import { sql, type Kysely } from 'kysely';
import type { Clock } from '../../kernel/index.js';
import type { Store } from '../../storage/index.js';
import type { FlowsTables } from '../flows.tables.js';

type StepRow = FlowsTables['flow_steps'];

/**
 * Who runs which step: a process leases due steps (a claim), keeps the leases of the steps
 * it still runs (renewals), and the steps of a process that stopped renewing go back to the
 * queue. A step's outcome counts only while its lease holds (ExecutionStore.apply).
 */
export class StepLeases {
  private readonly db: Kysely<FlowsTables>;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {
    this.db = store.db<FlowsTables>();
  }

  /**
   * Leases up to `limit` steps that are due, shared fairly between tenants: each tenant's
   * oldest due step first, then each one's second, and so on, so one tenant's backlog
   * cannot starve the others. A sleeping step that is due wakes (its attempt unchanged).
   */
  async claim(owner: string, limit: number, leaseMs: number): Promise<StepRow[]> {
    const now = this.clock.now();
    // Committed without an fsync: a claim lost with the machine's power only means the
    // steps are ready again, and the durable commit of their outcomes persists it anyway.
    // On SQLite, whose commits block the event loop, this is a third of the engine's fsyncs.
    const result = await this.store.relaxed((trx) => sql<StepRow>`
      update flow_steps
         set status = 'running', lease_owner = ${owner}, lease_until = ${now + leaseMs}, started_at = ${now},
             attempt = case when status = 'waiting' then attempt else attempt + 1 end
       where id in (
         select id from (
           select id, due_at, row_number() over (partition by tenant order by due_at, id) as turn
             from flow_steps
            where status in ('ready', 'waiting') and due_at <= ${now}
         ) ranked
         order by turn, due_at
         limit ${limit}
       )
         and status in ('ready', 'waiting') and due_at <= ${now}
      returning *`.execute(trx));
    return result.rows;
  }

  /** Keeps the leases of steps still running here. */
  async renew(owner: string, ids: readonly string[], leaseMs: number): Promise<void> {
    if (ids.length === 0) return;
    // Relaxed like the claim: a renewal lost with the power lets the step run again, no more.
    await this.store.relaxed((trx) =>
      (trx as unknown as Kysely<FlowsTables>)
      .updateTable('flow_steps')
      .set({ lease_until: this.clock.now() + leaseMs })
      .where('id', 'in', ids as string[])
      .where('lease_owner', '=', owner)
      .where('status', '=', 'running')
      .execute(),
    );
  }

  /** Gives the steps of a process that stopped renewing (a crash) back to the ready queue. */
  async recoverExpiredLeases(): Promise<number> {
    const now = this.clock.now();
    const result = await this.db
      .updateTable('flow_steps')
      .set({ status: 'ready', lease_owner: null, lease_until: null, due_at: now })
      .where('status', '=', 'running')
      .where('lease_until', '<', now)
      .where('output', 'is', null)
      .where('wait_state', 'is', null)
      .executeTakeFirst();
    // A woken sleeper keeps its output (a woken waiter its wait) and goes back to waiting, so
    // it wakes again rather than running its component again.
    const woken = await this.db
      .updateTable('flow_steps')
      .set({ status: 'waiting', lease_owner: null, lease_until: null, due_at: now })
      .where('status', '=', 'running')
      .where('lease_until', '<', now)
      .where((eb) => eb.or([eb('output', 'is not', null), eb('wait_state', 'is not', null)]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) + Number(woken.numUpdatedRows);
  }
}
