/**
 * Access tokens of oauth2 secrets against a fake token endpoint on loopback: one refresh
 * however many callers (and instances) ask at once, refresh before expiry, refresh-token
 * rotation saved, failures explained without secrets, and the SSRF guard in the way.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ManualClock, MemoryAuditRecorder } from '../../src/kernel/index.js';
import { AddressPolicy, OutboundClient } from '../../src/outbound/index.js';
import { DataKeys, MasterKeyRing, OAuth2Tokens, SecretStore, secretsMigrations } from '../../src/secrets/index.js';
import { rejection } from '../support/bus.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

interface TokenRequest {
  readonly authorization: string | undefined;
  readonly form: URLSearchParams;
}

/** A token endpoint that answers what the test tells it to, slowly enough for callers to pile up. */
class FakeTokenEndpoint {
  readonly requests: TokenRequest[] = [];
  answer: (n: number) => { status: number; body: Record<string, unknown> } = (n) => ({ status: 200, body: { access_token: `token-${n}`, token_type: 'Bearer', expires_in: 3600 } });
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => {
        this.requests.push({ authorization: req.headers.authorization, form: new URLSearchParams(text) });
        const { status, body } = this.answer(this.requests.length);
        setTimeout(() => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body)), 50);
      });
    });
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/oauth/token`;
  }

  async stop(): Promise<void> {
    this.server?.close();
    if (this.server) await once(this.server, 'close');
  }
}

describe.each(STORE_KINDS)('oauth2 access tokens on %s', (kind) => {
  const endpoint = new FakeTokenEndpoint();
  let tokenUrl: string;
  let opened: TestStore;
  let dir: string;
  let clock: ManualClock;
  let secrets: SecretStore;
  let keys: DataKeys;
  let audit: MemoryAuditRecorder;
  const loopbackAllowed = new OutboundClient(new AddressPolicy(['127.0.0.1/32']));
  const tokensWith = (client: OutboundClient) => new OAuth2Tokens(opened.store, secrets, keys, client, clock, audit);

  beforeAll(async () => {
    tokenUrl = await endpoint.start();
  });
  afterAll(() => endpoint.stop());
  beforeEach(async () => {
    endpoint.requests.length = 0;
    opened = await openTestStore(kind, { migrate: false });
    await opened.store.migrate(secretsMigrations);
    dir = await mkdtemp(join(tmpdir(), 'flowgate-oauth2-'));
    clock = new ManualClock(Date.UTC(2026, 10, 23));
    keys = new DataKeys(opened.store, MasterKeyRing.load({ dataDir: dir }), clock);
    secrets = new SecretStore(opened.store, keys, clock);
    audit = new MemoryAuditRecorder();
    await secrets.create('acme', { name: 'crm', kind: 'oauth2', value: { tokenUrl, clientId: 'flowgate crm', clientSecret: 's3cret+/=', refreshToken: 'refresh-1' } });
  });
  afterEach(async () => {
    await opened.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('refreshes once for many callers at once, with the refresh token and the client credentials', async () => {
    const tokens = tokensWith(loopbackAllowed);
    const got = await Promise.all(Array.from({ length: 20 }, () => tokens.accessToken('acme', 'crm')));
    expect(new Set(got)).toEqual(new Set(['token-1']));
    expect(endpoint.requests).toHaveLength(1);
    const [request] = endpoint.requests;
    expect(Object.fromEntries(request!.form)).toEqual({ grant_type: 'refresh_token', refresh_token: 'refresh-1' });
    // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic.
    expect(request!.authorization).toBe(`Basic ${Buffer.from('flowgate+crm:s3cret%2B%2F%3D').toString('base64')}`);
    expect(audit.events.filter((e) => e.action === 'secrets.oauth2_refresh').map((e) => e.outcome)).toEqual(['success']);
  });

  it('refreshes once across two instances sharing the store', async () => {
    const [one, two] = [tokensWith(loopbackAllowed), tokensWith(loopbackAllowed)];
    const got = await Promise.all([...Array.from({ length: 5 }, () => one.accessToken('acme', 'crm')), ...Array.from({ length: 5 }, () => two.accessToken('acme', 'crm'))]);
    expect(new Set(got)).toEqual(new Set(['token-1']));
    expect(endpoint.requests).toHaveLength(1);
  });

  it('reuses a token until a minute before it expires, then refreshes it', async () => {
    const tokens = tokensWith(loopbackAllowed);
    expect(await tokens.accessToken('acme', 'crm')).toBe('token-1');
    clock.advance(3600_000 - 61_000);
    expect(await tokens.accessToken('acme', 'crm')).toBe('token-1');
    clock.advance(2_000);
    expect(await tokens.accessToken('acme', 'crm')).toBe('token-2');
    expect(endpoint.requests).toHaveLength(2);
  });

  it('keeps a refresh token the endpoint rotated, and uses it next time', async () => {
    endpoint.answer = (n) => ({ status: 200, body: { access_token: `token-${n}`, expires_in: 120, refresh_token: `refresh-${n + 1}` } });
    const tokens = tokensWith(loopbackAllowed);
    await tokens.accessToken('acme', 'crm');
    expect(await secrets.reveal('acme', 'crm')).toMatchObject({ refreshToken: 'refresh-2' });
    clock.advance(120_000);
    expect(await tokens.accessToken('acme', 'crm')).toBe('token-2');
    expect(endpoint.requests.map((r) => r.form.get('refresh_token'))).toEqual(['refresh-1', 'refresh-2']);
  });

  it('uses the client credentials grant without a refresh token', async () => {
    await secrets.create('acme', { name: 'machine', kind: 'oauth2', value: { tokenUrl, clientId: 'm', clientSecret: 'x', scope: 'read write' } });
    await tokensWith(loopbackAllowed).accessToken('acme', 'machine');
    expect(Object.fromEntries(endpoint.requests[0]!.form)).toEqual({ grant_type: 'client_credentials', scope: 'read write' });
  });

  it('explains a refused refresh without the secrets, and tries again on the next call', async () => {
    endpoint.answer = () => ({ status: 400, body: { error: 'invalid_grant' } });
    const tokens = tokensWith(loopbackAllowed);
    const error = await rejection(tokens.accessToken('acme', 'crm'));
    expect(error.code).toBe('FLOWGATE_ERR_OUTBOUND_FAILED');
    expect(error.message).toContain('invalid_grant');
    expect(error.message).not.toMatch(/s3cret|refresh-1/);
    endpoint.answer = (n) => ({ status: 200, body: { access_token: `token-${n}` } });
    expect(await tokens.accessToken('acme', 'crm')).toBe('token-2');
  });

  it('gives up on a token endpoint that answers a byte at a time for longer than the refresh may take', async () => {
    const trickle = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const timer = setInterval(() => res.write(' '), 100);
      res.on('close', () => clearInterval(timer));
    });
    trickle.listen(0, '127.0.0.1');
    await once(trickle, 'listening');
    try {
      await secrets.update('acme', 'crm', { value: { tokenUrl: `http://127.0.0.1:${(trickle.address() as AddressInfo).port}/token`, clientId: 'a', clientSecret: 'b' } });
      const tokens = new OAuth2Tokens(opened.store, secrets, keys, loopbackAllowed, clock, audit, 500);
      const error = await rejection(tokens.accessToken('acme', 'crm'));
      expect(error.code).toBe('FLOWGATE_ERR_OUTBOUND_FAILED');
      expect(error.message).toBe('The token endpoint of crm did not answer within 500 ms.');
    } finally {
      trickle.closeAllConnections();
      trickle.close();
    }
  });

  it('refuses token endpoints on loopback, private or metadata addresses unless allowed', async () => {
    const guarded = tokensWith(new OutboundClient(new AddressPolicy()));
    expect((await rejection(guarded.accessToken('acme', 'crm'))).code).toBe('FLOWGATE_ERR_OUTBOUND_REFUSED');
    for (const url of ['http://169.254.169.254/latest/meta-data', 'http://localhost:1/token', 'http://[::ffff:10.0.0.1]/token', 'file:///etc/passwd']) {
      await secrets.update('acme', 'crm', { value: { tokenUrl: url, clientId: 'a', clientSecret: 'b' } });
      expect((await rejection(guarded.accessToken('acme', 'crm'))).code).toBe('FLOWGATE_ERR_OUTBOUND_REFUSED');
    }
    expect(endpoint.requests).toHaveLength(0);
  });
});
