import { BUS_SCOPES, PatternStreamQuerySchema, StreamQuerySchema, TopicParamsSchema, isTopicName, topicScope } from '@flowgate/contracts';
import websocket from '@fastify/websocket';
import type { FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { FlowgateError } from '../errors/index.js';
import { bearerSecured, problemResponses, type HttpApp } from '../http/index.js';
import { callerOf, principalHas, type Principal } from '../iam/index.js';
import type { ConsumerHandle, Position, StoredEvent } from './bus-backend.js';
import type { EventBus } from './event-bus.js';
import { parseTopicFilter, topicFilter, type TopicFilter } from './topic-filter.js';

// --- Guards shared by every bus route ------------------------------------------------------

/** The topic of a route's path, or a 400 FLOWGATE_ERR_BUS_INVALID_TOPIC problem. */
export function topicParam(request: FastifyRequest): string {
  const { topic } = request.params as { topic: string };
  if (!isTopicName(topic)) {
    throw new FlowgateError('FLOWGATE_ERR_BUS_INVALID_TOPIC', `"${topic}" is not a topic name: use lower-case dot-separated segments such as orders.created.`);
  }
  return topic;
}

/**
 * Checks a scope the route cannot name statically (it depends on the topic in the path),
 * answering exactly as the IAM auth hook does: 403 with an RFC 6750 `insufficient_scope`
 * challenge naming the scope.
 */
export function requireScope(principal: Principal, scope: string): void {
  if (principalHas(principal, scope)) return;
  throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `This needs the "${scope}" scope, which your token does not carry.`, {
    headers: { 'www-authenticate': `Bearer realm="flowgate", error="insufficient_scope", scope="${scope}"` },
    extensions: { required_scope: scope },
  });
}

/** The caller, once it may do `base` (`events:read`, `events:publish`) on `topic`. */
export function callerFor(request: FastifyRequest, base: string, topic: string): Principal {
  const principal = callerOf(request);
  requireScope(principal, topicScope(base, topic));
  return principal;
}

// --- Live streams ----------------------------------------------------------------------------

/** A comment line every so often keeps proxies and load balancers from closing idle streams. */
export const HEARTBEAT_MS = 15_000;
/** A client this far behind is cut off; it resumes with Last-Event-ID instead of growing our memory. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

const problems = problemResponses;
const secured = bearerSecured;
const EventStream = {
  200: {
    description: 'A text/event-stream: `id:` is the seq, `event: event`, `data:` the envelope JSON; comment lines are heartbeats',
    content: { 'text/event-stream': { schema: Type.String() } },
  },
};

/**
 * Server-Sent Events of new events (WHATWG HTML §9.2): one topic, or a glob or /regex/
 * over the caller's topics. Both follow the bus with `watch` (no consumer group, nothing
 * kept) and resume after `Last-Event-ID`, so a browser's EventSource reconnects without
 * gaps. Streams end when the server shuts down; clients reconnect and resume.
 */
export async function registerBusStreamRoutes(app: HttpApp, bus: EventBus): Promise<void> {
  const open = new Set<() => void>();
  // preClose runs before the server stops accepting: open streams would keep it waiting.
  app.addHook('preClose', (done) => {
    for (const end of open) end();
    done();
  });

  app.get(
    '/api/v1/topics/:topic/stream',
    {
      config: { scope: null },
      schema: {
        ...secured,
        tags: ['events'],
        summary: 'Follows a topic as Server-Sent Events (needs events:read:topic=<topic>); resumes after Last-Event-ID',
        params: TopicParamsSchema,
        querystring: StreamQuerySchema,
        response: { ...EventStream, ...problems(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const topic = topicParam(request);
      const principal = callerFor(request, BUS_SCOPES.eventsRead, topic);
      await streamEvents(request, reply, { bus, open, tenant: principal.tenant, filter: topicFilter(topic), from: startOf(request, request.query.from) });
    },
  );

  app.get(
    '/api/v1/streams',
    {
      config: { scope: BUS_SCOPES.eventsRead },
      schema: {
        ...secured,
        tags: ['events'],
        summary: 'Follows every topic matching a glob (audit.*) or /regex/ as Server-Sent Events',
        querystring: PatternStreamQuerySchema,
        response: { ...EventStream, ...problems(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const principal = callerOf(request);
      const filter = parseTopicFilter(request.query.filter);
      await streamEvents(request, reply, { bus, open, tenant: principal.tenant, filter, from: startOf(request, request.query.from) });
    },
  );

  await registerWebSocketRoute(app, bus);
}

/**
 * Where a stream starts: after `Last-Event-ID` (what the client saw last), else at
 * `?from=` (inclusive, like reads), else at new events only.
 */
function startOf(request: FastifyRequest, from: number | undefined): Position {
  const header = request.headers['last-event-id'];
  const lastId = Array.isArray(header) ? header[0] : header;
  if (lastId !== undefined && lastId.trim() !== '') {
    if (!/^\d{1,15}$/.test(lastId.trim())) throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'Last-Event-ID must be the seq of an event this stream sent.');
    return { kind: 'seq', seq: Number(lastId.trim()) + 1 };
  }
  return from !== undefined ? { kind: 'seq', seq: from } : { kind: 'latest' };
}

interface StreamSpec {
  readonly bus: EventBus;
  readonly open: Set<() => void>;
  readonly tenant: string;
  readonly filter: TopicFilter;
  readonly from: Position;
}

async function streamEvents(request: FastifyRequest, reply: FastifyReply, spec: StreamSpec): Promise<void> {
  const res = reply.raw;
  const socket = request.raw.socket;
  let ready = false;
  let ended = false;
  const early: StoredEvent[] = [];
  const write = (text: string) => {
    if (ended) return;
    res.write(text);
    if (res.writableLength > MAX_BUFFERED_BYTES) end();
  };
  const send = (event: StoredEvent) => write(`id: ${event.seq}\nevent: event\ndata: ${JSON.stringify(event.envelope)}\n\n`);

  // Watch before answering: once the client sees the response, nothing published after
  // is missed. Errors here still reach the client as a problem document.
  const handle: ConsumerHandle = await spec.bus.watch(spec.tenant, spec.filter, spec.from, (event) => (ready ? send(event) : early.push(event)));
  const heartbeat = setInterval(() => ready && write(': heartbeat\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const end = () => {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    spec.open.delete(end);
    void handle.close().catch((error: unknown) => request.log.warn({ err: error }, 'bus watch did not close'));
    if (!res.writableEnded) res.end();
    // The connection goes with the stream: left open and idle after a shutdown's end(),
    // it would hold the server's close until the client's keep-alive timeout.
    socket.destroySoon();
  };
  // The stream outlives the handler: Fastify must not answer it (its trace headers are copied).
  reply.hijack();
  if (request.raw.destroyed || res.destroyed) {
    end();
    return;
  }
  spec.open.add(end);
  res.on('close', end);
  res.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    // nginx buffers responses unless told not to.
    'x-accel-buffering': 'no',
  });
  res.socket?.setNoDelay(true);
  write('retry: 2000\n: connected\n\n');
  ready = true;
  for (const event of early.splice(0)) send(event);
}

// --- WebSocket ---------------------------------------------------------------------------------

/** The slice of a `ws` socket the WebSocket route uses (the core declares only what it needs). */
interface EventSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  ping(): void;
  close(code?: number, reason?: string): void;
  on(event: 'close', listener: () => void): unknown;
}

/** WebSocket readyState OPEN (RFC 6455 §4.1, WHATWG WebSockets). */
const WS_OPEN = 1;

/** A watch started before the upgrade, so nothing published after the handshake is missed. */
interface PendingWatch {
  readonly early: StoredEvent[];
  sink: ((event: StoredEvent) => void) | undefined;
  close(): void;
}

/**
 * The WebSocket equivalent of the topic stream (RFC 6455): each event one JSON text frame
 * `{seq, event}`. Authentication and scopes run before the upgrade, so a refused client
 * gets an ordinary problem document instead of a handshake; `?from=` resumes.
 */
async function registerWebSocketRoute(app: HttpApp, bus: EventBus): Promise<void> {
  // Clients only listen: a small frame limit keeps anyone from sending us megabytes.
  await app.register(websocket, { options: { maxPayload: 4096 } });
  const watches = new WeakMap<FastifyRequest['raw'], PendingWatch>();

  app.route({
    method: 'GET',
    url: '/api/v1/topics/:topic/ws',
    config: { scope: null },
    schema: {
      ...secured,
      tags: ['events'],
      summary: 'Follows a topic over a WebSocket: each event a JSON text frame {seq, event} (needs events:read:topic=<topic>)',
      params: TopicParamsSchema,
      querystring: StreamQuerySchema,
      response: problems(400, 401, 403),
    },
    preHandler: async (request) => {
      const topic = topicParam(request);
      const principal = callerFor(request, BUS_SCOPES.eventsRead, topic);
      if (!request.ws) return;
      const { from } = request.query;
      const pending: PendingWatch = { early: [], sink: undefined, close: () => undefined };
      const handle = await bus.watch(principal.tenant, topicFilter(topic), from !== undefined ? { kind: 'seq', seq: from } : { kind: 'latest' }, (event) =>
        pending.sink ? pending.sink(event) : pending.early.push(event),
      );
      let closed = false;
      pending.close = () => {
        if (closed) return;
        closed = true;
        void handle.close().catch((error: unknown) => request.log.warn({ err: error }, 'bus watch did not close'));
      };
      watches.set(request.raw, pending);
      // If the handshake fails, the connection's end still ends the watch.
      request.raw.socket?.once('close', () => pending.close());
    },
    handler: () => {
      throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'This endpoint speaks WebSocket: send Upgrade: websocket, or read /stream for Server-Sent Events.');
    },
    wsHandler: (socket: EventSocket, request: FastifyRequest) => {
      const pending = watches.get(request.raw);
      watches.delete(request.raw);
      if (!pending) {
        socket.close(1011, 'no event watch');
        return;
      }
      const ping = setInterval(() => socket.readyState === WS_OPEN && socket.ping(), HEARTBEAT_MS);
      ping.unref();
      socket.on('close', () => {
        clearInterval(ping);
        pending.close();
      });
      pending.sink = (event) => {
        if (socket.readyState !== WS_OPEN) return;
        // 1013 "try again later": the client reconnects with ?from= the seq after its last one.
        if (socket.bufferedAmount > MAX_BUFFERED_BYTES) return socket.close(1013, 'too far behind; reconnect with ?from=');
        socket.send(JSON.stringify({ seq: event.seq, event: event.envelope }));
      };
      for (const event of pending.early.splice(0)) pending.sink(event);
    },
  });
}
