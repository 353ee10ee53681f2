/**
 * The event envelope and topic names that every part of Flowgate shares (issue 4).
 *
 * The envelope is the Open Integration Hub one (`{headers: {name, createdAt, serviceName},
 * payload}`), extended with an id, the tenant, the W3C trace context, an ordering key and
 * the schema the payload was checked against. Browser-safe: no Node built-ins.
 */

/** The headers of an event. `name` is the topic the event was published on. */
export interface EventHeaders {
  /** The topic, e.g. `orders.created`. */
  readonly name: string;
  /** When the event was accepted, ISO 8601. */
  readonly createdAt: string;
  /** The service that published it (`flowgate`, `api`, a flow id…). */
  readonly serviceName: string;
  /** The tenant that owns the topic; set by the bus, never taken from the publisher. */
  readonly tenant: string;
  /** W3C trace context of the publish. */
  readonly traceparent: string;
  /** Events that share a key are delivered in publish order within a consumer group. */
  readonly key?: string;
  /** The schema the payload was validated against (`json:<topic>@<version>` or `avro:…`). */
  readonly schema?: string;
}

/** An event as stored and delivered. `id` is a UUIDv7. */
export interface EventEnvelope<Payload = unknown> {
  readonly id: string;
  readonly headers: EventHeaders;
  readonly payload: Payload;
}

/**
 * Topic names: dot-separated segments of lower-case letters, digits, `_` and `-`
 * (`orders.created`, `audit.iam.token_issued`). A segment may not be empty. Topics whose
 * first segment starts with `_` belong to Flowgate itself (dead letters: `_dlq.<group>`);
 * callers cannot publish to them, and patterns reach them only when they say so.
 */
export const TOPIC_PATTERN_SOURCE = '^[a-z0-9_][a-z0-9_-]*(\\.[a-z0-9_][a-z0-9_-]*)*$';
const TOPIC_PATTERN = new RegExp(TOPIC_PATTERN_SOURCE);
/** The longest topic name accepted. */
export const TOPIC_MAX_LENGTH = 200;

/** Whether `name` is a well-formed topic name. */
export function isTopicName(name: string): boolean {
  return name.length <= TOPIC_MAX_LENGTH && TOPIC_PATTERN.test(name);
}

/** Whether a topic belongs to Flowgate itself (first segment starts with `_`). */
export function isSystemTopic(name: string): boolean {
  return name.startsWith('_');
}

/** Topic families only Flowgate writes: the audit log and the flow and execution lifecycles. */
const RESERVED_FAMILIES = ['audit', 'flow', 'execution'] as const;

/**
 * Whether only Flowgate may publish to a topic: its own (`_…`), the audit topics
 * (`audit.…`) and the lifecycle topics (`flow.…`, `execution.…`). A tenant may read them
 * but never write them, so it can neither forge its audit log nor fake a flow's start.
 */
export function isReservedTopic(name: string): boolean {
  return isSystemTopic(name) || RESERVED_FAMILIES.some((family) => name === family || name.startsWith(`${family}.`));
}

/** The dead-letter topic of a consumer group. */
export function deadLetterTopic(group: string): string {
  return `_dlq.${group}`;
}

/** Consumer group names: like one topic segment, up to 100 characters. */
export const GROUP_PATTERN_SOURCE = '^[a-z0-9][a-z0-9_-]{0,99}$';

/** What a dead-letter event carries as its payload. */
export interface DeadLetterPayload {
  /** The event that could not be handled, unchanged. */
  readonly event: EventEnvelope;
  /** The consumer group that gave up on it. */
  readonly group: string;
  /** How many times it was delivered. */
  readonly deliveries: number;
  /** Why the last delivery failed (the handler's error, or `ack timeout`). */
  readonly reason: string;
}
