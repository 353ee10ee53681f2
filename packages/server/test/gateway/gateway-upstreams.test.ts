/**
 * The gateway and its upstreams: slow and dead targets, health checks, retries, bodies
 * streamed both ways without being buffered, SSE, and configuration changes that take
 * effect under load without failing a request.
 */
import { createHash } from 'node:crypto';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { adminToken } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('gateway upstreams', () => {
  let server: TestServer;
  let base: string;
  let admin: string;
  let upstream: FakeUpstream;

  async function apply(services: unknown[], routes: unknown[]): Promise<void> {
    const res = await api(base, 'PUT', '/api/v1/gateway/config', { token: admin, body: { services, routes } });
    if (res.status !== 200) throw new Error(`gateway config refused: ${res.text}`);
  }
  const open = { auth: { type: 'none' } };

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

  it('answers 502 with the trace id when the upstream is down', async () => {
    await apply([{ name: 'dead', targets: [`http://127.0.0.1:${await deadPort()}`], retries: 0 }], [{ name: 'r', service: 'dead', paths: ['/dead'], policies: open }]);
    const res = await api(base, 'GET', '/dead');
    expectProblem(res, 502, 'FLOWGATE_ERR_GATEWAY_UPSTREAM_UNAVAILABLE');
    expect(res.body.detail).toContain('"dead"');
    expect(server.logs.some((line) => line.includes('gateway request failed') && line.includes(res.body.traceId as string))).toBe(true);
  });

  it('does not report a client that left mid-upload as an upstream failure', async () => {
    await apply([{ name: 'up', targets: [upstream.url] }], [{ name: 'upload', service: 'up', paths: ['/upload'], policies: open }]);
    const served = async () => Number(/flowgate_gateway_requests_total\{route="upload"[^}]*\} (\d+)/.exec(await (await fetch(`${base}/metrics`)).text())?.[1] ?? 0);
    const before = await served();
    const { port } = new URL(base);
    const socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc');
    await new Promise((resolve) => setTimeout(resolve, 100));
    socket.destroy();
    // Counted once it is over, after any warning it gave.
    await waitFor('the request to be over', async () => (await served()) > before);
    expect(server.logs.filter((line) => line.includes('gateway request failed') && line.includes('"route":"upload"'))).toEqual([]);
  });

  it("forgets the health of a service's target that a reload took out", async () => {
    const healthy = createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => healthy.listen(0, '127.0.0.1', resolve));
    const address = `http://127.0.0.1:${(healthy.address() as AddressInfo).port}`;
    try {
      const check = { path: '/health', intervalMs: 100, unhealthyThreshold: 2, healthyThreshold: 1 };
      const gauges = async () => (await (await fetch(`${base}/metrics`)).text()).split('\n').filter((line) => line.startsWith('flowgate_gateway_upstream_healthy{service="pair"'));
      await apply([{ name: 'pair', targets: [address, upstream.url], healthCheck: check }], [{ name: 'r', service: 'pair', paths: ['/pair'], policies: open }]);
      await waitFor('both targets to have a health gauge', async () => (await gauges()).length === 2);
      await apply([{ name: 'pair', targets: [address], healthCheck: check }], [{ name: 'r', service: 'pair', paths: ['/pair'], policies: open }]);
      await waitFor('the reload to be served', async () => (await api(base, 'GET', '/pair')).status === 200 && (await gauges()).length === 1);
      expect(await gauges()).toEqual([`flowgate_gateway_upstream_healthy{service="pair",target="${address}"} 1`]);
    } finally {
      healthy.closeAllConnections();
      healthy.close();
    }
  });

  it('answers 504 when the upstream does not answer within readTimeoutMs', async () => {
    const slow = createServer((_req, res) => setTimeout(() => res.end('late'), 2000).unref());
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    try {
      await apply([{ name: 'slow', targets: [`http://127.0.0.1:${(slow.address() as AddressInfo).port}`], readTimeoutMs: 200 }], [{ name: 'r', service: 'slow', paths: ['/slow'], policies: open }]);
      expectProblem(await api(base, 'GET', '/slow'), 504, 'FLOWGATE_ERR_GATEWAY_UPSTREAM_TIMEOUT');
      // Logged as an upstream failure, also for a request with a body (which Node marks
      // destroyed once it is read, though its client is still there).
      const posted = await api(base, 'POST', '/slow', { body: { order: 1 } });
      expectProblem(posted, 504, 'FLOWGATE_ERR_GATEWAY_UPSTREAM_TIMEOUT');
      expect(server.logs.some((line) => line.includes('gateway request failed') && line.includes(posted.body.traceId as string))).toBe(true);
    } finally {
      slow.closeAllConnections();
      slow.close();
    }
  });

  it('tries another target when a connection is refused, for a GET', async () => {
    await apply([{ name: 'two', targets: [`http://127.0.0.1:${await deadPort()}`, upstream.url], retries: 1 }], [{ name: 'r', service: 'two', paths: ['/two'], policies: open }]);
    for (let i = 0; i < 4; i++) expect((await api(base, 'GET', '/two')).status).toBe(200);
  });

  it('stops sending to a target its health checks find down, and answers 503 when none is left', async () => {
    let healthy = true;
    const target = createServer((req, res) => {
      if (req.url === '/health') res.writeHead(healthy ? 200 : 500).end();
      else res.end('ok');
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    try {
      await apply(
        [{ name: 'checked', targets: [`http://127.0.0.1:${(target.address() as AddressInfo).port}`], healthCheck: { path: '/health', intervalMs: 100, unhealthyThreshold: 2, healthyThreshold: 1 } }],
        [{ name: 'r', service: 'checked', paths: ['/checked'], policies: open }],
      );
      expect((await api(base, 'GET', '/checked')).status).toBe(200);
      healthy = false;
      await waitFor('the target to be marked down', async () => (await api(base, 'GET', '/checked')).status === 503);
      const res = await api(base, 'GET', '/checked');
      expectProblem(res, 503, 'FLOWGATE_ERR_GATEWAY_NO_HEALTHY_UPSTREAM');
      expect(res.headers.get('retry-after')).toBe('1');
      const metrics = await (await fetch(`${base}/metrics`)).text();
      expect(metrics).toMatch(/flowgate_gateway_upstream_healthy\{service="checked",target="http:\/\/127\.0\.0\.1:\d+"\} 0/);
      healthy = true;
      await waitFor('the target to be back', async () => (await api(base, 'GET', '/checked')).status === 200);
    } finally {
      target.closeAllConnections();
      target.close();
    }
  });

  it('streams a 100 MB body up and down without buffering it: the far end sees the first bytes before the last are sent', async () => {
    const MB = 1024 * 1024;
    let upstreamGotFirst: () => void = () => undefined;
    const firstSeen = new Promise<void>((resolve) => (upstreamGotFirst = resolve));
    let releaseDownload: () => void = () => undefined;
    const downloadGate = new Promise<void>((resolve) => (releaseDownload = resolve));
    const echo: Server = createServer((req, res) => {
      if (req.method === 'POST') {
        const hash = createHash('sha256');
        let bytes = 0;
        req.on('data', (chunk: Buffer) => {
          if (bytes === 0) upstreamGotFirst();
          bytes += chunk.length;
          hash.update(chunk);
        });
        req.on('end', () => res.end(JSON.stringify({ bytes, sha256: hash.digest('hex') })));
        return;
      }
      // GET: the first MB at once, the other 99 only once the client has read the first.
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.write(Buffer.alloc(MB, 1));
      void downloadGate.then(async () => {
        for (let i = 1; i < 100; i++) if (!res.write(Buffer.alloc(MB, 2))) await new Promise((r) => res.once('drain', r));
        res.end();
      });
    });
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    try {
      await apply([{ name: 'big', targets: [`http://127.0.0.1:${(echo.address() as AddressInfo).port}`] }], [{ name: 'r', service: 'big', paths: ['/big'], policies: open }]);
      const { port } = new URL(base);

      // Upload: the rest is sent only after the upstream has seen the first chunk.
      const sent = createHash('sha256');
      const upload = await new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/big', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve(JSON.parse(text) as { bytes: number; sha256: string }));
        });
        req.on('error', reject);
        const first = Buffer.alloc(MB, 7);
        sent.update(first);
        req.write(first);
        void firstSeen.then(async () => {
          for (let i = 1; i < 100; i++) {
            const chunk = Buffer.alloc(MB, i % 256);
            sent.update(chunk);
            if (!req.write(chunk)) await new Promise((r) => req.once('drain', r));
          }
          req.end();
        });
      });
      expect(upload).toEqual({ bytes: 100 * MB, sha256: sent.digest('hex') });

      // Download: the client reads the first MB while the upstream still holds the rest.
      const received = await new Promise<number>((resolve, reject) => {
        httpRequest({ host: '127.0.0.1', port, method: 'GET', path: '/big' }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            if (bytes >= MB) releaseDownload();
          });
          res.on('end', () => resolve(bytes));
          res.on('error', reject);
        })
          .on('error', reject)
          .end();
      });
      expect(received).toBe(100 * MB);
    } finally {
      echo.closeAllConnections();
      echo.close();
    }
  });

  it('passes server-sent events through as they come', async () => {
    let sendSecond: () => void = () => undefined;
    const sse = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write('data: first\n\n');
      sendSecond = () => res.end('data: second\n\n');
    });
    await new Promise<void>((resolve) => sse.listen(0, '127.0.0.1', resolve));
    try {
      await apply([{ name: 'sse', targets: [`http://127.0.0.1:${(sse.address() as AddressInfo).port}`] }], [{ name: 'r', service: 'sse', paths: ['/events'], policies: open }]);
      const res = await fetch(`${base}/events`);
      expect(res.headers.get('content-type')).toBe('text/event-stream');
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      const first = await reader.read();
      expect(first.value).toBe('data: first\n\n');
      sendSecond();
      let rest = '';
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += chunk.value;
      expect(rest).toBe('data: second\n\n');
    } finally {
      sse.closeAllConnections();
      sse.close();
    }
  });

  it('applies configuration changes under load without failing a request, also while requests wait in policies', async () => {
    // Rate limits in Redis make every request wait in its policies, where a reload that
    // closed the old pools would fail it; each generation also changes the service's pools.
    const live = await startTestServer({ config: { redis: { url: process.env.FLOWGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379' } } });
    const other = await startUpstream();
    try {
      const liveAdmin = await adminToken(live.url);
      const services = (generation: number) => [{ name: 'live', targets: [generation % 2 === 0 ? upstream.url : other.url], connectTimeoutMs: 1000 + generation }];
      const routes = (n: number) => [
        { name: `live-${Date.now().toString(36)}`, service: 'live', paths: ['/live/*'], policies: { ...open, 'rate-limit': { limit: 1_000_000_000, by: 'ip' }, 'response-headers': { set: { 'x-generation': String(n) } } } },
        ...Array.from({ length: n % 5 }, (_v, i) => ({ name: `extra-${i}`, service: 'live', paths: [`/extra-${i}`], policies: open })),
      ];
      const applyLive = async (generation: number) => {
        const res = await api(live.url, 'PUT', '/api/v1/gateway/config', { token: liveAdmin, body: { services: services(generation), routes: routes(generation) } });
        if (res.status !== 200) throw new Error(res.text);
      };
      await applyLive(0);
      let stop = false;
      const failures: string[] = [];
      let requests = 0;
      const load = Array.from({ length: 8 }, async () => {
        while (!stop) {
          const res = await fetch(`${live.url}/live/item`).catch((err: unknown) => ({ status: 0, text: () => String(err) }) as const);
          requests++;
          if (res.status !== 200) failures.push(`${res.status} ${await res.text()}`);
          else await (res).arrayBuffer();
        }
      });
      for (let generation = 1; generation <= 20; generation++) await applyLive(generation);
      stop = true;
      await Promise.all(load);
      expect(failures).toEqual([]);
      expect(requests).toBeGreaterThan(20);
      const last = await fetch(`${live.url}/live/item`);
      expect(last.headers.get('x-generation')).toBe('20');
      expect(other.seen.length).toBeGreaterThan(0);
    } finally {
      await live.close();
      await other.close();
    }
  });
});
