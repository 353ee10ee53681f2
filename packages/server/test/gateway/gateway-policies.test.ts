/**
 * Each gateway policy's allow and deny paths, through the real server and a fake
 * upstream: what the caller gets, and what (if anything) reaches the upstream.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { api, clientToken } from '../support/http.js';
import { adminToken, createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

describe('gateway policies', () => {
  let server: TestServer;
  let base: string;
  let upstream: FakeUpstream;
  let admin: string;
  let acme: TenantOwner;
  let account: { id: string; client_id: string; client_secret: string };
  let token: string;

  /** Serves one route `/p/*` (stripped) with these policies; auth none unless given. */
  async function serve(policies: Record<string, unknown>, route: Record<string, unknown> = {}): Promise<void> {
    const res = await api(base, 'PUT', '/api/v1/gateway/config', {
      token: admin,
      body: {
        services: [{ name: 'svc', targets: [upstream.url] }],
        routes: [{ name: 'r', service: 'svc', paths: ['/p/*'], stripPrefix: true, ...route, policies: { auth: { type: 'none' }, ...policies } }],
      },
    });
    if (res.status !== 200) throw new Error(`gateway config refused: ${res.text}`);
  }
  const denials = () => server.audit.events.filter((e) => e.action === 'gateway.denied');

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    upstream = await startUpstream();
    admin = await adminToken(base);
    acme = await createTenant(base, 'acme');
    const res = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'caller', scopes: ['forms:read', 'data:read:visit=v1'] } });
    account = res.body;
    token = await clientToken(base, account.client_id, account.client_secret);
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
  });

  describe('auth', () => {
    it('none lets anyone through, and never forwards the caller\'s Authorization header', async () => {
      await serve({});
      const res = await api(base, 'GET', '/p/x', { headers: { authorization: 'Bearer secret-of-the-caller' } });
      expect(res.status).toBe(200);
      expect(upstream.seen[0]?.headers.authorization).toBeUndefined();
    });

    it('api-key accepts a service account\'s key and refuses a wrong one; the key never goes upstream', async () => {
      await serve({ auth: { type: 'api-key' }, scopes: { required: ['forms:read'] } });
      const created = await api(base, 'POST', `/api/v1/service-accounts/${account.id}/api-keys`, { token: acme.token, body: { name: 'gw' } });
      expect(created.status).toBe(201);
      const key = created.body.key as string;

      const ok = await api(base, 'GET', '/p/x', { headers: { 'x-api-key': key } });
      expect(ok.status).toBe(200);
      expect(upstream.seen[0]?.headers['x-api-key']).toBeUndefined();

      const wrong = await api(base, 'GET', '/p/x', { headers: { 'x-api-key': `${key.slice(0, -4)}AAAA` } });
      expectProblem(wrong, 401, 'FLOWGATE_ERR_AUTH_API_KEY_INVALID');
      const missing = await api(base, 'GET', '/p/x');
      expectProblem(missing, 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      expect(upstream.seen).toHaveLength(1);
    });

    it('jwt with issuers limited to trusted external ones refuses Flowgate\'s own tokens', async () => {
      const refused = await api(base, 'PUT', '/api/v1/gateway/config', {
        token: admin,
        body: { services: [{ name: 'svc', targets: [upstream.url] }], routes: [{ name: 'r', service: 'svc', paths: ['/p/*'], policies: { auth: { type: 'jwt', issuers: ['https://unknown.example'] } } }] },
      });
      expectProblem(refused, 400, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID');
      expect(refused.body.errors).toEqual([{ path: 'routes[0].policies.auth.issuers[0]', message: expect.stringContaining('not an issuer this server trusts') }]);
    });
  });

  describe('scopes', () => {
    it('takes a scope value from a path parameter: visit v1 is allowed, v2 is refused', async () => {
      await serve({ auth: { type: 'jwt' }, scopes: { required: ['data:read:visit={visit}'] } }, { paths: ['/p/visits/:visit/data'] });
      const allowed = await api(base, 'GET', '/p/visits/v1/data', { token });
      expect(allowed.status).toBe(200);
      expect(upstream.seen[0]?.url).toBe('/v1/data');
      const refused = await api(base, 'GET', '/p/visits/v2/data', { token });
      expectProblem(refused, 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
      expect(refused.body.required_scope).toBe('data:read:visit=v2');
      expect(upstream.seen).toHaveLength(1);
    });

    it('refuses a template naming a parameter the route does not have', async () => {
      const res = await api(base, 'PUT', '/api/v1/gateway/config', {
        token: admin,
        body: {
          services: [{ name: 'svc', targets: [upstream.url] }],
          routes: [{ name: 'r', service: 'svc', paths: ['/p/:id'], policies: { auth: { type: 'jwt' }, scopes: { required: ['forms:read', 'data:read:visit={visit}'] } } }],
        },
      });
      expectProblem(res, 400, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID');
      expect(res.body.errors[0]).toEqual({ path: 'routes[0].policies.scopes.required[1]', message: expect.stringContaining('"{visit}" is not a path parameter') });
    });
  });

  describe('rate-limit', () => {
    it('allows the burst, then answers 429 with Retry-After and RateLimit headers, per consumer; refusals are audited', async () => {
      await serve({ 'rate-limit': { limit: 2, windowSeconds: 3600 } });
      const first = await api(base, 'GET', '/p/a');
      expect(first.status).toBe(200);
      expect(first.headers.get('ratelimit-limit')).toBe('2');
      expect(first.headers.get('ratelimit-remaining')).toBe('1');
      expect((await api(base, 'GET', '/p/a')).status).toBe(200);
      const before = denials().length;
      const third = await api(base, 'GET', '/p/a');
      expectProblem(third, 429, 'FLOWGATE_ERR_GATEWAY_RATE_LIMITED');
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(third.headers.get('ratelimit-remaining')).toBe('0');
      expect(upstream.seen).toHaveLength(2);
      expect(denials().slice(before)).toEqual([expect.objectContaining({ outcome: 'failure', target: 'route:r', details: expect.objectContaining({ status: 429, ip: '127.0.0.1' }) })]);
    });

    it('counts an authenticated caller apart from anonymous ones', async () => {
      await serve({ auth: { type: 'jwt' }, 'rate-limit': { limit: 1, windowSeconds: 3600 } }, { name: 'r2' });
      expect((await api(base, 'GET', '/p/a', { token })).status).toBe(200);
      expectProblem(await api(base, 'GET', '/p/a', { token }), 429, 'FLOWGATE_ERR_GATEWAY_RATE_LIMITED');
      const other = await api(base, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'caller-2', scopes: ['forms:read'] } });
      const otherToken = await clientToken(base, other.body.client_id, other.body.client_secret);
      expect((await api(base, 'GET', '/p/a', { token: otherToken })).status).toBe(200);
    });
  });

  describe('upstream-auth', () => {
    it('secret-header sends a secret of the caller\'s tenant, never the caller\'s token', async () => {
      const secret = await api(base, 'POST', '/api/v1/secrets', { token: acme.token, body: { name: 'flow_api_key', value: 's3cr3t-value-for-flow' } });
      expect(secret.status).toBe(201);
      await serve({ auth: { type: 'jwt' }, 'upstream-auth': { mode: 'secret-header', header: 'X-Flow-Key', secret: 'flow_api_key', prefix: 'Key ' } });
      const res = await api(base, 'GET', '/p/a', { token });
      expect(res.status).toBe(200);
      expect(upstream.seen[0]?.headers['x-flow-key']).toBe('Key s3cr3t-value-for-flow');
      expect(upstream.seen[0]?.headers.authorization).toBeUndefined();
      expect(server.audit.events).toContainEqual(expect.objectContaining({ action: 'secrets.read', tenant: 'acme', target: 'secret:flow_api_key' }));
      expect(server.logs.join('\n')).not.toContain('s3cr3t-value-for-flow');
    });

    it('secret-header answers 502 when the secret does not exist, and forwards nothing', async () => {
      await serve({ auth: { type: 'jwt' }, 'upstream-auth': { mode: 'secret-header', header: 'x-key', secret: 'no_such_secret' } });
      expectProblem(await api(base, 'GET', '/p/a', { token }), 502, 'FLOWGATE_ERR_GATEWAY_UPSTREAM_CREDENTIALS');
      expect(upstream.seen).toHaveLength(0);
    });

    it('forward passes the caller\'s token, because the configuration says so', async () => {
      await serve({ auth: { type: 'jwt' }, 'upstream-auth': { mode: 'forward' } });
      await api(base, 'GET', '/p/a', { token });
      expect(upstream.seen[0]?.headers.authorization).toBe(`Bearer ${token}`);
    });

    it("refuses to mint tokens for Flowgate's own audience", async () => {
      const res = await api(base, 'PUT', '/api/v1/gateway/config', {
        token: admin,
        body: {
          services: [{ name: 'svc', targets: [upstream.url] }],
          routes: [{ name: 'r', service: 'svc', paths: ['/p/*'], policies: { auth: { type: 'jwt' }, 'upstream-auth': { mode: 'mint-jwt', audience: server.flowgate.iam.tokens.audience } } }],
        },
      });
      expectProblem(res, 400, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID');
      expect(res.body.errors[0].path).toBe('routes[0].policies.upstream-auth.audience');
    });
  });

  describe('cors', () => {
    beforeEach(async () => serve({ cors: { origins: ['https://app.example.com'], headers: ['content-type'], exposeHeaders: ['x-upstream'] } }));

    it('answers an allowed preflight itself, and adds the headers to answers for that origin', async () => {
      const preflight = await api(base, 'OPTIONS', '/p/a', {
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'Content-Type' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      expect(preflight.headers.get('access-control-allow-methods')).toContain('POST');
      const res = await api(base, 'GET', '/p/a', { headers: { origin: 'https://app.example.com' } });
      expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      expect(res.headers.get('access-control-expose-headers')).toBe('x-upstream');
      expect(upstream.seen.map((s) => s.method)).toEqual(['GET']);
    });

    it("keeps the upstream's Vary when it adds Origin to it", async () => {
      const varied = await startUpstream();
      varied.answer((_req, res) => res.writeHead(200, { 'content-type': 'application/json', vary: 'Accept-Encoding' }).end('{}'));
      try {
        const config = await api(base, 'PUT', '/api/v1/gateway/config', {
          token: admin,
          body: { services: [{ name: 'svc', targets: [varied.url] }], routes: [{ name: 'r', service: 'svc', paths: ['/p/*'], policies: { auth: { type: 'none' }, cors: { origins: ['https://app.example.com'] } } }] },
        });
        expect(config.status).toBe(200);
        const res = await api(base, 'GET', '/p/a', { headers: { origin: 'https://app.example.com' } });
        expect(res.headers.get('vary')).toBe('Accept-Encoding, Origin');
      } finally {
        await varied.close();
      }
    });

    it('refuses a preflight from another origin or for a header not allowed', async () => {
      const origin = await api(base, 'OPTIONS', '/p/a', { headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
      expectProblem(origin, 403, 'FLOWGATE_ERR_GATEWAY_CORS_REFUSED');
      const header = await api(base, 'OPTIONS', '/p/a', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-secret' } });
      expectProblem(header, 403, 'FLOWGATE_ERR_GATEWAY_CORS_REFUSED');
      const plain = await api(base, 'GET', '/p/a', { headers: { origin: 'https://evil.example' } });
      expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    });

    it('answers a plain OPTIONS to a route that does not list it as any unlisted method, and still answers preflights', async () => {
      await serve({ cors: { origins: ['https://app.example.com'] } }, { methods: ['GET', 'POST'] });
      const preflight = await api(base, 'OPTIONS', '/p/a', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' } });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');

      const unlisted = await api(base, 'DELETE', '/p/a');
      expectProblem(unlisted, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
      const plain = await api(base, 'OPTIONS', '/p/a');
      expectProblem(plain, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
      // Only a request with both Origin and Access-Control-Request-Method is a preflight (Fetch standard).
      const withOrigin = await api(base, 'OPTIONS', '/p/a', { headers: { origin: 'https://app.example.com' } });
      expectProblem(withOrigin, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
      const withoutOrigin = await api(base, 'OPTIONS', '/p/a', { headers: { 'access-control-request-method': 'POST' } });
      expectProblem(withoutOrigin, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
      expect(upstream.seen).toEqual([]);
    });

    it('forwards a plain OPTIONS when the route lists it', async () => {
      await serve({ cors: { origins: ['https://app.example.com'] } }, { methods: ['GET', 'OPTIONS'] });
      const plain = await api(base, 'OPTIONS', '/p/a');
      expect(plain.status).toBe(200);
      const preflight = await api(base, 'OPTIONS', '/p/a', { headers: { origin: 'https://app.example.com', 'access-control-request-method': 'GET' } });
      expect(preflight.status).toBe(204);
      expect(upstream.seen.map((s) => s.method)).toEqual(['OPTIONS']);
    });
  });

  describe('request-size-limit', () => {
    it('refuses a body declared too large before reading it, and cuts off one sent without a length', async () => {
      await serve({ 'request-size-limit': { maxBytes: 1000 } });
      const small = await api(base, 'POST', '/p/a', { body: 'x'.repeat(1000), headers: { 'content-type': 'text/plain' } });
      expect(small.status).toBe(200);
      expectProblem(await api(base, 'POST', '/p/a', { body: 'x'.repeat(1001), headers: { 'content-type': 'text/plain' } }), 413, 'FLOWGATE_ERR_REQUEST_TOO_LARGE');

      const chunked = await fetch(`${base}/p/a`, {
        method: 'POST',
        body: new ReadableStream({
          start(controller) {
            for (let i = 0; i < 5; i++) controller.enqueue(new TextEncoder().encode('y'.repeat(500)));
            controller.close();
          },
        }),
        duplex: 'half',
      });
      expect(chunked.status).toBe(413);
      expect(upstream.seen.filter((s) => s.body.length > 1000)).toEqual([]);
    });
  });

  describe('request-headers and response-headers', () => {
    it('sets and removes headers on the way up and on the way back', async () => {
      await serve({ 'request-headers': { set: { 'x-added': 'yes' }, remove: ['x-drop'] }, 'response-headers': { set: { 'x-served-by': 'flowgate' }, remove: ['x-upstream'] } });
      const res = await api(base, 'GET', '/p/a', { headers: { 'x-drop': 'please', 'x-keep': 'ok' } });
      expect(upstream.seen[0]?.headers).toMatchObject({ 'x-added': 'yes', 'x-keep': 'ok' });
      expect(upstream.seen[0]?.headers['x-drop']).toBeUndefined();
      expect(res.headers.get('x-served-by')).toBe('flowgate');
      expect(res.headers.get('x-upstream')).toBeNull();
    });
  });

  describe('ip-allow and ip-deny', () => {
    it('lets listed networks in and keeps others out, before anything else runs', async () => {
      await serve({ 'ip-allow': { cidrs: ['127.0.0.0/8'] } });
      expect((await api(base, 'GET', '/p/a')).status).toBe(200);
      await serve({ 'ip-allow': { cidrs: ['10.0.0.0/8'] }, auth: { type: 'jwt' } });
      const before = denials().length;
      expectProblem(await api(base, 'GET', '/p/a'), 403, 'FLOWGATE_ERR_GATEWAY_IP_REFUSED');
      await serve({ 'ip-deny': { cidrs: ['127.0.0.1'] } });
      expectProblem(await api(base, 'GET', '/p/a'), 403, 'FLOWGATE_ERR_GATEWAY_IP_REFUSED');
      // The second refusal of the same caller, route and kind is counted into a later summary
      // record rather than recorded on its own (gateway-denied-audit.test.ts).
      expect(denials().slice(before).map((e) => e.details?.code)).toEqual(['FLOWGATE_ERR_GATEWAY_IP_REFUSED']);
      expect(upstream.seen).toHaveLength(1);
    });

    it('names an entry that is not an address', async () => {
      const res = await api(base, 'PUT', '/api/v1/gateway/config', {
        token: admin,
        body: { services: [{ name: 'svc', targets: [upstream.url] }], routes: [{ name: 'r', service: 'svc', paths: ['/p'], policies: { auth: { type: 'none' }, 'ip-deny': { cidrs: ['10.0.0.0/33'] } } }] },
      });
      expectProblem(res, 400, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID');
      expect(res.body.errors[0].path).toBe('routes[0].policies.ip-deny.cidrs[0]');
    });
  });
});
