/**
 * Requests crafted to slip past the gateway's routing or policies: dot segments in their
 * many spellings, absolute-form targets, encoded reserved paths, protocols tunnelled
 * through Upgrade, credentials that must stay at the gateway, and another tenant's
 * upstream credentials.
 */
import { connect } from 'node:net';
import { request } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { api, clientToken } from '../support/http.js';
import { adminToken, createTenant, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

/** Sends raw bytes and returns the first line of the answer. */
function raw(url: string, text: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text));
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString('latin1');
      if (answer.includes('\r\n')) {
        socket.destroy();
        resolve(answer.split('\r\n')[0]!);
      }
    });
    socket.on('error', reject);
  });
}

describe('gateway hardening', () => {
  let server: TestServer;
  let upstream: FakeUpstream;
  let admin: string;
  let acme: TenantOwner;
  let other: TenantOwner;

  const apply = async (routes: unknown[]) => {
    const res = await api(server.url, 'PUT', '/api/v1/gateway/config', { token: admin, body: { services: [{ name: 's', targets: [upstream.url] }], routes } });
    if (res.status !== 200) throw new Error(res.text);
  };
  const open = { auth: { type: 'none' } };

  beforeAll(async () => {
    server = await startTestServer();
    upstream = await startUpstream();
    admin = await adminToken(server.url);
    acme = await createTenant(server.url, 'hard-acme');
    other = await createTenant(server.url, 'hard-other');
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
  });
  beforeEach(() => {
    upstream.seen.length = 0;
  });

  it.each(['/public/../admin/x', '/public/..%2fadmin', '/public/%2e%2e/admin', '/public/..\\admin', '/public/..%5cadmin', '/public/..;/admin', '/public/./x'])(
    'refuses %s: an upstream could resolve it outside the route',
    async (path) => {
      await apply([{ name: 'public', service: 's', paths: ['/public/*'], policies: open }]);
      const line = await raw(server.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(line).toBe('HTTP/1.1 400 Bad Request');
      expect(upstream.seen).toEqual([]);
    },
  );

  it.each(['//admin/x', '/public//x', '/admin;/x', '/admin;', '/admin%2Fx', '/admin%5cx', '/admin\\x'])(
    'refuses %s: an upstream could read it as another route\'s path (an empty segment, ;params or an encoded separator)',
    async (path) => {
      await apply([
        { name: 'all', service: 's', paths: ['/*'], policies: open },
        { name: 'admin', service: 's', paths: ['/admin', '/admin/*'], policies: { auth: { type: 'jwt' } } },
      ]);
      const line = await raw(server.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(line).toBe('HTTP/1.1 400 Bad Request');
      expect(upstream.seen).toEqual([]);
    },
  );

  it('forwards, on a route that allows them, encoded slashes (as APIs naming things a%2Fb need), empty segments or ;parameters, each alone', async () => {
    await apply([
      { name: 'projects', service: 's', paths: ['/projects/*'], allowInPaths: ['encoded-slashes'], policies: open },
      { name: 'legacy', service: 's', paths: ['/legacy/*'], allowInPaths: ['parameters', 'empty-segments'], policies: open },
    ]);
    const send = (path: string) => raw(server.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(await send('/projects/grp%2Fproj/issues')).toBe('HTTP/1.1 200 OK');
    expect(await send('/legacy/cart;jsessionid=abc')).toBe('HTTP/1.1 200 OK');
    expect(await send('/legacy//x')).toBe('HTTP/1.1 200 OK');
    expect(upstream.seen.map((seen) => seen.url)).toEqual(['/projects/grp%2Fproj/issues', '/legacy/cart;jsessionid=abc', '/legacy//x']);
    // Only what each allows: and never a dot segment.
    expect(await send('/projects/a;b')).toBe('HTTP/1.1 400 Bad Request');
    expect(await send('/legacy/a%2Fb')).toBe('HTTP/1.1 400 Bad Request');
    expect(await send('/projects/a%2F..%2Fadmin')).toBe('HTTP/1.1 400 Bad Request');
    expect(upstream.seen).toHaveLength(3);
  });

  it('does not route a request target with a fragment, which the router and the upstream would read apart', async () => {
    await apply([
      { name: 'order', service: 's', paths: ['/orders/:id'], policies: open },
      { name: 'invoice', service: 's', paths: ['/orders/:id/invoice'], policies: { auth: { type: 'jwt' } } },
      { name: 'all', service: 's', paths: ['/*'], policies: open },
    ]);
    const line = await raw(server.url, `GET /orders/1#/invoice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(line).not.toBe('HTTP/1.1 200 OK');
    // Flowgate's own paths stay Flowgate's, whatever follows a '#'.
    await raw(server.url, `GET /metrics# HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(upstream.seen).toEqual([]);
  });

  it('does not route an absolute-form target, nor an encoded reserved path, even with a catch-all route', async () => {
    await apply([{ name: 'all', service: 's', paths: ['/*'], policies: open }]);
    expect((await api(server.url, 'GET', '/anything')).status).toBe(200);
    upstream.seen.length = 0;
    await raw(server.url, `GET http://internal.example/anything HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const encoded = await raw(server.url, `GET /%61pi/v1/gateway/config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(encoded).not.toBe('HTTP/1.1 200 OK');
    expect(upstream.seen).toEqual([]);
  });

  it('keeps Flowgate API keys at the gateway on routes that do not use them, and handles Expect: 100-continue', async () => {
    await apply([{ name: 'open', service: 's', paths: ['/open'], policies: open }]);
    const { port } = new URL(server.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/open', headers: { 'x-api-key': 'fgk_id_secret', expect: '100-continue', 'content-type': 'text/plain', 'content-length': '5' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('continue', () => req.end('hello'));
      req.on('error', reject);
    });
    expect(status).toBe(200);
    expect(upstream.seen[0]?.headers['x-api-key']).toBeUndefined();
    expect(upstream.seen[0]?.body).toBe('hello');
  });

  it('does not tunnel a protocol other than WebSocket through Upgrade', async () => {
    await apply([{ name: 'open', service: 's', paths: ['/open'], policies: open }]);
    const line = await raw(server.url, `GET /open HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n`);
    expect(line).not.toBe('HTTP/1.1 101 Switching Protocols');
  });

  it("sends a tenant's upstream credentials only for that tenant's callers, unless declared shared", async () => {
    await api(server.url, 'POST', '/api/v1/secrets', { token: acme.token, body: { name: 'crm_key', value: 'acme-crm-key' } });
    const account = async (owner: TenantOwner) => {
      const res = await api(server.url, 'POST', '/api/v1/service-accounts', { token: owner.token, body: { name: 'crm-caller', scopes: ['crm:read'] } });
      return clientToken(server.url, res.body.client_id, res.body.client_secret);
    };
    const acmeToken = await account(acme);
    const otherToken = await account(other);
    const route = (shared: boolean) => [
      { name: 'crm', service: 's', paths: ['/crm'], policies: { auth: { type: 'jwt' }, scopes: { required: ['crm:read'] }, 'upstream-auth': { mode: 'secret-header', header: 'x-crm-key', secret: 'crm_key', tenant: 'hard-acme', shared } } },
    ];
    await apply(route(false));
    expect((await api(server.url, 'GET', '/crm', { token: acmeToken })).status).toBe(200);
    expectProblem(await api(server.url, 'GET', '/crm', { token: otherToken }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
    expect(upstream.seen.map((s) => s.headers['x-crm-key'])).toEqual(['acme-crm-key']);
    await apply(route(true));
    expect((await api(server.url, 'GET', '/crm', { token: otherToken })).status).toBe(200);
  });
});
