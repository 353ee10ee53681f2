/**
 * The event bus over HTTP (issue 4), against a real server on SQLite: publishing and
 * reading, topic scopes, tenant isolation, payload schemas, Server-Sent Events, consumer
 * groups and quotas. Every test uses its own topic names; nothing waits on a timer,
 * only on conditions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConsumerHandle } from '../../src/bus/index.js';
import { api, clientToken } from '../support/http.js';
import { createTenant, createUser, loginUser, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { waitFor } from '../support/bus.js';

let counter = 0;
/** A topic name no other test uses. */
const freshTopic = (prefix = 'orders') => `${prefix}.t${Date.now().toString(36)}${(counter++).toString(36)}`;

interface SseFrame {
  readonly id?: string;
  readonly event?: string;
  readonly data?: string;
}

interface SseClient {
  readonly status: number;
  readonly headers: Headers;
  readonly frames: SseFrame[];
  readonly comments: string[];
  /** Resolves once `n` events have arrived. */
  waitForEvents(n: number): Promise<SseFrame[]>;
  close(): void;
}

/** Opens an SSE stream with fetch and parses frames as they arrive (WHATWG HTML §9.2.6). */
async function openSse(base: string, path: string, token: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const controller = new AbortController();
  const res = await fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', ...headers }, signal: controller.signal });
  const frames: SseFrame[] = [];
  const comments: string[] = [];
  if (res.ok && res.body) {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    void (async () => {
      let buffer = '';
      for (;;) {
        const chunk = await reader.read().catch(() => ({ done: true as const, value: undefined }));
        if (chunk.done) return;
        buffer += chunk.value;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const frame: Record<string, string> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else {
              const at = line.indexOf(':');
              frame[line.slice(0, at)] = line.slice(at + 1).replace(/^ /, '');
            }
          }
          if (frame.data !== undefined) frames.push(frame);
        }
      }
    })();
  }
  return {
    status: res.status,
    headers: res.headers,
    frames,
    comments,
    async waitForEvents(n) {
      await waitFor(`${n} SSE events`, () => frames.length >= n);
      return frames.slice(0, n);
    },
    close: () => controller.abort(),
  };
}

describe('event bus API', () => {
  let server: TestServer;
  let base: string;
  let alpha: TenantOwner;
  let beta: TenantOwner;
  const handles: ConsumerHandle[] = [];

  const publish = (token: string, topic: string, body: unknown, headers?: Record<string, string>) =>
    api(base, 'POST', `/api/v1/topics/${topic}/events`, { token, body, ...(headers ? { headers } : {}) });
  const read = (token: string, topic: string, query = '') => api(base, 'GET', `/api/v1/topics/${topic}/events${query}`, { token });

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    alpha = await createTenant(base, 'bus-alpha');
    beta = await createTenant(base, 'bus-beta');
  });
  afterAll(async () => {
    await Promise.all(handles.map((h) => h.close()));
    await server.close();
  });

  describe('publishing and reading', () => {
    it('publishes one event and a batch, then reads them back in publish order', async () => {
      const topic = freshTopic();
      const one = await publish(alpha.token, topic, { payload: { n: 1 }, key: 'k1' });
      expect(one.status).toBe(201);
      expect(one.body).toMatchObject({ id: expect.any(String), headers: { name: topic, tenant: 'bus-alpha', serviceName: 'api', key: 'k1' }, payload: { n: 1 } });

      const batch = await publish(alpha.token, topic, { events: [{ payload: { n: 2 } }, { payload: { n: 3 }, key: 'k3' }, { payload: 'four' }] });
      expect(batch.status).toBe(201);
      expect(batch.body.events.map((e: any) => e.payload)).toEqual([{ n: 2 }, { n: 3 }, 'four']);

      const page = await read(alpha.token, topic);
      expect(page.status).toBe(200);
      expect(page.body.items.map((i: any) => i.event.payload)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, 'four']);
      expect(page.body.items.map((i: any) => i.event.id)).toEqual([one.body.id, ...batch.body.events.map((e: any) => e.id)]);
      const seqs = page.body.items.map((i: any) => i.seq as number);
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
      expect(page.body.next_from).toBe(seqs[3] + 1);

      // Paging: two at a time, then from next_from; an empty page has next_from null.
      const first = await read(alpha.token, topic, '?limit=2');
      expect(first.body.items.map((i: any) => i.event.payload)).toEqual([{ n: 1 }, { n: 2 }]);
      const second = await read(alpha.token, topic, `?limit=2&from=${first.body.next_from}`);
      expect(second.body.items.map((i: any) => i.event.payload)).toEqual([{ n: 3 }, 'four']);
      const rest = await read(alpha.token, topic, `?from=${second.body.next_from}`);
      expect(rest.body).toEqual({ items: [], next_from: null });

      const since = await read(alpha.token, topic, `?since=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`);
      expect(since.body.items).toHaveLength(4);
      expectProblem(await read(alpha.token, topic, '?from=1&since=2020-01-01T00:00:00Z'), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
    });

    it("carries the caller's traceparent into the envelope", async () => {
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const res = await publish(alpha.token, freshTopic(), { payload: {} }, { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
      expect(res.status).toBe(201);
      expect(res.body.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-0[01]$`));
    });

    it('refuses malformed bodies and reserved topics', async () => {
      const topic = freshTopic();
      expectProblem(await publish(alpha.token, topic, { key: 'no payload' }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expectProblem(await publish(alpha.token, topic, { events: [] }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expectProblem(await publish(alpha.token, topic, { events: Array.from({ length: 1001 }, () => ({ payload: 1 })) }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expectProblem(await publish(alpha.token, '_dlq.mine', { payload: 1 }), 400, 'FLOWGATE_ERR_BUS_RESERVED_TOPIC');
      expect((await read(alpha.token, topic)).body.items).toEqual([]);
    });

    it('answers 400 FLOWGATE_ERR_BUS_INVALID_TOPIC for a malformed topic name on every topic route', async () => {
      for (const bad of ['Orders', 'orders..created', 'orders.', 'a%20b', '-lead']) {
        expectProblem(await publish(alpha.token, bad, { payload: 1 }), 400, 'FLOWGATE_ERR_BUS_INVALID_TOPIC');
        expectProblem(await read(alpha.token, bad), 400, 'FLOWGATE_ERR_BUS_INVALID_TOPIC');
        expectProblem(await api(base, 'GET', `/api/v1/topics/${bad}/stream`, { token: alpha.token }), 400, 'FLOWGATE_ERR_BUS_INVALID_TOPIC');
        expectProblem(await api(base, 'PUT', `/api/v1/topics/${bad}`, { token: alpha.token, body: {} }), 400, 'FLOWGATE_ERR_BUS_INVALID_TOPIC');
        expectProblem(await api(base, 'GET', `/api/v1/topics/${bad}`, { token: alpha.token }), 400, 'FLOWGATE_ERR_BUS_INVALID_TOPIC');
      }
      expectProblem(await api(base, 'GET', '/api/v1/streams?filter=Bad.*', { token: alpha.token }), 400, 'FLOWGATE_ERR_BUS_INVALID_TOPIC');
    });

    it('needs a token', async () => {
      expectProblem(await api(base, 'POST', `/api/v1/topics/${freshTopic()}/events`, { body: { payload: 1 } }), 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      expectProblem(await api(base, 'GET', '/api/v1/consumer-groups'), 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
    });
  });

  describe('scopes', () => {
    it('lets a member publish and read but not configure topics', async () => {
      const user = await createUser(base, alpha, 'bus-member', 'member');
      const token = (await loginUser(base, 'bus-alpha', user)).access_token as string;
      const topic = freshTopic();
      expect((await publish(token, topic, { payload: 1 })).status).toBe(201);
      expect((await read(token, topic)).body.items).toHaveLength(1);
      expect((await api(base, 'GET', '/api/v1/topics', { token })).status).toBe(200);
      const denied = await api(base, 'PUT', `/api/v1/topics/${topic}`, { token, body: { retention: { maxAgeMs: 1000 } } });
      expectProblem(denied, 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expect(denied.body.detail).toContain('topics:write');
      expectProblem(await api(base, 'POST', '/api/v1/consumer-groups/g1/seek', { token, body: { to: 'earliest' } }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    });

    it('lets a service account publish only to the topics its scopes name', async () => {
      const allowed = freshTopic('sensors');
      const other = freshTopic('sensors');
      const created = await api(base, 'POST', '/api/v1/service-accounts', {
        token: alpha.token,
        body: { name: 'sensor-bot', scopes: [`events:publish:topic=${allowed}`, `events:read:topic=${allowed}`] },
      });
      expect(created.status).toBe(201);
      const token = await clientToken(base, created.body.client_id, created.body.client_secret);

      expect((await publish(token, allowed, { payload: { ok: true } })).status).toBe(201);
      expect((await read(token, allowed)).body.items).toHaveLength(1);

      const denied = await publish(token, other, { payload: { ok: false } });
      expectProblem(denied, 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expect(denied.body.detail).toContain(`events:publish:topic=${other}`);
      expect(denied.body.required_scope).toBe(`events:publish:topic=${other}`);
      expect(denied.headers.get('www-authenticate')).toContain('error="insufficient_scope"');
      expectProblem(await read(token, other), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expectProblem(await api(base, 'GET', `/api/v1/topics/${other}/stream`, { token }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      // The pattern stream needs the unqualified events:read.
      expectProblem(await api(base, 'GET', '/api/v1/streams?filter=sensors.*', { token }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expect((await read(alpha.token, other)).body.items).toEqual([]);
    });
  });

  describe('tenant isolation', () => {
    it("gives another tenant's topic no events and hides its consumer groups", async () => {
      const topic = freshTopic();
      expect((await publish(alpha.token, topic, { payload: 'secret' })).status).toBe(201);
      expect((await read(beta.token, topic)).body).toEqual({ items: [], next_from: null });
      expect((await read(beta.token, topic, '?from=0')).body.items).toEqual([]);

      const group = `iso-${counter++}`;
      handles.push(await server.flowgate.bus.subscribe({ tenant: 'bus-alpha', group, filter: topic }, () => undefined));
      const betaGroups = await api(base, 'GET', '/api/v1/consumer-groups', { token: beta.token });
      expect(betaGroups.body.items.map((g: any) => g.name)).not.toContain(group);
      expectProblem(await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: beta.token, body: { to: 'earliest' } }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
      expectProblem(await api(base, 'DELETE', `/api/v1/consumer-groups/${group}`, { token: beta.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
      const alphaGroups = await api(base, 'GET', '/api/v1/consumer-groups', { token: alpha.token });
      expect(alphaGroups.body.items.map((g: any) => g.name)).toContain(group);

      // Topic settings are per tenant as well.
      expect((await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { retention: { maxAgeMs: 60_000 } } })).status).toBe(200);
      expectProblem(await api(base, 'GET', `/api/v1/topics/${topic}`, { token: beta.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
      expect((await api(base, 'GET', '/api/v1/topics', { token: beta.token })).body.items.map((t: any) => t.name)).not.toContain(topic);
    });

    it("streams none of another tenant's events", async () => {
      const topic = freshTopic();
      const stream = await openSse(base, `/api/v1/topics/${topic}/stream`, beta.token);
      try {
        await publish(alpha.token, topic, { payload: 'alpha only' });
        await publish(beta.token, topic, { payload: 'beta' });
        const [frame] = await stream.waitForEvents(1);
        expect(JSON.parse(frame!.data!).payload).toBe('beta');
        expect(stream.frames).toHaveLength(1);
      } finally {
        stream.close();
      }
    });
  });

  describe('topic settings and schemas', () => {
    it('refuses a payload that does not match a JSON Schema with 422, naming the field, and writes nothing', async () => {
      const topic = freshTopic();
      const schema = { type: 'object', properties: { amount: { type: 'number' }, sku: { type: 'string' } }, required: ['amount', 'sku'] };
      const put = await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { schema: { kind: 'json', definition: schema } } });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({ name: topic, schema: { kind: 'json', definition: schema, version: 1 }, retention: { maxAgeMs: null, maxBytes: null } });

      const bad = await publish(alpha.token, topic, { payload: { amount: 'ten', sku: 'a' } });
      expectProblem(bad, 422, 'FLOWGATE_ERR_BUS_SCHEMA_MISMATCH');
      expect(bad.body.errors).toEqual([expect.objectContaining({ path: '/payload/amount' })]);

      const badBatch = await publish(alpha.token, topic, { events: [{ payload: { amount: 1, sku: 'a' } }, { payload: { amount: 2 } }] });
      expectProblem(badBatch, 422, 'FLOWGATE_ERR_BUS_SCHEMA_MISMATCH');
      expect(badBatch.body.errors[0].path).toMatch(/^\/1\/payload/);
      expect((await read(alpha.token, topic)).body.items).toEqual([]);

      const good = await publish(alpha.token, topic, { payload: { amount: 10, sku: 'a' } });
      expect(good.status).toBe(201);
      expect(good.body.headers.schema).toBe(`json:${topic}@1`);
      expect((await read(alpha.token, topic)).body.items).toHaveLength(1);

      // Removing the schema lets anything through again.
      expect((await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { schema: null } })).body.schema).toBeNull();
      expect((await publish(alpha.token, topic, { payload: 'free text' })).status).toBe(201);
    });

    it('checks payloads against an Avro schema', async () => {
      const topic = freshTopic('readings');
      const definition = { type: 'record', name: 'Reading', fields: [{ name: 'sensor', type: 'string' }, { name: 'value', type: 'double' }] };
      expect((await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { schema: { kind: 'avro', definition } } })).status).toBe(200);
      const bad = await publish(alpha.token, topic, { payload: { sensor: 's1', value: 'high' } });
      expectProblem(bad, 422, 'FLOWGATE_ERR_BUS_SCHEMA_MISMATCH');
      expect(bad.body.errors.map((e: any) => e.path)).toContain('/payload/value');
      expect((await read(alpha.token, topic)).body.items).toEqual([]);
      expect((await publish(alpha.token, topic, { payload: { sensor: 's1', value: 21.5 } })).status).toBe(201);
    });

    it('refuses a schema that does not compile with 400, and unknown settings', async () => {
      const topic = freshTopic();
      const json = await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { schema: { kind: 'json', definition: { type: 'no-such-type' } } } });
      expectProblem(json, 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expect(json.body.errors[0].path).toBe('/schema/definition');
      expectProblem(await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { schema: { kind: 'avro', definition: { type: 'record' } } } }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expectProblem(await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { schema: { kind: 'xml', definition: {} } } }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expectProblem(await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { retention: { maxAgeMs: -1 } } }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      expectProblem(await api(base, 'GET', `/api/v1/topics/${topic}`, { token: alpha.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    });

    it('sets, lists and clears retention', async () => {
      const topic = freshTopic();
      const put = await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { retention: { maxAgeMs: 3_600_000, maxBytes: 1_000_000 } } });
      expect(put.body).toMatchObject({ name: topic, schema: null, retention: { maxAgeMs: 3_600_000, maxBytes: 1_000_000 }, created_at: expect.any(String) });
      const cleared = await api(base, 'PUT', `/api/v1/topics/${topic}`, { token: alpha.token, body: { retention: { maxBytes: null } } });
      expect(cleared.body.retention).toEqual({ maxAgeMs: 3_600_000, maxBytes: null });
      expect((await api(base, 'GET', `/api/v1/topics/${topic}`, { token: alpha.token })).body.retention).toEqual({ maxAgeMs: 3_600_000, maxBytes: null });
      const list = await api(base, 'GET', '/api/v1/topics', { token: alpha.token });
      expect(list.body.items.find((t: any) => t.name === topic)).toMatchObject({ retention: { maxAgeMs: 3_600_000 } });
    });
  });

  describe('Server-Sent Events', () => {
    it('streams new events of a topic, then resumes after Last-Event-ID', async () => {
      const topic = freshTopic();
      await publish(alpha.token, topic, { payload: 'before' });
      const stream = await openSse(base, `/api/v1/topics/${topic}/stream`, alpha.token);
      let lastId: string;
      try {
        expect(stream.status).toBe(200);
        expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
        expect(stream.headers.get('x-trace-id')).toMatch(/^[0-9a-f]{32}$/);
        const published = await publish(alpha.token, topic, { payload: { n: 1 } });
        await publish(alpha.token, topic, { payload: { n: 2 } });
        const frames = await stream.waitForEvents(2);
        expect(frames.map((f) => f.event)).toEqual(['event', 'event']);
        const first = JSON.parse(frames[0]!.data!);
        expect(first).toEqual(published.body);
        expect(JSON.parse(frames[1]!.data!).payload).toEqual({ n: 2 });
        expect(Number(frames[1]!.id) > Number(frames[0]!.id)).toBe(true);
        lastId = frames[0]!.id!;
      } finally {
        stream.close();
      }

      await publish(alpha.token, topic, { payload: { n: 3 } });
      const resumed = await openSse(base, `/api/v1/topics/${topic}/stream`, alpha.token, { 'last-event-id': lastId });
      try {
        const frames = await resumed.waitForEvents(2);
        expect(frames.map((f) => JSON.parse(f.data!).payload)).toEqual([{ n: 2 }, { n: 3 }]);
      } finally {
        resumed.close();
      }

      const fromStart = await openSse(base, `/api/v1/topics/${topic}/stream?from=0`, alpha.token);
      try {
        const frames = await fromStart.waitForEvents(4);
        expect(frames.map((f) => JSON.parse(f.data!).payload)).toEqual(['before', { n: 1 }, { n: 2 }, { n: 3 }]);
      } finally {
        fromStart.close();
      }
      expectProblem(await api(base, 'GET', `/api/v1/topics/${topic}/stream`, { token: alpha.token, headers: { 'last-event-id': 'abc' } }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
    });

    it('streams every topic matching a glob or a regular expression', async () => {
      const prefix = `fleet${counter++}`;
      const glob = await openSse(base, `/api/v1/streams?filter=${prefix}.*`, alpha.token);
      const regex = await openSse(base, `/api/v1/streams?filter=${encodeURIComponent(`/${prefix}\\..*speed/`)}`, alpha.token);
      try {
        expect(glob.status).toBe(200);
        await publish(alpha.token, `${prefix}.truck1`, { payload: 1 });
        await publish(alpha.token, `${prefix}.truck1.deep`, { payload: 'not one segment' });
        await publish(alpha.token, `${prefix}.speed`, { payload: 2 });
        await publish(alpha.token, `${prefix}.truck1.speed`, { payload: 3 });
        const globbed = await glob.waitForEvents(2);
        expect(globbed.map((f) => JSON.parse(f.data!).headers.name)).toEqual([`${prefix}.truck1`, `${prefix}.speed`]);
        const matched = await regex.waitForEvents(2);
        expect(matched.map((f) => JSON.parse(f.data!).payload)).toEqual([2, 3]);
      } finally {
        glob.close();
        regex.close();
      }
    });
  });

  describe('WebSocket', () => {
    /** The `ws` client (a dependency of @fastify/websocket); Node 20 has no global WebSocket. */
    const connect = async (path: string, token: string) => {
      const wsModule = 'ws'; // by name: it ships no types, and tests need only its client
      const { WebSocket } = (await import(wsModule)) as { WebSocket: any };
      const socket = new WebSocket(`${base.replace(/^http/, 'ws')}${path}`, { headers: { authorization: `Bearer ${token}` } });
      const frames: any[] = [];
      socket.on('message', (data: Buffer) => frames.push(JSON.parse(data.toString('utf8'))));
      const opened = await new Promise<{ status: number; body?: any }>((resolve) => {
        socket.once('open', () => resolve({ status: 101 }));
        socket.once('unexpected-response', (_req: unknown, res: any) => {
          let text = '';
          res.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode as number, body: JSON.parse(text) }));
        });
      });
      return { socket, frames, opened };
    };

    it('sends each event as a JSON text frame {seq, event}, from ?from= and then live', async () => {
      const topic = freshTopic();
      const first = await publish(alpha.token, topic, { payload: 'old' });
      const { socket, frames, opened } = await connect(`/api/v1/topics/${topic}/ws?from=0`, alpha.token);
      try {
        expect(opened.status).toBe(101);
        const live = await publish(alpha.token, topic, { payload: 'new' });
        await waitFor('two frames', () => frames.length >= 2);
        expect(frames[0]).toEqual({ seq: expect.any(Number), event: first.body });
        expect(frames[1].event).toEqual(live.body);
      } finally {
        socket.close();
      }
    });

    it('starts at new events by default and refuses a caller without the topic scope before the handshake', async () => {
      const topic = freshTopic();
      await publish(alpha.token, topic, { payload: 'before' });
      const { socket, frames } = await connect(`/api/v1/topics/${topic}/ws`, alpha.token);
      try {
        await publish(alpha.token, topic, { payload: 'after' });
        await waitFor('one frame', () => frames.length >= 1);
        expect(frames.map((f) => f.event.payload)).toEqual(['after']);
      } finally {
        socket.close();
      }

      const account = await api(base, 'POST', '/api/v1/service-accounts', { token: alpha.token, body: { name: 'ws-bot', scopes: ['events:read:topic=other.topic'] } });
      const token = await clientToken(base, account.body.client_id, account.body.client_secret);
      const denied = await connect(`/api/v1/topics/${topic}/ws`, token);
      expect(denied.opened).toMatchObject({ status: 403, body: { code: 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE' } });
      expect((await connect('/api/v1/topics/Bad/ws', alpha.token)).opened).toMatchObject({ status: 400, body: { code: 'FLOWGATE_ERR_BUS_INVALID_TOPIC' } });
      expectProblem(await api(base, 'GET', `/api/v1/topics/${topic}/ws`, { token: alpha.token }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
    });
  });

  describe('consumer groups', () => {
    it('shows the lag of a group, seeks it and deletes it', async () => {
      const topic = freshTopic();
      const group = `lag-${counter++}`;
      const seen: unknown[] = [];
      const handle = await server.flowgate.bus.subscribe({ tenant: 'bus-alpha', group, filter: topic }, (event) => void seen.push(event.payload));
      await publish(alpha.token, topic, { payload: 1 });
      await waitFor('the first delivery', () => seen.length === 1);
      await handle.close();

      await publish(alpha.token, topic, { events: [{ payload: 2 }, { payload: 3 }, { payload: 4 }] });
      const groups = async () => (await api(base, 'GET', '/api/v1/consumer-groups', { token: alpha.token })).body.items as any[];
      await waitFor('a lag of 3', async () => (await groups()).find((g) => g.name === group)?.pending === 3);
      expect((await groups()).find((g) => g.name === group)).toMatchObject({ name: group, filter: topic, created_at: expect.any(String), in_flight: 0 });

      const latest = await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: alpha.token, body: { to: 'latest' } });
      expect(latest.status).toBe(200);
      expect(latest.body).toMatchObject({ name: group, pending: 0 });
      const earliest = await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: alpha.token, body: { to: 'earliest' } });
      expect(earliest.body.pending).toBe(4);
      const page = await read(alpha.token, topic);
      const third = page.body.items[2].seq as number;
      expect((await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: alpha.token, body: { seq: third } })).body.pending).toBe(2);
      expect((await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: alpha.token, body: { time: '2000-01-01T00:00:00Z' } })).body.pending).toBe(4);
      expectProblem(await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: alpha.token, body: { to: 'middle' } }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');

      const deleted = await api(base, 'DELETE', `/api/v1/consumer-groups/${group}`, { token: alpha.token });
      expect(deleted.status).toBe(204);
      expectProblem(await api(base, 'DELETE', `/api/v1/consumer-groups/${group}`, { token: alpha.token }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
      expectProblem(await api(base, 'POST', `/api/v1/consumer-groups/${group}/seek`, { token: alpha.token, body: { to: 'earliest' } }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
      expect((await groups()).map((g) => g.name)).not.toContain(group);
    });
  });

  it('documents every bus route in the OpenAPI document', async () => {
    const doc = (await api(base, 'GET', '/api/openapi.json')).body;
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/topics/{topic}/events',
        '/api/v1/topics/{topic}/stream',
        '/api/v1/topics/{topic}/ws',
        '/api/v1/streams',
        '/api/v1/topics',
        '/api/v1/topics/{topic}',
        '/api/v1/consumer-groups',
        '/api/v1/consumer-groups/{group}/seek',
        '/api/v1/consumer-groups/{group}',
      ]),
    );
    const post = doc.paths['/api/v1/topics/{topic}/events'].post;
    expect(post.requestBody.content['application/json'].schema).toBeDefined();
    expect(Object.keys(post.responses)).toEqual(expect.arrayContaining(['201', '403', '422', '429']));
    expect(doc.paths['/api/v1/topics/{topic}/stream'].get.responses['200'].content['text/event-stream']).toBeDefined();
  });
});

describe('event bus API quotas', () => {
  let server: TestServer;
  let owner: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer({ config: { bus: { publishRate: 2 } } });
    owner = await createTenant(server.url, 'bus-quota');
  });
  afterAll(async () => server.close());

  it('answers 429 with Retry-After once the publish rate is used up, writing nothing of the refused batch', async () => {
    const topic = freshTopic();
    const res = await api(server.url, 'POST', `/api/v1/topics/${topic}/events`, { token: owner.token, body: { events: Array.from({ length: 5 }, (_, i) => ({ payload: i })) } });
    expectProblem(res, 429, 'FLOWGATE_ERR_BUS_QUOTA_EXCEEDED');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    expect((await api(server.url, 'GET', `/api/v1/topics/${topic}/events`, { token: owner.token })).body.items).toEqual([]);
  });
});
