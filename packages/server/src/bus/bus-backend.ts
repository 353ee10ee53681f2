import type { EventEnvelope } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import type { TopicFilter } from './topic-filter.js';

/**
 * The port every bus backend implements (STYLE.md practice 1): the embedded log in the
 * state store, or NATS JetStream. It stays small; what both share (envelopes, schemas,
 * quotas, dead letters, the outbox, automatic acks) lives in the {@link EventBus} facade
 * above it. Differences are {@link BusCapabilities}, never a backend's name.
 */
export interface BusBackend {
  readonly capabilities: BusCapabilities;
  /**
   * Appends events, durably: the promise resolves only once every event is committed.
   * With `tx` (only when `capabilities.transactionalPublish`), the events are written in
   * that store transaction and become visible when it commits.
   */
  append(events: readonly NewEvent[], tx?: Kysely<unknown>): Promise<StoredEvent[]>;
  /** Reads one tenant topic in publish order, from a position, at most `limit` events. */
  read(query: ReadQuery): Promise<StoredEvent[]>;
  /**
   * Joins a consumer group as one member, creating the group on first use. Each event
   * matching the group's filter goes to one member of the group; `deliver` is called at
   * most `maxInFlight` times before earlier deliveries are acked or nacked.
   */
  consume(spec: GroupSpec, deliver: (delivery: Delivery) => void): Promise<ConsumerHandle>;
  /** Follows matching events from a position without a group: no acks, nothing kept. */
  watch(spec: WatchSpec, onEvent: (event: StoredEvent) => void): Promise<ConsumerHandle>;
  /** Moves a group back or forward (replay); deliveries in flight are forgotten. */
  seek(group: GroupRef, to: Position): Promise<void>;
  /** The groups of a tenant (or every group), or of one name, with their lag per tenant. */
  groups(filter: GroupFilter): Promise<GroupState[]>;
  /** Deletes a group and its positions. */
  deleteGroup(group: GroupRef): Promise<boolean>;
  /** Drops a topic's events beyond its retention and gives the space back. */
  trim(topic: TopicRef, retention: Retention, now: number): Promise<TrimResult>;
  /** Stops every consumer and releases connections. Idempotent. */
  close(): Promise<void>;
}

/** What a backend can do; the facade and the tests branch on these. */
export interface BusCapabilities {
  /** Events can be written inside a store transaction (else the facade uses an outbox). */
  readonly transactionalPublish: boolean;
  /** Several Flowgate processes can share one group's work. */
  readonly sharedAcrossProcesses: boolean;
  /**
   * Events that share a key are never handled at the same time by two members of a
   * group. Without it, order per key holds within one member only.
   */
  readonly keyOrderAcrossMembers: boolean;
  /** `Position.seq` counts across every topic (one log) rather than per topic. */
  readonly globalSequence: boolean;
}

/** An event ready to append: its envelope is complete and validated. */
export interface NewEvent {
  readonly tenant: string;
  readonly topic: string;
  readonly envelope: EventEnvelope;
}

/** An event as a backend stores it. */
export interface StoredEvent {
  /** Position in the log: per topic, or global when `capabilities.globalSequence`. */
  readonly seq: number;
  readonly tenant: string;
  readonly topic: string;
  readonly envelope: EventEnvelope;
}

/** Where to start reading or replaying. */
export type Position =
  | { readonly kind: 'earliest' }
  | { readonly kind: 'latest' }
  /** The first event whose `seq` is at least this. */
  | { readonly kind: 'seq'; readonly seq: number }
  /** The first event accepted at or after this time (epoch ms). */
  | { readonly kind: 'time'; readonly time: number };

export interface ReadQuery {
  readonly tenant: string;
  readonly topic: string;
  readonly from: Position;
  readonly limit: number;
}

/** Which groups {@link BusBackend.groups} describes: a tenant's, or those of one name (each of which costs a lag count). */
export interface GroupFilter {
  readonly tenant?: string;
  readonly name?: string;
}

/** A consumer group: its name is unique within its tenant, or among platform groups. */
export interface GroupRef {
  /** The tenant whose topics the group reads; `null` for a platform group over every tenant. */
  readonly tenant: string | null;
  readonly name: string;
}

export interface GroupSpec extends GroupRef {
  /** Which topics the group reads; fixed when the group is created. */
  readonly filter: TopicFilter;
  /** Where a new group starts. An existing group resumes from its committed position. */
  readonly startAt: Position;
  /** A delivery neither acked nor nacked within this time is delivered again. */
  readonly ackTimeoutMs: number;
  /** How many deliveries this member holds at once. */
  readonly maxInFlight: number;
}

export interface WatchSpec {
  readonly tenant: string | null;
  readonly filter: TopicFilter;
  readonly from: Position;
}

/** One delivery of one event to one member. Exactly one of ack/nack counts. */
export interface Delivery {
  readonly event: StoredEvent;
  /** 1 on the first delivery, and one more at each redelivery. */
  readonly deliveries: number;
  /** Why the previous delivery failed, when it did. */
  readonly lastError: string | undefined;
  /** Done: the event is not delivered to this group again. Resolves once recorded. */
  ack(): Promise<void>;
  /** Failed: deliver it again after `delayMs`. Resolves once recorded. */
  nack(delayMs: number, reason: string): Promise<void>;
}

export interface ConsumerHandle {
  /** Stops taking deliveries; unacked ones go back to the group at once. */
  close(): Promise<void>;
}

/** A group's state, with what it has not yet handled per tenant. */
export interface GroupState extends GroupRef {
  readonly filter: string;
  readonly createdAt: number;
  readonly lag: readonly TenantLag[];
}

export interface TenantLag {
  readonly tenant: string;
  /** Events not yet acked: waiting in the log, plus delivered and not acked. */
  readonly pending: number;
  /** Of those, delivered and waiting for their ack. */
  readonly inFlight: number;
}

export interface TopicRef {
  readonly tenant: string;
  readonly topic: string;
}

/** How long a topic keeps its events; whichever limit is hit first drops the oldest. */
export interface Retention {
  readonly maxAgeMs?: number | undefined;
  readonly maxBytes?: number | undefined;
}

export interface TrimResult {
  readonly deleted: number;
}
