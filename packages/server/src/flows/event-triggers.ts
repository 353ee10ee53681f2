import type { EventTrigger, FlowNode } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import type { ConsumerHandle, EventBus } from '../bus/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import { eventWaitKey, type WaitForEventConfig } from './components/index.js';
import type { FlowEngine } from './engine/flow-engine.js';
import { evaluate } from './expressions.js';
import { toRecord, type FlowRecord } from './flow.repository.js';
import type { FlowsTables } from './flows.tables.js';
import type { LifecyclePart } from './lifecycle.js';

/** One subscription this part keeps: an event trigger, or a `wait-for-event` node's. */
type Wanted = { flow: FlowRecord; trigger: EventTrigger; node?: never } | { flow: FlowRecord; node: FlowNode; trigger?: never };

/**
 * Event triggers: each active flow with an `event` trigger has a consumer group on its
 * tenant's topics (`flow-<id>` unless it names one), and each matching event starts one
 * execution (the event id is the idempotency key, so a redelivery starts nothing new).
 * Each `wait-for-event` node of an active flow has one too (`flow-<id>-wait-<node>`): a
 * matching event resolves the steps waiting on its correlation value.
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
    const rows = await this.db
      .selectFrom('flows')
      .selectAll()
      .where('status', '=', 'active')
      .where((eb) => eb.or([eb('definition', 'like', '%"type":"event"%'), eb('definition', 'like', '%"component":"wait-for-event"%')]))
      .execute();
    const wanted = new Map<string, Wanted>();
    for (const flow of rows.map(toRecord)) {
      flow.definition.triggers.forEach((trigger, index) => {
        if (trigger.type === 'event') wanted.set(`${flow.id}:${flow.generation}:${index}`, { flow, trigger });
      });
      for (const node of flow.definition.nodes) {
        if (node.component === 'wait-for-event') wanted.set(`${flow.id}:${flow.generation}:wait:${node.id}`, { flow, node });
      }
    }
    for (const [key, handle] of this.subscriptions) {
      if (!wanted.has(key)) {
        this.subscriptions.delete(key);
        await handle.close();
      }
    }
    for (const [key, { flow, trigger, node }] of wanted) {
      if (this.subscriptions.has(key) || this.closed) continue;
      let handle: ConsumerHandle;
      if (trigger) {
        handle = await this.bus.subscribe({ tenant: flow.tenant, group: trigger.group ?? `flow-${flow.id}`, filter: trigger.topic }, async (event) => {
          if (!this.subscriptions.has(key)) throw new Error('the flow is no longer active');
          await this.engine.start(flow, { input: event, trigger: 'event', idempotencyKey: `event:${event.id}`, traceparent: event.headers.traceparent });
        });
      } else {
        const config = node.config as WaitForEventConfig;
        handle = await this.bus.subscribe({ tenant: flow.tenant, group: `flow-${flow.id}-wait-${node.id}`, filter: config.topic }, async (event) => {
          // An event no step waits for is simply passed: waits see only what comes while they wait.
          const value = config.match ? await evaluate(config.match.event, event) : undefined;
          await this.engine.resolveWaits(flow.tenant, eventWaitKey(flow.id, node.id, value), event);
        });
      }
      this.subscriptions.set(key, handle);
    }
  }
}
