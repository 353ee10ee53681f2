/**
 * `flowgate apply -f gateway.yaml` against a real server: the diff it prints, a dry run
 * that changes nothing, and a broken file (YAML syntax, or a configuration the server
 * refuses) that names the problem and leaves the served configuration as it was.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { captureIo } from '../support/cli.js';
import { api } from '../support/http.js';
import { adminToken } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

describe('flowgate apply', () => {
  let server: TestServer;
  let upstream: FakeUpstream;
  let root: string;
  let token: string;

  const run = async (args: string[]) => {
    const captured = captureIo(root);
    const code = await runCli(['node', 'flowgate', ...args, '--url', server.url, '--token', token], captured.io);
    return { code, stdout: captured.stdout(), stderr: captured.stderr() };
  };
  const file = (name: string, text: string) => {
    writeFileSync(join(root, name), text);
    return name;
  };
  const config = (routePath: string, extra = '') => `services:
  - name: flow
    targets: [${upstream.url}]
routes:
  - name: forms
    service: flow
    paths: [${routePath}]
    policies:
      auth: { type: none }${extra}
`;

  beforeAll(async () => {
    server = await startTestServer();
    upstream = await startUpstream();
    token = await adminToken(server.url);
    root = mkdtempSync(join(tmpdir(), 'flowgate-gateway-cli-'));
  });
  afterAll(async () => {
    await server.close();
    await upstream.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('prints what a dry run would change and changes nothing, then applies it', async () => {
    const name = file('gateway.yaml', config('/forms/:id'));
    const dry = await run(['apply', '-f', name, '--dry-run']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe('+ service flow (create)\n+ route forms (create)\ndry run: 2 changes would be applied; nothing was changed\n');
    expect((await api(server.url, 'GET', '/forms/1')).status).toBe(404);

    const applied = await run(['apply', '-f', name]);
    expect(applied.code).toBe(0);
    expect(applied.stdout).toMatch(/applied 2 changes: the gateway serves revision \d+\n$/);
    expect((await api(server.url, 'GET', '/forms/1')).status).toBe(200);

    const again = await run(['apply', '-f', name]);
    expect(again.stdout).toMatch(/^no changes: the gateway already serves gateway\.yaml/);
  });

  it('names the line of a YAML error and applies nothing', async () => {
    const result = await run(['apply', '-f', file('broken.yaml', 'services:\n  - name: flow\n    targets: [http://x\n')]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/broken\.yaml is not valid YAML at line \d+, column \d+/);
  });

  it('lists every problem of a refused configuration and keeps serving the old one', async () => {
    const result = await run(['apply', '-f', file('bad.yaml', config('/api/forms', "\n      scopes: { required: ['not a scope'] }"))]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('bad.yaml is not a valid gateway configuration; nothing was applied');
    expect(result.stderr).toContain('routes[0].paths[0]: /api/forms is under /api, which is reserved for Flowgate itself');
    expect(result.stderr).toContain('routes[0].policies.scopes');
    expect((await api(server.url, 'GET', '/forms/1')).status).toBe(200);
  });
});
