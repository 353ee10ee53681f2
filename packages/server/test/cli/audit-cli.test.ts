/**
 * `flowgate audit verify` and `flowgate audit export` against a real server: what an
 * operator sees when the chain is intact, and when a record was changed behind its back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../../src/audit/index.js';
import { runCli } from '../../src/cli/program.js';
import { waitFor } from '../support/bus.js';
import { captureIo } from '../support/cli.js';
import { api } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('flowgate audit', () => {
  let server: TestServer;
  let acme: TenantOwner;
  let root: string;

  const run = async (args: string[]) => {
    const captured = captureIo(root);
    const code = await runCli(['node', 'flowgate', ...args, '--url', server.url, '--token', acme.token], captured.io);
    return { code, stdout: captured.stdout(), stderr: captured.stderr() };
  };
  const records = () => server.flowgate.store.db<AuditTables>().selectFrom('audit_records').selectAll().where('tenant_id', '=', acme.tenant).orderBy('seq').execute();

  beforeAll(async () => {
    server = await startTestServer();
    acme = await createTenant(server.url, 'cli-audit');
    root = mkdtempSync(join(tmpdir(), 'flowgate-audit-cli-'));
    for (const name of ['one', 'two', 'three']) await api(server.url, 'POST', '/api/v1/secrets', { token: acme.token, body: { name, value: 'v' } });
    await waitFor('three audit records', async () => (await records()).filter((r) => r.action === 'secrets.created').length === 3);
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('exports the records as JSON Lines, oldest first, filtered by action', async () => {
    const result = await run(['audit', 'export', '--action', 'secrets.*']);
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { action: string; target: string });
    expect(lines.map((l) => l.target)).toEqual(['secret:one', 'secret:two', 'secret:three']);
  });

  it('says the chain is intact, and names the record once one was edited (exit 1)', async () => {
    const intact = await run(['audit', 'verify']);
    expect(intact.code).toBe(0);
    expect(intact.stdout).toMatch(/^audit chain intact: \d+ records/);

    const victim = (await records()).find((r) => r.action === 'secrets.created')!;
    await server.flowgate.store
      .db<AuditTables>()
      .updateTable('audit_records')
      .set({ body: victim.body.replace('secret:', 'secret:x') })
      .where('tenant_id', '=', acme.tenant)
      .where('seq', '=', victim.seq)
      .execute();
    const broken = await run(['audit', 'verify']);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain(`audit chain BROKEN at record ${victim.seq} (event ${victim.event_id}): changed`);
    expect(broken.stderr).toContain('the audit log was changed behind its back');
  });
});
