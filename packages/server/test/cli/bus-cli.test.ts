/**
 * `flowgate publish` and `flowgate tail`, run in-process through runCli against a real
 * server: what one publishes the other prints, by topic and by pattern.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { waitFor } from '../support/bus.js';
import { captureIo } from '../support/cli.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('flowgate publish and tail', () => {
  let server: TestServer;
  let acme: TenantOwner;
  let root: string;
  let n = 0;
  const topic = () => `cli.t${Date.now().toString(36)}${(n++).toString(36)}`;
  const run = (args: string[], stdin?: string) => {
    const captured = captureIo(root, stdin);
    const exit = runCli(['node', 'flowgate', ...args, '--url', server.url, '--token', acme.token], captured.io);
    return { ...captured, exit };
  };

  beforeAll(async () => {
    // fetch may leave a fresh, unused connection behind an aborted stream, and the server's
    // close waits out such connections for shutdownTimeoutMs: keep that wait short here.
    server = await startTestServer({ config: { server: { shutdownTimeoutMs: 500 } } });
    acme = await createTenant(server.url, 'cli-bus');
    root = mkdtempSync(join(tmpdir(), 'flowgate-bus-cli-'));
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('publishes from an argument and from standard input, then tails them back', async () => {
    const t = topic();
    const first = run(['publish', t, '{"n":1}', '--key', 'k1']);
    expect(await first.exit).toBe(0);
    const id = first.stdout().trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const second = run(['publish', t, '-', '--json'], '{"n":2}\n');
    expect(await second.exit).toBe(0);
    const envelope = JSON.parse(second.stdout());
    expect(envelope).toMatchObject({ headers: { name: t, tenant: 'cli-bus', serviceName: 'api' }, payload: { n: 2 } });

    const read = await api(server.url, 'GET', `/api/v1/topics/${t}/events`, { token: acme.token });
    expect(read.body.items.map((i: any) => i.event.id)).toEqual([id, envelope.id]);

    const tailed = run(['tail', t, '--from', '0', '--limit', '2']);
    expect(await tailed.exit).toBe(0);
    const lines = tailed.stdout().trim().split('\n');
    expect(lines).toEqual([`${read.body.items[0].seq} ${t} ${id} {"n":1}`, `${read.body.items[1].seq} ${t} ${envelope.id} {"n":2}`]);

    const json = run(['tail', t, '--from', '0', '--limit', '1', '--json']);
    expect(await json.exit).toBe(0);
    expect(JSON.parse(json.stdout())).toMatchObject({ id, headers: { key: 'k1' }, payload: { n: 1 } });
  });

  it('follows a glob live: prints what is published after it starts', async () => {
    const prefix = `cli${(n++).toString(36)}${Date.now().toString(36)}`;
    const tailing = run(['tail', `${prefix}.*`, '--limit', '2']);
    await waitFor('tail to connect', () => tailing.stderr().includes('Following'));
    expect(await run(['publish', `${prefix}.a`, '"one"']).exit).toBe(0);
    expect(await run(['publish', `${prefix}.a.deep`, '"not matched"']).exit).toBe(0);
    expect(await run(['publish', `${prefix}.b`, '"two"']).exit).toBe(0);
    expect(await tailing.exit).toBe(0);
    const lines = tailing.stdout().trim().split('\n');
    expect(lines.map((l) => l.split(' ').slice(1, 2).concat(l.split(' ').slice(3)).join(' '))).toEqual([`${prefix}.a "one"`, `${prefix}.b "two"`]);
  });

  it('stops cleanly on SIGINT', async () => {
    const tailing = run(['tail', topic()]);
    await waitFor('tail to connect', () => tailing.stderr().includes('Following'));
    // Only tail's own listener is asked: emit calls listeners, it sends no signal.
    const listeners = process.listeners('SIGINT');
    expect(listeners.length).toBeGreaterThan(0);
    listeners.at(-1)!('SIGINT');
    expect(await tailing.exit).toBe(0);
    expect(process.listeners('SIGINT')).toHaveLength(listeners.length - 1);
  });

  it('reports bad input and refusals as one line with an exit code', async () => {
    const bad = run(['publish', topic(), '{not json']);
    expect(await bad.exit).toBe(2);
    expect(bad.stderr()).toContain('not valid JSON');

    const invalid = run(['publish', 'Bad.Topic', '1']);
    expect(await invalid.exit).toBe(1);
    expect(invalid.stderr()).toContain('FLOWGATE_ERR_BUS_INVALID_TOPIC');

    const badTail = run(['tail', 'Bad.*', '--limit', '1']);
    expect(await badTail.exit).toBe(1);
    expect(badTail.stderr()).toContain('FLOWGATE_ERR_BUS_INVALID_TOPIC');

    expect(await run(['tail', topic(), '--limit', '0']).exit).toBe(2);
  });
});
