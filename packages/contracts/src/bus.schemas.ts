/**
 * JSON Schemas (TypeBox) of the event bus API (issue 4): publishing and reading events,
 * topic settings and consumer groups. The server validates with them and publishes them
 * in its OpenAPI document; the CLI and the web UI use the same types.
 */
import Type from 'typebox';
import { GROUP_PATTERN_SOURCE, TOPIC_MAX_LENGTH } from './events.js';

/** The scopes the bus API checks. A `topic=` qualifier narrows events scopes to one topic. */
export const BUS_SCOPES = {
  eventsPublish: 'events:publish',
  eventsRead: 'events:read',
  topicsRead: 'topics:read',
  topicsWrite: 'topics:write',
  groupsRead: 'groups:read',
  groupsWrite: 'groups:write',
} as const;

/** The longest value a scope qualifier may carry (see the scope grammar in scopes.ts). */
const QUALIFIER_MAX_LENGTH = 128;

/**
 * The scope that grants `base` (`events:publish`, `events:read`) on one topic:
 * `events:publish:topic=orders.created`. A topic name longer than a scope qualifier can
 * be is reachable only through the unqualified scope.
 */
export function topicScope(base: string, topic: string): string {
  return topic.length <= QUALIFIER_MAX_LENGTH ? `${base}:topic=${topic}` : base;
}

/** The most events one publish request may carry. */
export const PUBLISH_BATCH_MAX = 1000;
/** The most events one page of `GET …/events` returns. */
export const READ_PAGE_MAX = 1000;

const Timestamp = Type.String({ format: 'date-time' });
const Seq = Type.Integer({ minimum: 0, description: 'Position in the log (per topic, or global on the embedded bus)' });
const EventKey = Type.String({ minLength: 1, maxLength: 200, description: 'Events sharing a key are handled in order within a consumer group' });

// --- Params ------------------------------------------------------------------------------
/** Topic names are checked by the handler, so a bad one answers FLOWGATE_ERR_BUS_INVALID_TOPIC. */
export const TopicParamsSchema = Type.Object({ topic: Type.String({ minLength: 1, maxLength: TOPIC_MAX_LENGTH + 1 }) });
export const GroupParamsSchema = Type.Object({ group: Type.String({ pattern: GROUP_PATTERN_SOURCE }) });

// --- Events ------------------------------------------------------------------------------
export const EventHeadersSchema = Type.Object({
  name: Type.String({ description: 'The topic' }),
  createdAt: Timestamp,
  serviceName: Type.String(),
  tenant: Type.String(),
  traceparent: Type.String({ description: 'W3C trace context of the publish' }),
  key: Type.Optional(Type.String()),
  schema: Type.Optional(Type.String({ description: 'The schema the payload was checked against, e.g. json:orders.created@2' })),
});

/** An event as stored and delivered (the envelope of events.ts). */
export const EventEnvelopeSchema = Type.Object(
  {
    id: Type.String({ description: 'UUIDv7' }),
    headers: EventHeadersSchema,
    payload: Type.Unknown(),
  },
);

/** One event to publish. */
export const EventInputSchema = Type.Object({ payload: Type.Unknown(), key: Type.Optional(EventKey) }, { additionalProperties: false });
export type EventInput = Type.Static<typeof EventInputSchema>;

/** A batch, published all or nothing. */
export const EventBatchInputSchema = Type.Object(
  { events: Type.Array(EventInputSchema, { minItems: 1, maxItems: PUBLISH_BATCH_MAX }) },
  { additionalProperties: false },
);
export type EventBatchInput = Type.Static<typeof EventBatchInputSchema>;

export const PublishBodySchema = Type.Union([EventInputSchema, EventBatchInputSchema], {
  description: `One event {payload, key?}, or a batch {events: [...]} of up to ${PUBLISH_BATCH_MAX}, all or nothing`,
});
export type PublishBody = Type.Static<typeof PublishBodySchema>;

/** The answer to a batch publish: the envelopes, in the order sent. */
export const PublishedBatchSchema = Type.Object({ events: Type.Array(EventEnvelopeSchema) });

export const ReadEventsQuerySchema = Type.Object(
  {
    from: Type.Optional(Type.Integer({ minimum: 0, description: 'Start at this seq (inclusive); pass next_from of the previous page' })),
    since: Type.Optional(Type.String({ format: 'date-time', description: 'Start at the first event accepted at or after this time' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: READ_PAGE_MAX, default: 100 })),
  },
  { additionalProperties: false },
);
export type ReadEventsQuery = Type.Static<typeof ReadEventsQuerySchema>;

export const StoredEventSchema = Type.Object({ seq: Seq, event: EventEnvelopeSchema });

export const EventPageSchema = Type.Object({
  items: Type.Array(StoredEventSchema),
  next_from: Type.Union([Seq, Type.Null()], { description: 'The from of the next page; null when this page is empty (you are caught up)' }),
});

// --- Streams -----------------------------------------------------------------------------
export const StreamQuerySchema = Type.Object(
  { from: Type.Optional(Type.Integer({ minimum: 0, description: 'Start at this seq (inclusive) instead of at new events' })) },
  { additionalProperties: false },
);
export type StreamQuery = Type.Static<typeof StreamQuerySchema>;

export const PatternStreamQuerySchema = Type.Object(
  {
    filter: Type.String({ minLength: 1, maxLength: 202, description: 'A topic, a glob (audit.*, sensors.**) or a /regex/' }),
    from: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type PatternStreamQuery = Type.Static<typeof PatternStreamQuerySchema>;

// --- Topics ------------------------------------------------------------------------------
export const PayloadSchemaSchema = Type.Object(
  {
    kind: Type.Union([Type.Literal('json'), Type.Literal('avro')]),
    definition: Type.Unknown({ description: 'A JSON Schema (2020-12) or an Avro schema' }),
  },
  { additionalProperties: false },
);

const Limit = Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]);

export const RetentionSchema = Type.Object(
  {
    maxAgeMs: Type.Optional(Limit),
    maxBytes: Type.Optional(Limit),
  },
  { additionalProperties: false },
);

/** A change to a topic's settings; `null` removes a schema or a limit, absent keeps it. */
export const TopicUpdateSchema = Type.Object(
  {
    schema: Type.Optional(Type.Union([PayloadSchemaSchema, Type.Null()])),
    retention: Type.Optional(RetentionSchema),
  },
  { additionalProperties: false },
);
export type TopicUpdate = Type.Static<typeof TopicUpdateSchema>;

export const TopicSchema = Type.Object(
  {
    name: Type.String(),
    schema: Type.Union([
      Type.Object({ kind: Type.Union([Type.Literal('json'), Type.Literal('avro')]), definition: Type.Unknown(), version: Type.Integer() }),
      Type.Null(),
    ]),
    retention: Type.Object({ maxAgeMs: Type.Union([Type.Integer(), Type.Null()]), maxBytes: Type.Union([Type.Integer(), Type.Null()]) }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
);
export type Topic = Type.Static<typeof TopicSchema>;

export const TopicListSchema = Type.Object({ items: Type.Array(TopicSchema) });

// --- Consumer groups -----------------------------------------------------------------------
export const ConsumerGroupSchema = Type.Object(
  {
    name: Type.String(),
    filter: Type.String({ description: 'The topic, glob or /regex/ the group reads' }),
    created_at: Timestamp,
    pending: Type.Integer({ description: 'Events not yet acked: waiting in the log plus in flight (the lag)' }),
    in_flight: Type.Integer({ description: 'Of those, delivered and waiting for their ack' }),
  },
);
export type ConsumerGroup = Type.Static<typeof ConsumerGroupSchema>;

export const ConsumerGroupListSchema = Type.Object({ items: Type.Array(ConsumerGroupSchema) });

export const SeekBodySchema = Type.Union(
  [
    Type.Object({ to: Type.Union([Type.Literal('earliest'), Type.Literal('latest')]) }, { additionalProperties: false }),
    Type.Object({ seq: Seq }, { additionalProperties: false }),
    Type.Object({ time: Timestamp }, { additionalProperties: false }),
  ],
  { description: 'Where the group resumes: {to: earliest|latest}, {seq} or {time}' },
);
export type SeekBody = Type.Static<typeof SeekBodySchema>;
