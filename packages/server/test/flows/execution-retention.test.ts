/**
 * Retention of executions (issue 5): finished executions older than the configured days
 * go, with their steps, and the SQLite file gets their space back; unfinished ones stay
 * whatever their age; 0 days keeps everything.
 */
import { sql, type Kysely } from 'kysely';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ExecutionRetention } from '../../src/flows/engine/execution-retention.js';
import type { FlowsTables } from '../../src/flows/flows.tables.js';
import { ManualClock, newId } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import type { Store } from '../../src/storage/index.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

const DAY = 86_400_000;
const T0 = Date.parse('2026-01-01T00:00:00Z');
const silent = pino({ level: 'silent' });

describe.each(STORE_KINDS)('execution retention on %s', (kind) => {
  let opened: TestStore;
  let store: Store;
  let db: Kysely<FlowsTables>;
  let clock: ManualClock;

  beforeEach(async () => {
    opened = await openTestStore(kind, { migrations: ALL_MIGRATIONS });
    store = opened.store;
    db = store.db<FlowsTables>();
    clock = new ManualClock(T0);
  });
  afterEach(async () => {
    await opened.cleanup();
  });

  /** Executions with a bulky input and three steps each, finished at `finishedAt` (null: still running). */
  async function insert(count: number, finishedAt: number | null): Promise<string[]> {
    const ids: string[] = [];
    const bulky = JSON.stringify({ blob: 'x'.repeat(8000) });
    for (let i = 0; i < count; i++) {
      const id = newId();
      ids.push(id);
      await db
        .insertInto('flow_executions')
        .values({
          id,
          tenant: 'acme',
          flow_id: 'f1',
          flow_version: 1,
          status: finishedAt === null ? 'running' : 'succeeded',
          trigger: 'manual',
          input: bulky,
          output: bulky,
          error: null,
          idempotency_key: null,
          concurrency_key: null,
          traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
          response: null,
          parent_execution_id: null,
          created_at: T0,
          updated_at: T0,
          finished_at: finishedAt,
          deadline_at: null,
        })
        .execute();
      await db
        .insertInto('flow_steps')
        .values(
          ['a', 'b', 'c'].map((node) => ({
            id: newId(),
            execution_id: id,
            tenant: 'acme',
            node,
            phase: 'main',
            parent_id: '',
            status: finishedAt === null && node === 'c' ? 'ready' : 'succeeded',
            attempt: 1,
            input: bulky,
            output: bulky,
            error: null,
            due_at: T0,
            lease_owner: null,
            lease_until: null,
            created_at: T0,
            started_at: T0,
            finished_at: finishedAt,
            wait_key: null,
            wait_state: null,
          })),
        )
        .execute();
    }
    return ids;
  }

  const remaining = async () => (await db.selectFrom('flow_executions').select('id').execute()).map((r) => r.id).sort();
  const stepsOf = async (ids: string[]) => (ids.length === 0 ? 0 : (await db.selectFrom('flow_steps').select('id').where('execution_id', 'in', ids).execute()).length);
  const pages = async () => Number((await sql<{ page_count: number }>`pragma page_count`.execute(db)).rows[0]!.page_count);

  it('deletes finished executions past the retention with their steps, and keeps the rest', async () => {
    const old = await insert(600, T0);
    const recent = await insert(5, T0 + 29 * DAY);
    const running = await insert(5, null);

    clock.set(T0 + 30 * DAY + 1);
    const retention = new ExecutionRetention(store, clock, silent, { days: 30, intervalMs: 60_000 });
    expect(await retention.sweep()).toBe(600);
    expect(await remaining()).toEqual([...recent, ...running].sort());
    expect(await stepsOf(old)).toBe(0);
    expect(await stepsOf([...recent, ...running])).toBe(30);

    // Nothing more is due until the recent ones age; the running ones never go.
    expect(await retention.sweep()).toBe(0);
    clock.set(T0 + 400 * DAY);
    expect(await retention.sweep()).toBe(5);
    expect(await remaining()).toEqual([...running].sort());
  });

  it.runIf(kind === 'sqlite')('gives the deleted executions\' space back to the file system', async () => {
    await insert(300, T0);
    await insert(5, null);
    await store.reclaimSpace();
    const before = await pages();
    clock.set(T0 + 31 * DAY);
    expect(await new ExecutionRetention(store, clock, silent, { days: 30, intervalMs: 60_000 }).sweep()).toBe(300);
    // 300 executions of ~8 kB input and output and three such steps each: most of the file goes back.
    expect(await pages()).toBeLessThan(before / 10);
  });

  it('keeps everything with 0 days', async () => {
    await insert(3, T0);
    clock.set(T0 + 1000 * DAY);
    expect(await new ExecutionRetention(store, clock, silent, { days: 0, intervalMs: 60_000 }).sweep()).toBe(0);
    expect(await remaining()).toHaveLength(3);
  });
});
