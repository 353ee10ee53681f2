import { sql, type Kysely } from 'kysely';
import type { Clock } from '../../kernel/index.js';
import type { Store } from '../../storage/index.js';
import type { FlowsTables } from '../flows.tables.js';
import { unlessPaused } from './paused-steps.js';

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
   *
   * It reads at most `limit` steps of each tenant with work, whatever the backlog: the
   * tenants by a skip over the `flow_steps_due_by_tenant` index (one seek each), then each
   * one's first due steps in that index's order. Ranking every due step instead made each
   * claim cost as much as the whole queue, so a backlog slowed the engine that drains it.
   */
  async claim(owner: string, limit: number, leaseMs: number): Promise<StepRow[]> {
    const now = this.clock.now();
    const sqlite = this.store.dialect === 'sqlite';
    // Without statistics (a new table, or SQLite, which keeps none unless asked) both
    // planners read the (status, due_at) index for these and walk every waiting step. So on
    // SQLite the index is named; and the update finds its rows by id, with its re-check of
    // each row written so that no index serves it (`+status`, `status || ''`).
    const byTenant = sqlite ? sql`indexed by flow_steps_due_by_tenant` : sql``;
    const stillDue = sqlite ? sql`+status in ('ready', 'waiting') and +due_at <= ${now}` : sql`(status || '') in ('ready', 'waiting') and due_at + 0 <= ${now}`;
    // Each tenant's first `limit` due steps, numbered by turn. SQLite has no LATERAL: it
    // reads them by rowid through a subquery correlated to the tenant.
    const firstDue = sqlite
      ? sql`select s.id, s.due_at, row_number() over (partition by s.tenant order by s.due_at, s.id) as turn
              from busy_tenants t
              join flow_steps s on s.rowid in (
                select rowid from flow_steps ${byTenant}
                 where status in ('ready', 'waiting') and tenant = t.tenant and due_at <= ${now}
                 order by due_at, id
                 limit ${limit})
             where t.tenant is not null`
      : sql`select s.id, s.due_at, row_number() over (partition by t.tenant order by s.due_at, s.id) as turn
              from busy_tenants t
              cross join lateral (
                select id, due_at from flow_steps
                 where status in ('ready', 'waiting') and tenant = t.tenant and due_at <= ${now}
                 order by due_at, id
                 limit ${limit}) s
             where t.tenant is not null`;
    const picked = sql`select id from (${firstDue}) ranked order by turn, due_at, id limit ${limit}`;
    // Committed without an fsync: a claim lost with the machine's power only means the
    // steps are ready again, and the durable commit of their outcomes persists it anyway.
    // On SQLite, whose commits block the event loop, this is a third of the engine's fsyncs.
    const result = await this.store.relaxed((trx) => sql<StepRow>`
      with recursive busy_tenants(tenant) as (
        select min(tenant) from flow_steps ${byTenant} where status in ('ready', 'waiting')
        union all
        select (select min(tenant) from flow_steps ${byTenant} where status in ('ready', 'waiting') and tenant > t.tenant)
          from busy_tenants t
         where t.tenant is not null
      )
      update flow_steps
         set status = 'running', lease_owner = ${owner}, lease_until = ${now + leaseMs}, started_at = ${now},
             attempt = case when status = 'waiting' then attempt else attempt + 1 end
       where ${sqlite ? sql`id in (${picked})` : sql`id = any(array(${picked}))`}
         and ${stillDue}
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

  /**
   * Gives the steps of a process that stopped renewing (a crash) back to the ready queue
   * (held, when their execution is paused). On PostgreSQL their executions' rows are
   * locked first, in id order as a recording of outcomes locks them, so the two cannot
   * deadlock, and the paused check reads what a pause committed.
   */
  async recoverExpiredLeases(): Promise<number> {
    const now = this.clock.now();
    const lapsed = this.db.selectFrom('flow_steps').where('status', '=', 'running').where('lease_until', '<', now);
    if (!(await lapsed.select('id').limit(1).executeTakeFirst())) return 0;
    return this.db.transaction().execute(async (trx) => {
      if (this.store.dialect === 'postgres') {
        const executions = trx.selectFrom('flow_steps').select('execution_id').where('status', '=', 'running').where('lease_until', '<', now);
        await trx.selectFrom('flow_executions').select('id').where('id', 'in', executions).orderBy('id').forNoKeyUpdate().execute();
      }
      const result = await trx
        .updateTable('flow_steps')
        .set({ status: unlessPaused('ready'), lease_owner: null, lease_until: null, due_at: now })
        .where('status', '=', 'running')
        .where('lease_until', '<', now)
        .where('output', 'is', null)
        .where('wait_state', 'is', null)
        .executeTakeFirst();
      // A woken sleeper keeps its output (a woken waiter its wait) and goes back to waiting, so
      // it wakes again rather than running its component again.
      const woken = await trx
        .updateTable('flow_steps')
        .set({ status: unlessPaused('waiting'), lease_owner: null, lease_until: null, due_at: now })
        .where('status', '=', 'running')
        .where('lease_until', '<', now)
        .where((eb) => eb.or([eb('output', 'is not', null), eb('wait_state', 'is not', null)]))
        .executeTakeFirst();
      return Number(result.numUpdatedRows) + Number(woken.numUpdatedRows);
    });
  }
}
