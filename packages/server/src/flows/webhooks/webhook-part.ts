import type { WebhookTrigger } from '@flowgate/contracts';
import type { CompiledQuery, Kysely, Selectable, Transaction } from 'kysely';
import { TurnBatch, type Clock } from '../../kernel/index.js';
import { rebind, type Store } from '../../storage/index.js';
import { toRecord, type FlowRecord } from '../flow.repository.js';
import type { FlowsTables } from '../flows.tables.js';
import type { LifecyclePart } from '../lifecycle.js';

/** Stands for the flow id in {@link WebhookPart.served}'s compiled query. */
const FLOW_ID = '\u0000flow-id';

/** A row of {@link WebhookPart.served}'s query: the flow, with its webhook record's trigger and generation. */
type ServedRow = Selectable<FlowsTables['flows']> & { hook_trigger: string; hook_generation: number };

/** A flow the webhook ingress serves now. */
export interface ServedWebhook {
  readonly flow: FlowRecord;
  readonly trigger: WebhookTrigger;
}

/**
 * The webhooks part of the lifecycle (Open Integration Hub's webhooks service): on
 * `flow.starting` it records a webhook flow without serving it; on `flow.started` it
 * serves it; on `flow.stopping` it forgets it. A request is served only while both its
 * record serves and the flow is `active`.
 */
export class WebhookPart implements LifecyclePart {
  readonly name = 'webhooks';
  private readonly db: Kysely<FlowsTables>;
  /** {@link served}'s query for one flow, built once: it runs on every webhook request. */
  private readonly servedQuery: CompiledQuery<ServedRow>;
  /** Lookups of one turn of the event loop share one read. */
  private readonly lookups = new TurnBatch<string, ServedWebhook>((ids) => this.lookUp(ids));

  constructor(
    store: Store,
    private readonly clock: Clock,
  ) {
    this.db = store.db<FlowsTables>();
    this.servedQuery = this.activeHooks().where('flow_webhooks.flow_id', '=', FLOW_ID).compile();
  }

  async prepare(flow: FlowRecord, trx: Transaction<FlowsTables>): Promise<void> {
    const trigger = flow.definition.triggers.find((t) => t.type === 'webhook');
    await trx.deleteFrom('flow_webhooks').where('flow_id', '=', flow.id).execute();
    if (!trigger) return;
    await trx
      .insertInto('flow_webhooks')
      .values({ flow_id: flow.id, tenant: flow.tenant, generation: flow.generation, serving: 0, trigger: JSON.stringify(trigger), created_at: this.clock.now() })
      .execute();
  }

  async activate(flow: FlowRecord): Promise<void> {
    await this.db.updateTable('flow_webhooks').set({ serving: 1 }).where('flow_id', '=', flow.id).where('generation', '=', flow.generation).execute();
  }

  async release(flow: FlowRecord, trx: Transaction<FlowsTables>): Promise<void> {
    await trx.deleteFrom('flow_webhooks').where('flow_id', '=', flow.id).execute();
  }

  /**
   * The served webhook of `flowId`, if it is served now: recorded for the flow's current
   * start and the flow `active`. The status turns `active` in the transaction that raises
   * `flow.started`, so serving begins exactly then on every instance, without waiting for
   * this part's own `flow.started` reaction (which only marks the record `serving`).
   * Lookups asked for in one turn of the event loop share one read, made after all of them.
   */
  served(flowId: string): Promise<ServedWebhook | undefined> {
    return this.lookups.load(flowId);
  }

  /** The served webhooks among `flowIds`, by flow id. */
  private async lookUp(flowIds: readonly string[]): Promise<Map<string, ServedWebhook>> {
    const rows =
      flowIds.length === 1
        ? (await this.db.executeQuery(rebind(this.servedQuery, FLOW_ID, flowIds[0]))).rows
        : ((await this.activeHooks().where('flow_webhooks.flow_id', 'in', flowIds).execute()) as ServedRow[]);
    const served = new Map<string, ServedWebhook>();
    for (const row of rows) {
      if (Number(row.hook_generation) !== Number(row.generation)) continue;
      const { hook_trigger: trigger, hook_generation: _generation, ...flow } = row;
      served.set(flow.id, { flow: toRecord(flow), trigger: JSON.parse(trigger) as WebhookTrigger });
    }
    return served;
  }

  /** Webhook records of active flows, with their flow. */
  private activeHooks() {
    return this.db
      .selectFrom('flow_webhooks')
      .innerJoin('flows', 'flows.id', 'flow_webhooks.flow_id')
      .selectAll('flows')
      .select(['flow_webhooks.trigger as hook_trigger', 'flow_webhooks.generation as hook_generation'])
      .where('flows.status', '=', 'active');
  }

  /** Records a signature as used; false when it was used before (a replay). */
  async useSignature(flowId: string, signature: string, expiresAt: number): Promise<boolean> {
    const inserted = await this.db.insertInto('flow_webhook_signatures').values({ flow_id: flowId, signature, expires_at: expiresAt }).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  /** Forgets signatures too old to be accepted anyway. */
  async dropExpiredSignatures(): Promise<void> {
    await this.db.deleteFrom('flow_webhook_signatures').where('expires_at', '<', this.clock.now()).execute();
  }
}
