import {
  BUS_SCOPES,
  ConsumerGroupListSchema,
  ConsumerGroupSchema,
  EventEnvelopeSchema,
  EventPageSchema,
  GroupParamsSchema,
  PublishBodySchema,
  PublishedBatchSchema,
  ReadEventsQuerySchema,
  SeekBodySchema,
  TopicListSchema,
  TopicParamsSchema,
  TopicSchema,
  TopicUpdateSchema,
  type ConsumerGroup,
  type PublishBody,
  type SeekBody,
  type Topic,
} from '@flowgate/contracts';
import Type from 'typebox';
import { FlowgateError } from '../errors/index.js';
import { bearerSecured, problemResponses, queryTime, type HttpApp } from '../http/index.js';
import { callerOf } from '../iam/index.js';
import { isoTime } from '../kernel/index.js';
import type { GroupState, Position } from './bus-backend.js';
import { callerFor, registerBusStreamRoutes, topicParam } from './bus-stream.routes.js';
import type { EventBus, PublishItem } from './event-bus.js';
import type { TopicSettings, TopicSettingsChange } from './topic.registry.js';

export interface BusRoutesOptions {
  readonly bus: EventBus;
}

const problems = problemResponses;
const secured = bearerSecured;
const NoContent = { 204: Type.Null({ description: 'Done' }) };

/**
 * The bus's HTTP API under /api/v1 (topics, events, streams, consumer groups). Every
 * route is tenant-scoped: the tenant is always the caller's, never taken from the
 * request, so another tenant's topics simply hold no events and its groups do not exist.
 */
export async function registerBusRoutes(app: HttpApp, { bus }: BusRoutesOptions): Promise<void> {
  // --- Events ------------------------------------------------------------------------------
  app.post(
    '/api/v1/topics/:topic/events',
    {
      config: { scope: null },
      schema: {
        ...secured,
        tags: ['events'],
        summary: 'Publishes one event, or a batch all or nothing (needs events:publish:topic=<topic>)',
        description:
          'A single event {payload, key?} answers with its envelope; a batch {events: [...]} answers {events: [envelopes]} in the order sent. ' +
          'A payload that does not match the topic schema is refused with 422 and field errors; nothing of the request is written.',
        params: TopicParamsSchema,
        body: PublishBodySchema,
        response: { 201: Type.Union([EventEnvelopeSchema, PublishedBatchSchema]), ...problems(400, 401, 403, 413, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const topic = topicParam(request);
      const principal = callerFor(request, BUS_SCOPES.eventsPublish, topic);
      const body: PublishBody = request.body;
      const options = { traceparent: singleHeader(request.headers.traceparent), serviceName: 'api' };
      if ('events' in body) {
        const items: PublishItem[] = body.events.map((e) => ({ topic, payload: e.payload, key: e.key }));
        return reply.code(201).send({ events: await bus.publishBatch(principal.tenant, items, options) });
      }
      return reply.code(201).send(await bus.publish(principal.tenant, { topic, payload: body.payload, key: body.key }, options));
    },
  );

  app.get(
    '/api/v1/topics/:topic/events',
    {
      config: { scope: null },
      schema: {
        ...secured,
        tags: ['events'],
        summary: 'Reads a topic in publish order, a page at a time (needs events:read:topic=<topic>)',
        params: TopicParamsSchema,
        querystring: ReadEventsQuerySchema,
        response: { 200: EventPageSchema, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const topic = topicParam(request);
      const principal = callerFor(request, BUS_SCOPES.eventsRead, topic);
      const { from, since, limit = 100 } = request.query;
      if (from !== undefined && since !== undefined) throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'Give from or since, not both.');
      const position: Position = from !== undefined ? { kind: 'seq', seq: from } : since !== undefined ? { kind: 'time', time: queryTime(since, 'since') } : { kind: 'earliest' };
      const events = await bus.read(principal.tenant, topic, position, limit);
      const last = events[events.length - 1];
      return { items: events.map((e) => ({ seq: e.seq, event: e.envelope })), next_from: last ? last.seq + 1 : null };
    },
  );

  await registerBusStreamRoutes(app, bus);

  // --- Topics --------------------------------------------------------------------------------
  app.get(
    '/api/v1/topics',
    {
      config: { scope: BUS_SCOPES.topicsRead },
      schema: { ...secured, tags: ['topics'], summary: 'Topics with settings (a schema or retention) in your tenant', response: { 200: TopicListSchema, ...problems(401, 403) } },
    },
    async (request) => ({ items: (await bus.topics.list(callerOf(request).tenant)).map(topicView) }),
  );
  app.get(
    '/api/v1/topics/:topic',
    {
      config: { scope: BUS_SCOPES.topicsRead },
      schema: { ...secured, tags: ['topics'], summary: "A topic's settings", params: TopicParamsSchema, response: { 200: TopicSchema, ...problems(400, 401, 403, 404) } },
    },
    async (request) => {
      const topic = topicParam(request);
      const settings = await bus.topics.get(callerOf(request).tenant, topic);
      if (!settings) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `The topic "${topic}" has no settings.`);
      return topicView(settings);
    },
  );
  app.put(
    '/api/v1/topics/:topic',
    {
      config: { scope: BUS_SCOPES.topicsWrite },
      schema: {
        ...secured,
        tags: ['topics'],
        summary: "Sets a topic's payload schema (JSON Schema or Avro) and retention; null removes one, absent keeps it",
        params: TopicParamsSchema,
        body: TopicUpdateSchema,
        response: { 200: TopicSchema, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const topic = topicParam(request);
      const { schema, retention } = request.body;
      const change: TopicSettingsChange = {
        ...(schema !== undefined ? { schema } : {}),
        ...(retention?.maxAgeMs !== undefined ? { maxAgeMs: retention.maxAgeMs } : {}),
        ...(retention?.maxBytes !== undefined ? { maxBytes: retention.maxBytes } : {}),
      };
      return topicView(await bus.topics.configure(callerOf(request).tenant, topic, change));
    },
  );

  // --- Consumer groups -------------------------------------------------------------------------
  app.get(
    '/api/v1/consumer-groups',
    {
      config: { scope: BUS_SCOPES.groupsRead },
      schema: { ...secured, tags: ['consumer groups'], summary: "Your tenant's consumer groups and their lag", response: { 200: ConsumerGroupListSchema, ...problems(401, 403) } },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      return { items: (await bus.groups({ tenant })).map((g) => groupView(g, tenant)) };
    },
  );
  app.post(
    '/api/v1/consumer-groups/:group/seek',
    {
      config: { scope: BUS_SCOPES.groupsWrite },
      schema: {
        ...secured,
        tags: ['consumer groups'],
        summary: 'Moves a group back (replay) or forward; deliveries in flight are forgotten',
        params: GroupParamsSchema,
        body: SeekBodySchema,
        response: { 200: ConsumerGroupSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      const name = request.params.group;
      await bus.seek({ tenant, name }, seekPosition(request.body));
      const [state] = await bus.groups({ tenant, name });
      if (!state) throw groupNotFound(name);
      return groupView(state, tenant);
    },
  );
  app.delete(
    '/api/v1/consumer-groups/:group',
    {
      config: { scope: BUS_SCOPES.groupsWrite },
      schema: { ...secured, tags: ['consumer groups'], summary: 'Deletes a group and its positions', params: GroupParamsSchema, response: { ...NoContent, ...problems(401, 403, 404) } },
    },
    async (request, reply) => {
      const deleted = await bus.deleteGroup({ tenant: callerOf(request).tenant, name: request.params.group });
      if (!deleted) throw groupNotFound(request.params.group);
      return reply.code(204).send(null);
    },
  );
}

function singleHeader(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function seekPosition(body: SeekBody): Position {
  if ('to' in body) return { kind: body.to };
  if ('seq' in body) return { kind: 'seq', seq: body.seq };
  return { kind: 'time', time: queryTime(body.time, 'time') };
}

function groupNotFound(name: string): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `There is no consumer group "${name}".`);
}

function topicView(settings: TopicSettings): Topic {
  return {
    name: settings.name,
    schema: settings.schema ? { kind: settings.schema.kind, definition: settings.schema.definition, version: settings.schema.version } : null,
    retention: { maxAgeMs: settings.retention.maxAgeMs ?? null, maxBytes: settings.retention.maxBytes ?? null },
    created_at: isoTime(settings.createdAt),
    updated_at: isoTime(settings.updatedAt),
  };
}

/** A tenant group's lag is its own tenant's: a tenant group reads no other tenant's topics. */
function groupView(state: GroupState, tenant: string): ConsumerGroup {
  const own = state.lag.filter((l) => l.tenant === tenant);
  return {
    name: state.name,
    filter: state.filter,
    created_at: isoTime(state.createdAt),
    pending: own.reduce((n, l) => n + l.pending, 0),
    in_flight: own.reduce((n, l) => n + l.inFlight, 0),
  };
}
