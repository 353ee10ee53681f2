import type { EventTrigger } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import type { ConsumerHandle, EventBus } from '../bus/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import type { FlowEngine } from './engine/flow-engine.js';
import { toRecord, type FlowRecord } from './flow.repository.js';
import type { FlowsTables } from './flows.tables.js';
import type { LifecyclePart } from './lifecycle.js';

/**
 * Event triggers: each active flow with an `event` trigger has a consumer group on its
 * tenant's topics (`flow-<id>` unless it names one), and each matching event starts one
 * execution (the event id is the idempotency key, so a redelivery starts nothing new).
 * Every process keeps its subscriptions in step with the active flows in the store, so all
 * processes share the events; the lifecycle's answer only says the part is there.
 */
export class EventTriggers implements LifecyclePart {
  readonly name = 'events';
  private readonly db: Kysely<FlowsTables>;
  private readonly subscriptions = new Map<string, ConsumerHandle>();
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private closed = false;

  constructor(
    store: Store,
    private readonly bus: EventBus,
    private readonly engine: FlowEngine,
    private readonly logger: Logger,
    private readonly syncMs = 2000,
  ) {
    this.db = store.db<FlowsTables>();
  }

  async prepare(): Promise<void> {}

  async activate(): Promise<void> {
    await this.sync();
  }

  release(): Promise<void> {
    // Subscriptions close at the next sync; events that reach a stopped flow meanwhile are handed back.
    setImmediate(() => void this.sync());
    return Promise.resolve();
  }

  begin(): void {
    this.timer = setInterval(() => void this.sync(), this.syncMs);
    this.timer.unref();
    void this.sync();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.syncing;
    await Promise.all([...this.subscriptions.values()].map((s) => s.close()));
    this.subscriptions.clear();
  }

  /** Subscribes for every active flow's event triggers and drops the others' subscriptions. */
  sync(): Promise<void> {
    this.syncing ??= this.reconcile()
      .catch((error: unknown) => this.logger.warn({ err: error }, 'event triggers could not sync'))
      .finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async reconcile(): Promise<void> {
    if (this.closed) return;
    const rows = await this.db.selectFrom('flows').selectAll().where('status', '=', 'active').where('definition', 'like', '%"type":"event"%').execute();
    const wanted = new Map<string, { flow: FlowRecord; trigger: EventTrigger }>();
    for (const flow of rows.map(toRecord)) {
      flow.definition.triggers.forEach((trigger, index) => {
        if (trigger.type === 'event') wanted.set(`${flow.id}:${flow.generation}:${index}`, { flow, trigger });
      });
    }
    for (const [key, handle] of this.subscriptions) {
      if (!wanted.has(key)) {
        this.subscriptions.delete(key);
        await handle.close();
      }
    }
    for (const [key, { flow, trigger }] of wanted) {
      if (this.subscriptions.has(key) || this.closed) continue;
      const handle = await this.bus.subscribe({ tenant: flow.tenant, group: trigger.group ?? `flow-${flow.id}`, filter: trigger.topic }, async (event) => {
        if (!this.subscriptions.has(key)) throw new Error('the flow is no longer active');
        await this.engine.start(flow, { input: event, trigger: 'event', idempotencyKey: `event:${event.id}`, traceparent: event.headers.traceparent });
      });
      this.subscriptions.set(key, handle);
    }
  }
}
