import { tmpdir } from 'node:os';
import type { FlowTrigger } from '@flowgate/contracts';
import { sql, type Kysely, type Transaction } from 'kysely';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StartRequest } from '../../src/flows/engine/flow-engine.js';
import type { ExecutionRow } from '../../src/flows/engine/execution-model.js';
import { toRecord, type FlowRecord } from '../../src/flows/flow.repository.js';
import type { FlowsTables } from '../../src/flows/flows.tables.js';
import { CronScheduler, type CronEngine } from '../../src/flows/scheduler/index.js';
import { ManualClock, newId } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import { openStore, type Store } from '../../src/storage/index.js';
import { openTestStore, STORE_KINDS, TEST_DATABASE_URL, type TestStore } from '../support/stores.js';

const silent = pino({ level: 'silent' });
const T0 = Date.UTC(2026, 0, 1);
const SECOND = 1000;
const MINUTE = 60 * SECOND;

interface Call {
  readonly flow: FlowRecord;
  readonly request: StartRequest;
  readonly inTransaction: boolean;
}

/**
 * Records what the scheduler starts. With `insert`, it also writes an execution row in
 * the scheduler's transaction (keyed by the tick in `concurrency_key`, not in the unique
 * idempotency column, so a double firing would show as two rows instead of an error);
 * `failNext` makes the next start throw after that insert, so the rollback is visible.
 */
class RecordingEngine implements CronEngine {
  readonly calls: Call[] = [];
  insert = false;
  failNext = 0;
  wakes = 0;

  constructor(private readonly clock: ManualClock) {}

  readonly start = async (flow: FlowRecord, request: StartRequest, trx?: Transaction<FlowsTables>): Promise<{ execution: ExecutionRow; created: boolean }> => {
    const now = this.clock.now();
    const row: ExecutionRow = {
      id: newId(),
      tenant: flow.tenant,
      flow_id: flow.id,
      flow_version: flow.version,
      status: 'running',
      trigger: request.trigger,
      input: JSON.stringify(request.input),
      output: null,
      error: null,
      idempotency_key: null,
      concurrency_key: request.idempotencyKey ?? null,
      traceparent: '00-00000000000000000000000000000001-0000000000000001-01',
      response: null,
      parent_execution_id: null,
      created_at: now,
      updated_at: now,
      finished_at: null,
      deadline_at: null,
    };
    if (this.insert && trx) await trx.insertInto('flow_executions').values(row).execute();
    if (this.failNext > 0) {
      this.failNext -= 1;
      throw new Error('the engine failed');
    }
    this.calls.push({ flow, request, inTransaction: trx !== undefined });
    return { execution: row, created: true };
  };

  readonly wake = () => {
    this.wakes += 1;
  };
}

describe.each(STORE_KINDS)('cron scheduler on %s', (kind) => {
  let opened: TestStore;
  let store: Store;
  let db: Kysely<FlowsTables>;
  let clock: ManualClock;
  let engine: RecordingEngine;
  let scheduler: CronScheduler;
  const others: { scheduler?: CronScheduler; store?: Store }[] = [];

  beforeEach(async () => {
    opened = await openTestStore(kind, { migrations: ALL_MIGRATIONS });
    store = opened.store;
    db = store.db<FlowsTables>();
    clock = new ManualClock(T0);
    engine = new RecordingEngine(clock);
    scheduler = new CronScheduler(store, clock, silent, engine);
  });

  afterEach(async () => {
    await scheduler.close();
    for (const other of others.splice(0)) {
      await other.scheduler?.close();
      await other.store?.close();
    }
    await opened.cleanup();
  });

  async function insertFlow(triggers: FlowTrigger[], name = `f${newId().slice(-8)}`, generation = 1): Promise<FlowRecord> {
    const row: FlowsTables['flows'] = {
      id: newId(),
      tenant: 'acme',
      name,
      version: 1,
      status: 'active',
      status_reason: null,
      generation,
      status_changed_at: clock.now(),
      definition: JSON.stringify({ name, triggers, nodes: [{ id: 'a', component: 'transform', config: { expression: '$' } }] }),
      created_at: clock.now(),
      updated_at: clock.now(),
    };
    await db.insertInto('flows').values(row).execute();
    return toRecord(row);
  }

  async function prepare(flow: FlowRecord, part: CronScheduler = scheduler): Promise<void> {
    await db.transaction().execute((trx) => part.prepare(flow, trx));
  }

  async function start(flow: FlowRecord): Promise<void> {
    await prepare(flow);
    await scheduler.activate(flow);
  }

  async function schedules(flowId: string) {
    const rows = await db.selectFrom('flow_schedules').selectAll().where('flow_id', '=', flowId).orderBy('trigger_index').execute();
    return rows.map((r) => ({ trigger_index: Number(r.trigger_index), active: Number(r.active), next_due_at: r.next_due_at === null ? null : Number(r.next_due_at), missed: r.missed, timezone: r.timezone }));
  }

  it('records a flow on prepare without firing it, and fires it with the Open Integration Hub message once active', async () => {
    const flow = await insertFlow([{ type: 'manual' }, { type: 'cron', expression: '*/5 * * * *' }]);
    await prepare(flow);
    expect(await schedules(flow.id)).toEqual([{ trigger_index: 1, active: 0, next_due_at: T0 + 5 * MINUTE, missed: 'skip', timezone: 'UTC' }]);

    clock.advance(5 * MINUTE);
    await scheduler.tick();
    expect(engine.calls).toHaveLength(0);

    // Counted from activation: the tick that passed while starting is not a missed one.
    await scheduler.activate(flow);
    expect(await schedules(flow.id)).toMatchObject([{ active: 1, next_due_at: T0 + 10 * MINUTE }]);
    clock.advance(5 * MINUTE + 20);
    await scheduler.tick();
    expect(engine.calls).toHaveLength(1);
    const [call] = engine.calls;
    expect(call!.flow.id).toBe(flow.id);
    expect(call!.inTransaction).toBe(true);
    expect(call!.request).toEqual({
      trigger: 'cron',
      idempotencyKey: `cron:1:${T0 + 10 * MINUTE}`,
      input: {
        id: expect.any(String),
        attachments: {},
        body: {},
        headers: {},
        metadata: { scheduled_at: '2026-01-01T00:10:00.000Z', fired_at: '2026-01-01T00:10:00.020Z' },
      },
    });
    expect(engine.wakes).toBe(1);
    expect(await schedules(flow.id)).toMatchObject([{ next_due_at: T0 + 15 * MINUTE }]);

    await scheduler.tick();
    expect(engine.calls).toHaveLength(1);
  });

  it('records nothing for a flow without cron triggers', async () => {
    const flow = await insertFlow([{ type: 'manual' }]);
    await start(flow);
    clock.advance(10 * MINUTE);
    await scheduler.tick();
    expect(await schedules(flow.id)).toEqual([]);
    expect(engine.calls).toHaveLength(0);
  });

  it('fires a six-field expression (seconds first) in its time zone', async () => {
    // 09:00:30 in Berlin is 08:00:30 UTC in January.
    const flow = await insertFlow([{ type: 'cron', expression: '30 0 9 * * *', timezone: 'Europe/Berlin' }]);
    await start(flow);
    const due = Date.UTC(2026, 0, 1, 8, 0, 30);
    expect(await schedules(flow.id)).toEqual([{ trigger_index: 0, active: 1, next_due_at: due, missed: 'skip', timezone: 'Europe/Berlin' }]);

    clock.set(due - 1);
    await scheduler.tick();
    expect(engine.calls).toHaveLength(0);

    clock.set(due + 5);
    await scheduler.tick();
    expect(engine.calls.map((c) => (c.request.input as { metadata: { scheduled_at: string } }).metadata.scheduled_at)).toEqual(['2026-01-01T08:00:30.000Z']);
    expect(await schedules(flow.id)).toMatchObject([{ next_due_at: Date.UTC(2026, 0, 2, 8, 0, 30) }]);
  });

  it('fires each tick exactly once with two schedulers on the same store', async () => {
    // On PostgreSQL the second scheduler gets a store of its own, as another process would.
    let second: Store = store;
    if (kind === 'postgres') {
      const { rows } = await sql<{ schema: string }>`select current_schema() as schema`.execute(db);
      second = await openStore({ url: TEST_DATABASE_URL, schema: rows[0]!.schema, dataDir: tmpdir(), poolSize: 4 });
      others.push({ store: second });
    }
    const otherEngine = new RecordingEngine(clock);
    const other = new CronScheduler(second, clock, silent, otherEngine);
    others.push({ scheduler: other });
    engine.insert = true;
    otherEngine.insert = true;

    const flows: FlowRecord[] = [];
    for (let i = 0; i < 40; i++) flows.push(await insertFlow([{ type: 'cron', expression: '* * * * * *' }]));
    for (const flow of flows) await start(flow);

    const rounds = 5;
    for (let round = 0; round < rounds; round++) {
      clock.advance(SECOND);
      await Promise.all([scheduler.tick(), other.tick(), scheduler.tick(), other.tick()]);
    }

    const executions = await db.selectFrom('flow_executions').select(['flow_id', 'concurrency_key']).execute();
    expect(executions).toHaveLength(flows.length * rounds);
    const perTick = new Map<string, number>();
    for (const e of executions) perTick.set(`${e.flow_id} ${e.concurrency_key}`, (perTick.get(`${e.flow_id} ${e.concurrency_key}`) ?? 0) + 1);
    expect(perTick.size).toBe(flows.length * rounds);
    expect([...perTick.values()].every((n) => n === 1)).toBe(true);
    expect(engine.calls.length + otherEngine.calls.length).toBe(flows.length * rounds);
    for (const flow of flows) expect(await schedules(flow.id)).toMatchObject([{ next_due_at: T0 + (rounds + 1) * SECOND }]);
  });

  it('keeps a tick whose firing failed: the execution is rolled back, the tick stays due and fires once later', async () => {
    engine.insert = true;
    const flow = await insertFlow([{ type: 'cron', expression: '* * * * *' }]);
    await start(flow);
    // The batch fails, then the tick tried alone fails too.
    engine.failNext = 2;

    clock.advance(MINUTE);
    await scheduler.tick();
    expect(await db.selectFrom('flow_executions').selectAll().execute()).toHaveLength(0);
    expect(await schedules(flow.id)).toMatchObject([{ next_due_at: T0 + MINUTE }]);
    expect(engine.failNext).toBe(0);

    // Left alone for a second by this process, then fired, still on time.
    await scheduler.tick();
    expect(engine.calls).toHaveLength(0);
    clock.advance(SECOND);
    await scheduler.tick();
    const executions = await db.selectFrom('flow_executions').select('concurrency_key').execute();
    expect(executions).toEqual([{ concurrency_key: `cron:0:${T0 + MINUTE}` }]);
    expect(await schedules(flow.id)).toMatchObject([{ next_due_at: T0 + 2 * MINUTE }]);
  });

  it('does not start a tick again that has an execution already (a clock set back on another process)', async () => {
    const flow = await insertFlow([{ type: 'cron', expression: '* * * * *' }]);
    await start(flow);
    await db.transaction().execute(async (trx) => {
      engine.insert = true;
      await engine.start(flow, { input: {}, trigger: 'cron' }, trx);
      await trx.updateTable('flow_executions').set({ idempotency_key: `cron:0:${T0 + MINUTE}` }).execute();
    });
    engine.calls.length = 0;

    clock.advance(MINUTE);
    await scheduler.tick();
    expect(engine.calls).toHaveLength(0);
    expect(await schedules(flow.id)).toMatchObject([{ next_due_at: T0 + 2 * MINUTE }]);
  });

  it('fires, late, the ticks that fell due while it ran but was held up, instead of skipping them as missed', async () => {
    const flow = await insertFlow([{ type: 'cron', expression: '* * * * * *', missed: 'skip' }]);
    await start(flow);
    // Held up for 3.5 s (a long pause of the event loop): three ticks fell due meanwhile.
    clock.advance(3_500);
    for (let i = 0; i < 5; i++) await scheduler.tick();
    expect(engine.calls.map((c) => c.request.idempotencyKey)).toEqual([`cron:0:${T0 + SECOND}`, `cron:0:${T0 + 2 * SECOND}`, `cron:0:${T0 + 3 * SECOND}`]);
    expect(await schedules(flow.id)).toMatchObject([{ next_due_at: T0 + 4 * SECOND }]);
  });

  it('after downtime skips the missed ticks, or runs once for them, per flow', async () => {
    const skip = await insertFlow([{ type: 'cron', expression: '* * * * *', missed: 'skip' }]);
    const once = await insertFlow([{ type: 'cron', expression: '* * * * *', missed: 'run-once' }]);
    await start(skip);
    await start(once);

    // Late by less than the tolerance: not missed, both fire.
    clock.advance(MINUTE + 500);
    await scheduler.tick();
    expect(engine.calls.map((c) => [c.flow.id, c.request.idempotencyKey]).sort()).toEqual(
      [
        [skip.id, `cron:0:${T0 + MINUTE}`],
        [once.id, `cron:0:${T0 + MINUTE}`],
      ].sort(),
    );

    // Down for ten minutes.
    engine.calls.length = 0;
    clock.set(T0 + 12 * MINUTE + 30 * SECOND);
    await scheduler.tick();
    expect(engine.calls.map((c) => [c.flow.id, c.request.idempotencyKey])).toEqual([[once.id, `cron:0:${T0 + 2 * MINUTE}`]]);
    expect((engine.calls[0]!.request.input as { metadata: unknown }).metadata).toEqual({ scheduled_at: '2026-01-01T00:02:00.000Z', fired_at: '2026-01-01T00:12:30.000Z' });
    expect(await schedules(skip.id)).toMatchObject([{ next_due_at: T0 + 13 * MINUTE }]);
    expect(await schedules(once.id)).toMatchObject([{ next_due_at: T0 + 13 * MINUTE }]);

    await scheduler.tick();
    expect(engine.calls).toHaveLength(1);
  });

  it('fires, late, the ticks of a backlog longer than the missed-tick tolerance', async () => {
    const count = 600;
    const flows: FlowsTables['flows'][] = [];
    for (let i = 0; i < count; i++) {
      const name = `backlog-${i}`;
      const definition = { name, triggers: [{ type: 'cron', expression: '* * * * *' }], nodes: [{ id: 'a', component: 'transform' }] };
      flows.push({ id: newId(), tenant: 'acme', name, version: 1, status: 'active', status_reason: null, generation: 1, status_changed_at: T0, definition: JSON.stringify(definition), created_at: T0, updated_at: T0 });
    }
    for (let i = 0; i < count; i += 200) {
      const slice = flows.slice(i, i + 200);
      await db.insertInto('flows').values(slice).execute();
      await db
        .insertInto('flow_schedules')
        .values(slice.map((f) => ({ flow_id: f.id, trigger_index: 0, tenant: 'acme', generation: 1, expression: '* * * * *', timezone: 'UTC', missed: 'skip', active: 1, next_due_at: T0 + MINUTE, created_at: T0 })))
        .execute();
    }
    // Each start takes 5 ms: the first look (500 rows) alone outlasts the tolerance.
    const start = engine.start;
    const slow = new CronScheduler(store, clock, silent, {
      start: async (flow, request, trx) => {
        clock.advance(5);
        return start(flow, request, trx);
      },
    });
    others.push({ scheduler: slow });

    clock.set(T0 + MINUTE);
    while ((await slow.tick()) >= 500);
    expect(engine.calls).toHaveLength(count);
    expect(new Set(engine.calls.map((c) => c.flow.id)).size).toBe(count);
  });

  it('stops firing a released flow, and does not fire a flow no longer active in that start', async () => {
    const released = await insertFlow([{ type: 'cron', expression: '* * * * *' }]);
    const restarted = await insertFlow([{ type: 'cron', expression: '* * * * *' }]);
    await start(released);
    await start(restarted);

    await db.transaction().execute((trx) => scheduler.release(released, trx));
    expect(await schedules(released.id)).toEqual([]);
    await db.updateTable('flows').set({ generation: 2 }).where('id', '=', restarted.id).execute();

    clock.advance(MINUTE);
    await scheduler.tick();
    expect(engine.calls).toHaveLength(0);
    // The row of the earlier start moves on rather than staying due.
    expect(await schedules(restarted.id)).toMatchObject([{ next_due_at: T0 + 2 * MINUTE }]);
  });

  it('runs a loop that activate wakes, and measures the firing delay', async () => {
    const registry = new Registry();
    const looping = new CronScheduler(store, clock, silent, engine, { pollMs: 20, registry });
    others.push({ scheduler: looping });
    looping.start();
    const flow = await insertFlow([{ type: 'cron', expression: '* * * * * *' }]);
    await prepare(flow, looping);
    await looping.activate(flow);

    clock.advance(SECOND + 3);
    await vi.waitFor(() => expect(engine.calls).toHaveLength(1), { timeout: 5000 });
    await looping.close();
    expect(engine.calls[0]!.request.idempotencyKey).toBe(`cron:0:${T0 + SECOND}`);
    const metrics = await registry.metrics();
    expect(metrics).toContain('flowgate_flow_cron_delay_seconds_count 1');
    expect(metrics).toContain('flowgate_flow_cron_delay_seconds_sum 0.003');
  });
});
