/**
 * Ready work is shared out fairly between tenants (issue 5): when one tenant's burst fills
 * the engine, another tenant's executions do not wait behind the whole burst. The engine
 * runs two steps at once here, and each step calls an upstream that holds its answers
 * until both tenants have started their executions, so the burst queues; the upstream's
 * arrival order then shows whose steps ran when.
 */
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/bus.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

const BURST = 40;

describe.each(['sqlite', 'postgres'] as const)('the engine on %s, with one tenant flooding it', (store) => {
  let server: TestServer;
  let upstream: FakeUpstream;
  let flooder: TenantOwner;
  let neighbour: TenantOwner;
  /** Answers held back until `release`. */
  let held: ServerResponse[] | undefined = [];
  const answer = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
  const release = () => {
    const waiting = held ?? [];
    held = undefined;
    waiting.forEach(answer);
  };

  beforeAll(async () => {
    upstream = await startUpstream();
    upstream.answer((_req, res) => {
      if (held) held.push(res);
      else answer(res);
    });
    server = await startTestServer({ store, config: { flows: { pollMs: 20, maxInFlight: 2 }, outbound: { allow: '127.0.0.1/32' } } });
    flooder = await createTenant(server.url, `flooder-${store}`);
    neighbour = await createTenant(server.url, `neighbour-${store}`);
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
  });

  const activeFlow = async (owner: TenantOwner): Promise<string> => {
    const body = {
      name: 'call-out',
      triggers: [{ type: 'manual' }],
      nodes: [{ id: 'call', component: 'http', config: { method: 'POST', url: `${upstream.url}/${owner.tenant}/{{ n }}` } }],
      edges: [],
    };
    const res = await api(server.url, 'POST', '/api/v1/flows', { token: owner.token, body });
    if (res.status !== 201) throw new Error(`flow refused: ${res.text}`);
    const id = res.body.id as string;
    await api(server.url, 'POST', `/api/v1/flows/${id}/start`, { token: owner.token });
    await waitFor('the flow to be active', async () => (await api(server.url, 'GET', `/api/v1/flows/${id}`, { token: owner.token })).body.status === 'active');
    return id;
  };
  const run = async (owner: TenantOwner, flowId: string, n: number): Promise<void> => {
    const res = await api(server.url, 'POST', `/api/v1/flows/${flowId}/executions`, { token: owner.token, body: { input: { n } } });
    if (res.status !== 201) throw new Error(`run refused: ${res.text}`);
  };

  it("runs another tenant's executions among the first of a burst's, not after it", async () => {
    const flooding = await activeFlow(flooder);
    const quiet = await activeFlow(neighbour);
    await Promise.all(Array.from({ length: BURST }, (_, n) => run(flooder, flooding, n)));
    await waitFor('the first steps of the burst to be running', () => upstream.seen.length === 2);
    await run(neighbour, quiet, 1);
    await run(neighbour, quiet, 2);
    release();
    await waitFor('every call to reach the upstream', () => upstream.seen.length === BURST + 2, 30_000);

    const order = upstream.seen.map((r) => r.url);
    const neighbourCalls = order.flatMap((url, i) => (url.startsWith(`/${neighbour.tenant}/`) ? [i] : []));
    expect(neighbourCalls).toHaveLength(2);
    // First come, first served would put them last (positions 40 and 41). Shared out by
    // turns, each waits only for the flooder's steps already running or claimed with it.
    expect(Math.max(...neighbourCalls)).toBeLessThan(8);
  });
});
