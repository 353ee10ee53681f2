/**
 * examples/s1-gateway runs end to end against a real server: the example an operator
 * follows is the story the tests check, so it cannot rot.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, startTestServer, type TestServer } from '../support/server.js';

const RUN = fileURLToPath(new URL('../../../../examples/s1-gateway/run.mjs', import.meta.url));

describe('examples/s1-gateway', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => server.close());

  it('runs story S1: token, gateway, product B with its own token and the trace, refusals audited', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [RUN], {
      env: { ...process.env, FLOWGATE_URL: server.url, FLOWGATE_CLIENT_ID: ADMIN_CLIENT_ID, FLOWGATE_CLIENT_SECRET: ADMIN_CLIENT_SECRET, FLOW_PORT: '0' },
      timeout: 60_000,
    });
    expect(stdout).not.toContain('FAILED');
    expect(stdout).toMatch(/product B saw GET \/api\/forms\/42/);
    expect(stdout).toMatch(/with its own token: aud=flow-api/);
    expect(stdout).toMatch(/missing scope: 403 FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE/);
    expect(stdout).toMatch(/audit: gateway\.denied failure FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE/);
    expect(stdout.trim().split('\n').at(-1)).toBe('S1: done');
  });
});
