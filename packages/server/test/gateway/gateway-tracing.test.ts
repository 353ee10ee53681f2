/**
 * End-to-end tracing: with an OpenTelemetry collector configured, each request becomes a
 * server span exported over OTLP/HTTP, and the span the gateway exports is the parent the
 * upstream sees in its traceparent, so the caller, the gateway and the upstream line up.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { adminToken } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
  status: { code: number };
}

describe('spans exported over OTLP', () => {
  let collector: Server;
  const spans: OtlpSpan[] = [];
  const services: string[] = [];
  let server: TestServer;
  let upstream: FakeUpstream;

  beforeAll(async () => {
    collector = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (req.url === '/v1/traces' && req.headers['content-type'] === 'application/json') {
          const doc = JSON.parse(body) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
          for (const rs of doc.resourceSpans) {
            services.push(rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '');
            for (const ss of rs.scopeSpans) spans.push(...ss.spans);
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    upstream = await startUpstream();
    server = await startTestServer({ config: { telemetry: { otlpEndpoint: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`, serviceName: 'gateway-east' } } });
    await api(server.url, 'PUT', '/api/v1/gateway/config', {
      token: await adminToken(server.url),
      body: { services: [{ name: 's', targets: [upstream.url] }], routes: [{ name: 'traced', service: 's', paths: ['/traced'], policies: { auth: { type: 'none' } } }] },
    });
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
    collector.close();
  });

  it("exports the gateway's span, child of the caller's and parent of the upstream's", async () => {
    const traceId = 'a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5';
    const res = await api(server.url, 'GET', '/traced', { headers: { traceparent: `00-${traceId}-1111111111111111-01` } });
    expect(res.status).toBe(200);
    await waitFor('the span at the collector', () => spans.some((s) => s.traceId === traceId));
    const span = spans.find((s) => s.traceId === traceId)!;
    expect(span).toMatchObject({ name: 'gateway traced', kind: 2, parentSpanId: '1111111111111111', status: { code: 0 } });
    expect(span.attributes).toContainEqual({ key: 'http.response.status_code', value: { intValue: '200' } });
    expect(upstream.seen.at(-1)?.headers.traceparent).toBe(`00-${traceId}-${span.spanId}-01`);
    expect(services).toContain('gateway-east');
  });

  it("exports the admin API's spans too, and none for a caller that asked not to sample", async () => {
    const sampled = 'b0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5';
    const unsampled = 'c0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5';
    await api(server.url, 'GET', '/health/live', { headers: { traceparent: `00-${sampled}-2222222222222222-01` } });
    await api(server.url, 'GET', '/traced', { headers: { traceparent: `00-${unsampled}-3333333333333333-00` } });
    await waitFor('the admin span at the collector', () => spans.some((s) => s.traceId === sampled));
    expect(spans.find((s) => s.traceId === sampled)?.name).toBe('GET /health/live');
    await api(server.url, 'GET', '/health/live', { headers: { traceparent: `00-${sampled}-4444444444444444-01` } });
    await waitFor('a later span', () => spans.filter((s) => s.traceId === sampled).length === 2);
    expect(spans.some((s) => s.traceId === unsampled)).toBe(false);
  });
});
