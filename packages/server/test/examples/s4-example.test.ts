/**
 * examples/s4-flows runs end to end against a real server: flows started and stopped by
 * events, a webhook and a cron flow, and the audit trail, as story S4 tells it.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, startTestServer, type TestServer } from '../support/server.js';

const RUN = fileURLToPath(new URL('../../../../examples/s4-flows/run.mjs', import.meta.url));

describe('examples/s4-flows', () => {
  let server: TestServer;

  beforeAll(async () => {
    // The polling flow calls the example's stock service on loopback, which the guard refuses by default.
    server = await startTestServer({ config: { flows: { pollMs: 50 }, outbound: { allow: '127.0.0.1/32' } } });
  });
  afterAll(async () => server.close());

  it('runs story S4: lifecycle events in order, webhook POST and GET, cron firings with an introspected token from a secret, audit verified', { timeout: 90_000 }, async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [RUN], {
      env: { ...process.env, FLOWGATE_URL: server.url, FLOWGATE_CLIENT_ID: ADMIN_CLIENT_ID, FLOWGATE_CLIENT_SECRET: ADMIN_CLIENT_SECRET },
      timeout: 80_000,
    });
    expect(stdout).not.toContain('FAILED');
    expect(stdout).toContain('events of the webhook flow: flow.starting(starting) → flow.started(active) → flow.stopping(stopping) → flow.stopped(inactive)');
    expect(stdout).toMatch(/first node got \{"a":"1"\}/);
    expect(stdout).toMatch(/stock\.polled \d+ times/);
    expect(stdout).toMatch(/the stock service introspected \d+ requests: active=true sub=\S+ scope=stock:read/);
    expect(stdout).toContain('the execution record holds no token');
    expect(stdout).toMatch(/secrets\.read by flow:\S+ \(http, node fetch\)/);
    expect(stdout.trim().split('\n').at(-1)).toBe('S4: done');
  });
});
