import { FLOW_EVENTS, type FlowStatus } from '@flowgate/contracts';
import type { Kysely, Transaction } from 'kysely';
import type { ConsumerHandle, EventBus } from '../bus/index.js';
import { FlowgateError } from '../errors/index.js';
import type { AuditRecorder, Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import { flowView, toRecord, type FlowRecord, type FlowRepository } from './flow.repository.js';
import type { FlowsTables } from './flows.tables.js';

/**
 * A part of Flowgate that takes part in starting and stopping flows (the Open Integration
 * Hub's webhooks, scheduler and component orchestrator). Each reacts to the lifecycle
 * events in its own consumer group, so a part that is slow or down delays only its own
 * answer, and the flow fails with its name when it does not answer in time.
 */
export interface LifecyclePart {
  readonly name: string;
  /** On `flow.starting`: record what it needs to serve the flow, without serving yet. */
  prepare(flow: FlowRecord, trx: Transaction<FlowsTables>): Promise<void>;
  /** On `flow.started`: begin serving (the flow is `active`). */
  activate(flow: FlowRecord): Promise<void>;
  /** On `flow.stopping`: stop serving and forget the flow. */
  release(flow: FlowRecord, trx: Transaction<FlowsTables>): Promise<void>;
}

export interface FlowLifecycleOptions {
  readonly store: Store;
  readonly bus: EventBus;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditRecorder;
  readonly flows: FlowRepository;
  readonly parts: readonly LifecyclePart[];
  /** A flow still `starting` or `stopping` after this long fails, naming the parts that did not answer. */
  readonly timeoutMs: number;
  /** How often timeouts are looked for (1 s by default). */
  readonly sweepMs?: number;
}

/** What lifecycle events carry: the whole flow (as Open Integration Hub's repository sends it) and the attempt. */
export interface LifecyclePayload {
  readonly flow: ReturnType<typeof flowView>;
  readonly tenant: string;
  readonly generation: number;
  readonly reason?: string;
}

const SERVICE = 'flow-repository';

/**
 * Starting and stopping flows. `start` sets `starting` and raises `flow.starting` in one
 * transaction; every part records the flow and answers (an ack row); the last answer
 * sets `active` and raises `flow.started`, again in one transaction. Stop mirrors it.
 * `generation` grows with each start and stop, so late answers to an earlier attempt
 * change nothing.
 */
export class FlowLifecycle {
  private readonly db: Kysely<FlowsTables>;
  private readonly consumers: ConsumerHandle[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;

  constructor(private readonly options: FlowLifecycleOptions) {
    this.db = options.store.db<FlowsTables>();
  }

  async start(tenant: string, id: string, actor: string, traceparent?: string): Promise<FlowRecord> {
    return this.transition(tenant, id, ['inactive', 'failed'], 'starting', FLOW_EVENTS.starting, actor, traceparent);
  }

  async stop(tenant: string, id: string, actor: string, traceparent?: string): Promise<FlowRecord> {
    return this.transition(tenant, id, ['active', 'starting', 'failed'], 'stopping', FLOW_EVENTS.stopping, actor, traceparent);
  }

  private async transition(tenant: string, id: string, from: FlowStatus[], to: FlowStatus, event: string, actor: string, traceparent?: string): Promise<FlowRecord> {
    const now = this.options.clock.now();
    const flow = await this.db.transaction().execute(async (trx) => {
      await this.options.store.lockTransaction(trx as unknown as Kysely<unknown>, `flow:${id}`);
      const row = await trx.selectFrom('flows').selectAll().where('id', '=', id).where('tenant', '=', tenant).executeTakeFirst();
      if (!row) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', 'No such flow.');
      if (!from.includes(row.status as FlowStatus)) {
        throw new FlowgateError('FLOWGATE_ERR_FLOW_STATUS_CONFLICT', `The flow is ${row.status}; it can be ${to === 'starting' ? 'started' : 'stopped'} only when ${from.join(' or ')}.`, {
          extensions: { status: row.status },
        });
      }
      const next = { ...row, status: to, status_reason: null, generation: Number(row.generation) + 1, status_changed_at: now };
      await trx.updateTable('flows').set({ status: to, status_reason: null, generation: next.generation, status_changed_at: now }).where('id', '=', id).execute();
      const record = toRecord(next);
      await this.raise(trx, record, event, traceparent);
      return record;
    });
    this.options.audit.record({ action: `flows.flow.${to === 'starting' ? 'start' : 'stop'}_requested`, tenant, actor, outcome: 'success', target: `flow:${id}`, details: { name: flow.name, version: flow.version } });
    return flow;
  }

  private async raise(trx: Transaction<FlowsTables>, flow: FlowRecord, event: string, traceparent?: string, reason?: string): Promise<void> {
    const payload: LifecyclePayload = { flow: flowView(flow), tenant: flow.tenant, generation: flow.generation, ...(reason ? { reason } : {}) };
    await this.options.bus.publish(flow.tenant, { topic: event, payload, key: flow.id }, { tx: trx as unknown as Kysely<unknown>, system: true, serviceName: SERVICE, traceparent });
  }

  /** Joins each part's consumer group and starts looking for flows stuck past the timeout. */
  async begin(): Promise<void> {
    for (const part of this.options.parts) {
      const consumer = await this.options.bus.subscribe({ tenant: null, group: `flows-${part.name}`, filter: 'flow.*', maxInFlight: 16, retryDelayMs: 200 }, async (event) => {
        const payload = event.payload as LifecyclePayload;
        if (!payload?.flow?.id) return;
        await this.react(part, event.headers.name, payload);
      });
      this.consumers.push(consumer);
    }
    this.sweeper = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = true;
      this.failStuck()
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'flow lifecycle sweep failed'))
        .finally(() => (this.sweeping = false));
    }, this.options.sweepMs ?? 1000);
    this.sweeper.unref();
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    await Promise.all(this.consumers.splice(0).map((c) => c.close()));
  }

  private async react(part: LifecyclePart, event: string, payload: LifecyclePayload): Promise<void> {
    const current = await this.options.flows.byId(payload.flow.id);
    if (!current || current.generation !== payload.generation) return; // a later start or stop overtook this one
    if (event === FLOW_EVENTS.started) {
      if (current.status === 'active') await part.activate(current);
      return;
    }
    const preparing = event === FLOW_EVENTS.starting;
    if (!preparing && event !== FLOW_EVENTS.stopping) return;
    if (current.status !== (preparing ? 'starting' : 'stopping')) return;
    try {
      await this.db.transaction().execute(async (trx) => {
        if (preparing) await part.prepare(current, trx);
        else await part.release(current, trx);
        await trx
          .insertInto('flow_lifecycle_acks')
          .values({ flow_id: current.id, generation: current.generation, part: part.name, created_at: this.options.clock.now() })
          .onConflict((oc) => oc.doNothing())
          .execute();
      });
    } catch (error) {
      if (error instanceof FlowgateError && error.family === 'user') {
        // The part can never serve this flow (a component that is not installed…): fail now, not at the timeout.
        await this.fail(current, `${part.name}: ${error.message}`);
        return;
      }
      throw error;
    }
    await this.complete(current.id, current.generation);
  }

  /** Sets `active` (or `inactive`) and raises `flow.started` (or `flow.stopped`) once every part has answered. */
  private async complete(flowId: string, generation: number): Promise<void> {
    const done = await this.db.transaction().execute(async (trx) => {
      await this.options.store.lockTransaction(trx as unknown as Kysely<unknown>, `flow:${flowId}`);
      const row = await trx.selectFrom('flows').selectAll().where('id', '=', flowId).executeTakeFirst();
      if (!row || Number(row.generation) !== generation || (row.status !== 'starting' && row.status !== 'stopping')) return undefined;
      const acks = await trx.selectFrom('flow_lifecycle_acks').select('part').where('flow_id', '=', flowId).where('generation', '=', generation).execute();
      const answered = new Set(acks.map((a) => a.part));
      if (!this.options.parts.every((p) => answered.has(p.name))) return undefined;
      const starting = row.status === 'starting';
      const status: FlowStatus = starting ? 'active' : 'inactive';
      const now = this.options.clock.now();
      await trx.updateTable('flows').set({ status, status_reason: null, status_changed_at: now }).where('id', '=', flowId).where('generation', '=', generation).execute();
      await trx.deleteFrom('flow_lifecycle_acks').where('flow_id', '=', flowId).where('generation', '<', generation).execute();
      const record = toRecord({ ...row, status, status_reason: null, status_changed_at: now });
      await this.raise(trx, record, starting ? FLOW_EVENTS.started : FLOW_EVENTS.stopped);
      return record;
    });
    if (done) {
      this.options.logger.info({ flow: done.id, tenant: done.tenant, status: done.status }, `flow ${done.status}`);
      this.options.audit.record({ action: `flows.flow.${done.status === 'active' ? 'started' : 'stopped'}`, tenant: done.tenant, actor: SERVICE, outcome: 'success', target: `flow:${done.id}`, details: { name: done.name, version: done.version } });
    }
  }

  /** Fails every flow stuck in `starting` or `stopping` past the timeout, naming who did not answer. */
  async failStuck(): Promise<void> {
    const cutoff = this.options.clock.now() - this.options.timeoutMs;
    const stuck = await this.db.selectFrom('flows').selectAll().where('status', 'in', ['starting', 'stopping']).where('status_changed_at', '<', cutoff).limit(100).execute();
    for (const row of stuck) {
      const flow = toRecord(row);
      const acks = await this.db.selectFrom('flow_lifecycle_acks').select('part').where('flow_id', '=', flow.id).where('generation', '=', flow.generation).execute();
      const answered = new Set(acks.map((a) => a.part));
      const silent = this.options.parts.filter((p) => !answered.has(p.name)).map((p) => p.name);
      await this.fail(flow, `no answer within ${this.options.timeoutMs} ms while ${flow.status} from: ${silent.join(', ') || 'nobody'}`);
    }
  }

  private async fail(flow: FlowRecord, reason: string): Promise<void> {
    const failed = await this.db.transaction().execute(async (trx) => {
      await this.options.store.lockTransaction(trx as unknown as Kysely<unknown>, `flow:${flow.id}`);
      const now = this.options.clock.now();
      const changed = await trx
        .updateTable('flows')
        .set({ status: 'failed', status_reason: reason.slice(0, 1000), status_changed_at: now })
        .where('id', '=', flow.id)
        .where('generation', '=', flow.generation)
        .where('status', '=', flow.status)
        .executeTakeFirst();
      if (Number(changed.numUpdatedRows) !== 1) return false;
      await this.raise(trx, { ...flow, status: 'failed', statusReason: reason, statusChangedAt: now }, FLOW_EVENTS.failed, undefined, reason);
      return true;
    });
    if (failed) {
      this.options.logger.warn({ flow: flow.id, tenant: flow.tenant, reason }, 'flow failed');
      this.options.audit.record({ action: 'flows.flow.failed', tenant: flow.tenant, actor: SERVICE, outcome: 'failure', target: `flow:${flow.id}`, details: { reason: reason.slice(0, 200) } });
    }
  }
}
