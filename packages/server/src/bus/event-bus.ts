import { deadLetterTopic, isReservedTopic, isTopicName, type DeadLetterPayload, type EventEnvelope } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import { Counter, Gauge, type Registry } from 'prom-client';
import { FlowgateError } from '../errors/index.js';
import { isoTime, newId, runPeriodically, type Clock } from '../kernel/index.js';
import { formatTraceparent, startSpan, type Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import type { BusBackend, ConsumerHandle, Delivery, GroupFilter, GroupRef, GroupState, NewEvent, Position, StoredEvent } from './bus-backend.js';
import { OutboxRelay } from './outbox-relay.js';
import { TenantQuotas, type BusQuotas } from './tenant-quotas.js';
import { parseTopicFilter, type TopicFilter } from './topic-filter.js';
import { TopicRegistry } from './topic.registry.js';

/** One event to publish. */
export interface PublishItem {
  readonly topic: string;
  readonly payload: unknown;
  /** Events sharing a key are handled in order within a consumer group. */
  readonly key?: string | undefined;
  /** This event's own trace context, when a batch carries events of several traces; else the options'. */
  readonly traceparent?: string | undefined;
}

export interface PublishOptions {
  /** The caller's W3C trace context; a new trace is started when absent. */
  readonly traceparent?: string | undefined;
  /** Who publishes (`api`, a flow id…); `flowgate` by default. */
  readonly serviceName?: string | undefined;
  /** Publish inside this state transaction: the events exist if and only if it commits. */
  readonly tx?: Kysely<unknown> | undefined;
  /** Flowgate's own publishes (dead letters) may write to `_` topics. */
  readonly system?: boolean;
}

/** What a handler gets with each event. */
export interface DeliveryContext {
  readonly tenant: string;
  readonly topic: string;
  readonly seq: number;
  /** 1 on the first delivery. */
  readonly deliveries: number;
  /** With `manualAck`: marks the event done. */
  ack(): Promise<void>;
  /** With `manualAck`: asks for the event again after `delayMs`. */
  nack(delayMs?: number, reason?: string): Promise<void>;
}

export type EventHandler = (event: EventEnvelope, context: DeliveryContext) => unknown;

export interface SubscribeOptions {
  /** The tenant whose topics to read, or `null` for a platform group over every tenant. */
  readonly tenant: string | null;
  /** The consumer group: each event goes to one member of each group. */
  readonly group: string;
  /** One topic, a glob (`audit.*`), a regex (`/.*datapoint.*\/`) or a parsed filter. */
  readonly filter: string | TopicFilter;
  /** Where a new group starts; `earliest` by default, so nothing published before is missed. */
  readonly startAt?: Position;
  /** Redeliver what is not acked within this time (30 s by default). */
  readonly ackTimeoutMs?: number;
  /** Events this member handles at once (64 by default). */
  readonly maxInFlight?: number;
  /** Deliveries before the event goes to the group's dead-letter topic (5 by default). */
  readonly maxDeliveries?: number;
  /** First retry delay after a failure; doubles each time, with jitter (1 s by default). */
  readonly retryDelayMs?: number;
  /** The handler acks and nacks itself; otherwise returning acks and throwing nacks. */
  readonly manualAck?: boolean;
}

export interface EventBusOptions {
  readonly backend: BusBackend;
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registry?: Registry;
  readonly quotas?: BusQuotas;
  /** How often lag is sampled for metrics and the backlog quota (5 s by default). */
  readonly lagIntervalMs?: number;
  /** How often retention runs (60 s by default). */
  readonly retentionIntervalMs?: number;
}

const MAX_RETRY_DELAY_MS = 5 * 60_000;
const MAX_KEY_LENGTH = 200;

/**
 * The event bus every part of Flowgate talks through (issue 4). It owns what both
 * backends share: envelopes (UUIDv7 ids, tenant, trace context), topic names and schemas,
 * tenant quotas, the transactional outbox, automatic acks, retries with backoff and dead
 * letters, lag metrics and retention. The {@link BusBackend} below it stores and delivers.
 */
export class EventBus {
  readonly topics: TopicRegistry;
  private readonly quotas: TenantQuotas;
  private readonly outbox: OutboxRelay | undefined;
  private readonly subscriptions = new Set<ConsumerHandle>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly metrics: BusMetrics | undefined;
  private closed = false;

  constructor(private readonly options: EventBusOptions) {
    this.topics = new TopicRegistry(options.store, options.clock);
    this.quotas = new TenantQuotas(options.quotas ?? { publishRate: 0, maxBacklog: 0 }, options.clock);
    this.outbox = options.backend.capabilities.transactionalPublish ? undefined : new OutboxRelay(options.store, options.backend, options.logger);
    this.metrics = options.registry ? createBusMetrics(options.registry) : undefined;
  }

  get capabilities() {
    return this.options.backend.capabilities;
  }

  /** Starts the outbox relay, lag sampling and retention. */
  start(): void {
    this.outbox?.start();
    const lagEvery = this.options.lagIntervalMs ?? 5000;
    const retentionEvery = this.options.retentionIntervalMs ?? 60_000;
    this.every(lagEvery, () => this.sampleLag());
    this.every(retentionEvery, () => this.applyRetention());
  }

  private every(ms: number, task: () => Promise<unknown>): void {
    this.timers.push(runPeriodically(ms, task, { stopped: () => this.closed, onError: (error) => this.options.logger.warn({ err: error }, 'bus background task failed') }));
  }

  /** Publishes one event; resolves with its envelope once it is durable. */
  async publish(tenant: string, item: PublishItem, options: PublishOptions = {}): Promise<EventEnvelope> {
    const [envelope] = await this.publishBatch(tenant, [item], options);
    return envelope!;
  }

  /**
   * Publishes events all or nothing: every one is checked (name, key, schema, quota)
   * before any is written. Resolves once all are durable.
   */
  async publishBatch(tenant: string, items: readonly PublishItem[], options: PublishOptions = {}): Promise<EventEnvelope[]> {
    this.assertOpen();
    if (items.length === 0) return [];
    const traceparent = formatTraceparent(startSpan(options.traceparent));
    const createdAt = isoTime(this.options.clock.now());
    const events: NewEvent[] = [];
    // One schema lookup per topic of the batch, not per event: this is the publish path.
    const schemas = new Map<string, Awaited<ReturnType<TopicRegistry['validatorFor']>>>();
    for (const [index, item] of items.entries()) {
      const where = items.length > 1 ? ` (event ${index})` : '';
      if (!isTopicName(item.topic)) throw new FlowgateError('FLOWGATE_ERR_BUS_INVALID_TOPIC', `"${item.topic}" is not a topic name${where}: use lower-case dot-separated segments such as orders.created.`);
      if (isReservedTopic(item.topic) && !options.system) throw new FlowgateError('FLOWGATE_ERR_BUS_RESERVED_TOPIC', `"${item.topic}" is written by Flowgate only${where}.`);
      if (item.key !== undefined && (item.key.length === 0 || item.key.length > MAX_KEY_LENGTH)) {
        throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', `An event key must have 1 to ${MAX_KEY_LENGTH} characters${where}.`);
      }
      // Inside a transaction, read through it: SQLite has one connection, which the
      // transaction holds until it ends.
      if (!schemas.has(item.topic)) schemas.set(item.topic, await this.topics.validatorFor(tenant, item.topic, options.tx));
      const schema = schemas.get(item.topic);
      if (schema) {
        const problems = schema.validate(item.payload);
        if (problems.length > 0) {
          const prefix = items.length > 1 ? `/${index}` : '';
          throw new FlowgateError('FLOWGATE_ERR_BUS_SCHEMA_MISMATCH', `The payload${where} does not match the schema of ${item.topic}: ${problems[0]!.path} ${problems[0]!.message}.`, {
            errors: problems.map((p) => ({ path: prefix + p.path, message: p.message })),
          });
        }
      }
      const envelope: EventEnvelope = {
        id: newId(),
        headers: {
          name: item.topic,
          createdAt,
          serviceName: options.serviceName ?? 'flowgate',
          tenant,
          traceparent: item.traceparent === undefined ? traceparent : formatTraceparent(startSpan(item.traceparent)),
          ...(item.key !== undefined ? { key: item.key } : {}),
          ...(schema ? { schema: schema.label } : {}),
        },
        payload: item.payload,
      };
      events.push({ tenant, topic: item.topic, envelope });
    }
    if (!options.system) this.quotas.take(tenant, events.length);

    if (options.tx && this.outbox) await this.outbox.write(options.tx, events, this.options.clock.now());
    else await this.options.backend.append(events, options.tx);
    this.metrics?.published.inc({ tenant }, events.length);
    return events.map((e) => e.envelope);
  }

  /**
   * Joins a consumer group. Each matching event reaches one member of the group, at least
   * once; a handler that throws gets the event again after a growing delay, and after
   * `maxDeliveries` it goes to `_dlq.<group>` with the reason, so the rest keep flowing.
   */
  async subscribe(options: SubscribeOptions, handler: EventHandler): Promise<ConsumerHandle> {
    this.assertOpen();
    const filter = typeof options.filter === 'string' ? parseTopicFilter(options.filter) : options.filter;
    const maxDeliveries = options.maxDeliveries ?? 5;
    const retryDelay = options.retryDelayMs ?? 1000;
    const group: GroupRef = { tenant: options.tenant, name: options.group };
    const handle = await this.options.backend.consume(
      {
        ...group,
        filter,
        startAt: options.startAt ?? { kind: 'earliest' },
        ackTimeoutMs: options.ackTimeoutMs ?? 30_000,
        maxInFlight: options.maxInFlight ?? 64,
      },
      (delivery) => void this.handle(delivery, options, handler, maxDeliveries, retryDelay),
    );
    const wrapped: ConsumerHandle = {
      close: async () => {
        this.subscriptions.delete(wrapped);
        await handle.close();
      },
    };
    this.subscriptions.add(wrapped);
    return wrapped;
  }

  private async handle(delivery: Delivery, options: SubscribeOptions, handler: EventHandler, maxDeliveries: number, retryDelay: number): Promise<void> {
    const group = options.group;
    try {
      if (delivery.deliveries > maxDeliveries) {
        // Delivered too often without an answer (ack timeouts): give up on it.
        await this.deadLetter(delivery, group, delivery.lastError ?? `no ack within the ack timeout after ${delivery.deliveries - 1} deliveries`);
        return;
      }
      const context: DeliveryContext = {
        tenant: delivery.event.tenant,
        topic: delivery.event.topic,
        seq: delivery.event.seq,
        deliveries: delivery.deliveries,
        ack: () => delivery.ack(),
        nack: (delayMs = backoff(retryDelay, delivery.deliveries), reason = 'nacked by the consumer') =>
          delivery.deliveries >= maxDeliveries ? this.deadLetter(delivery, group, reason) : delivery.nack(delayMs, reason),
      };
      try {
        await handler(delivery.event.envelope, context);
      } catch (error) {
        const reason = error instanceof Error ? error.message || error.name : String(error);
        this.metrics?.failures.inc({ group });
        if (delivery.deliveries >= maxDeliveries) await this.deadLetter(delivery, group, reason);
        else await delivery.nack(backoff(retryDelay, delivery.deliveries), reason);
        return;
      }
      if (!options.manualAck) await delivery.ack();
    } catch (error) {
      // Recording the outcome failed (store or NATS down); the ack deadline redelivers it.
      this.options.logger.warn({ err: error, group }, 'bus could not record a delivery outcome');
    }
  }

  private async deadLetter(delivery: Delivery, group: string, reason: string): Promise<void> {
    const payload: DeadLetterPayload = { event: delivery.event.envelope, group, deliveries: delivery.deliveries, reason: reason.slice(0, 2000) };
    await this.publish(
      delivery.event.tenant,
      { topic: deadLetterTopic(group), payload, key: delivery.event.envelope.headers.key },
      { system: true, traceparent: delivery.event.envelope.headers.traceparent },
    );
    this.metrics?.deadLetters.inc({ group });
    this.options.logger.warn({ group, tenant: delivery.event.tenant, topic: delivery.event.topic, eventId: delivery.event.envelope.id, reason }, 'event moved to dead letters');
    await delivery.ack();
  }

  /** A page of one tenant topic, in publish order. */
  read(tenant: string, topic: string, from: Position, limit: number): Promise<StoredEvent[]> {
    return this.options.backend.read({ tenant, topic, from, limit });
  }

  /** Follows matching events live, without a group (SSE, `flowgate tail`). */
  watch(tenant: string | null, filter: string | TopicFilter, from: Position, onEvent: (event: StoredEvent) => void): Promise<ConsumerHandle> {
    this.assertOpen();
    const parsed = typeof filter === 'string' ? parseTopicFilter(filter) : filter;
    return this.options.backend.watch({ tenant, filter: parsed, from }, onEvent);
  }

  seek(group: GroupRef, to: Position): Promise<void> {
    return this.options.backend.seek(group, to);
  }

  groups(filter: GroupFilter): Promise<GroupState[]> {
    return this.options.backend.groups(filter);
  }

  deleteGroup(group: GroupRef): Promise<boolean> {
    return this.options.backend.deleteGroup(group);
  }

  /** Applies every configured retention now. */
  async applyRetention(): Promise<number> {
    let deleted = 0;
    for (const topic of await this.topics.list(null)) {
      if (topic.retention.maxAgeMs === undefined && topic.retention.maxBytes === undefined) continue;
      deleted += (await this.options.backend.trim({ tenant: topic.tenant, topic: topic.name }, topic.retention, this.options.clock.now())).deleted;
    }
    return deleted;
  }

  /** Reads every group's lag into the metrics and the backlog quota. */
  async sampleLag(): Promise<GroupState[]> {
    const states = await this.options.backend.groups({});
    const backlog = new Map<string, number>();
    this.metrics?.lag.reset();
    for (const state of states) {
      for (const lag of state.lag) {
        backlog.set(lag.tenant, Math.max(backlog.get(lag.tenant) ?? 0, lag.pending));
        this.metrics?.lag.set({ group: state.name, scope: state.tenant ?? '*', tenant: lag.tenant }, lag.pending);
      }
    }
    this.quotas.setBacklog(backlog);
    return states;
  }

  /** Stops consumers, the relay and the timers, then the backend. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await Promise.all([...this.subscriptions].map((s) => s.close()));
    await this.outbox?.stop();
    await this.options.backend.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The event bus is shutting down.');
  }
}

/** Exponential backoff with full jitter in its upper half: base·2^(n-1) · [0.5, 1). */
function backoff(baseMs: number, deliveries: number): number {
  const ceiling = Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** Math.max(0, deliveries - 1));
  return Math.round(ceiling * (0.5 + Math.random() * 0.5));
}

interface BusMetrics {
  readonly published: Counter<'tenant'>;
  readonly failures: Counter<'group'>;
  readonly deadLetters: Counter<'group'>;
  readonly lag: Gauge<'group' | 'scope' | 'tenant'>;
}

function createBusMetrics(registry: Registry): BusMetrics {
  return {
    published: new Counter({ name: 'flowgate_bus_events_published_total', help: 'Events accepted by the bus, by tenant', labelNames: ['tenant'], registers: [registry] }),
    failures: new Counter({ name: 'flowgate_bus_handler_failures_total', help: 'Deliveries whose handler failed, by group', labelNames: ['group'], registers: [registry] }),
    deadLetters: new Counter({ name: 'flowgate_bus_dead_letters_total', help: 'Events moved to a dead-letter topic, by group', labelNames: ['group'], registers: [registry] }),
    lag: new Gauge({
      name: 'flowgate_bus_consumer_lag',
      help: 'Events a consumer group has not yet acked, by group, group scope (tenant or *) and tenant',
      labelNames: ['group', 'scope', 'tenant'],
      registers: [registry],
    }),
  };
}
