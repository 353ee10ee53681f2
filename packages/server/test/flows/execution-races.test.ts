/**
 * What may happen to an execution while its steps' outcomes are being recorded.
 * - A paused execution runs nothing new: its step whose lease lapses (its process died)
 *   is held, not made ready.
 * - A re-run does not count the outcome of the run it replaced.
 * - A subflow step still running when its parent ended starts no child.
 * - A change that loses a deadlock is made again.
 * - On PostgreSQL, where a pause, a resume, a cancel or another process's outcome can
 *   commit while an outcome is recorded (SQLite has one writer at a time: there is
 *   nothing to race), whichever commits first: a paused execution runs nothing new, a
 *   resumed one leaves nothing held, a cancelled or failed one leaves nothing to run, and
 *   an execution whose last steps end together finishes. The racing operations are the
 *   real ones, only kept from committing until the other side waits for them or is done.
 */
import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecutionOperations } from '../../src/flows/engine/execution-operations.js';
import { ExecutionStore } from '../../src/flows/engine/execution.store.js';
import type { StepOutcome, StepRow } from '../../src/flows/engine/execution-model.js';
import type { FlowsTables } from '../../src/flows/flows.tables.js';
import { ManualClock, systemClock } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import { openTestBus, type TestBus, uniqueTenant, waitFor } from '../support/bus.js';

const OWNER = 'engine-a';
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

/** A running execution whose first step is leased to OWNER for `leaseMs`, as the engine would hold it. */
async function runningStep(executions: ExecutionStore, leaseMs = 60_000): Promise<StepRow> {
  const created = await executions.create({
    tenant: uniqueTenant(),
    flowId: 'f',
    flowVersion: 1,
    trigger: 'manual',
    input: {},
    traceparent: TRACEPARENT,
    first: [{ node: 'book', phase: 'main', input: {} }],
    lease: { owner: OWNER, leaseMs },
  });
  const [step] = created.leased;
  if (!step) throw new Error('the first step was not leased');
  return step;
}

describe.each(['embedded-sqlite', 'embedded-postgres'] as const)('executions on %s', (kind) => {
  let opened: TestBus;
  let executions: ExecutionStore;
  const clock = new ManualClock(Date.parse('2026-12-07T00:00:00Z'));

  beforeEach(async () => {
    opened = await openTestBus(kind, { migrations: ALL_MIGRATIONS });
    executions = new ExecutionStore(opened.store, opened.bus, clock);
  });
  afterEach(async () => {
    await opened.close();
  });

  it('a paused execution holds its step whose lease lapses, and resume makes it ready', async () => {
    const step = await runningStep(executions, 1_000);
    const operations = new ExecutionOperations(executions, clock);
    expect(await operations.pause(step.execution_id)).toBe(true);
    clock.advance(5_000);
    expect(await executions.leases.recoverExpiredLeases()).toBe(1);
    const statusOfStep = async () => (await executions.db.selectFrom('flow_steps').select('status').where('id', '=', step.id).executeTakeFirstOrThrow()).status;
    expect(await statusOfStep()).toBe('held');
    expect(await executions.leases.claim('engine-b', 10, 60_000)).toEqual([]);

    expect(await operations.resume(step.execution_id)).toBe(true);
    expect(await statusOfStep()).toBe('ready');
    expect((await executions.leases.claim('engine-b', 10, 60_000)).map((s) => s.id)).toEqual([step.id]);
  });

  it('a re-run does not count the outcome of the run it replaced, though the same process runs it again', async () => {
    const old = await runningStep(executions);
    const operations = new ExecutionOperations(executions, clock);
    expect(await operations.cancel(old.execution_id)).toBe(true);
    expect(await operations.rerun(old.execution_id)).toBe(true);
    clock.advance(1_000);
    const [again] = await executions.leases.claim(OWNER, 5, 60_000);
    // The same step, the same process, and the attempts counted from the start again.
    expect(again).toMatchObject({ id: old.id, lease_owner: OWNER, attempt: old.attempt });

    const stale = await executions.apply(OWNER, [{ kind: 'failed', step: old, error: { code: 'STALE', message: 'the cancelled run failed' } }]);
    expect(stale.applied.size).toBe(0);
    const fresh = await executions.apply(OWNER, [{ kind: 'succeeded', step: again!, output: { booked: true }, next: [], leaf: true }]);
    expect(fresh.finished.get(old.execution_id)).toBe('succeeded');
  });

  it('a subflow is not started for a parent that ended while its subflow step ran', async () => {
    // The parent's `subflow` step runs; the parent is cancelled (no child to cancel yet);
    // then the step gets as far as starting its child.
    const step = await runningStep(executions);
    expect(await new ExecutionOperations(executions, clock).cancel(step.execution_id)).toBe(true);
    const child = executions.create({
      tenant: step.tenant,
      flowId: 'child',
      flowVersion: 1,
      trigger: 'subflow',
      input: {},
      traceparent: TRACEPARENT,
      idempotencyKey: `subflow:${step.id}`,
      parentExecutionId: step.execution_id,
      first: [{ node: 'work', phase: 'main', input: {} }],
    });
    await expect(child).rejects.toMatchObject({ code: 'FLOWGATE_ERR_EXECUTION_STATUS_CONFLICT' });
    expect(await executions.db.selectFrom('flow_executions').select('id').where('parent_execution_id', '=', step.execution_id).execute()).toEqual([]);
  });

  it('a change that loses a deadlock is made again (PostgreSQL cancels one of two transactions waiting on each other), and another error is not', async () => {
    const step = await runningStep(executions);
    let tries = 0;
    const changed = await executions.locks.changeExecution(step.execution_id, async (trx) => {
      tries += 1;
      await trx.updateTable('flow_executions').set({ output: JSON.stringify({ try: tries }) }).where('id', '=', step.execution_id).execute();
      if (tries === 1) throw Object.assign(new Error('deadlock detected'), { code: '40P01' });
      return 'changed';
    });
    expect(changed).toBe('changed');
    expect(tries).toBe(2);
    // The first try's write was rolled back with it.
    const row = await executions.db.selectFrom('flow_executions').select('output').where('id', '=', step.execution_id).executeTakeFirstOrThrow();
    expect(JSON.parse(row.output!)).toEqual({ try: 2 });

    let failures = 0;
    const broken = executions.locks.changeExecution(step.execution_id, () => {
      failures += 1;
      return Promise.reject(new Error('not a race'));
    });
    await expect(broken).rejects.toThrow('not a race');
    expect(failures).toBe(1);
  });
});

describe('changes racing an outcome on postgres', () => {
  let opened: TestBus;
  let executions: ExecutionStore;
  let db: Kysely<FlowsTables>;

  beforeEach(async () => {
    opened = await openTestBus('embedded-postgres', { migrations: ALL_MIGRATIONS });
    executions = new ExecutionStore(opened.store, opened.bus, systemClock);
    db = executions.db;
  });
  afterEach(async () => {
    await opened.close();
  });

  /**
   * Where the first of two racing transactions stops, its writes done, uncommitted: `at`
   * is called from inside it with the transaction, and holds it until released.
   */
  class Hold {
    private pid: number | undefined;
    private release!: () => void;
    private readonly released = new Promise<void>((resolve) => (this.release = resolve));

    readonly at = async (trx: Kysely<unknown>): Promise<void> => {
      this.pid = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx)).rows[0]!.pid;
      await this.released;
    };

    /** Runs `second` while the held transaction is open; lets it commit once `second` waits for it or is done. */
    async race<T>(second: () => Promise<T>): Promise<T> {
      await waitFor('the first transaction to be held', () => this.pid !== undefined);
      let done = false;
      const running = second().finally(() => (done = true));
      // Were `second` not to wait for the held transaction, it ends on its own: either way
      // the race has been run when the held one commits.
      await waitFor('the second transaction to wait or end', async () => done || (await this.blocksAnother()));
      this.release();
      return running;
    }

    private async blocksAnother(): Promise<boolean> {
      const waiting = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity where ${this.pid!} = any(pg_blocking_pids(pid))`.execute(db);
      return (waiting.rows[0]?.n ?? 0) > 0;
    }
  }

  /** Operations whose transaction stops at `hold` once their statements are written. */
  const heldOperations = (hold: Hold) =>
    new ExecutionOperations(
      Object.create(executions, {
        locks: {
          value: Object.create(executions.locks, {
            changeExecution: {
              value: <T>(id: string, work: (trx: never, now: number) => Promise<T>) =>
                executions.locks.changeExecution(id, async (trx, now) => {
                  const result = await work(trx as never, now);
                  await hold.at(trx as unknown as Kysely<unknown>);
                  return result;
                }),
            },
          }) as ExecutionStore['locks'],
        },
      }) as ExecutionStore,
      systemClock,
    );

  /**
   * The store, its recording of outcomes stopping at `hold` once its steps and executions
   * are written (after its last write, `finishSucceeded`, a private step overridden here
   * only to pause there).
   */
  const heldRecording = (hold: Hold) => {
    const finishSucceeded = (ExecutionStore.prototype as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>).finishSucceeded!;
    return Object.create(executions, {
      finishSucceeded: {
        value: async function (this: ExecutionStore, ...args: unknown[]) {
          const result = await finishSucceeded.apply(this, args);
          await hold.at(args[0] as Kysely<unknown>);
          return result;
        },
      },
    }) as ExecutionStore;
  };

  /** Records `outcome` as the process its step is leased to. */
  const record = (store: ExecutionStore, outcome: StepOutcome) => store.apply(outcome.step.lease_owner!, [outcome], { room: 8, leaseMs: 60_000 });
  const succeeded = (step: StepRow, next: string[] = []): StepOutcome => ({ kind: 'succeeded', step, output: { node: step.node }, next: next.map((node) => ({ node, phase: 'main' as const, input: {} })), leaf: next.length === 0 });

  const stepsOf = async (executionId: string) =>
    Object.fromEntries((await db.selectFrom('flow_steps').select(['node', 'status']).where('execution_id', '=', executionId).execute()).map((s) => [s.node, s.status]));
  const statusOf = async (executionId: string) => (await db.selectFrom('flow_executions').select('status').where('id', '=', executionId).executeTakeFirstOrThrow()).status;

  /** An execution with two first steps, `a` and `b`, one leased to engine-a, the other to engine-b. */
  async function twoBranches(): Promise<{ a: StepRow; b: StepRow }> {
    const created = await executions.create({ tenant: uniqueTenant(), flowId: 'f', flowVersion: 1, trigger: 'manual', input: {}, traceparent: TRACEPARENT, first: [{ node: 'a', phase: 'main', input: {} }, { node: 'b', phase: 'main', input: {} }] });
    const claimed = [...(await executions.leases.claim('engine-a', 1, 60_000)), ...(await executions.leases.claim('engine-b', 1, 60_000))];
    const a = claimed.find((step) => step.node === 'a');
    const b = claimed.find((step) => step.node === 'b');
    if (!a || !b || a.execution_id !== created.row.id) throw new Error('the two branches were not claimed');
    return { a, b };
  }

  it('holds the next step of a success recorded while the pause commits', async () => {
    const step = await runningStep(executions);
    const hold = new Hold();
    const paused = heldOperations(hold).pause(step.execution_id);
    await hold.race(() => record(executions, succeeded(step, ['confirm'])));
    expect(await paused).toBe(true);
    expect(await statusOf(step.execution_id)).toBe('paused');
    expect(await stepsOf(step.execution_id)).toEqual({ book: 'succeeded', confirm: 'held' });
  });

  it('holds a retry recorded while the pause commits', async () => {
    const step = await runningStep(executions);
    const hold = new Hold();
    const paused = heldOperations(hold).pause(step.execution_id);
    await hold.race(() => record(executions, { kind: 'retry', step, at: Date.now(), error: { code: 'UPSTREAM_5XX', message: 'busy' } }));
    expect(await paused).toBe(true);
    expect(await stepsOf(step.execution_id)).toEqual({ book: 'held' });
  });

  it('leaves nothing held after a resume that commits while a success is recorded', async () => {
    const step = await runningStep(executions);
    // Paused while its step runs: the step goes on, and the resume races its outcome.
    expect(await new ExecutionOperations(executions, systemClock).pause(step.execution_id)).toBe(true);
    const hold = new Hold();
    const resumed = heldOperations(hold).resume(step.execution_id);
    await hold.race(() => record(executions, succeeded(step, ['confirm'])));
    expect(await resumed).toBe(true);
    expect(await statusOf(step.execution_id)).toBe('running');
    const steps = await stepsOf(step.execution_id);
    expect(steps.book).toBe('succeeded');
    // Ready, or leased to run at once: anything but held in a running execution.
    expect(['ready', 'running']).toContain(steps.confirm);
  });

  it('finishes an execution whose last two steps are recorded at once by two processes', async () => {
    const { a, b } = await twoBranches();
    const hold = new Hold();
    const first = record(heldRecording(hold), succeeded(a));
    await hold.race(() => record(executions, succeeded(b)));
    await first;
    expect(await stepsOf(a.execution_id)).toEqual({ a: 'succeeded', b: 'succeeded' });
    expect(await statusOf(a.execution_id)).toBe('succeeded');
  });

  it('fails an execution for good when a branch fails while another records its next step', async () => {
    const { a, b } = await twoBranches();
    const hold = new Hold();
    const first = record(heldRecording(hold), succeeded(a, ['after-a']));
    await hold.race(() => record(executions, { kind: 'failed', step: b, error: { code: 'BOOM', message: 'b broke' } }));
    await first;
    expect(await statusOf(a.execution_id)).toBe('failed');
    expect(await stepsOf(a.execution_id)).toEqual({ a: 'succeeded', b: 'failed', 'after-a': 'cancelled' });
    expect(await executions.leases.claim('engine-c', 10, 60_000)).toEqual([]);
  });

  it('cancels the next step of a success recorded while the cancel commits', async () => {
    const step = await runningStep(executions);
    const hold = new Hold();
    const recorded = record(heldRecording(hold), succeeded(step, ['confirm']));
    const cancelled = await hold.race(() => new ExecutionOperations(executions, systemClock).cancel(step.execution_id));
    await recorded;
    expect(cancelled).toBe(true);
    expect(await statusOf(step.execution_id)).toBe('cancelled');
    expect(await stepsOf(step.execution_id)).toEqual({ book: 'succeeded', confirm: 'cancelled' });
    expect(await executions.leases.claim('engine-c', 10, 60_000)).toEqual([]);
  });
});
