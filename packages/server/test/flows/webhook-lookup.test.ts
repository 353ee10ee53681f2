/**
 * The webhook ingress's lookup of the flow a request is for, on both stores: lookups made
 * in one turn of the event loop share one read, and each still gets its own flow, or
 * nothing for a flow that is not active or whose webhook record is of an earlier start.
 */
import type { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { FlowsTables } from '../../src/flows/flows.tables.js';
import { WebhookPart } from '../../src/flows/webhooks/webhook-part.js';
import { systemClock } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

describe.each(STORE_KINDS)('webhook lookups on %s', (kind) => {
  let opened: TestStore;
  let db: Kysely<FlowsTables>;
  let part: WebhookPart;

  beforeEach(async () => {
    opened = await openTestStore(kind, { migrations: ALL_MIGRATIONS });
    db = opened.store.db<FlowsTables>();
    part = new WebhookPart(opened.store, systemClock);
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await opened.cleanup();
  });

  /** A flow in `status` whose webhook record is of start `hookGeneration` (the flow is at generation 2). */
  async function flow(id: string, status: string, hookGeneration = 2): Promise<void> {
    const definition = JSON.stringify({ name: id, triggers: [{ type: 'webhook' }], nodes: [{ id: 'n', component: 'transform', config: { expression: '$' } }], edges: [] });
    await db.insertInto('flows').values({ id, tenant: 'acme', name: id, version: 1, status, status_reason: null, generation: 2, status_changed_at: 0, definition, created_at: 0, updated_at: 0 }).execute();
    await db.insertInto('flow_webhooks').values({ flow_id: id, tenant: 'acme', generation: hookGeneration, serving: 1, trigger: JSON.stringify({ type: 'webhook', secret: `secret-of-${id}` }), created_at: 0 }).execute();
  }

  it('answers the lookups of one turn with one read, each with its own flow or nothing', async () => {
    await flow('flow-a', 'active');
    await flow('flow-b', 'active');
    await flow('flow-stopped', 'inactive');
    await flow('flow-restarting', 'active', 1);
    const reads = vi.spyOn(db, 'selectFrom');

    const found = await Promise.all(['flow-a', 'flow-b', 'flow-stopped', 'flow-restarting', 'flow-unknown', 'flow-a'].map((id) => part.served(id)));

    expect(found.map((f) => f?.flow.id)).toEqual(['flow-a', 'flow-b', undefined, undefined, undefined, 'flow-a']);
    expect(found.map((f) => (f?.trigger as { secret?: string } | undefined)?.secret)).toEqual(['secret-of-flow-a', 'secret-of-flow-b', undefined, undefined, undefined, 'secret-of-flow-a']);
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it('reads again for a lookup of a later turn, so a flow stopped in between is no longer served', async () => {
    await flow('flow-a', 'active');
    expect((await part.served('flow-a'))?.flow.id).toBe('flow-a');
    await db.updateTable('flows').set({ status: 'inactive' }).where('id', '=', 'flow-a').execute();
    expect(await part.served('flow-a')).toBeUndefined();
  });
});
