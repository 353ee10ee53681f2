import type { EventTrigger, FlowNode } from '@flowgate/contracts';
import type { Kysely, Transaction } from 'kysely';
import { formatTopicFilter, parseTopicFilter, type ConsumerHandle, type EventBus } from '../bus/index.js';
import { FlowgateError } from '../errors/index.js';
import { TurnBatch, type Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import { eventWaitKey, type WaitForEventConfig } from './components/index.js';
import type { FlowEngine } from './engine/flow-engine.js';
import { evaluate } from './expressions.js';
import { toRecord, type FlowRecord } from './flow.repository.js';
import type { FlowsTables } from './flows.tables.js';
import type { LifecyclePart } from './lifecycle.js';

/** A stored definition with an event trigger (a cheap filter; each flow's triggers are read after). */
const HAS_EVENT_TRIGGER = '%"type":"event"%';
/** The lifecycle ack that says a flow's own groups were made ready for its current start. */
const READY = 'events:ready';
/** How long other processes wait for the process that took `flow.started` to make a flow ready. */
const READY_GRACE_MS = 10_000;

/** One subscription this part keeps: an event trigger, or a `wait-for-event` node's. */
type Wanted = { flow: FlowRecord; trigger: EventTrigger; group: string; node?: never } | { flow: FlowRecord; node: FlowNode; trigger?: never; group?: never };

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
  /** The generation of each flow active now, by id; the lookups of one turn share one read. */
  private readonly activeNow = new TurnBatch<string, number>((ids) => this.activeGenerations(ids));
  private timer: NodeJS.Timeout | undefined;
  private syncing: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly bus: EventBus,
    private readonly engine: FlowEngine,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly syncMs = 2000,
  ) {
    this.db = store.db<FlowsTables>();
  }

  /**
   * On `flow.starting`: a consumer group the flow names itself that another flow of the
   * tenant reads with another topic fails the start, naming both (the bus keeps one topic
   * per group). The other flow is active, or starting with this part's answer given (its
   * own `prepare` passed): of two flows started at once, the second to get here fails. The
   * groups' names are locked until this answer commits, so the two cannot pass together.
   */
  async prepare(flow: FlowRecord, trx: Transaction<FlowsTables>): Promise<void> {
    const named = groupsOf(flow).filter((g) => !g.own);
    if (named.length === 0) return;
    for (const group of [...new Set(named.map((g) => g.group))].sort()) await this.store.lockTransaction(trx as unknown as Kysely<unknown>, `bus-group:${flow.tenant}:${group}`);
    const others = await trx
      .selectFrom('flows')
      .selectAll()
      .where('tenant', '=', flow.tenant)
      .where('id', '!=', flow.id)
      .where('definition', 'like', HAS_EVENT_TRIGGER)
      .where((eb) =>
        eb.or([
          eb('status', '=', 'active'),
          eb.and([
            eb('status', '=', 'starting'),
            eb.exists(
              eb
                .selectFrom('flow_lifecycle_acks')
                .select('flow_lifecycle_acks.flow_id')
                .whereRef('flow_lifecycle_acks.flow_id', '=', 'flows.id')
                .whereRef('flow_lifecycle_acks.generation', '=', 'flows.generation')
                .where('flow_lifecycle_acks.part', '=', this.name),
            ),
          ]),
        ]),
      )
      .execute();
    for (const { group, topic } of named) {
      for (const other of others.map(toRecord)) {
        const clash = groupsOf(other).find((g) => g.group === group && g.topic !== topic);
        if (clash) throw new FlowgateError('FLOWGATE_ERR_BUS_GROUP_CONFLICT', `The consumer group "${group}" is read by the ${other.status} flow "${other.name}" with the topic "${clash.topic}", not "${topic}".`);
      }
    }
  }

  /**
   * On `flow.started` (on the one process that takes that event): makes the flow's groups
   * ready ({@link resetGroups}), then subscribes.
   */
  async activate(flow: FlowRecord): Promise<void> {
    await this.resetGroups(flow, true);
    await this.sync();
  }

  /**
   * Only events that arrive while the flow is active trigger it. Its own groups
   * (`flow-<id>`, its waits') move to the moment it became active (past what came while
   * it was stopped); a group made for another topic (the flow was edited), which no active
   * flow reads any more, is dropped, to be made anew at that moment. A group the flow names
   * itself keeps its position: that is what naming it is for. Then the flow is marked
   * ready for this start (`events:ready`): no process subscribes to its own groups before,
   * so none reads them from where they stood while it was stopped. Without `seek`, own
   * groups keep their position too (see {@link readyFlows}).
   */
  private async resetGroups(flow: FlowRecord, seek: boolean): Promise<void> {
    for (const { group, topic, own } of groupsOf(flow)) {
      const [existing] = await this.bus.groups({ tenant: flow.tenant, name: group });
      if (!existing) continue;
      if (existing.filter !== formatTopicFilter(parseTopicFilter(topic))) await this.bus.deleteGroup({ tenant: flow.tenant, name: group });
      else if (own && seek) await this.bus.seek({ tenant: flow.tenant, name: group }, { kind: 'time', time: flow.statusChangedAt });
    }
    await this.db
      .insertInto('flow_lifecycle_acks')
      .values({ flow_id: flow.id, generation: flow.generation, part: READY, created_at: this.clock.now() })
      .onConflict((oc) => oc.doNothing())
      .execute();
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
      .where((eb) => eb.or([eb('definition', 'like', HAS_EVENT_TRIGGER), eb('definition', 'like', '%"component":"wait-for-event"%')]))
      .execute();
    const flows = rows.map(toRecord);
    const ready = await this.readyFlows(flows);
    const wanted = new Map<string, Wanted>();
    for (const flow of flows) {
      if (!ready.has(flow.id)) continue;
      flow.definition.triggers.forEach((trigger, index) => {
        if (trigger.type === 'event') wanted.set(`${flow.id}:${flow.generation}:${index}`, { flow, trigger, group: triggerGroup(flow, trigger, index) });
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
    for (const [key, want] of wanted) {
      if (this.subscriptions.has(key) || this.closed) continue;
      try {
        this.subscriptions.set(key, await this.subscribe(key, want));
      } catch (error) {
        // One flow's subscription failing (its group made for another topic) must not keep
        // the others from theirs: it is tried again at the next sync.
        this.logger.warn({ err: error, flow: want.flow.id, tenant: want.flow.tenant }, 'an event trigger could not subscribe');
      }
    }
  }

  /**
   * The flows whose groups may be read: those without groups of their own, and those made
   * ready for their current start. One left unready for a while (the process that took
   * `flow.started` stopped first, or the flow was active before Flowgate had this mark) is
   * made ready here without moving its groups: they may hold events not yet read, and
   * moving them to the moment the flow became active could run old ones again.
   */
  private async readyFlows(flows: readonly FlowRecord[]): Promise<Set<string>> {
    const owning = flows.filter((flow) => groupsOf(flow).some((g) => g.own));
    const ready = new Set(flows.filter((flow) => !owning.includes(flow)).map((flow) => flow.id));
    if (owning.length === 0) return ready;
    const acks = await this.db.selectFrom('flow_lifecycle_acks').select(['flow_id', 'generation']).where('part', '=', READY).where('flow_id', 'in', owning.map((f) => f.id)).execute();
    const acked = new Set(acks.map((ack) => `${ack.flow_id} ${Number(ack.generation)}`));
    for (const flow of owning) {
      if (acked.has(`${flow.id} ${flow.generation}`)) ready.add(flow.id);
      else if (this.clock.now() - flow.statusChangedAt > READY_GRACE_MS) {
        await this.resetGroups(flow, false);
        ready.add(flow.id);
      }
    }
    return ready;
  }

  private async activeGenerations(ids: readonly string[]): Promise<Map<string, number>> {
    const rows = await this.db.selectFrom('flows').select(['id', 'generation']).where('id', 'in', ids).where('status', '=', 'active').execute();
    return new Map(rows.map((row) => [row.id, Number(row.generation)]));
  }

  private subscribe(key: string, { flow, trigger, group, node }: Wanted): Promise<ConsumerHandle> {
    // A group made now starts when the flow became active: only what comes while it is triggers it.
    const startAt = { kind: 'time', time: flow.statusChangedAt } as const;
    if (trigger) {
      return this.bus.subscribe({ tenant: flow.tenant, group, filter: trigger.topic, startAt }, async (event) => {
        // A flow stopped on another process is still subscribed here until the next sync:
        // the store says whether it is still active in this start, and if not the sync is
        // made now. An event handed back stays in its group: a named group reads it at the
        // next start; an own group moves past it then (only what comes while the flow is
        // active triggers it).
        if (!this.subscriptions.has(key)) throw new Error('the flow is no longer active');
        if ((await this.activeNow.load(flow.id)) !== flow.generation) {
          setImmediate(() => void this.sync());
          throw new Error('the flow is no longer active');
        }
        await this.engine.start(flow, { input: event, trigger: 'event', idempotencyKey: `event:${event.id}`, traceparent: event.headers.traceparent });
      });
    }
    const config = node.config as WaitForEventConfig;
    return this.bus.subscribe({ tenant: flow.tenant, group: `flow-${flow.id}-wait-${node.id}`, filter: config.topic, startAt }, async (event) => {
      // An event no step waits for is simply passed: waits see only what comes while they wait.
      const value = config.match ? await evaluate(config.match.event, event) : undefined;
      await this.engine.resolveWaits(flow.tenant, eventWaitKey(flow.id, node.id, value), event);
    });
  }
}

/** The consumer groups a flow reads: its event triggers' and its `wait-for-event` nodes' (its own unless a trigger names one). */
function groupsOf(flow: FlowRecord): Array<{ group: string; topic: string; own: boolean }> {
  const groups = flow.definition.triggers.flatMap((trigger, index) => (trigger.type === 'event' ? [{ group: triggerGroup(flow, trigger, index), topic: trigger.topic, own: trigger.group === undefined }] : []));
  for (const node of flow.definition.nodes) {
    if (node.component === 'wait-for-event') groups.push({ group: `flow-${flow.id}-wait-${node.id}`, topic: (node.config as WaitForEventConfig).topic, own: true });
  }
  return groups;
}

/**
 * The consumer group of a flow's event trigger: the one it names, else `flow-<id>` for the
 * flow's first event trigger and `flow-<id>-<index>` for any other (each topic its own group).
 */
function triggerGroup(flow: FlowRecord, trigger: EventTrigger, index: number): string {
  if (trigger.group !== undefined) return trigger.group;
  const first = flow.definition.triggers.findIndex((t) => t.type === 'event');
  return index === first ? `flow-${flow.id}` : `flow-${flow.id}-${index}`;
}
