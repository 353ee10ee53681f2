/**
 * The gateway's configuration API: one service or route at a time, whole-document
 * applies, reserved paths, rules that keep a configuration servable, who may change it,
 * and several instances on one PostgreSQL database following each other's changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GatewayTables } from '../../src/gateway/gateway.tables.js';
import { waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { adminToken, createTenant } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { PG_URL, startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

const open = { auth: { type: 'none' } };
const REDIS_URL = process.env.FLOWGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('gateway configuration API', () => {
  let server: TestServer;
  let base: string;
  let admin: string;
  let upstream: FakeUpstream;

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    admin = await adminToken(base);
    upstream = await startUpstream();
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
  });

  it('creates, reads, replaces and deletes services and routes one at a time, each audited', async () => {
    const service = { name: 'orders', targets: [upstream.url] };
    expect((await api(base, 'PUT', '/api/v1/gateway/services/orders', { token: admin, body: service })).status).toBe(201);
    const route = { name: 'orders', service: 'orders', paths: ['/orders/:id'], policies: open };
    expect((await api(base, 'PUT', '/api/v1/gateway/routes/orders', { token: admin, body: route })).status).toBe(201);
    expect((await api(base, 'GET', '/orders/7')).status).toBe(200);

    const replaced = await api(base, 'PUT', '/api/v1/gateway/routes/orders', { token: admin, body: { ...route, methods: ['POST'] } });
    expect(replaced.status).toBe(200);
    expectProblem(await api(base, 'GET', '/orders/7'), 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
    expect((await api(base, 'GET', '/api/v1/gateway/routes/orders', { token: admin })).body.methods).toEqual(['POST']);

    const inUse = await api(base, 'DELETE', '/api/v1/gateway/services/orders', { token: admin });
    expectProblem(inUse, 400, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID');
    expect(inUse.body.detail).toContain('there is no service "orders"');
    expect((await api(base, 'DELETE', '/api/v1/gateway/routes/orders', { token: admin })).status).toBe(204);
    expect((await api(base, 'DELETE', '/api/v1/gateway/services/orders', { token: admin })).status).toBe(204);
    expectProblem(await api(base, 'DELETE', '/api/v1/gateway/services/orders', { token: admin }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expectProblem(await api(base, 'GET', '/api/v1/gateway/routes/orders', { token: admin }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');

    const applied = server.audit.events.filter((e) => e.action === 'gateway.config_applied');
    expect(applied.map((e) => e.details?.changes)).toEqual([
      'create service orders',
      'create route orders',
      'update route orders',
      'delete route orders',
      'delete service orders',
    ]);
    expect(applied[0]).toMatchObject({ tenant: null, outcome: 'success' });
  });

  it.each(['/api/v2/things', '/health', '/oauth/x', '/.well-known/x', '/hook/abc', '/maps/1/2/3', '/metrics', '/docs', '/UI/app'])(
    'refuses a route under the reserved path of %s',
    async (path) => {
      const res = await api(base, 'PUT', '/api/v1/gateway/config', {
        token: admin,
        body: { services: [{ name: 's', targets: [upstream.url] }], routes: [{ name: 'r', service: 's', paths: [path], policies: open }] },
      });
      expectProblem(res, 400, 'FLOWGATE_ERR_GATEWAY_RESERVED_PATH');
      expect(res.body.detail).toContain('reserved for Flowgate itself');
    },
  );

  it('never lets a catch-all route shadow Flowgate\'s own paths', async () => {
    const res = await api(base, 'PUT', '/api/v1/gateway/config', {
      token: admin,
      body: { services: [{ name: 's', targets: [upstream.url] }], routes: [{ name: 'all', service: 's', paths: ['/*'], policies: open }] },
    });
    expect(res.status).toBe(200);
    expect((await api(base, 'GET', '/anything/else')).status).toBe(200);
    expect((await api(base, 'GET', '/health/live')).body).toMatchObject({ status: 'ok' });
    expect((await api(base, 'GET', '/api/v1/gateway/config', { token: admin })).body.routes).toHaveLength(1);
    await api(base, 'PUT', '/api/v1/gateway/config', { token: admin, body: { services: [], routes: [] } });
  });

  it('refuses a route without an auth policy, a route on a missing service, clashing paths, and a bad target, listing each problem', async () => {
    const res = await api(base, 'PUT', '/api/v1/gateway/config', {
      token: admin,
      body: {
        services: [{ name: 's', targets: ['ftp://files.example'] }],
        routes: [
          { name: 'a', service: 's', paths: ['/a'] },
          { name: 'b', service: 'missing', paths: ['/b'], policies: open },
          { name: 'c', service: 's', paths: ['/a'], methods: ['GET'], policies: open },
        ],
      },
    });
    expectProblem(res, 400, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID');
    expect(res.body.errors).toEqual([
      { path: 'services[0].targets[0]', message: 'a target must be an http or https URL' },
      { path: 'routes[0].policies', message: expect.stringContaining('has no auth policy') },
      { path: 'routes[1].service', message: 'there is no service "missing"' },
      { path: 'routes[2].paths[0]', message: 'GET /a is already served by another route' },
    ]);
    expect((await api(base, 'GET', '/api/v1/gateway/config', { token: admin })).body).toMatchObject({ services: [], routes: [] });
  });

  it('lets only platform administrators read or change the gateway', async () => {
    const tenant = await createTenant(base, 'gw-outsider');
    expectProblem(await api(base, 'GET', '/api/v1/gateway/config', { token: tenant.token }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    expectProblem(await api(base, 'PUT', '/api/v1/gateway/config', { token: tenant.token, body: { services: [], routes: [] } }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
  });

  it('keeps serving its configuration when the stored one cannot be compiled, and says so in the log', async () => {
    await api(base, 'PUT', '/api/v1/gateway/config', {
      token: admin,
      body: { services: [{ name: 's', targets: [upstream.url] }], routes: [{ name: 'kept', service: 's', paths: ['/kept'], policies: open }] },
    });
    const db = server.flowgate.store.db<GatewayTables>();
    await db.updateTable('gateway_routes').set({ spec: JSON.stringify({ name: 'kept', service: 's', paths: ['/kept'] }) }).execute();
    await db.updateTable('gateway_state').set((eb) => ({ revision: eb('revision', '+', 1) })).execute();
    await server.flowgate.gateway.reload();
    expect((await api(base, 'GET', '/kept')).status).toBe(200);
    expect(server.logs.some((l) => l.includes('stored gateway configuration is not valid'))).toBe(true);
  });
});

describe('gateway on PostgreSQL with two instances', () => {
  let first: TestServer;
  let second: TestServer;
  let upstream: FakeUpstream;

  beforeAll(async () => {
    upstream = await startUpstream();
    const shared = { gateway: { reloadMs: 100 }, redis: { url: REDIS_URL } };
    first = await startTestServer({ store: 'postgres', config: shared });
    const { schema, url } = first.flowgate.config.database;
    second = await startTestServer({ store: 'postgres', config: { ...shared, database: { url: url ?? PG_URL, schema }, secrets: { masterKey: first.flowgate.config.secrets.masterKey } } });
  });
  afterAll(async () => {
    await second.close();
    await first.close();
    await upstream.close();
  });

  it('serves on the second instance, without a restart, what was applied on the first', async () => {
    const res = await api(first.url, 'PUT', '/api/v1/gateway/config', {
      token: await adminToken(first.url),
      body: { services: [{ name: 's', targets: [upstream.url] }], routes: [{ name: 'shared', service: 's', paths: ['/shared'], policies: open }] },
    });
    expect(res.status).toBe(200);
    expect((await api(first.url, 'GET', '/shared')).status).toBe(200);
    await waitFor('the second instance to serve the route', async () => (await api(second.url, 'GET', '/shared')).status === 200);
    expect(second.flowgate.gateway.revision).toBe(first.flowgate.gateway.revision);
  });

  it('shares one rate-limit budget between the instances through Redis', async () => {
    // A route name of its own: buckets outlive this test in Redis for their window.
    const name = `limited-${Date.now().toString(36)}`;
    const res = await api(first.url, 'PUT', '/api/v1/gateway/routes/' + name, {
      token: await adminToken(first.url),
      body: { name, service: 's', paths: [`/${name}`], policies: { auth: { type: 'none' }, 'rate-limit': { limit: 3, windowSeconds: 3600, by: 'ip' } } },
    });
    expect(res.status).toBe(201);
    await waitFor('the second instance to serve the route', () => second.flowgate.gateway.revision === first.flowgate.gateway.revision);
    const statuses = [];
    for (const server of [first, second, first, second]) statuses.push((await api(server.url, 'GET', `/${name}`)).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
  });
});
