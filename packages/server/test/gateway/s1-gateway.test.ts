/**
 * Story S1: one gateway in front of a product API. A service account of product A gets a
 * token with `forms:read` and calls `GET /flow/forms/42` on the gateway; product B sees the
 * request with a token minted for it (never A's), and the trace. No token, a bad token or
 * a missing scope is refused at the gateway, B never sees it, and the refusal is audited.
 */
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, clientToken } from '../support/http.js';
import { adminToken, createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

describe('S1: the gateway in front of product B', () => {
  let server: TestServer;
  let base: string;
  let productB: FakeUpstream;
  let lumen: TenantOwner;
  let reader: { client_id: string; client_secret: string };
  let writer: { client_id: string; client_secret: string };
  let appliedChanges: unknown;

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    productB = await startUpstream();
    lumen = await createTenant(base, 'lumen');
    const account = async (name: string, scopes: string[]) => {
      const res = await api(base, 'POST', '/api/v1/service-accounts', { token: lumen.token, body: { name, scopes } });
      expect(res.status).toBe(201);
      return res.body as { client_id: string; client_secret: string };
    };
    reader = await account('lumen-reader', ['forms:read']);
    writer = await account('lumen-other', ['visits:read']);
    const applied = await api(base, 'PUT', '/api/v1/gateway/config', {
      token: await adminToken(base),
      body: {
        services: [{ name: 'flow', targets: [`${productB.url}/v1`], policies: { 'upstream-auth': { mode: 'mint-jwt', audience: 'flow-api', ttlSeconds: 120 } } }],
        routes: [{ name: 'flow-forms', service: 'flow', methods: ['GET'], paths: ['/flow/forms/:id'], stripPrefix: '/flow', policies: { auth: { type: 'jwt' }, scopes: { required: ['forms:read'] } } }],
      },
    });
    if (applied.status !== 200) throw new Error(`gateway config refused: ${applied.text}`);
    appliedChanges = applied.body.changes;
  });
  afterAll(async () => {
    await server.close();
    await productB.close();
  });

  it('applies the declared service and route', () => {
    expect(appliedChanges).toEqual([
      { kind: 'service', name: 'flow', op: 'create' },
      { kind: 'route', name: 'flow-forms', op: 'create' },
    ]);
  });

  it('forwards a call with the forms:read scope to product B with a token minted for B, and the trace', async () => {
    const token = await clientToken(base, reader.client_id, reader.client_secret);
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const res = await api(base, 'GET', '/flow/forms/42?lang=de', { token, headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-upstream')).toBe('yes');

    const seen = productB.seen.at(-1)!;
    expect(seen.url).toBe('/v1/forms/42?lang=de');
    // The trace continues: same trace id, the gateway's own span as parent.
    expect(seen.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    expect(seen.headers.traceparent).not.toContain('00f067aa0ba902b7');
    // Product B gets its own token, not Lumen's.
    const upstreamToken = /^Bearer (.+)$/.exec(seen.headers.authorization ?? '')?.[1];
    expect(upstreamToken).toBeDefined();
    expect(upstreamToken).not.toBe(token);
    const jwks = createRemoteJWKSet(new URL(`${base}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(upstreamToken!, jwks, { audience: 'flow-api', issuer: base });
    expect(payload).toMatchObject({ tenant: 'lumen', scope: 'forms:read', client_id: reader.client_id });
    expect(payload.exp! - payload.iat!).toBe(120);
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers.forwarded).toContain('for=127.0.0.1;proto=http');
  });

  it('refuses a call without a token, with a bad token, or without the scope; B never sees them, and each refusal is audited', async () => {
    const before = productB.seen.length;
    const otherToken = await clientToken(base, writer.client_id, writer.client_secret);

    const none = await api(base, 'GET', '/flow/forms/42');
    expectProblem(none, 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
    expect(none.headers.get('www-authenticate')).toContain('Bearer');

    const bad = await api(base, 'GET', '/flow/forms/42', { token: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln' });
    expectProblem(bad, 401, 'FLOWGATE_ERR_AUTH_TOKEN_INVALID');

    const scope = await api(base, 'GET', '/flow/forms/42', { token: otherToken });
    expectProblem(scope, 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    expect(scope.body.detail).toContain('forms:read');

    expect(productB.seen.length).toBe(before);
    const denied = server.audit.events.filter((e) => e.action === 'gateway.denied');
    expect(denied.map((e) => e.details?.status)).toEqual([401, 401, 403]);
    expect(denied[2]).toMatchObject({ tenant: 'lumen', outcome: 'failure', target: 'route:flow-forms', traceId: scope.body.traceId });
  });

  it('leaves paths without a route to Flowgate itself', async () => {
    const res = await api(base, 'GET', '/flow/other');
    expectProblem(res, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
  });
});
