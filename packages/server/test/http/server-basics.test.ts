import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../support/server.js';
import { api } from '../support/http.js';

describe('the HTTP server', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => server.close());

  it('is live and ready, with the store among its checks', async () => {
    expect((await api(server.url, 'GET', '/health/live')).body).toEqual({ status: 'ok' });
    const ready = await api(server.url, 'GET', '/health/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready', checks: { store: 'ok', server: 'ok' } });
  });

  it('exposes Prometheus metrics counting requests by route template', async () => {
    await api(server.url, 'GET', '/api/v1/users/some-id');
    const res = await fetch(`${server.url}/metrics`);
    const text = await res.text();
    expect(res.headers.get('content-type')).toContain('text/plain');
    expect(text).toMatch(/flowgate_http_requests_total\{method="GET",route="\/api\/v1\/users\/:id",status="401"\} \d+/);
    expect(text).toContain('flowgate_process_cpu_user_seconds_total');
  });

  it('answers an unknown path with a problem document carrying the trace id', async () => {
    const res = await api(server.url, 'GET', '/no/such/thing');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    expect(res.body).toMatchObject({
      type: 'urn:flowgate:error:request-route-not-found',
      status: 404,
      code: 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND',
      traceId: res.headers.get('x-trace-id'),
    });
    expect(res.body.detail).toContain('/no/such/thing');
  });

  it('continues the caller’s W3C trace and logs the request with that trace id', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res = await api(server.url, 'GET', '/health/live', { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(res.headers.get('x-trace-id')).toBe(traceId);
    expect(res.headers.get('traceresponse')).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    const bad = await api(server.url, 'GET', '/nowhere', { headers: { traceparent: 'garbage' } });
    expect(bad.body.traceId).toMatch(/^[0-9a-f]{32}$/);
    const logged = server.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.traceId === bad.body.traceId);
    expect(logged).toMatchObject({ msg: 'request', route: 'unmatched', status: 404 });
  });

  it('answers a wrong method with 405 and the methods that are allowed', async () => {
    const res = await api(server.url, 'DELETE', '/api/v1/tenants');
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, POST');
    expect(res.body.code).toBe('FLOWGATE_ERR_REQUEST_METHOD_NOT_ALLOWED');
  });

  it('publishes an OpenAPI 3.1 document of the admin API and a page to browse it', async () => {
    const doc = await api(server.url, 'GET', '/api/openapi.json');
    expect(doc.body.openapi).toBe('3.1.0');
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/api/v1/service-accounts', '/api/v1/tenants/{id}', '/oauth/token']));
    expect(doc.body.paths['/api/v1/service-accounts'].post.responses['201']).toBeDefined();
    const page = await fetch(`${server.url}/docs/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('swagger');
  });

  it('serves the OIDC discovery document naming itself as issuer', async () => {
    const res = await api(server.url, 'GET', '/.well-known/openid-configuration');
    expect(res.body).toMatchObject({
      issuer: server.url,
      token_endpoint: `${server.url}/oauth/token`,
      jwks_uri: `${server.url}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: ['ES256'],
    });
    const jwks = await api(server.url, 'GET', '/.well-known/jwks.json');
    expect(jwks.headers.get('content-type')).toContain('application/jwk-set+json');
    expect(jwks.body.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.body.keys[0].d).toBeUndefined();
  });
});

describe('readiness', () => {
  it('turns not-ready when the store stops answering, while liveness stays up', async () => {
    const server = await startTestServer();
    try {
      await server.flowgate.store.close();
      const ready = await api(server.url, 'GET', '/health/ready');
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ code: 'FLOWGATE_ERR_SERVER_NOT_READY', checks: { store: 'failing' } });
      expect((await api(server.url, 'GET', '/health/live')).status).toBe(200);
    } finally {
      await server.flowgate.app.close();
    }
  });
});

describe('bootstrap without configured credentials', () => {
  it('generates platform-admin credentials, shows them once and never logs them', async () => {
    const server = await startTestServer({ noBootstrap: true });
    try {
      expect(server.announced).toHaveLength(1);
      const id = /FLOWGATE_CLIENT_ID=(\S+)/.exec(server.announced[0]!)![1]!;
      const secret = /FLOWGATE_CLIENT_SECRET=(\S+)/.exec(server.announced[0]!)![1]!;
      const res = await fetch(`${server.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}` },
        body: 'grant_type=client_credentials',
      });
      expect(res.status).toBe(200);
      expect(server.logs.join('\n')).not.toContain(secret);
    } finally {
      await server.close();
    }
  });
});
