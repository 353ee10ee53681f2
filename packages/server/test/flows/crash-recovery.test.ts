/**
 * Issue 5, "done when": kill -9 during 1,000 in-flight executions, restart, and every
 * execution completes with each step's side effect counted: no step completion lost, none
 * recorded twice. The server is the real one (`node dist/main.js`), killed with SIGKILL
 * while its `http` steps are calling a local upstream that counts every call.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import SQLite from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/bus.js';
import { api, clientToken } from '../support/http.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const TOTAL = 1000;
const ADMIN = { id: 'crash-admin', secret: 'crash-admin-secret-0123456789abcdef' };

interface Running {
  readonly child: ChildProcess;
  readonly url: Promise<string>;
  readonly exit: Promise<number | null>;
}

function startServer(dataDir: string): Running {
  const child = spawn(process.execPath, [MAIN], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      FLOWGATE_DATA_DIR: dataDir,
      FLOWGATE_PORT: '0',
      FLOWGATE_LOG_LEVEL: 'info',
      FLOWGATE_BOOTSTRAP_CLIENT_ID: ADMIN.id,
      FLOWGATE_BOOTSTRAP_CLIENT_SECRET: ADMIN.secret,
      FLOWGATE_OUTBOUND_ALLOW: '127.0.0.1/32',
      // A killed process's leases run out quickly, so the restart picks its steps up soon.
      FLOWGATE_FLOWS_LEASE_MS: '1500',
      FLOWGATE_FLOWS_POLL_MS: '50',
      FLOWGATE_GATEWAY_ACCESS_LOG: 'false',
    },
  });
  let output = '';
  const url = new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)".*"flowgate listening"/.exec(output);
      if (match) resolve(match[1]!);
    });
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('exit', () => reject(new Error(`the server exited: ${output.slice(-2000)}`)));
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  url.catch(() => undefined);
  return { child, url, exit };
}

describe('the flow engine across kill -9', () => {
  let dataDir: string | undefined;
  let upstream: FakeUpstream | undefined;
  let server: Running | undefined;
  afterAll(async () => {
    server?.child.kill('SIGKILL');
    await upstream?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  it('completes every accepted execution, recording each step once, with every side effect made', { timeout: 240_000 }, async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'flowgate-flows-crash-'));
    upstream = await startUpstream();
    // The upstream answers after a moment, and stops answering once a third of the calls
    // came in, until the kill: however fast the engine is, work is mid-step when it dies.
    let holding = true;
    upstream.answer((req, res) => {
      if (holding && upstream!.seen.length > TOTAL / 3) return;
      setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, url: req.url })), 5);
    });

    server = startServer(dataDir);
    let base = await server.url;
    const admin = await clientToken(base, ADMIN.id, ADMIN.secret);
    const tenant = await api(base, 'POST', '/api/v1/tenants', { token: admin, body: { id: 'crash' } });
    const owner = tenant.body.owner as { client_id: string; client_secret: string };
    const token = await clientToken(base, owner.client_id, owner.client_secret);
    const flow = await api(base, 'POST', '/api/v1/flows', {
      token,
      body: {
        name: 'crash',
        triggers: [{ type: 'webhook' }],
        nodes: [
          { id: 'prepare', component: 'transform', config: { expression: '{"n": body.n}' } },
          { id: 'call', component: 'http', config: { method: 'POST', url: `${upstream.url}/effect`, body: { n: '{{ n }}', execution: '{{ $execution.id }}' } } },
          { id: 'finish', component: 'transform', config: { expression: '{"done": true}' } },
        ],
        edges: [
          { from: 'prepare', to: 'call' },
          { from: 'call', to: 'finish' },
        ],
        settings: { retries: { count: 10, backoffMs: 50 } },
      },
    });
    expect(flow.status).toBe(201);
    const flowId = flow.body.id as string;
    await api(base, 'POST', `/api/v1/flows/${flowId}/start`, { token });
    await waitFor('the flow to be active', async () => (await api(base, 'GET', `/api/v1/flows/${flowId}`, { token })).body.status === 'active');

    const accepted = new Set<string>();
    for (let batch = 0; batch < TOTAL / 50; batch++) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => api(base, 'POST', `/hook/${flowId}`, { body: { n: batch * 50 + i } })));
      for (const answer of answers) {
        expect(answer.status).toBe(202);
        accepted.add(answer.body.execution_id as string);
      }
    }
    expect(accepted.size).toBe(TOTAL);
    await waitFor('a third of the calls to be made', () => upstream!.seen.length >= TOTAL / 3, 60_000);
    server.child.kill('SIGKILL');
    await server.exit;
    const callsBeforeKill = upstream.seen.length;
    expect(callsBeforeKill).toBeLessThan(TOTAL);
    holding = false;
    // The executions whose call step was recorded as done when the process died.
    const recordedBeforeKill = new Set<string>();
    const dead = new SQLite(join(dataDir, 'flowgate.db'), { readonly: true });
    try {
      const rows = dead.prepare("select execution_id from flow_steps where node = 'call' and status = 'succeeded'").all() as Array<{ execution_id: string }>;
      for (const row of rows) recordedBeforeKill.add(row.execution_id);
    } finally {
      dead.close();
    }
    expect(recordedBeforeKill.size).toBeGreaterThan(0);

    server = startServer(dataDir);
    base = await server.url;
    const fresh = await clientToken(base, owner.client_id, owner.client_secret);
    await waitFor(
      'every execution to succeed',
      async () => {
        const failed = await api(base, 'GET', '/api/v1/executions?status=failed&limit=1', { token: fresh });
        if (failed.body.items.length > 0) throw new Error(`an execution failed: ${JSON.stringify(failed.body.items[0])}`);
        const running = await api(base, 'GET', '/api/v1/executions?status=running&limit=1', { token: fresh });
        return running.body.items.length === 0;
      },
      180_000,
    );
    server.child.kill('SIGTERM');
    await server.exit;
    server = undefined;

    const db = new SQLite(join(dataDir, 'flowgate.db'), { readonly: true });
    try {
      const executions = db.prepare('select id, status from flow_executions where flow_id = ?').all(flowId) as Array<{ id: string; status: string }>;
      expect(executions).toHaveLength(TOTAL);
      expect(new Set(executions.map((e) => e.id))).toEqual(accepted);
      expect(executions.every((e) => e.status === 'succeeded')).toBe(true);
      // Each node's completion is recorded exactly once per execution.
      const perExecution = db
        .prepare("select execution_id, node, count(*) as n from flow_steps where status = 'succeeded' group by execution_id, node")
        .all() as Array<{ execution_id: string; node: string; n: number }>;
      expect(perExecution).toHaveLength(TOTAL * 3);
      expect(perExecution.every((row) => row.n === 1)).toBe(true);
    } finally {
      db.close();
    }
    // Every execution's side effect reached the upstream at least once; after the restart,
    // only calls whose completion was not recorded yet were made again.
    const executionOf = (seen: { body: string }) => (JSON.parse(seen.body) as { execution: string }).execution;
    expect(new Set(upstream.seen.map(executionOf))).toEqual(accepted);
    const calledAgain = upstream.seen.slice(callsBeforeKill).map(executionOf).filter((id) => recordedBeforeKill.has(id));
    expect(calledAgain).toEqual([]);
  });
});
