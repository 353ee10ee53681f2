import { EXECUTION_EVENTS, type ExecutionStatus } from '@flowgate/contracts';
import { sql, type Kysely, type Transaction } from 'kysely';
import type { EventBus } from '../../bus/index.js';
import { newId, type Clock } from '../../kernel/index.js';
import type { Store } from '../../storage/index.js';
import type { FlowsTables, WaitState } from '../flows.tables.js';
import { ExecutionEvents } from './execution-events.js';
import { ExecutionGates } from './execution-gates.js';
import { ExecutionLocks } from './execution-locks.js';
import { GroupCommit } from './group-commit.js';
import { executionStatusOfStep, unlessPaused } from './paused-steps.js';
import { StepLeases } from './step-leases.js';
import type { StepPlan } from './orchestrator.js';
import { FINISHED, OPEN_STEPS, type AppliedOutcomes, type CreatedExecution, type EagerLease, type ExecutionRow, type FinishHook, type LimitLookup, type NewExecution, type StepOutcome, type StepRow, type WaitProbe } from './execution-model.js';

type Trx = Transaction<FlowsTables>;

/** A plain start: an execution and its first steps, written with others of its event-loop turn. */
interface Start {
  readonly row: ExecutionRow;
  readonly steps: readonly StepRow[];
}

/** Rows per insert statement: under 20 parameters each, well under SQLite's limit. */
const INSERT_CHUNK = 200;

type Success = Extract<StepOutcome, { kind: 'succeeded' }>;

/**
 * The engine's durable state: executions and steps in the state store. A step's
 * completion is recorded only by the lease holder (`lease_owner`, `attempt` and
 * `started_at` match: a re-run counts attempts from the start again, so the time of the
 * claim is what tells the run it replaced from the re-run's, on the same process),
 * in the same transaction that inserts the steps that follow it (idempotent through the
 * (execution, parent, node, phase) key) and, when nothing is left, finishes the execution
 * and publishes its event. So a completion is recorded exactly once, whatever crashes.
 */
export class ExecutionStore {
  readonly db: Kysely<FlowsTables>;
  /** Concurrency slots and waits. */
  readonly gates: ExecutionGates;
  /** Claims, renewals and the recovery of lapsed leases. */
  readonly leases: StepLeases;
  /** How changes to one execution take turns. */
  readonly locks: ExecutionLocks;
  /** `execution.started|succeeded|failed` on the bus. */
  readonly events: ExecutionEvents;
  /** New executions started in one turn of the event loop share a commit and their statements. */
  private readonly creates: GroupCommit<Trx, Start, void>;
  /** Set by the engine: what follows an execution's end. */
  onFinish: FinishHook | undefined;
  /** Set by the engine: whether a key a step begins waiting on is resolved already. */
  probeWait: WaitProbe | undefined;
  /** Set by the engine: the concurrency limit a re-run is held to. */
  limitOf: LimitLookup | undefined;
  /** Set by the engine: the flow timeout a re-run gets again. */
  timeoutOf: LimitLookup | undefined;

  constructor(
    private readonly store: Store,
    bus: EventBus,
    private readonly clock: Clock,
  ) {
    this.db = store.db<FlowsTables>();
    this.gates = new ExecutionGates(store, clock);
    this.leases = new StepLeases(store, clock);
    this.locks = new ExecutionLocks(store, this.db, clock);
    this.events = new ExecutionEvents(bus);
    this.creates = new GroupCommit<Trx, Start, void>((work) => this.db.transaction().execute(work), (trx, starts) => this.writeStarts(trx, starts));
  }

  /** Inserts an execution and its first steps; with an idempotency key already used, answers the first execution instead. */
  async create(execution: NewExecution, trx?: Trx): Promise<CreatedExecution> {
    const now = this.clock.now();
    const row: ExecutionRow = {
      id: newId(),
      tenant: execution.tenant,
      flow_id: execution.flowId,
      flow_version: execution.flowVersion,
      status: 'running',
      trigger: execution.trigger,
      input: JSON.stringify(execution.input ?? null),
      output: null,
      error: null,
      idempotency_key: execution.idempotencyKey ?? null,
      concurrency_key: execution.concurrency?.key ?? null,
      traceparent: execution.traceparent,
      response: null,
      parent_execution_id: execution.parentExecutionId ?? null,
      created_at: now,
      updated_at: now,
      finished_at: null,
      deadline_at: execution.deadlineAt ?? null,
    };
    const lease = (steps: StepRow[]): StepRow[] => {
      if (execution.lease) for (const step of steps) if (step.status === 'ready') Object.assign(step, { status: 'running', attempt: 1, lease_owner: execution.lease.owner, lease_until: now + execution.lease.leaseMs, started_at: now });
      return steps;
    };
    let steps: StepRow[] = [];
    /** Set when the idempotency key was used already: nothing was written. */
    let repeated = false;
    const write = async (t: Trx) => {
      if (execution.parentExecutionId !== undefined) await this.locks.parentGoesOn(t, execution.parentExecutionId);
      // Over its flow's concurrency limit, an execution waits its turn: queued, its first steps held.
      if (execution.concurrency && (await this.gates.slotsTaken(t, row.flow_id, execution.concurrency.key)) >= execution.concurrency.limit) row.status = 'queued';
      if (execution.idempotencyKey === undefined) await t.insertInto('flow_executions').values(row).execute();
      else {
        // A used key is told by the insert writing nothing, not by a unique violation: on
        // PostgreSQL that would abort the transaction, which may be the caller's (an error
        // flow started where a failure is recorded) and must still commit.
        const inserted = await t.insertInto('flow_executions').values(row).onConflict((oc) => oc.doNothing()).returning('id').execute();
        if (inserted.length === 0) {
          repeated = true;
          return;
        }
      }
      const status = row.status === 'queued' ? 'held' : 'ready';
      steps = lease(execution.first.map((plan) => this.stepRow(row, '', plan, now, status)));
      if (steps.length > 0) await t.insertInto('flow_steps').values(steps).execute();
      await this.events.publish(t, row, EXECUTION_EVENTS.started, { input_size: row.input.length });
      if (execution.first.length === 0) await this.finish(t, row.id, 'succeeded', null, null);
    };
    if (trx) await write(trx);
    // A keyed start may find its key used, and a limited one takes a lock: those commit alone.
    else if (execution.idempotencyKey || execution.concurrency || execution.first.length === 0) await this.db.transaction().execute(write);
    else {
      steps = lease(execution.first.map((plan) => this.stepRow(row, '', plan, now)));
      await this.creates.run({ row, steps });
    }
    if (!repeated) return { row, created: true, leased: steps.filter((step) => step.lease_owner !== null) };
    const first = await (trx ?? this.db)
      .selectFrom('flow_executions')
      .selectAll()
      .where('tenant', '=', execution.tenant)
      .where('flow_id', '=', execution.flowId)
      .where('idempotency_key', '=', execution.idempotencyKey!)
      .executeTakeFirstOrThrow();
    return { row: first, created: false, leased: [] };
  }

  /** Writes plain starts (no key, no limit, first steps ready) in one statement per table. */
  private async writeStarts(trx: Trx, starts: readonly Start[]): Promise<void[]> {
    const steps = starts.flatMap((s) => s.steps);
    for (let i = 0; i < starts.length; i += INSERT_CHUNK) await trx.insertInto('flow_executions').values(starts.slice(i, i + INSERT_CHUNK).map((s) => s.row)).execute();
    for (let i = 0; i < steps.length; i += INSERT_CHUNK) await trx.insertInto('flow_steps').values(steps.slice(i, i + INSERT_CHUNK)).execute();
    await this.events.publishAll(trx, starts.map((s) => s.row), EXECUTION_EVENTS.started, (row) => ({ input_size: row.input.length }));
    return starts.map(() => undefined);
  }

  private stepRow(execution: Pick<ExecutionRow, 'id' | 'tenant'>, parentId: string, plan: StepPlan, now: number, status = 'ready'): StepRow {
    return {
      id: newId(),
      execution_id: execution.id,
      tenant: execution.tenant,
      node: plan.node,
      phase: plan.phase,
      parent_id: parentId,
      status,
      attempt: 0,
      input: JSON.stringify(plan.input ?? null),
      output: null,
      error: null,
      due_at: now,
      lease_owner: null,
      lease_until: null,
      created_at: now,
      started_at: null,
      finished_at: null,
      wait_key: null,
      wait_state: null,
    };
  }

  /**
   * Applies finished runs in one transaction. Each outcome counts only if its step is
   * still leased by `owner` at the same attempt and claim; the ids of the outcomes that
   * counted are returned (with the executions they finished). Successes, the common case,
   * are recorded together: one update for every step, one insert for every step that
   * follows, one read for what is left open; on PostgreSQL each statement is a round trip,
   * and the batch's executions are locked first (in the first statement, for a batch of
   * successes only; else in one of its own).
   */
  async apply(owner: string, outcomes: readonly StepOutcome[], eager?: EagerLease): Promise<AppliedOutcomes> {
    const applied = new Set<string>();
    const finished = new Map<string, ExecutionStatus>();
    let leased: StepRow[] = [];
    let readied = false;
    await this.db.transaction().execute(async (trx) => {
      const succeeded = outcomes.filter((o): o is Success => o.kind === 'succeeded');
      // A batch of successes only (the usual one) locks its executions in its first
      // statement, saving a round trip; any other locks them first, on its own.
      const lockedBySuccesses = succeeded.length === outcomes.length;
      if (!lockedBySuccesses) await this.locks.lockExecutions(trx, outcomes.map((o) => o.step.execution_id));
      const now = this.clock.now();
      const touched = new Set<string>();
      /** The output of a last node, by execution: it becomes the execution's output. */
      const leafOutputs = new Map<string, unknown>();
      const successes = await this.recordSuccesses(trx, owner, succeeded, now, eager, lockedBySuccesses);
      leased = successes.leased;
      readied = successes.unleased;
      const advanced = successes.advanced;
      for (const outcome of successes.recorded) {
        const step = outcome.step;
        applied.add(step.id);
        touched.add(step.execution_id);
        if (outcome.leaf && outcome.next.length === 0) leafOutputs.set(step.execution_id, outcome.output ?? null);
      }
      // A step that is to run again while its execution is paused is held instead.
      for (const outcome of outcomes) {
        if (outcome.kind === 'succeeded') continue;
        readied = true;
        const step = outcome.step;
        const update = trx
          .updateTable('flow_steps')
          .where('id', '=', step.id)
          .where('status', '=', 'running')
          .where('lease_owner', '=', owner)
          .where('attempt', '=', step.attempt)
          .where('started_at', '=', step.started_at ?? -1);
        let changed: { numUpdatedRows: bigint };
        if (outcome.kind === 'wait') {
          // Locked like resolveWaits: whichever of the wait and its resolution commits second sees the other.
          await this.gates.lockWait(trx, step.tenant, outcome.key);
          const result = await this.probeWait?.(trx, step.tenant, outcome.key);
          const state: WaitState = result ? { onTimeout: outcome.onTimeout, result } : { onTimeout: outcome.onTimeout };
          changed = await update
            .set({ status: unlessPaused('waiting'), wait_key: result ? null : outcome.key, wait_state: JSON.stringify(state), due_at: result ? now : outcome.until, lease_owner: null, lease_until: null })
            .executeTakeFirst();
        } else if (outcome.kind === 'sleep') {
          changed = await update.set({ status: unlessPaused('waiting'), output: JSON.stringify(outcome.output ?? null), due_at: outcome.until, lease_owner: null, lease_until: null }).executeTakeFirst();
        } else if (outcome.kind === 'retry') {
          changed = await update.set({ status: unlessPaused('ready'), error: JSON.stringify(outcome.error), due_at: outcome.at, wait_key: null, wait_state: null, lease_owner: null, lease_until: null }).executeTakeFirst();
        } else {
          changed = await update.set({ status: 'failed', error: JSON.stringify(outcome.error), finished_at: now, wait_key: null, lease_owner: null, lease_until: null }).executeTakeFirst();
        }
        if (Number(changed.numUpdatedRows) !== 1) continue; // the lease was lost: another run records this step
        applied.add(step.id);
        touched.add(step.execution_id);
        if (outcome.kind !== 'failed') advanced.add(step.execution_id);
        if ('response' in outcome && outcome.response !== undefined) await this.recordResponse(trx, step.execution_id, outcome.response, now);
        if (outcome.kind === 'failed') {
          const error = { ...outcome.error, node: step.node };
          await this.cancelOpenSteps(trx, step.execution_id, now);
          if (await this.finish(trx, step.execution_id, 'failed', null, error)) finished.set(step.execution_id, 'failed');
          touched.delete(step.execution_id);
          leafOutputs.delete(step.execution_id);
        }
      }
      if (touched.size === 0) return;
      // An execution given an open step in this batch (a next step, or a step now waiting
      // or retrying) goes on; the others end if nothing else of theirs is open, which the
      // finishing update checks itself.
      const ids = [...touched];
      const done = await this.finishSucceeded(trx, ids.filter((id) => !advanced.has(id)), leafOutputs, now);
      for (const row of done) {
        finished.set(row.id, 'succeeded');
        if (row.parent_execution_id !== null || row.concurrency_key !== null) readied = true;
      }
      for (const executionId of ids) {
        const output = leafOutputs.get(executionId);
        if (output !== undefined && !finished.has(executionId)) {
          await trx.updateTable('flow_executions').set({ output: JSON.stringify(output), updated_at: now }).where('id', '=', executionId).where('status', 'not in', FINISHED).execute();
        }
      }
    });
    // A step leased here whose execution failed in the same batch was cancelled with it.
    return { applied, finished, leased: leased.filter((step) => !finished.has(step.execution_id)), readied };
  }

  /**
   * Records the successes still leased by `owner` at their attempt and claim in one
   * statement, inserts the steps that follow them in another (held when their execution
   * is paused), and their `respond` answers; returns the outcomes that counted. With
   * `lock`, that first statement locks their executions first, as ExecutionLocks does.
   */
  private async recordSuccesses(
    trx: Trx,
    owner: string,
    outcomes: readonly Success[],
    now: number,
    eager: EagerLease | undefined,
    lock: boolean,
  ): Promise<{ recorded: Success[]; leased: StepRow[]; unleased: boolean; advanced: Set<string> }> {
    const advanced = new Set<string>();
    if (outcomes.length === 0) return { recorded: [], leased: [], unleased: false, advanced };
    // On PostgreSQL the lock is a CTE that an uncorrelated condition reads whole: the
    // planner makes that a one-time filter, run before any row is read or written.
    const lockIds = lock && this.store.dialect === 'postgres' ? [...new Set(outcomes.map((o) => o.step.execution_id))].sort() : [];
    const locking =
      lockIds.length > 0
        ? sql`with locked as materialized (select id from flow_executions where id in (${sql.join(lockIds)}) order by id for no key update) `
        : sql``;
    const locked = lockIds.length > 0 ? sql` and (select count(*) from locked) >= 0` : sql``;
    // A few hundred at most (the engine's batch): well under either store's parameter limit.
    const result = await sql<{ id: string; execution_status: string | null }>`
      ${locking}update flow_steps
         set status = 'succeeded', error = null, finished_at = ${now}, lease_owner = null, lease_until = null,
             output = case id ${sql.join(outcomes.map((o) => sql`when ${o.step.id} then ${JSON.stringify(o.output ?? null)}`), sql` `)} end
       where status = 'running' and lease_owner = ${owner}
         and (id, attempt, started_at) in (values ${sql.join(outcomes.map((o) => sql`(${o.step.id}, cast(${o.step.attempt} as integer), cast(${o.step.started_at ?? -1} as bigint))`))})${locked}
      returning id, ${executionStatusOfStep(this.store.dialect)} as execution_status`.execute(trx);
    const counted = new Set(result.rows.map((row) => row.id));
    // Next steps of a paused execution are held until it resumes.
    const pausedSteps = new Set(result.rows.filter((row) => row.execution_status === 'paused').map((row) => row.id));
    const recorded = outcomes.filter((o) => counted.has(o.step.id));
    const continuing = recorded.filter((o) => o.next.length > 0);
    let leased: StepRow[] = [];
    let unleased = false;
    if (continuing.length > 0) {
      const rows = continuing.flatMap((o) => o.next.map((plan) => this.stepRow({ id: o.step.execution_id, tenant: o.step.tenant }, o.step.id, plan, now, pausedSteps.has(o.step.id) ? 'held' : 'ready')));
      // The next steps of executions this process runs are leased to it at once, as a claim
      // would: they start when this commits, without a claim's wait and round trip.
      let room = eager?.room ?? 0;
      for (const row of rows) {
        if (room <= 0) break;
        if (row.status !== 'ready') continue;
        Object.assign(row, { status: 'running', attempt: 1, lease_owner: owner, lease_until: now + eager!.leaseMs, started_at: now });
        room -= 1;
      }
      const inserted = new Set((await trx.insertInto('flow_steps').values(rows).onConflict((oc) => oc.doNothing()).returning('id').execute()).map((r) => r.id));
      leased = rows.filter((row) => row.lease_owner === owner && inserted.has(row.id));
      unleased = rows.some((row) => row.status === 'ready' && inserted.has(row.id));
      for (const row of rows) if (inserted.has(row.id)) advanced.add(row.execution_id);
    }
    for (const o of recorded) if (o.response !== undefined) await this.recordResponse(trx, o.step.execution_id, o.response, now);
    return { recorded, leased, unleased, advanced };
  }

  /**
   * Finishes those of `ids` that have nothing left open as succeeded, in one update, with their
   * last node's output where this batch recorded it, and publishes their events in one
   * write per tenant; answers the executions it finished.
   */
  private async finishSucceeded(trx: Trx, ids: readonly string[], outputs: ReadonlyMap<string, unknown>, now: number): Promise<ExecutionRow[]> {
    if (ids.length === 0) return [];
    const withOutput = ids.filter((id) => outputs.has(id));
    const output = withOutput.length === 0 ? sql<string | null>`output` : sql<string | null>`case id ${sql.join(withOutput.map((id) => sql`when ${id} then ${JSON.stringify(outputs.get(id))}`), sql` `)} else output end`;
    const rows = await trx
      .updateTable('flow_executions')
      .set({ status: 'succeeded', updated_at: now, finished_at: now, error: null, output })
      .where('id', 'in', ids as string[])
      .where('status', 'not in', FINISHED)
      .where((eb) => eb.not(eb.exists(eb.selectFrom('flow_steps').select('flow_steps.id').whereRef('flow_steps.execution_id', '=', 'flow_executions.id').where('flow_steps.status', 'in', OPEN_STEPS))))
      .returningAll()
      .execute();
    await this.events.publishAll(trx, rows, EXECUTION_EVENTS.succeeded, () => ({}));
    for (const row of rows) await this.onFinish?.(trx, row);
    return rows;
  }

  private async recordResponse(trx: Trx, executionId: string, response: unknown, now: number): Promise<void> {
    await trx.updateTable('flow_executions').set({ response: JSON.stringify(response), updated_at: now }).where('id', '=', executionId).where('response', 'is', null).execute();
  }

  /** Cancels the execution's steps that still have work ahead. */
  async cancelOpenSteps(trx: Trx, executionId: string, now: number): Promise<void> {
    await trx
      .updateTable('flow_steps')
      .set({ status: 'cancelled', finished_at: now, lease_owner: null, lease_until: null })
      .where('execution_id', '=', executionId)
      .where('status', 'in', OPEN_STEPS)
      .execute();
  }

  /** Finishes an execution that is not finished yet, and publishes its event; false when it was finished already. */
  async finish(trx: Trx, executionId: string, status: ExecutionStatus, output: unknown, error: unknown): Promise<boolean> {
    const now = this.clock.now();
    const changes: Partial<ExecutionRow> = { status, updated_at: now, finished_at: now, error: error === null ? null : JSON.stringify(error) };
    if (output !== undefined) changes.output = output === null ? null : JSON.stringify(output);
    const row = await trx.updateTable('flow_executions').set(changes).where('id', '=', executionId).where('status', 'not in', FINISHED).returningAll().executeTakeFirst();
    if (!row) return false;
    // A parent that fails or is cancelled takes its unfinished subflow children with it.
    if (status !== 'succeeded') await this.cancelChildren(trx, executionId, status, now);
    const event = status === 'succeeded' ? EXECUTION_EVENTS.succeeded : status === 'cancelled' ? EXECUTION_EVENTS.cancelled : EXECUTION_EVENTS.failed;
    await this.events.publish(trx, row, event, error ? { error } : {});
    await this.onFinish?.(trx, row);
    return true;
  }

  private async cancelChildren(trx: Trx, parentId: string, status: ExecutionStatus, now: number): Promise<void> {
    const children = await trx.selectFrom('flow_executions').select('id').where('parent_execution_id', '=', parentId).where('status', 'not in', FINISHED).execute();
    for (const child of children) {
      await this.locks.lockExecution(trx, child.id);
      await this.cancelOpenSteps(trx, child.id, now);
      await this.finish(trx, child.id, 'cancelled', undefined, { code: 'PARENT_ENDED', message: `The parent execution ${parentId} ${status === 'failed' ? 'failed' : 'was cancelled'}.` });
    }
  }

  async execution(tenant: string, id: string): Promise<ExecutionRow | undefined> {
    return this.db.selectFrom('flow_executions').selectAll().where('id', '=', id).where('tenant', '=', tenant).executeTakeFirst();
  }

  async executionById(id: string): Promise<ExecutionRow | undefined> {
    return this.db.selectFrom('flow_executions').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async executionsByIds(ids: readonly string[]): Promise<Map<string, ExecutionRow>> {
    const rows = ids.length === 0 ? [] : await this.db.selectFrom('flow_executions').selectAll().where('id', 'in', ids as string[]).execute();
    return new Map(rows.map((row) => [row.id, row]));
  }
}
