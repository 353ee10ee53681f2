/**
 * The engine's claim on both stores: it leases due steps by turns between tenants (each
 * tenant's oldest first), wakes due sleepers without counting an attempt, leaves steps not
 * yet due and steps another process holds, and finds every tenant with work however many
 * there are, though it reads only each tenant's first steps.
 */
import type { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StepLeases } from '../../src/flows/engine/step-leases.js';
import type { FlowsTables } from '../../src/flows/flows.tables.js';
import { ManualClock, newId } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

const T0 = Date.parse('2026-12-07T00:00:00Z');
const LEASE_MS = 30_000;

describe.each(STORE_KINDS)('claiming steps on %s', (kind) => {
  let opened: TestStore;
  let db: Kysely<FlowsTables>;
  let leases: StepLeases;

  beforeEach(async () => {
    opened = await openTestStore(kind, { migrations: ALL_MIGRATIONS });
    db = opened.store.db<FlowsTables>();
    leases = new StepLeases(opened.store, new ManualClock(T0));
  });
  afterEach(async () => {
    await opened.cleanup();
  });

  /** Adds a step of `tenant` due at `dueAt`; answers its id. */
  async function step(tenant: string, dueAt: number, status = 'ready', leaseOwner: string | null = null): Promise<string> {
    const id = newId();
    await db
      .insertInto('flow_steps')
      .values({
        id,
        execution_id: newId(),
        tenant,
        node: 'n',
        phase: 'main',
        parent_id: '',
        status,
        attempt: status === 'waiting' ? 1 : 0,
        input: '{}',
        output: null,
        error: null,
        due_at: dueAt,
        lease_owner: leaseOwner,
        lease_until: leaseOwner === null ? null : T0 + LEASE_MS,
        created_at: dueAt,
        started_at: null,
        finished_at: null,
        wait_key: null,
        wait_state: null,
      })
      .execute();
    return id;
  }
  const ids = (rows: readonly { id: string }[]) => rows.map((r) => r.id).sort();

  it("takes turns between tenants, each tenant's oldest due step first", async () => {
    const a = [await step('a', T0 - 5), await step('a', T0 - 4), await step('a', T0 - 3), await step('a', T0 - 2), await step('a', T0 - 1)];
    const b = [await step('b', T0 - 10), await step('b', T0 - 3)];
    const sleeper = await step('d', T0 - 2, 'waiting');
    const notYetDue = await step('c', T0 + 1_000);
    const heldElsewhere = await step('e', T0 - 100, 'running', 'other-process');

    // Turn 1: a's, b's and d's oldest; turn 2: a's and b's second; turn 3: a's third.
    const claimed = await leases.claim('me', 6, LEASE_MS);
    expect(ids(claimed)).toEqual([a[0], a[1], a[2], b[0], b[1], sleeper].sort());
    for (const row of claimed) {
      expect(row).toMatchObject({ status: 'running', lease_owner: 'me', lease_until: T0 + LEASE_MS, started_at: T0 });
      // A woken sleeper keeps its attempt; a ready step starts its next one.
      expect(row.attempt).toBe(1);
    }
    const left = await db.selectFrom('flow_steps').select(['id', 'status', 'lease_owner']).where('id', 'in', [notYetDue, heldElsewhere, a[3]!, a[4]!]).execute();
    expect(Object.fromEntries(left.map((r) => [r.id, [r.status, r.lease_owner]]))).toEqual({
      [notYetDue]: ['ready', null],
      [heldElsewhere]: ['running', 'other-process'],
      [a[3]!]: ['ready', null],
      [a[4]!]: ['ready', null],
    });
  });

  it('finds every tenant with work, also more tenants than the claim takes steps', async () => {
    const oldest: string[] = [];
    for (let t = 0; t < 40; t++) {
      const tenant = `tenant-${String(t).padStart(2, '0')}`;
      oldest.push(await step(tenant, T0 - 100 + t));
      await step(tenant, T0 - 50 + t);
      await step(tenant, T0 + 1_000);
    }
    // One turn for 40 tenants: each one's oldest, none twice.
    expect(ids(await leases.claim('me', 40, LEASE_MS))).toEqual([...oldest].sort());
    // Fewer than the tenants: the oldest of the second turn's steps go first.
    const next = await leases.claim('me', 10, LEASE_MS);
    expect(next).toHaveLength(10);
    expect(next.map((r) => r.due_at).sort((x, y) => x - y)).toEqual(Array.from({ length: 10 }, (_, t) => T0 - 50 + t));
  });

  it('gives each step to one claim: claims in a row take what the last one left', async () => {
    const all: string[] = [];
    for (let i = 0; i < 12; i++) all.push(await step(i % 2 === 0 ? 'a' : 'b', T0 - 100 + i));
    const first = ids(await leases.claim('p1', 5, LEASE_MS));
    const second = ids(await leases.claim('p2', 5, LEASE_MS));
    const third = ids(await leases.claim('p3', 5, LEASE_MS));
    expect(first).toHaveLength(5);
    expect(second).toHaveLength(5);
    expect(third).toHaveLength(2);
    expect([...first, ...second, ...third].sort()).toEqual([...all].sort());
    expect(await leases.claim('p4', 5, LEASE_MS)).toEqual([]);
  });
});
