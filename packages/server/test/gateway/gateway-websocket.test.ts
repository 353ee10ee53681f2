/**
 * WebSocket through the gateway: the upgrade passes the route's policies like any request,
 * then frames flow both ways between client and upstream; a refusal is an ordinary HTTP
 * problem answer and the upstream never sees the upgrade.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, clientToken } from '../support/http.js';
import { adminToken, createTenant } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';

/** The `ws` package (a dependency of @fastify/websocket); Node 20 has no global WebSocket. */
const wsModule = 'ws';
type Ws = any;

describe('gateway WebSocket pass-through', () => {
  let server: TestServer;
  let upstream: Server;
  let upgrades = 0;
  let token: string;

  beforeAll(async () => {
    const { WebSocketServer } = (await import(wsModule)) as { WebSocketServer: Ws };
    upstream = createServer((_req, res) => res.writeHead(426).end('upgrade required'));
    const wss = new WebSocketServer({ server: upstream });
    wss.on('connection', (socket: Ws, req: { url: string; headers: Record<string, string> }) => {
      upgrades++;
      socket.send(JSON.stringify({ url: req.url, authorization: req.headers.authorization ?? null }));
      socket.on('message', (data: Buffer) => socket.send(`echo:${data.toString()}`));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    server = await startTestServer();
    const tenant = await createTenant(server.url, 'ws-tenant');
    const account = await api(server.url, 'POST', '/api/v1/service-accounts', { token: tenant.token, body: { name: 'ws', scopes: ['chat:use'] } });
    token = await clientToken(server.url, account.body.client_id, account.body.client_secret);
    const applied = await api(server.url, 'PUT', '/api/v1/gateway/config', {
      token: await adminToken(server.url),
      body: {
        services: [{ name: 'chat', targets: [`http://127.0.0.1:${(upstream.address() as AddressInfo).port}`] }],
        routes: [{ name: 'chat', service: 'chat', paths: ['/chat/*'], stripPrefix: true, policies: { auth: { type: 'jwt' }, scopes: { required: ['chat:use'] } } }],
      },
    });
    if (applied.status !== 200) throw new Error(applied.text);
  });
  afterAll(async () => {
    await server.close();
    upstream.closeAllConnections();
    await new Promise((resolve) => upstream.close(resolve));
  });

  async function open(path: string, headers: Record<string, string>): Promise<{ status: number; socket?: Ws; first?: string; body?: string }> {
    const { WebSocket } = (await import(wsModule)) as { WebSocket: Ws };
    const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}${path}`, { headers });
    return new Promise((resolve, reject) => {
      socket.once('message', (data: Buffer) => resolve({ status: 101, socket, first: data.toString() }));
      socket.once('unexpected-response', (_req: unknown, res: Ws) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode as number, body }));
      });
      socket.once('error', reject);
    });
  }

  it('carries frames both ways once the caller passed auth and scopes; the upstream does not get the caller\'s token', async () => {
    const opened = await open('/chat/room/1', { authorization: `Bearer ${token}` });
    expect(opened.status).toBe(101);
    expect(JSON.parse(opened.first!)).toEqual({ url: '/room/1', authorization: null });
    const reply = new Promise<string>((resolve) => opened.socket.once('message', (data: Buffer) => resolve(data.toString())));
    opened.socket.send('hello');
    expect(await reply).toBe('echo:hello');
    opened.socket.close();
  });

  it('refuses an upgrade without a token with a problem answer; the upstream never sees it', async () => {
    const before = upgrades;
    const refused = await open('/chat/room/1', {});
    expect(refused.status).toBe(401);
    expect(JSON.parse(refused.body!)).toMatchObject({ code: 'FLOWGATE_ERR_AUTH_TOKEN_MISSING' });
    expect(upgrades).toBe(before);
    expect(server.audit.events.some((e) => e.action === 'gateway.denied' && e.details?.path === '/chat/room/1')).toBe(true);
  });
});
