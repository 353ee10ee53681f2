/**
 * `flowgate flows …` and `flowgate executions …` against a real server on SQLite: apply
 * creates and then versions a flow from a YAML file, a refused definition names its
 * problems, start/stop --wait settle, run --wait prints the finished execution, the
 * executions commands find it, and another tenant's flow is not found.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { captureIo } from '../support/cli.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('flowgate flows and executions', () => {
  let server: TestServer;
  let root: string;
  let acme: TenantOwner;
  let other: TenantOwner;

  const run = async (owner: TenantOwner, args: string[]) => {
    const captured = captureIo(root);
    const code = await runCli(['node', 'flowgate', ...args, '--url', server.url, '--token', owner.token], captured.io);
    return { code, stdout: captured.stdout(), stderr: captured.stderr() };
  };
  const file = (name: string, text: string) => {
    writeFileSync(join(root, name), text);
    return name;
  };
  /** A manual flow with one transform node; `id` makes apply update that flow. */
  const greeter = (name: string, greeting: string, id?: string) => `${id ? `id: ${id}\n` : ''}name: ${name}
triggers:
  - type: manual
nodes:
  - id: greet
    component: transform
    config:
      expression: '{"greeting": "${greeting} " & who}'
settings:
  retries: { count: 0 }
`;
  const applied = async (owner: TenantOwner, name: string, text: string) => {
    const result = await run(owner, ['flows', 'apply', '-f', file(`${name}.yaml`, text), '--json']);
    if (result.code !== 0) throw new Error(`apply failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as { id: string; version: number };
  };
  const statusOf = async (owner: TenantOwner, id: string) => (await api(server.url, 'GET', `/api/v1/flows/${id}`, { token: owner.token })).body.status as string;

  beforeAll(async () => {
    server = await startTestServer({ config: { flows: { pollMs: 20 } } });
    acme = await createTenant(server.url, 'flows-cli-acme');
    other = await createTenant(server.url, 'flows-cli-other');
    root = mkdtempSync(join(tmpdir(), 'flowgate-flows-cli-'));
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('apply creates a flow from a YAML file, and applying a changed file saves a new version of the flow of its name', async () => {
    const created = await run(acme, ['flows', 'apply', '-f', file('hello.yaml', greeter('hello', 'hello'))]);
    expect(created.code).toBe(0);
    const [, id] = /^created flow hello: id (\S+), version 1 \(inactive\)\n$/.exec(created.stdout) ?? [];
    expect(id).toBeDefined();

    // The same file again changes nothing.
    const again = await run(acme, ['flows', 'apply', '-f', file('hello.yaml', greeter('hello', 'hello'))]);
    expect(again.stdout).toBe(`unchanged flow hello: id ${id}, version 1 (inactive)\n`);

    const updated = await run(acme, ['flows', 'apply', '-f', file('hello.yaml', greeter('hello', 'hi'))]);
    expect(updated.code).toBe(0);
    expect(updated.stdout).toBe(`updated flow hello: id ${id}, version 2 (inactive)\n`);
    const stored = await api(server.url, 'GET', `/api/v1/flows/${id}`, { token: acme.token });
    expect(stored.body.definition.nodes[0].config.expression).toContain('"hi "');

    // With its id in the file, the flow can be renamed.
    const renamed = await run(acme, ['flows', 'apply', '-f', file('hello.yaml', greeter('hello-again', 'hi', id))]);
    expect(renamed.stdout).toBe(`updated flow hello-again: id ${id}, version 3 (inactive)\n`);
    expect((await api(server.url, 'GET', `/api/v1/flows/${id}`, { token: acme.token })).body.definition).not.toHaveProperty('id');

    const list = await run(acme, ['flows', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+NAME\s+STATUS\s+VERSION\n/);
    expect(list.stdout).toMatch(new RegExp(`^${id}\\s+hello-again\\s+inactive\\s+3$`, 'm'));
  });

  it('apply of a definition the server refuses exits 1, names each problem field and creates nothing', async () => {
    const broken = `name: broken
triggers: [{ type: manual }]
nodes:
  - { id: a, component: transform, config: { expression: '$foo(' } }
  - { id: b, component: teleport }
edges:
  - { from: a, to: nowhere }
`;
    const result = await run(acme, ['flows', 'apply', '-f', file('broken.yaml', broken)]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('broken.yaml is not a valid flow definition; nothing was applied');
    expect(result.stderr).toMatch(/^ {2}nodes\[0\]\.config\.expression: /m);
    expect(result.stderr).toMatch(/^ {2}nodes\[1\]\.component: /m);
    expect(result.stderr).toMatch(/^ {2}edges\[0\]\.to: /m);
    expect((await api(server.url, 'GET', '/api/v1/flows/broken', { token: acme.token })).status).toBe(404);
  });

  it('start --wait reaches active and stop --wait reaches inactive', async () => {
    const { id } = await applied(acme, 'switch', greeter('switch', 'hello'));
    const started = await run(acme, ['flows', 'start', id, '--wait', '--timeout', '20']);
    expect(started.code).toBe(0);
    expect(started.stdout).toBe(`flow switch (${id}) is active\n`);
    expect(await statusOf(acme, id)).toBe('active');

    const stopped = await run(acme, ['flows', 'stop', id, '--wait']);
    expect(stopped.code).toBe(0);
    expect(stopped.stdout).toBe(`flow switch (${id}) is inactive\n`);
    expect(await statusOf(acme, id)).toBe('inactive');
  });

  it('run --input --wait prints the succeeded execution and its output; executions list and show find it', async () => {
    const { id } = await applied(acme, 'runner', greeter('runner', 'hello'));
    expect((await run(acme, ['flows', 'start', 'runner', '--wait'])).code).toBe(0);

    const result = await run(acme, ['flows', 'run', id, '--input', '{"who":"Ada"}', '--wait']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^status: +succeeded$/m);
    expect(result.stdout).toMatch(/^output: +\{"greeting":"hello Ada"\}$/m);
    const executionId = /^id: +(\S+)$/m.exec(result.stdout)?.[1];
    expect(executionId).toBeDefined();

    const list = await run(acme, ['executions', 'list', '--status', 'succeeded', '--flow', 'runner']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^ID\s+FLOW\s+STATUS\s+STARTED\s+FINISHED\n/);
    expect(list.stdout).toMatch(new RegExp(`^${executionId}\\s+${id}\\s+succeeded\\s+\\S+\\s+\\S+$`, 'm'));
    const failedOnly = await run(acme, ['executions', 'list', '--status', 'failed', '--flow', 'runner']);
    expect(failedOnly.stdout).not.toContain(executionId);

    const show = await run(acme, ['executions', 'show', executionId!]);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/^status: +succeeded$/m);
    expect(show.stdout).toMatch(/^NODE\s+PHASE\s+STATUS\s+ATTEMPTS\s+ERROR\n/m);
    expect(show.stdout).toMatch(/^greet\s+main\s+succeeded\s+1\s+-$/m);

    const raw = await run(acme, ['executions', 'show', executionId!, '--json']);
    expect(JSON.parse(raw.stdout)).toMatchObject({ id: executionId, status: 'succeeded', output: { greeting: 'hello Ada' } });
  });

  it('executions show reads every page of steps of a long execution', async () => {
    const nodes = Array.from({ length: 60 }, (_, i) => ({ id: `n${i}`, component: 'transform', config: { expression: '$' }, pre: { expression: '$' } }));
    const created = await api(server.url, 'POST', '/api/v1/flows', { token: acme.token, body: { name: 'long-for-cli', triggers: [{ type: 'manual' }], nodes, edges: nodes.slice(1).map((n, i) => ({ from: nodes[i]!.id, to: n.id })) } });
    expect((await run(acme, ['flows', 'start', 'long-for-cli', '--wait'])).code).toBe(0);
    const result = await run(acme, ['flows', 'run', created.body.id as string, '--input', '{}', '--wait']);
    expect(result.code).toBe(0);
    const executionId = /^id: +(\S+)$/m.exec(result.stdout)?.[1];
    const show = await run(acme, ['executions', 'show', executionId!]);
    // 60 nodes, each a pre hook and a main step: 120 steps, over two pages of the API.
    expect(show.stdout).toContain('steps (120):');
    expect(show.stdout).toMatch(/^n59\s+main\s+succeeded/m);
    const raw = JSON.parse((await run(acme, ['executions', 'show', executionId!, '--json'])).stdout);
    expect(raw.steps).toHaveLength(120);
    expect(raw.steps_next).toBeNull();
  });

  it('run without --wait prints only the execution id; --input-file is read as the input', async () => {
    const { id } = await applied(acme, 'quick', greeter('quick', 'hey'));
    expect((await run(acme, ['flows', 'start', id, '--wait'])).code).toBe(0);
    const result = await run(acme, ['flows', 'run', id, '--input-file', file('input.json', '{"who":"Grace"}')]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^\S+\n$/);
    const executionId = result.stdout.trim();
    let execution: any;
    for (let i = 0; i < 200 && !['succeeded', 'failed'].includes(execution?.status as string); i++) {
      await new Promise((r) => setTimeout(r, 50));
      execution = (await api(server.url, 'GET', `/api/v1/executions/${executionId}`, { token: acme.token })).body;
    }
    expect(execution).toMatchObject({ status: 'succeeded', output: { greeting: 'hey Grace' } });
  });

  it('run --wait of an execution that fails exits 1 with its error', async () => {
    const { id } = await applied(acme, 'boom', greeter('boom', 'x').replace(`'{"greeting": "x " & who}'`, `'$error("boom")'`));
    expect((await run(acme, ['flows', 'start', id, '--wait'])).code).toBe(0);
    const result = await run(acme, ['flows', 'run', id, '--wait']);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^status: +failed$/m);
    expect(result.stderr).toMatch(/^flowgate: execution \S+ failed: .*boom/m);
  });

  it("answers not found, exiting 1, for another tenant's flow or execution", async () => {
    const { id } = await applied(acme, 'private', greeter('private', 'hello'));
    for (const args of [
      ['flows', 'start', id],
      ['flows', 'run', id, '--input', '{}'],
    ]) {
      const result = await run(other, args);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^flowgate: .*FLOWGATE_ERR_RESOURCE_NOT_FOUND/);
    }
    expect(await statusOf(acme, id)).toBe('inactive');

    // An id from the other tenant in a file makes apply create the caller's own flow, not touch acme's.
    const apply = await run(other, ['flows', 'apply', '-f', file('theirs.yaml', greeter('private', 'stolen', id))]);
    expect(apply.code).toBe(0);
    expect(apply.stderr).toBe(`no flow ${id} in your tenant: creating a new one\n`);
    expect(apply.stdout).not.toContain(id);
    expect((await api(server.url, 'GET', `/api/v1/flows/${id}`, { token: acme.token })).body.version).toBe(1);

    expect((await run(acme, ['flows', 'start', id, '--wait'])).code).toBe(0);
    const execution = await api(server.url, 'POST', `/api/v1/flows/${id}/executions`, { token: acme.token, body: { input: { who: 'Ada' } } });
    expect(execution.status).toBe(201);
    const show = await run(other, ['executions', 'show', execution.body.id as string]);
    expect(show.code).toBe(1);
    expect(show.stderr).toContain('FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expect(show.stdout).toBe('');
  });
});
