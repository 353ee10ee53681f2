/**
 * A paused execution runs nothing new. Its step whose lease lapses (its process died) is
 * held, not made ready. And on PostgreSQL, where the engine records outcomes while a pause
 * or resume is committing (SQLite has one writer at a time: there is nothing to race),
 * whichever commits first, a paused execution runs nothing new and a resumed one leaves
 * nothing held: the pause (or resume) here is the real operation, only kept from
 * committing until the outcome is being recorded.
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

describe.each(['embedded-sqlite', 'embedded-postgres'] as const)('a paused execution on %s', (kind) => {
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

  it('holds its step whose lease lapses, and resume makes it ready', async () => {
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
});

describe('pause and resume racing an outcome on postgres', () => {
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
   * Runs `operation` (pause or resume) with its transaction held open after its statements,
   * records `outcome` meanwhile, and lets the operation commit once the recording either
   * waits for it or is done; answers whether the operation was allowed.
   */
  async function racing(operation: 'pause' | 'resume', outcome: StepOutcome): Promise<boolean> {
    let commit!: () => void;
    const held = new Promise<void>((resolve) => (commit = resolve));
    let ran = false;
    const gated = Object.create(executions, {
      changeExecution: {
        value: <T>(id: string, work: (trx: never, now: number) => Promise<T>) =>
          executions.changeExecution(id, async (trx, now) => {
            const result = await work(trx as never, now);
            ran = true;
            await held;
            return result;
          }),
      },
    }) as ExecutionStore;
    const operations = new ExecutionOperations(gated, systemClock);
    const allowed = operations[operation](outcome.step.execution_id);
    await waitFor(`the ${operation} to run`, () => ran);
    let recorded = false;
    const recording = executions.apply(OWNER, [outcome], { room: 8, leaseMs: 60_000 }).then(() => (recorded = true));
    // The recording either waits for the operation's row (it must read what the operation
    // commits) or, were it not to wait, ends on its own: then the race has been run.
    await waitFor('the recording to wait or end', async () => recorded || (await waitingForALock()));
    commit();
    await recording;
    return allowed;
  }

  async function waitingForALock(): Promise<boolean> {
    const waiting = await sql<{ n: number }>`
      select count(*)::int as n from pg_stat_activity
       where wait_event_type = 'Lock' and datname = current_database() and query like '%flow_executions e where e.id = flow_steps.execution_id%'`.execute(db);
    return (waiting.rows[0]?.n ?? 0) > 0;
  }

  const stepsOf = async (executionId: string) =>
    Object.fromEntries((await db.selectFrom('flow_steps').select(['node', 'status']).where('execution_id', '=', executionId).execute()).map((s) => [s.node, s.status]));
  const statusOf = async (executionId: string) => (await db.selectFrom('flow_executions').select('status').where('id', '=', executionId).executeTakeFirstOrThrow()).status;

  it('holds the next step of a success recorded while the pause commits', async () => {
    const step = await runningStep(executions);
    const next = [{ node: 'confirm', phase: 'main' as const, input: {} }];
    expect(await racing('pause', { kind: 'succeeded', step, output: { booked: true }, next, leaf: false })).toBe(true);
    expect(await statusOf(step.execution_id)).toBe('paused');
    expect(await stepsOf(step.execution_id)).toEqual({ book: 'succeeded', confirm: 'held' });
  });

  it('holds a retry recorded while the pause commits', async () => {
    const step = await runningStep(executions);
    expect(await racing('pause', { kind: 'retry', step, at: Date.now(), error: { code: 'UPSTREAM_5XX', message: 'busy' } })).toBe(true);
    expect(await stepsOf(step.execution_id)).toEqual({ book: 'held' });
  });

  it('leaves nothing held after a resume that commits while a success is recorded', async () => {
    const step = await runningStep(executions);
    // Paused while its step runs: the step goes on, and the resume races its outcome.
    expect(await new ExecutionOperations(executions, systemClock).pause(step.execution_id)).toBe(true);
    const next = [{ node: 'confirm', phase: 'main' as const, input: {} }];
    expect(await racing('resume', { kind: 'succeeded', step, output: { booked: true }, next, leaf: false })).toBe(true);
    expect(await statusOf(step.execution_id)).toBe('running');
    const steps = await stepsOf(step.execution_id);
    expect(steps.book).toBe('succeeded');
    // Ready, or leased to run at once: anything but held in a running execution.
    expect(['ready', 'running']).toContain(steps.confirm);
  });
});
