/**
 * The built-in flow components, run directly with a real context: HTTP through a real
 * GuardedComponentHttp over the real OutboundClient and AddressPolicy to a real local
 * upstream, a frozen clock, and a recording ComponentBus (the port a component publishes
 * through; that a `publish` node's event lands on the real bus, the S4 example test checks,
 * and the bus has its own suite). Also the loading of custom components and config checks at save time.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FlowgateError } from '../../src/errors/index.js';
import {
  builtinComponents,
  ComponentRegistry,
  GuardedComponentHttp,
  isDirective,
  loadCustomComponents,
  NonRetryableError,
  RetryLaterError,
  type ComponentBus,
  type ComponentContext,
} from '../../src/flows/components/index.js';
import { AddressPolicy, OutboundClient } from '../../src/outbound/index.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

const NOW = Date.UTC(2030, 0, 2, 3, 4, 5);
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const LOCAL = ['127.0.0.1/32'];

const registry = new ComponentRegistry();
for (const component of builtinComponents()) registry.register(component);

interface Published {
  topic: string;
  payload: unknown;
  options: { key?: string } | undefined;
}

interface ContextOptions {
  allow?: string[];
  gatewayBase?: string;
  signal?: AbortSignal;
  bus?: ComponentBus;
}

function contextFor(options: ContextOptions = {}, published: Published[] = []): ComponentContext {
  const outbound = new OutboundClient(new AddressPolicy(options.allow ?? []), { timeoutMs: 5000 });
  const bus: ComponentBus = options.bus ?? {
    publish(topic, payload, publishOptions) {
      published.push({ topic, payload, options: publishOptions });
      return Promise.resolve({ id: `evt-${published.length}` });
    },
  };
  return {
    tenant: 't-components',
    flowId: 'flow-1',
    executionId: 'exec-1',
    node: 'step',
    stepId: 'step-1',
    attempt: 1,
    signal: options.signal ?? new AbortController().signal,
    traceparent: TRACEPARENT,
    now: () => NOW,
    logger: pino({ level: 'silent' }),
    bus,
    http: new GuardedComponentHttp(outbound, () => options.gatewayBase ?? 'http://127.0.0.1:9'),
  };
}

function run(name: string, config: unknown, input: unknown = {}, context: ComponentContext = contextFor()): Promise<unknown> {
  const component = registry.get(name);
  if (!component) throw new Error(`no component ${name}`);
  // Through then(): a synchronous run's throw becomes a rejection, as the engine sees it.
  return Promise.resolve().then(() => component.run({ input, config: config as Record<string, unknown>, context }));
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

describe('http component', () => {
  let upstream: FakeUpstream;
  const local = (): ComponentContext => contextFor({ allow: LOCAL });

  beforeAll(async () => {
    upstream = await startUpstream();
  });
  beforeEach(() => {
    upstream.answer((req, res, body) => {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', etag: '"v1"', 'x-internal': 'no' });
      res.end(JSON.stringify({ method: req.method, url: req.url, body }));
    });
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('GETs JSON with query, headers and the trace context', async () => {
    const out = await run('http', { url: `${upstream.url}/items?a=1`, query: { b: 'two', n: 3 }, headers: { 'X-Token': 'abc' } }, {}, local());
    expect(out).toEqual({ status: 200, headers: { 'content-type': 'application/json; charset=utf-8', etag: '"v1"' }, body: { method: 'GET', url: '/items?a=1&b=two&n=3', body: '' } });
    const seen = upstream.seen.at(-1)!;
    expect(seen.headers['x-token']).toBe('abc');
    expect(seen.headers.traceparent).toBe(TRACEPARENT);
  });

  it('fails for good, sending nothing, when a header would carry a line break (a template filled from input)', async () => {
    const before = upstream.seen.length;
    const error = await failure(run('http', { url: `${upstream.url}/items`, headers: { 'x-name': 'a\r\nx-injected: yes' } }, {}, local()));
    expect(error).toBeInstanceOf(NonRetryableError);
    expect((error as NonRetryableError).code).toBe('CONFIG_INVALID');
    expect(error.message).toMatch(/"x-name" has a line break/);
    expect(upstream.seen.length).toBe(before);
  });

  it("keeps reading an answer that comes slowly but steadily past the client's idle timeout: the step's timeout bounds it", async () => {
    const trickle = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let sent = 0;
      const timer = setInterval(() => (++sent === 8 ? res.end('x') : res.write('x')), 100);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
    try {
      const outbound = new OutboundClient(new AddressPolicy(LOCAL), { timeoutMs: 300 });
      const res = await outbound.request(`http://127.0.0.1:${(trickle.address() as AddressInfo).port}/`, { method: 'GET' });
      expect(res.text).toBe('xxxxxxxx');
    } finally {
      trickle.closeAllConnections();
      await new Promise((resolve) => trickle.close(resolve));
    }
  });

  it('answers an error, and survives a later abort, when Node refuses to send a header', async () => {
    const outbound = new OutboundClient(new AddressPolicy(LOCAL), { timeoutMs: 5000 });
    const controller = new AbortController();
    const error = await failure(outbound.request(`${upstream.url}/items`, { method: 'GET', headers: { 'x-name': 'a\nb' }, signal: controller.signal }));
    expect(error.message).toMatch(/cannot be sent: /);
    // Before, the abort listener stayed and reached a request that was never made: the process crashed.
    controller.abort();
    await new Promise((resolve) => setImmediate(resolve));
  });

  it('POSTs a JSON body, and a string body as text; a non-JSON answer stays text', async () => {
    const out = (await run('http', { method: 'post', url: `${upstream.url}/orders`, body: { id: 7, tags: ['a'] } }, {}, local())) as { body: { method: string; body: string } };
    expect(out.body.method).toBe('POST');
    expect(JSON.parse(out.body.body)).toEqual({ id: 7, tags: ['a'] });
    expect(upstream.seen.at(-1)!.headers['content-type']).toBe('application/json');

    upstream.answer((_req, res, body) => res.writeHead(201, { 'content-type': 'text/plain' }).end(`got ${body}`));
    const text = await run('http', { method: 'PUT', url: `${upstream.url}/notes`, body: 'hello' }, {}, local());
    expect(text).toEqual({ status: 201, headers: { 'content-type': 'text/plain' }, body: 'got hello' });
    expect(upstream.seen.at(-1)!.headers['content-type']).toBe('text/plain; charset=utf-8');
  });

  it('fails for good on an unexpected 4xx, quoting the answer but not the query', async () => {
    upstream.answer((_req, res) => res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"no such order"}'));
    const error = await failure(run('http', { url: `${upstream.url}/orders/9?api_key=hush` }, {}, local()));
    expect(error).toBeInstanceOf(NonRetryableError);
    expect((error as NonRetryableError).code).toBe('HTTP_STATUS');
    expect(error.message).toBe(`GET ${upstream.url}/orders/9 answered 404: {"error":"no such order"}`);
    expect(error.message).not.toContain('hush');
  });

  it('accepts the statuses listed in expect', async () => {
    upstream.answer((_req, res) => res.writeHead(404).end());
    expect(await run('http', { url: upstream.url, expect: [200, 404] }, {}, local())).toEqual({ status: 404, headers: {}, body: '' });
  });

  it('waits as told by Retry-After on 503 and 429, and retries other 5xx', async () => {
    upstream.answer((_req, res) => res.writeHead(503, { 'retry-after': '7' }).end('busy'));
    const later = await failure(run('http', { url: upstream.url }, {}, local()));
    expect(later).toBeInstanceOf(RetryLaterError);
    expect((later as RetryLaterError).delayMs).toBe(7000);

    upstream.answer((_req, res) => res.writeHead(429, { 'retry-after': new Date(NOW + 90_000).toUTCString() }).end());
    expect(((await failure(run('http', { url: upstream.url }, {}, local()))) as RetryLaterError).delayMs).toBe(90_000);

    upstream.answer((_req, res) => res.writeHead(500).end('oops'));
    const retryable = await failure(run('http', { url: upstream.url }, {}, local()));
    expect(retryable).not.toBeInstanceOf(NonRetryableError);
    expect(retryable).not.toBeInstanceOf(RetryLaterError);
    expect(retryable.message).toContain('answered 500');
  });

  it('treats a refused connection as retryable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const error = await failure(run('http', { url: `http://127.0.0.1:${port}/` }, {}, local()));
    expect(error).not.toBeInstanceOf(NonRetryableError);
    expect(error.message).toContain('could not be reached');
  });

  it.each([['loopback', () => `${upstream.url}/x`], ['cloud metadata', () => 'http://169.254.169.254/latest/meta-data/'], ['a name for loopback', () => `http://localhost:${upstream.port}/x`], ['IPv6 loopback', () => 'http://[::1]:80/']])(
    'refuses %s unless the server allows it',
    async (_label, url) => {
      const before = upstream.seen.length;
      const error = await failure(run('http', { url: url() }));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect((error as NonRetryableError).code).toBe('OUTBOUND_REFUSED');
      expect(error.message).toMatch(/^Flowgate does not connect to .*FLOWGATE_OUTBOUND_ALLOW/);
      expect(upstream.seen.length).toBe(before);
    },
  );

  it.each(['::7f00:1', '::ffff:0:7f00:1', '64:ff9b:1::a00:1', '2002:a00:1::1', '2001:0:a00:1::1', '2001:db8::1', '100::1'])(
    'refuses the IPv6 address [%s], which carries or stands for a reserved one',
    async (address) => {
      const error = await failure(run('http', { url: `http://[${address}]:80/` }));
      expect((error as NonRetryableError).code).toBe('OUTBOUND_REFUSED');
    },
  );

  it("does not let a flow tell the gateway who the client is (a trusted loopback proxy's headers)", async () => {
    await run('http', { gateway: { path: '/flow/forms/42' }, headers: { 'X-Forwarded-For': '10.0.0.5', forwarded: 'for=10.0.0.5', 'x-real-ip': '10.0.0.5', 'x-kept': 'yes' } }, {}, contextFor({ gatewayBase: upstream.url }));
    const seen = upstream.seen.at(-1)!.headers;
    expect(seen['x-kept']).toBe('yes');
    expect([seen['x-forwarded-for'], seen.forwarded, seen['x-real-ip']]).toEqual([undefined, undefined, undefined]);
  });

  it('calls gateway routes on our own listener without the outbound guard', async () => {
    const out = (await run('http', { method: 'DELETE', gateway: { path: '/flow/forms/42' }, query: { force: true } }, {}, contextFor({ gatewayBase: upstream.url }))) as { body: unknown };
    expect(out.body).toEqual({ method: 'DELETE', url: '/flow/forms/42?force=true', body: '' });
    expect(upstream.seen.at(-1)!.headers.traceparent).toBe(TRACEPARENT);
  });

  it.each(['/api/v1/tenants', '/API/v1/gateway/config', '/oauth/token', '/x/../api/v1/keys', '/%61pi/v1/keys', '/x/..%2Fapi/v1', '/api;x', '//evil.example/x', '/\\evil.example/x', 'relative'])(
    'refuses the gateway path %s',
    async (path) => {
      const before = upstream.seen.length;
      const error = await failure(run('http', { gateway: { path } }, {}, contextFor({ gatewayBase: upstream.url })));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect((error as NonRetryableError).code).toBe('GATEWAY_PATH_REFUSED');
      expect(upstream.seen.length).toBe(before);
    },
  );

  it.each([
    ['an external URL', (signal: AbortSignal) => run('http', { url: `${upstream.url}/slow` }, {}, contextFor({ allow: LOCAL, signal }))],
    ['a gateway route', (signal: AbortSignal) => run('http', { gateway: { path: '/slow' } }, {}, contextFor({ gatewayBase: upstream.url, signal }))],
  ])('stops waiting for %s when the step is aborted', async (_label, call) => {
    upstream.answer(() => undefined); // never answers
    const controller = new AbortController();
    const pending = failure(call(controller.signal));
    setTimeout(() => controller.abort(), 50);
    const error = await pending;
    expect(error.name).toBe('AbortError');
    const before = upstream.seen.length;
    expect((await failure(call(controller.signal))).name).toBe('AbortError');
    expect(upstream.seen.length).toBe(before);
  });

  it('refuses a URL that is not absolute once resolved', async () => {
    const error = await failure(run('http', { url: 'not a url' }));
    expect((error as NonRetryableError).code).toBe('CONFIG_INVALID');
  });
});

describe('transform, filter and branch', () => {
  const order = { id: 'o-1', items: [{ price: 5 }, { price: 7 }], country: 'DE' };

  it('transforms with JSONata, binding $execution and keeping $now()', async () => {
    const out = await run('transform', { expression: '{ "id": id, "total": $sum(items.price), "exec": $execution, "at": $now() }' }, order);
    expect(out).toMatchObject({ id: 'o-1', total: 12, exec: { id: 'exec-1', flowId: 'flow-1' } });
    expect(Date.parse((out as { at: string }).at)).not.toBeNaN();
    expect(await run('transform', { expression: 'nothing.here' }, order)).toBeNull();
  });

  it.each(['$nope()', '{ "a": ', 'items.price + "x"'])('fails for good when the expression %s fails', async (expression) => {
    const error = await failure(run('transform', { expression }, order));
    expect(error).toBeInstanceOf(NonRetryableError);
    expect((error as NonRetryableError).code).toBe('EXPRESSION_FAILED');
    expect(error.message).toMatch(/^The transform expression failed: /);
  });

  it.each([
    ['a recursion that never ends', '( $f := function($n){ $f($n + 1) }; $f(0) )', /Evaluation timeout after 1000 milliseconds/],
    ['a loop too long to let other work run', '( $f := function($n){ $n > 20000000 ? $n : $f($n + 1) }; $f(0) )', /Evaluation timeout/],
    ['a sequence of ten million items', '[1..10000000]', /maximum sequence length/],
  ])('ends %s with an expression error instead of holding the server', async (_what, expression, message) => {
    const error = await failure(run('transform', { expression }, order));
    expect((error as NonRetryableError).code).toBe('EXPRESSION_FAILED');
    expect(error.message).toMatch(message);
  });

  it('filters: passes the input unchanged or drops it', async () => {
    expect(await run('filter', { condition: 'country = "DE"' }, order)).toBe(order);
    for (const condition of ['country = "FR"', 'missing', 'items[price > 100]']) {
      const out = await run('filter', { condition }, order);
      expect(isDirective(out)).toBe(true);
      expect(out).toEqual({ directive: 'drop' });
    }
  });

  it('a look-alike output is not a directive', async () => {
    const out = await run('transform', { expression: '{ "directive": "drop" }' }, order);
    expect(isDirective(out)).toBe(false);
  });

  it('branches to the first port that holds, else the default, else nowhere', async () => {
    const branches = [
      { port: 'big', condition: '$sum(items.price) > 10' },
      { port: 'german', condition: 'country = "DE"' },
    ];
    expect(await run('branch', { branches }, order)).toEqual({ directive: 'route', port: 'big', output: order });
    expect(await run('branch', { branches }, { ...order, items: [] })).toEqual({ directive: 'route', port: 'german', output: { ...order, items: [] } });
    const other = { ...order, items: [], country: 'FR' };
    const routed = await run('branch', { branches, default: 'rest' }, other);
    expect(isDirective(routed)).toBe(true);
    expect(routed).toEqual({ directive: 'route', port: 'rest', output: other });
    expect(await run('branch', { branches }, other)).toEqual({ directive: 'drop' });
    const error = await failure(run('branch', { branches: [{ port: 'x', condition: '$nope()' }] }, order));
    expect(error.message).toMatch(/^The condition of branch 0 \("x"\) failed/);
  });
});

describe('delay, publish and respond', () => {
  it('sleeps for ms or until a moment, passing the input on', async () => {
    const input = { a: 1 };
    const slept = await run('delay', { ms: 5000 }, input);
    expect(isDirective(slept)).toBe(true);
    expect(slept).toEqual({ directive: 'sleep', until: NOW + 5000, output: input });
    expect(await run('delay', { ms: '250' }, input)).toEqual({ directive: 'sleep', until: NOW + 250, output: input });
    expect(await run('delay', { until: '2030-02-01T00:00:00Z' }, input)).toEqual({ directive: 'sleep', until: Date.UTC(2030, 1, 1), output: input });
    // Epoch ms as digits: what a webhook's query parameter or a template's text gives.
    expect(await run('delay', { until: String(Date.UTC(2030, 1, 1)) }, input)).toEqual({ directive: 'sleep', until: Date.UTC(2030, 1, 1), output: input });
  });

  it.each([[{ until: 'next tuesday' }, /^until is not a date-time/], [{ ms: -1 }, /^ms must be a whole number/], [{ ms: 'soon' }, /^ms must be a whole number/]])(
    'refuses %j once resolved',
    async (config, message) => {
      const error = await failure(run('delay', config));
      expect(error).toBeInstanceOf(NonRetryableError);
      expect(error.message).toMatch(message);
    },
  );

  it('publishes the input or the given payload, with the key', async () => {
    const published: Published[] = [];
    const context = contextFor({}, published);
    expect(await run('publish', { topic: 'orders.created' }, { id: 1 }, context)).toEqual({ event_id: 'evt-1' });
    expect(await run('publish', { topic: 'orders.shipped', payload: { n: 2 }, key: 'o-1' }, { id: 1 }, context)).toEqual({ event_id: 'evt-2' });
    expect(published).toEqual([
      { topic: 'orders.created', payload: { id: 1 }, options: {} },
      { topic: 'orders.shipped', payload: { n: 2 }, options: { key: 'o-1' } },
    ]);
  });

  it('refuses bad and reserved topics, and maps bus refusals', async () => {
    const published: Published[] = [];
    for (const topic of ['Orders Created', 'audit.login', '_dlq.x', 'execution.done']) {
      const error = await failure(run('publish', { topic }, {}, contextFor({}, published)));
      expect((error as NonRetryableError).code).toBe('CONFIG_INVALID');
    }
    expect(published).toEqual([]);
    const refusing = (code: 'FLOWGATE_ERR_BUS_SCHEMA_MISMATCH' | 'FLOWGATE_ERR_BUS_UNAVAILABLE'): ComponentBus => ({ publish: () => Promise.reject(new FlowgateError(code, 'no')) });
    const mismatch = await failure(run('publish', { topic: 'orders.created' }, {}, contextFor({ bus: refusing('FLOWGATE_ERR_BUS_SCHEMA_MISMATCH') })));
    expect(mismatch).toBeInstanceOf(NonRetryableError);
    expect((mismatch as NonRetryableError).code).toBe('FLOWGATE_ERR_BUS_SCHEMA_MISMATCH');
    const down = await failure(run('publish', { topic: 'orders.created' }, {}, contextFor({ bus: refusing('FLOWGATE_ERR_BUS_UNAVAILABLE') })));
    expect(down).toBeInstanceOf(FlowgateError);
  });

  it('responds with status, headers and body, passing the input on', async () => {
    const input = { ok: true };
    expect(await run('respond', {}, input)).toEqual({ directive: 'respond', response: { status: 200, body: input }, output: input });
    const out = await run('respond', { status: '202', headers: { 'X-Id': 7 }, body: { queued: true } }, input);
    expect(isDirective(out)).toBe(true);
    expect(out).toEqual({ directive: 'respond', response: { status: 202, headers: { 'x-id': '7' }, body: { queued: true } }, output: input });
    // A 1xx is not a final answer: the caller would wait for ever.
    for (const status of [700, '102']) expect((await failure(run('respond', { status }, input))).message).toMatch(/^status must be a whole number from 200 to 599/);
  });
});

describe('wait-for-event', () => {
  const keyFor = async (value: unknown) => ((await run('wait-for-event', { topic: 'orders.*', match: { event: 'payload.id', value } })) as { key: string }).key;

  it('waits on a key that only the same correlation value resolves: not another type, length or nothing', async () => {
    const long = 'https://shop.example/orders/'.padEnd(220, 'a');
    const values = [42, '42', null, '', undefined, '~u', `${long}1`, `${long}2`, { id: 1 }, '{"id":1}'];
    const keys = await Promise.all(values.map(keyFor));
    expect(new Set(keys).size).toBe(values.length);
    for (const key of keys) expect(key.length).toBeLessThanOrEqual(320);
    // The same value always gives the same key, and a short string is itself (keys made before stay valid).
    expect(await keyFor(`${long}1`)).toBe(keys[6]);
    expect(await keyFor('o-17')).toBe('event:flow-1:step:o-17');
  });
});

describe('config checks at save time', () => {
  const check = (name: string, config: unknown) => registry.checkConfig(registry.get(name)!, config, 'nodes.step.config');

  it('accepts configs as written, templates included', () => {
    expect(check('http', { url: '{{secrets.crm_url}}/contacts', headers: { authorization: 'Bearer {{secrets.crm_token}}' }, body: { id: '{{ $.id }}' }, expect: [200, 201] })).toEqual([]);
    expect(check('http', { method: '{{ $.verb }}', gateway: { path: '/flow/forms/{{ $.id }}' } })).toEqual([]);
    expect(check('delay', { ms: '{{ $.wait }}' })).toEqual([]);
    expect(check('delay', { until: '{{ $.due }}' })).toEqual([]);
    expect(check('respond', { status: '{{ $.code }}' })).toEqual([]);
    expect(check('branch', { branches: [{ port: 'yes', condition: 'ok' }], default: 'no' })).toEqual([]);
  });

  it('reports problems with their paths', () => {
    expect(check('http', { url: 'https://x.example', extra: 1 })).toEqual([{ path: 'nodes.step.config.extra', message: 'is not a known property' }]);
    expect(check('http', { url: 'ftp://x.example' })).toEqual([{ path: 'nodes.step.config.url', message: expect.stringMatching(/^must match pattern/) }]);
    expect(check('http', { url: 'https://x.example', expect: [99] })).toEqual([{ path: 'nodes.step.config.expect[0]', message: 'must be >= 100' }]);
    expect(check('http', { gateway: { path: '/a', method: 'GET' } })).toEqual([{ path: 'nodes.step.config.gateway.method', message: 'is not a known property' }]);
    expect(check('http', { url: 'https://x.example', gateway: { path: '/a' } })).toContainEqual({ path: 'nodes.step.config', message: 'must match exactly one schema in oneOf' });
    expect(check('http', {})).toContainEqual({ path: 'nodes.step.config.url', message: 'is required' });
    expect(check('transform', {})).toEqual([{ path: 'nodes.step.config.expression', message: 'is required' }]);
    expect(check('filter', { condition: 7 })).toEqual([{ path: 'nodes.step.config.condition', message: 'must be string' }]);
    expect(check('branch', { branches: [{ port: 'Yes' }] })).toEqual([
      { path: 'nodes.step.config.branches[0].condition', message: 'is required' },
      { path: 'nodes.step.config.branches[0].port', message: expect.stringMatching(/^must match pattern/) },
    ]);
    expect(check('delay', { ms: 'soon' })).toEqual([{ path: 'nodes.step.config.ms', message: expect.stringMatching(/^must match pattern/) }]);
    expect(check('delay', { ms: 1, until: '2030-01-01T00:00:00Z' })).toContainEqual({ path: 'nodes.step.config', message: 'must match exactly one schema in oneOf' });
    expect(check('publish', { payload: {} })).toEqual([{ path: 'nodes.step.config.topic', message: 'is required' }]);
    expect(check('respond', { status: 99, headers: { 'bad name': 'x' } })).toHaveLength(3);
  });
});

describe('custom components', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flowgate-components-'));
    // Without it Node would read a .js file here as CommonJS.
    await writeFile(join(dir, 'package.json'), '{"type":"module"}');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads default and named exports, in name order, ignoring other files and sub-folders', async () => {
    await writeFile(join(dir, 'b-shout.mjs'), "export default { name: 'shout', description: 'Upper-cases', configSchema: { type: 'object' }, run: ({ input }) => String(input).toUpperCase() };");
    await writeFile(join(dir, 'a-add.js'), "export const component = { name: 'add', configSchema: { type: 'object', properties: { n: { type: 'integer' } } }, run: ({ input, config }) => input + config.n };");
    await writeFile(join(dir, 'notes.txt'), 'not code');
    await mkdir(join(dir, 'lib'));
    await writeFile(join(dir, 'lib', 'helper.mjs'), "throw new Error('must not load');");
    const components = await loadCustomComponents(dir);
    expect(components.map((c) => c.name)).toEqual(['add', 'shout']);
    const custom = new ComponentRegistry();
    for (const component of components) custom.register(component);
    expect(await custom.get('add')!.run({ input: 40, config: { n: 2 }, context: contextFor() })).toBe(42);
    expect(custom.checkConfig(custom.get('add')!, { n: 'x' }, 'config')).toEqual([{ path: 'config.n', message: 'must be integer' }]);
  });

  it.each([
    ['bad-name.mjs', "export default { name: 'Bad Name', configSchema: {}, run() {} };", /bad-name\.mjs has a name that is not lower-case/],
    ['no-run.mjs', "export default { name: 'norun', configSchema: {} };", /no-run\.mjs \("norun"\) has no run function/],
    ['no-schema.mjs', "export default { name: 'noschema', run() {} };", /no-schema\.mjs \("noschema"\) has no configSchema object/],
    ['nothing.mjs', 'export const other = 1;', /nothing\.mjs exports no component/],
    ['broken.mjs', 'export default {', /broken\.mjs does not load: /],
  ])('refuses %s, naming it and the problem', async (file, source, message) => {
    await writeFile(join(dir, file), source);
    await expect(loadCustomComponents(dir)).rejects.toThrow(message);
  });

  it('refuses two files with one name, and a missing folder', async () => {
    await writeFile(join(dir, 'one.mjs'), "export default { name: 'same', configSchema: {}, run() {} };");
    await writeFile(join(dir, 'two.mjs'), "export default { name: 'same', configSchema: {}, run() {} };");
    await expect(loadCustomComponents(dir)).rejects.toThrow(/two\.mjs is called "same", like .*one\.mjs/);
    await expect(loadCustomComponents(join(dir, 'missing'))).rejects.toThrow(/The custom components folder .*missing cannot be read/);
  });
});
