import type { Transaction } from 'kysely';
import { FlowgateError } from '../../errors/index.js';
import { newId, runPeriodically, type Clock } from '../../kernel/index.js';
import { formatTraceparent, startSpan, type Logger } from '../../observability/index.js';
import { isTransactionConflict, retryOnConflict } from '../../storage/index.js';
import { evaluate } from '../expressions.js';
import type { FlowRecord, FlowRepository } from '../flow.repository.js';
import type { FlowsTables } from '../flows.tables.js';
import { isFinished, type CreatedExecution, type ExecutionRow, type StepOutcome, type StepRow } from './execution-model.js';
import type { ExecutionStore } from './execution.store.js';
import { ExecutionOperations } from './execution-operations.js';
import { FinishFollowUps } from './finish-follow-ups.js';
import { FlowGraphs } from './flow-graphs.js';
import { KeyedWake } from './keyed-wake.js';
import { firstSteps } from './orchestrator.js';
import { keyOf, startKey, type StartRequest } from './start-keys.js';
import type { StepRunner } from './step-runner.js';

export type { StartRequest } from './start-keys.js';

export interface FlowEngineSettings {
  /** How long a claimed step is leased; a process that stops renewing loses it after this. */
  readonly leaseMs: number;
  /** Steps this process runs at once. */
  readonly maxInFlight: number;
  /** How often the store is polled for due steps when nothing woke the worker. */
  readonly pollMs: number;
}

export interface FlowEngineOptions {
  readonly executions: ExecutionStore;
  readonly flows: FlowRepository;
  readonly runner: StepRunner;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly settings: FlowEngineSettings;
}

/** What a caller waiting on an execution gets: its `respond` answer, its end, or nothing in time. */
export type ExecutionAnswer = { readonly kind: 'responded'; readonly response: unknown } | { readonly kind: 'finished'; readonly execution: ExecutionRow } | { readonly kind: 'timeout' };

const BATCH = 256;

interface RunningStep {
  readonly controller: AbortController;
  execution?: ExecutionRow;
}

/**
 * The durable engine: claims due steps (fairly between tenants), runs them through the
 * {@link StepRunner}, and records their outcomes in batches (one transaction for all the
 * outcomes ready at that moment: a group commit). Every process runs one; they share the
 * work through leases in the store.
 */
export class FlowEngine {
  private readonly owner = `engine-${newId()}`;
  /** Steps running here: how to abort each, and its execution as read when it began (its next steps run with it). */
  private readonly running = new Map<string, RunningStep>();
  private readonly outcomes: StepOutcome[] = [];
  private readonly graphs: FlowGraphs;
  /** Callers waiting on an execution's answer, woken when this process records one. */
  private readonly waiters = new KeyedWake();
  private readonly timers: NodeJS.Timeout[] = [];
  private wakeUp: (() => void) | undefined;
  /** A wake that came while the worker was not waiting. */
  private woken = false;
  private readonly operations: ExecutionOperations;
  /** Room promised to starts whose first steps are leased to this process, until they commit. */
  private reserved = 0;
  /**
   * Whether ready steps may be queued for this process to claim (its last claim filled
   * the room it had, or steps were left unleased for lack of room). While they may, starts
   * lease nothing themselves: their steps join the queue, which the claim shares out fairly.
   */
  private backlog = false;
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  private loop: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: FlowEngineOptions) {
    this.graphs = new FlowGraphs(options.flows);
    const followUps = new FinishFollowUps({
      executions: options.executions,
      definitionOf: async (trx, execution) => {
        const cached = this.graphs.cached(execution);
        if (cached) return cached.definition;
        const row = await trx.selectFrom('flow_versions').select('definition').where('flow_id', '=', execution.flow_id).where('version', '=', Number(execution.flow_version)).executeTakeFirstOrThrow();
        return JSON.parse(row.definition) as FlowRecord['definition'];
      },
      start: async (trx, flow, input, trigger, traceparent) => {
        await this.start(flow, { input, trigger, traceparent }, trx);
      },
      logger: options.logger,
    });
    options.executions.onFinish = followUps.run;
    options.executions.probeWait = followUps.probe;
    options.executions.limitOf = followUps.limitOf;
    options.executions.timeoutOf = followUps.timeoutOf;
    this.operations = new ExecutionOperations(options.executions, options.clock);
  }

  begin(): void {
    const { leaseMs } = this.options.settings;
    this.every(Math.max(50, Math.floor(leaseMs / 3)), async () => {
      await this.options.executions.leases.renew(this.owner, [...this.running.keys()], leaseMs);
    });
    this.every(Math.max(100, Math.floor(leaseMs / 2)), async () => {
      if ((await this.options.executions.leases.recoverExpiredLeases()) > 0) this.wake();
    });
    this.every(1000, async () => {
      const expired = await this.operations.expireDeadlines((execution, error) => this.options.logger.warn({ err: error, execution }, 'an execution past its flow timeout could not be failed'));
      for (const id of expired) this.notify(id);
      // An expired execution may have freed a concurrency slot or resolved a parent's wait.
      if (expired.length > 0) this.wake();
    });
    this.loop = this.work();
  }

  private every(ms: number, task: () => Promise<void>): void {
    this.timers.push(runPeriodically(ms, task, { stopped: () => this.closed, onError: (error) => this.options.logger.warn({ err: error }, 'flow engine background task failed') }));
  }

  /** Stops claiming, lets running steps finish (up to `graceMs`) and records their outcomes. */
  async close(graceMs = 5000): Promise<void> {
    this.closed = true;
    this.timers.forEach(clearInterval);
    this.wake();
    await this.loop;
    const deadline = Date.now() + graceMs;
    while ((this.running.size > 0 || this.reserved > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const { controller } of this.running.values()) controller.abort(new Error('Flowgate is shutting down'));
    await this.flush();
  }

  /** Starts an execution of an active (or manually run) flow; with a used idempotency key, answers the first one. */
  async start(flow: FlowRecord, request: StartRequest, trx?: Transaction<FlowsTables>): Promise<{ execution: ExecutionRow; created: boolean }> {
    const definition = flow.definition;
    const traceparent = formatTraceparent(startSpan(request.traceparent));
    const idempotencyKey = await startKey(request, definition.settings?.idempotencyKey);
    const timeoutMs = definition.settings?.timeoutMs;
    const concurrency = definition.settings?.concurrency;
    const first = firstSteps(this.graphs.of(flow.id, flow.version, definition), request.input);
    // With room and no queue, this process runs the first steps itself as soon as they are
    // written (as it does the steps that follow a success); otherwise the claim shares them out.
    const { maxInFlight, leaseMs } = this.options.settings;
    const lease = !trx && !this.closed && !this.backlog && first.length > 0 && maxInFlight - this.running.size - this.reserved >= first.length;
    if (lease) this.reserved += first.length;
    let created: CreatedExecution;
    try {
      created = await this.options.executions.create(
        {
          tenant: flow.tenant,
          flowId: flow.id,
          flowVersion: flow.version,
          trigger: request.trigger,
          input: request.input,
          idempotencyKey,
          traceparent,
          deadlineAt: timeoutMs ? this.options.clock.now() + timeoutMs : undefined,
          parentExecutionId: request.parentExecutionId,
          concurrency: concurrency ? { key: concurrency.key ? keyOf(await evaluate(concurrency.key, request.input)) : '', limit: concurrency.limit } : undefined,
          first,
          lease: lease ? { owner: this.owner, leaseMs } : undefined,
        },
        trx,
      );
    } finally {
      if (lease) this.reserved -= first.length;
    }
    const { row, leased } = created;
    if (leased.length > 0) void this.executeAll(leased, new Map([[row.id, row]]));
    if (created.created && !trx && leased.length < first.length) this.wake();
    return { execution: row, created: created.created };
  }

  /** Wakes the worker: new steps are ready. A wake while it is claiming makes it claim again at once. */
  wake(): void {
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    if (wake) wake();
    else this.woken = true;
  }

  /**
   * Waits for an execution's `respond` answer or its end, up to `timeoutMs`. Outcomes
   * recorded by this process wake the waiter at once; others are seen by polling.
   */
  async answer(executionId: string, timeoutMs: number): Promise<ExecutionAnswer> {
    const deadline = this.options.clock.now() + timeoutMs;
    for (;;) {
      const row = await this.options.executions.executionById(executionId);
      if (!row) return { kind: 'timeout' };
      if (row.response !== null) return { kind: 'responded', response: JSON.parse(row.response) };
      if (isFinished(row.status)) return { kind: 'finished', execution: row };
      const left = deadline - this.options.clock.now();
      if (left <= 0) return { kind: 'timeout' };
      await this.waiters.wait(executionId, Math.min(left, 250));
    }
  }

  private notify(executionId: string): void {
    this.waiters.wake(executionId);
  }

  private async work(): Promise<void> {
    const { maxInFlight, leaseMs, pollMs } = this.options.settings;
    while (!this.closed) {
      const room = maxInFlight - this.running.size - this.reserved;
      let claimed: StepRow[] = [];
      // Wakes until now are answered by this claim; later ones by another.
      this.woken = false;
      if (room > 0) {
        try {
          claimed = await this.options.executions.leases.claim(this.owner, Math.min(room, 64), leaseMs);
          // A claim that took fewer than it could found the queue empty.
          this.backlog = claimed.length === Math.min(room, 64);
        } catch (error) {
          this.options.logger.warn({ err: error }, 'flow engine could not claim steps');
        }
        if (claimed.length > 0) await this.executeAll(claimed);
      }
      if (room <= 0) this.backlog = true;
      if (claimed.length > 0 && claimed.length === Math.min(room, 64)) continue;
      // Woken during the claim (a start or an outcome committed meanwhile): its steps may
      // have missed the claim, so look again rather than sleep until the next poll.
      if (this.woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.wakeUp = undefined;
          resolve();
        }, pollMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Runs claimed steps; the executions the caller does not know are read in one query. */
  private async executeAll(steps: readonly StepRow[], known?: ReadonlyMap<string, ExecutionRow>): Promise<void> {
    const executions = new Map(known);
    const missing = [...new Set(steps.map((s) => s.execution_id))].filter((id) => !executions.has(id));
    try {
      if (missing.length > 0) for (const [id, row] of await this.options.executions.executionsByIds(missing)) executions.set(id, row);
    } catch (error) {
      // Each step reads its own execution instead; a store that fails there too lets the lease run out.
      this.options.logger.warn({ err: error }, 'flow engine could not read the executions of claimed steps');
    }
    for (const step of steps) this.execute(step, executions.get(step.execution_id));
  }

  private execute(step: StepRow, known: ExecutionRow | undefined): void {
    const controller = new AbortController();
    const entry: RunningStep = { controller };
    this.running.set(step.id, entry);
    const run = async (): Promise<StepOutcome> => {
      const execution = known ?? (await this.options.executions.executionById(step.execution_id));
      if (!execution) throw new Error(`step ${step.id} has no execution`);
      entry.execution = execution;
      return this.options.runner.run(step, execution, await this.graphs.forExecution(execution), controller.signal);
    };
    run()
      .then((outcome) => {
        this.outcomes.push(outcome);
        this.scheduleFlush();
      })
      .catch((error: unknown) => {
        // Only the store failing gets here; the lease runs out and another run picks the step up.
        this.options.logger.warn({ err: error, step: step.id }, 'flow step could not run');
        this.running.delete(step.id);
      });
  }

  /**
   * Flushes once the outcomes of this turn of the event loop are in: steps that finish
   * together share one commit (and, on SQLite, one fsync, which blocks the loop).
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  /** Records every outcome waiting, in one transaction per batch. */
  private flush(): Promise<void> {
    this.flushing ??= (async () => {
      try {
        while (this.outcomes.length > 0) {
          const batch = this.outcomes.splice(0, BATCH);
          try {
            await this.record(batch);
          } catch (error) {
            // One outcome can sink a batch (a deadlock between processes locking concurrency
            // or wait keys in another order, a failing follow-up): each is tried alone, so
            // only what cannot be recorded waits for its lease to run out and runs again.
            if (batch.length === 1) await this.recordAlone(batch[0]!, error);
            else for (const outcome of batch) await this.recordAlone(outcome);
          }
        }
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  private async record(batch: StepOutcome[]): Promise<void> {
    const { maxInFlight, leaseMs } = this.options.settings;
    // The batch's own steps are still counted as running: they end with this record.
    const room = this.closed ? 0 : maxInFlight - this.running.size - this.reserved + batch.length;
    const { finished, leased, readied } = await this.options.executions.apply(this.owner, batch, { room, leaseMs });
    if (leased.length > 0) {
      const known = new Map<string, ExecutionRow>();
      for (const outcome of batch) {
        const execution = this.running.get(outcome.step.id)?.execution;
        if (execution) known.set(execution.id, execution);
      }
      await this.executeAll(leased, known);
    }
    // Room freed while steps queue, or steps made due that no one holds: claim them.
    if (this.backlog || readied) this.wake();
    for (const outcome of batch) {
      this.running.delete(outcome.step.id);
      if ('response' in outcome && outcome.response !== undefined) this.notify(outcome.step.execution_id);
    }
    for (const id of finished.keys()) this.notify(id);
  }

  /**
   * Records one outcome, again while it loses deadlocks (PostgreSQL cancels one of two
   * transactions waiting on each other: a lost race, `failed` when the batch it was in lost
   * one); one that cannot be recorded waits for its lease to run out, and its step runs again.
   */
  private async recordAlone(outcome: StepOutcome, failed?: unknown): Promise<void> {
    if (failed !== undefined && !isTransactionConflict(failed)) return this.unrecorded([outcome], failed);
    await retryOnConflict(() => this.record([outcome])).catch((error: unknown) => this.unrecorded([outcome], error));
  }

  private unrecorded(outcomes: StepOutcome[], error: unknown): void {
    this.options.logger.warn({ err: error, steps: outcomes.length }, 'flow engine could not record step outcomes');
    for (const outcome of outcomes) this.running.delete(outcome.step.id);
    this.wake();
  }

  // --- Operations on executions --------------------------------------------------------

  async cancel(tenant: string, id: string): Promise<void> {
    // Steps running now finish, but their outcomes no longer count: the steps are cancelled.
    await this.operate(tenant, id, 'cancel', (i) => this.operations.cancel(i));
    this.notify(id);
    // Its end may have resolved a parent's wait or freed a concurrency slot.
    this.wake();
  }

  /** Resolves the steps of the tenant waiting on `key` (a matching event); true when some were. */
  async resolveWaits(tenant: string, key: string, output: unknown): Promise<boolean> {
    const executions = this.options.executions;
    const resolved = await executions.db.transaction().execute((trx) => executions.gates.resolveWaits(trx, tenant, key, { output }));
    if (resolved > 0) this.wake();
    return resolved > 0;
  }

  async pause(tenant: string, id: string): Promise<void> {
    await this.operate(tenant, id, 'pause', (i) => this.operations.pause(i));
  }

  async resume(tenant: string, id: string): Promise<void> {
    await this.operate(tenant, id, 'resume', (i) => this.operations.resume(i), true);
    this.wake();
  }

  async rerun(tenant: string, id: string): Promise<void> {
    await this.operate(tenant, id, 're-run', (i) => this.operations.rerun(i), true);
    this.wake();
  }

  /** Changes an execution; `runs` (resume, re-run): only while its flow exists, since it runs steps again. */
  private async operate(tenant: string, id: string, what: string, change: (id: string) => Promise<boolean>, runs = false): Promise<void> {
    const row = await this.options.executions.execution(tenant, id);
    if (!row) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', 'No such execution.');
    if (runs && !(await this.options.flows.byId(row.flow_id))) {
      throw new FlowgateError('FLOWGATE_ERR_EXECUTION_STATUS_CONFLICT', `The flow of this execution was deleted; it cannot ${what}.`, { extensions: { status: row.status } });
    }
    if (!(await change(id))) {
      const now = await this.options.executions.execution(tenant, id);
      throw new FlowgateError('FLOWGATE_ERR_EXECUTION_STATUS_CONFLICT', `The execution is ${now?.status ?? row.status}; it cannot ${what} now.`, { extensions: { status: now?.status ?? row.status } });
    }
  }
}
