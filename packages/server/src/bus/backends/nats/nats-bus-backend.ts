import type { EventEnvelope } from '@flowgate/contracts';
import { jetstreamManager, JetStreamApiCodes, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { FlowgateError } from '../../../errors/index.js';
import type { Clock } from '../../../kernel/index.js';
import type { Logger } from '../../../observability/index.js';
import type {
  BusBackend,
  BusCapabilities,
  ConsumerHandle,
  Delivery,
  GroupFilter,
  GroupRef,
  GroupSpec,
  GroupState,
  NewEvent,
  Position,
  ReadQuery,
  Retention,
  StoredEvent,
  TenantLag,
  TopicRef,
  TrimResult,
  WatchSpec,
} from '../../bus-backend.js';
import { formatTopicFilter } from '../../topic-filter.js';
import { covers, deleteConsumer, ensureConsumer, GroupConsumers } from './group-consumers.js';
import { GroupMember } from './group-member.js';
import { GroupRegistry, notFound, type GroupRecord } from './group-registry.js';
import { JetStreamPublisher, type PublishAck } from './jetstream-publisher.js';
import { BusNames, isValidPrefix, redactUrl, type TopicStream } from './subjects.js';
import { isCode, TopicStreams } from './topic-streams.js';
import { orderedStart, TopicWatcher } from './topic-watcher.js';

/** JetStream's default de-duplication window; shortened when a retention is shorter. */
const DUPLICATE_WINDOW_MS = 2 * 60_000;
/** How long a read waits for messages it knows are there. */
const READ_EXPIRES_MS = 5000;
const encoder = new TextEncoder();

export interface NatsBusOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Namespaces every subject, stream and group record (default `fg`). */
  readonly prefix?: string;
}

export interface ConnectNatsBusOptions extends NatsBusOptions {
  /** `nats://host:4222`, or several separated by commas. */
  readonly url: string;
}

/**
 * Connects to NATS and returns the JetStream bus. Fails with FLOWGATE_ERR_BUS_UNAVAILABLE
 * when the server cannot be reached or has no JetStream.
 */
export async function connectNatsBusBackend(options: ConnectNatsBusOptions): Promise<NatsBusBackend> {
  const prefix = options.prefix ?? 'fg';
  if (!isValidPrefix(prefix)) throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `"${prefix}" is not a NATS bus prefix: use up to 32 lower-case letters, digits, _ and -.`);
  const where = redactUrl(options.url);
  let nc: NatsConnection;
  try {
    nc = await connect({ servers: options.url.split(',').map((s) => s.trim()), name: 'flowgate', timeout: 5000 });
  } catch (cause) {
    throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', `NATS at ${where} cannot be reached.`, { cause });
  }
  try {
    const jsm = await jetstreamManager(nc);
    const backend = new NatsBusBackend(nc, jsm, { ...options, prefix });
    await backend.init();
    return backend;
  } catch (cause) {
    await nc.close().catch(() => undefined);
    throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', `JetStream is not available at ${where}.`, { cause });
  }
}

/**
 * The bus on NATS JetStream (see subjects.ts for the layout): one stream per tenant
 * topic, a durable pull consumer per group and stream, group records in a small stream.
 * Several Flowgate processes share groups; JetStream keeps the positions.
 *
 * Where the port and JetStream differ:
 * - `StoredEvent.seq` and `Position.seq` are per topic (`globalSequence: false`); a seek
 *   to a seq applies it to each stream of the group.
 * - `Delivery.lastError` is always undefined: JetStream does not keep a nack's reason.
 * - Key order holds within one member only (`keyOrderAcrossMembers: false`), and a
 *   nacked event may be overtaken by a later one of its key.
 * - Retention is JetStream's own (`max_age`, `max_bytes`, by the server's clock), so
 *   `trim` reports what went at once and expiry goes on in the background.
 */
export class NatsBusBackend implements BusBackend {
  readonly capabilities: BusCapabilities = {
    transactionalPublish: false,
    sharedAcrossProcesses: true,
    // Members pull independently; only one member's own deliveries are kept in key order.
    keyOrderAcrossMembers: false,
    // Stream sequences count per topic.
    globalSequence: false,
  };
  private readonly js: JetStreamClient;
  private readonly names: BusNames;
  private readonly streams: TopicStreams;
  private readonly registry: GroupRegistry;
  private readonly publisher: JetStreamPublisher;
  /** Groups with members in this process, by scope and name. */
  private readonly groupsHere = new Map<string, GroupConsumers>();
  private readonly closers = new Set<() => Promise<void>>();
  private closed = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly options: NatsBusOptions,
  ) {
    this.js = jsm.jetstream();
    this.names = new BusNames(options.prefix ?? 'fg');
    this.streams = new TopicStreams(jsm, this.names, options.logger);
    this.registry = new GroupRegistry(this.js, jsm, this.names, options.clock);
    this.publisher = new JetStreamPublisher(nc);
  }

  /** The namespace of every subject, stream and group record of this bus. */
  get prefix(): string {
    return this.names.prefix;
  }

  /** Creates the group-record stream when missing. */
  init(): Promise<void> {
    return this.registry.init();
  }

  async append(events: readonly NewEvent[]): Promise<StoredEvent[]> {
    this.assertOpen();
    if (events.length === 0) return [];
    try {
      // Once a stream is known the lookup is synchronous: no await before the wire on the
      // usual path, so the publishes of many callers leave in few writes.
      let targets: (TopicStream | undefined)[] = events.map((e) => this.streams.existing(e.tenant, e.topic));
      if (targets.includes(undefined)) targets = await Promise.all(events.map((e) => this.streams.ensure(e.tenant, e.topic)));
      // Published back to back on the one connection, so a topic's sequence follows the
      // batch; the msg id makes a retried publish (outbox relay) a no-op.
      const acks = events.length === 1 ? [await this.publish(targets[0]!, events[0]!.envelope)] : await Promise.all(events.map((e, i) => this.publish(targets[i]!, e.envelope)));
      return events.map((e, i) => ({ seq: acks[i]!.seq, tenant: e.tenant, topic: e.topic, envelope: e.envelope }));
    } catch (cause) {
      throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The events could not be stored.', { cause });
    }
  }

  private publish(ts: TopicStream, envelope: EventEnvelope): Promise<PublishAck> {
    const body = encoder.encode(JSON.stringify(envelope));
    return this.publisher.publish(ts.subject, body, envelope.id).catch(async (error: unknown) => {
      // The stream may have been deleted behind our back: check it once and retry.
      this.options.logger.warn({ err: error, stream: ts.stream }, 'bus publish failed; checking the stream');
      this.streams.forget(ts);
      await this.streams.ensure(ts.tenant, ts.topic);
      return this.publisher.publish(ts.subject, body, envelope.id);
    });
  }

  async read(query: ReadQuery): Promise<StoredEvent[]> {
    if (query.from.kind === 'latest' || query.limit <= 0) return [];
    const ts = this.names.topicStream(query.tenant, query.topic);
    const state = await this.streamState(ts.stream);
    if (!state || state.messages === 0) return [];
    if (query.from.kind === 'seq' && query.from.seq > state.last_seq) return [];
    if (query.from.kind === 'time' && Date.parse(state.last_ts) < query.from.time) return [];
    const consumer = await this.js.consumers.get(ts.stream, orderedStart(query.from, true));
    const out: StoredEvent[] = [];
    try {
      let more = true;
      while (more && out.length < query.limit) {
        more = false;
        const messages = await consumer.fetch({ max_messages: query.limit - out.length, expires: READ_EXPIRES_MS });
        for await (const msg of messages) {
          out.push({ seq: msg.seq, tenant: ts.tenant, topic: ts.topic, envelope: msg.json<EventEnvelope>() });
          // `pending` is what the consumer has left after this one: none means done.
          more = msg.info.pending > 0;
          if (!more || out.length >= query.limit) break;
        }
        await messages.close();
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
    return out;
  }

  async consume(spec: GroupSpec, deliver: (delivery: Delivery) => void): Promise<ConsumerHandle> {
    this.assertOpen();
    const record = await this.registry.join(spec);
    const key = groupKey(spec);
    let group = this.groupsHere.get(key);
    if (!group) {
      group = new GroupConsumers(this.js, this.jsm, record, spec.ackTimeoutMs);
      this.groupsHere.set(key, group);
    }
    const owner = group;
    const member = new GroupMember(owner, this.streams, deliver, { maxInFlight: spec.maxInFlight, ackTimeoutMs: spec.ackTimeoutMs, flush: () => this.nc.flush(), logger: this.options.logger });
    owner.members.add(member);
    let left = false;
    const close = async () => {
      if (left) return;
      left = true;
      this.closers.delete(close);
      owner.members.delete(member);
      if (owner.members.size === 0 && this.groupsHere.get(key) === owner) this.groupsHere.delete(key);
      await member.close();
    };
    this.closers.add(close);
    try {
      await member.start();
    } catch (cause) {
      await close();
      throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The consumer group could not be joined.', { cause });
    }
    return { close };
  }

  async watch(spec: WatchSpec, onEvent: (event: StoredEvent) => void): Promise<ConsumerHandle> {
    this.assertOpen();
    const watcher = new TopicWatcher(this.js, this.streams, spec, onEvent, this.options.logger);
    const close = async () => {
      this.closers.delete(close);
      await watcher.close();
    };
    this.closers.add(close);
    await watcher.start();
    return { close };
  }

  /**
   * Deletes the group's consumers and creates them again at `to`. A seq applies to each
   * topic on its own (JetStream sequences are per stream). Members in this process start
   * over; members in other processes see their consumer vanish and pick up the new one,
   * but an ack they send for a delivery from before the seek may still land on it.
   */
  async seek(ref: GroupRef, to: Position): Promise<void> {
    const found = await this.registry.get(ref);
    if (!found) throw notFound(ref);
    const record = await this.registry.reposition(found, to);
    const here = this.groupsHere.get(groupKey(ref));
    if (here) here.record = record;
    const streams = await this.matchingStreams(record);
    await Promise.all(
      streams.map(async (ts) => {
        const ackWaitMs = await deleteConsumer(this.jsm, ts, record);
        // Created again now, so the new start holds even before a member attaches.
        await ensureConsumer(this.jsm, ts, record, ackWaitMs ?? here?.ackWaitMs);
      }),
    );
    here?.reset();
  }

  async groups(filter: GroupFilter): Promise<GroupState[]> {
    const records = (await this.registry.list(filter.tenant)).filter((r) => filter.name === undefined || r.name === filter.name);
    if (records.length === 0) return [];
    const streams = await this.streams.list(filter.tenant ?? null);
    const states: GroupState[] = [];
    for (const record of records) {
      const lag = new Map<string, { pending: number; inFlight: number }>();
      for (const ts of streams.filter((t) => covers(record, t))) {
        // The consumer is created if no member did yet: that pins the group's start.
        const info = await ensureConsumer(this.jsm, ts, record);
        const sum = lag.get(ts.tenant) ?? { pending: 0, inFlight: 0 };
        sum.pending += info.num_pending + info.num_ack_pending;
        sum.inFlight += info.num_ack_pending;
        lag.set(ts.tenant, sum);
      }
      const perTenant: TenantLag[] = [...lag].map(([tenant, l]) => ({ tenant, ...l })).sort((a, b) => a.tenant.localeCompare(b.tenant));
      states.push({ tenant: record.tenant, name: record.name, filter: formatTopicFilter(record.filter), createdAt: record.createdAt, lag: perTenant });
    }
    return states;
  }

  async deleteGroup(ref: GroupRef): Promise<boolean> {
    const record = await this.registry.get(ref);
    if (!record) return false;
    const key = groupKey(ref);
    this.groupsHere.get(key)?.stop();
    this.groupsHere.delete(key);
    await Promise.all((await this.matchingStreams(record)).map((ts) => deleteConsumer(this.jsm, ts, record)));
    return this.registry.remove(ref);
  }

  /**
   * Sets the stream's limits; JetStream then drops what is beyond them and frees the space
   * itself, by its own clock (`now` is not used). `deleted` is how many fewer messages the
   * stream holds afterwards: best effort, as expiry runs in the background.
   */
  async trim(topic: TopicRef, retention: Retention, _now: number): Promise<TrimResult> {
    const ts = this.names.topicStream(topic.tenant, topic.topic);
    let info;
    try {
      info = await this.jsm.streams.info(ts.stream);
    } catch (error) {
      if (isCode(error, JetStreamApiCodes.StreamNotFound)) return { deleted: 0 };
      throw error;
    }
    const maxAge = retention.maxAgeMs !== undefined && retention.maxAgeMs > 0 ? nanos(retention.maxAgeMs) : 0;
    const maxBytes = retention.maxBytes !== undefined ? Math.max(0, retention.maxBytes) : -1;
    // JetStream refuses a de-duplication window longer than the age limit.
    const duplicateWindow = maxAge > 0 ? Math.min(maxAge, nanos(DUPLICATE_WINDOW_MS)) : nanos(DUPLICATE_WINDOW_MS);
    const config = info.config;
    if (config.max_age === maxAge && config.max_bytes === maxBytes && config.duplicate_window === duplicateWindow) return { deleted: 0 };
    const updated = await this.jsm.streams.update(ts.stream, { max_age: maxAge, max_bytes: maxBytes, duplicate_window: duplicateWindow });
    return { deleted: Math.max(0, info.state.messages - updated.state.messages) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.closers].map((c) => c()));
    for (const g of this.groupsHere.values()) g.stop();
    this.groupsHere.clear();
    this.streams.close();
    await this.nc.drain().catch(() => this.nc.close());
    // A publish whose answer the drain cut off fails now rather than at its timeout.
    this.publisher.close();
  }

  /** Deletes every stream of this prefix: events, consumers and group records. For tests. */
  async destroyAll(): Promise<void> {
    const names: string[] = [];
    for await (const info of this.jsm.streams.list(this.names.all)) names.push(info.config.name);
    await Promise.all(names.map((n) => this.jsm.streams.delete(n).catch(() => false)));
  }

  private assertOpen(): void {
    if (this.closed) throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The event bus is shutting down.');
  }

  private async streamState(stream: string) {
    try {
      return (await this.jsm.streams.info(stream)).state;
    } catch (error) {
      if (isCode(error, JetStreamApiCodes.StreamNotFound)) return undefined;
      throw error;
    }
  }

  private async matchingStreams(record: GroupRecord): Promise<TopicStream[]> {
    return (await this.streams.list(record.tenant)).filter((ts) => covers(record, ts));
  }
}

function groupKey(ref: GroupRef): string {
  return `${ref.tenant ?? '*'}/${ref.name}`;
}
