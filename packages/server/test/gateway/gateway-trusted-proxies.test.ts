/**
 * The client address behind trusted proxies (FLOWGATE_TRUSTED_PROXIES): taken from
 * X-Forwarded-For only when the TCP peer is a trusted proxy, walked from the right past
 * trusted addresses. What ip-deny, rate limits by address and the audit see, through the
 * real server; what the upstream receives is still the peer appended to the chain. The
 * walk itself over every shape of header, and the setting's validation at start.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { clientAddressBehind } from '../../src/gateway/client-address.js';
import { api } from '../support/http.js';
import { adminToken } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { startUpstream, type FakeUpstream } from '../support/upstream.js';

describe('the client address behind trusted proxies', () => {
  let upstream: FakeUpstream;
  beforeAll(async () => {
    upstream = await startUpstream();
  });
  afterAll(async () => upstream.close());
  beforeEach(() => {
    upstream.seen.length = 0;
  });

  /** Serves `/p/*` with these policies (auth none) on a server. */
  async function serve(server: TestServer, admin: string, policies: Record<string, unknown>): Promise<void> {
    const res = await api(server.url, 'PUT', '/api/v1/gateway/config', {
      token: admin,
      body: { services: [{ name: 'svc', targets: [upstream.url] }], routes: [{ name: 'r', service: 'svc', paths: ['/p/*'], policies: { auth: { type: 'none' }, ...policies } }] },
    });
    if (res.status !== 200) throw new Error(`gateway config refused: ${res.text}`);
  }
  const xff = (value: string) => ({ headers: { 'x-forwarded-for': value } });

  describe('with the peer (127.0.0.1) a trusted proxy', () => {
    let server: TestServer;
    let admin: string;
    beforeAll(async () => {
      server = await startTestServer({ config: { gateway: { trustedProxies: '127.0.0.1, 10.0.0.0/8' } } });
      admin = await adminToken(server.url);
    });
    afterAll(async () => server.close());

    it('refuses with ip-deny the address X-Forwarded-For names, past other trusted proxies, and audits that address', async () => {
      await serve(server, admin, { 'ip-deny': { cidrs: ['203.0.113.7'] } });
      expectProblem(await api(server.url, 'GET', '/p/a', xff('203.0.113.7')), 403, 'FLOWGATE_ERR_GATEWAY_IP_REFUSED');
      expectProblem(await api(server.url, 'GET', '/p/b', xff('203.0.113.7, 10.1.2.3')), 403, 'FLOWGATE_ERR_GATEWAY_IP_REFUSED');
      const denied = server.audit.events.filter((e) => e.action === 'gateway.denied');
      expect(denied.map((e) => e.details?.ip)).toEqual(['203.0.113.7']);
      expect(upstream.seen).toEqual([]);
    });

    it('believes only the address the trusted proxy received the request from, not what the client wrote left of it', async () => {
      await serve(server, admin, { 'ip-deny': { cidrs: ['203.0.113.7'] } });
      // The client claims to be 198.51.100.1; the proxy appended the client's real address.
      expectProblem(await api(server.url, 'GET', '/p/a', xff('198.51.100.1, 203.0.113.7')), 403, 'FLOWGATE_ERR_GATEWAY_IP_REFUSED');
      // The denied client claims to be someone else: the proxy still appended its address.
      const allowed = await api(server.url, 'GET', '/p/a', xff('203.0.113.7, 198.51.100.1'));
      expect(allowed.status).toBe(200);
      // The upstream gets the chain with the peer appended, as without trusted proxies.
      expect(upstream.seen.map((s) => s.headers['x-forwarded-for'])).toEqual(['203.0.113.7, 198.51.100.1, 127.0.0.1']);
      expect(upstream.seen[0]?.headers.forwarded).toBe(`for=127.0.0.1;proto=http;host="${new URL(server.url).host}"`);
    });

    it('passes on the protocol and host the trusted proxy says the client used', async () => {
      await serve(server, admin, {});
      // A TLS-terminating load balancer in front: the client used https and the public name.
      const res = await api(server.url, 'GET', '/p/a', { headers: { 'x-forwarded-for': '198.51.100.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example' } });
      expect(res.status).toBe(200);
      expect(upstream.seen[0]?.headers).toMatchObject({ 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example' });
      // Without them, this hop's own.
      await api(server.url, 'GET', '/p/b');
      expect(upstream.seen[1]?.headers).toMatchObject({ 'x-forwarded-proto': 'http', 'x-forwarded-host': new URL(server.url).host });
    });

    it('counts rate limits by that address', async () => {
      await serve(server, admin, { 'rate-limit': { limit: 1, windowSeconds: 3600, by: 'ip' } });
      expect((await api(server.url, 'GET', '/p/a', xff('198.51.100.1'))).status).toBe(200);
      expectProblem(await api(server.url, 'GET', '/p/a', xff('198.51.100.1')), 429, 'FLOWGATE_ERR_GATEWAY_RATE_LIMITED');
      expect((await api(server.url, 'GET', '/p/a', xff('198.51.100.2'))).status).toBe(200);
    });

    it('counts an IPv6 client by its /64, so it cannot take a fresh address for each request', async () => {
      await serve(server, admin, { 'rate-limit': { limit: 1, windowSeconds: 3600, by: 'ip' } });
      expect((await api(server.url, 'GET', '/p/a', xff('2001:db8:0:1::1'))).status).toBe(200);
      expectProblem(await api(server.url, 'GET', '/p/a', xff('2001:db8:0:1::2')), 429, 'FLOWGATE_ERR_GATEWAY_RATE_LIMITED');
      expect((await api(server.url, 'GET', '/p/a', xff('2001:db8:0:2::1'))).status).toBe(200);
    });
  });

  describe('with no trusted proxy (the default)', () => {
    let server: TestServer;
    let admin: string;
    beforeAll(async () => {
      server = await startTestServer();
      admin = await adminToken(server.url);
    });
    afterAll(async () => server.close());

    it('takes the TCP peer as the client: a spoofed X-Forwarded-For changes no decision', async () => {
      await serve(server, admin, { 'ip-deny': { cidrs: ['203.0.113.7'] } });
      expect((await api(server.url, 'GET', '/p/a', xff('203.0.113.7'))).status).toBe(200);
      await serve(server, admin, { 'ip-deny': { cidrs: ['127.0.0.1'] } });
      expectProblem(await api(server.url, 'GET', '/p/a', xff('198.51.100.1')), 403, 'FLOWGATE_ERR_GATEWAY_IP_REFUSED');
      const denied = server.audit.events.filter((e) => e.action === 'gateway.denied');
      expect(denied.map((e) => e.details?.ip)).toEqual(['127.0.0.1']);
      expect(upstream.seen.map((s) => s.headers['x-forwarded-for'])).toEqual(['203.0.113.7, 127.0.0.1']);
    });

    it("replaces a caller's X-Forwarded-Proto and X-Forwarded-Host with what it used", async () => {
      await serve(server, admin, {});
      await api(server.url, 'GET', '/p/a', { headers: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'spoofed.example' } });
      expect(upstream.seen[0]?.headers).toMatchObject({ 'x-forwarded-proto': 'http', 'x-forwarded-host': new URL(server.url).host });
    });
  });
});

describe('clientAddressBehind', () => {
  const behind = clientAddressBehind('10.0.0.0/8, 192.0.2.1, fd00::/8')!;
  const cases: Array<[string, string, string | string[] | undefined, string]> = [
    ['an untrusted peer, whatever it sends', '203.0.113.9', '198.51.100.1', '203.0.113.9'],
    ['a trusted peer without the header', '10.0.0.1', undefined, '10.0.0.1'],
    ['a trusted peer with an empty header', '10.0.0.1', '', '10.0.0.1'],
    ['one hop', '10.0.0.1', '198.51.100.1', '198.51.100.1'],
    ['the rightmost untrusted entry', '10.0.0.1', '1.1.1.1, 198.51.100.1, 10.0.0.2', '198.51.100.1'],
    ['every entry trusted: the leftmost', '10.0.0.1', '10.0.0.3, 192.0.2.1', '10.0.0.3'],
    ['entries without spaces', '10.0.0.1', '198.51.100.1,10.0.0.2', '198.51.100.1'],
    ['repeated fields, as an array', '10.0.0.1', ['1.1.1.1', '198.51.100.1'], '198.51.100.1'],
    ['an IPv4 entry with a port', '10.0.0.1', '198.51.100.1:4711', '198.51.100.1'],
    ['an IPv6 entry', '10.0.0.1', '2001:db8::1', '2001:db8::1'],
    ['a bracketed IPv6 entry with a port', '10.0.0.1', '[2001:db8::1]:4711', '2001:db8::1'],
    ['an IPv4-mapped IPv6 peer', '::ffff:10.0.0.1', '198.51.100.1', '198.51.100.1'],
    ['an IPv6 trusted peer', 'fd00::1', '198.51.100.1', '198.51.100.1'],
    ['a malformed entry: the last address vouched for', '10.0.0.1', '198.51.100.1, unknown, 10.0.0.2', '10.0.0.2'],
    ['a malformed entry next to the peer: the peer', '10.0.0.1', '198.51.100.1, not-an-ip', '10.0.0.1'],
    ['an empty entry', '10.0.0.1', '198.51.100.1, ', '10.0.0.1'],
  ];
  it.each(cases)('%s', (_name, peer, header, client) => {
    expect(behind(peer, header)).toBe(client);
  });

  it('is undefined when no proxy is trusted: the client is the peer, nothing to compute', () => {
    expect(clientAddressBehind('')).toBeUndefined();
    expect(clientAddressBehind(' , ')).toBeUndefined();
  });

  it('refuses an entry that is not an address or network, naming the setting', () => {
    expect(() => clientAddressBehind('10.0.0.0/8, nope')).toThrow(/^FLOWGATE_TRUSTED_PROXIES \(gateway.trustedProxies\): "nope" is not an IP address/);
  });
});

describe('FLOWGATE_TRUSTED_PROXIES at start', () => {
  const load = (value: string) => () => loadConfig({ env: { FLOWGATE_TRUSTED_PROXIES: value }, cwd: '/nonexistent' });

  it('takes addresses and networks of both families', () => {
    expect(load(' 10.0.0.0/8, 192.0.2.1 ,fd00::/8,::1 ')().gateway.trustedProxies).toBe(' 10.0.0.0/8, 192.0.2.1 ,fd00::/8,::1 ');
    expect(load('')().gateway.trustedProxies).toBe('');
  });

  it.each(['10.0.0.0/33', 'fd00::/129', 'proxy.internal', '10.0.0.0/', '10.0.0.0/8/8', '10.0.0.0/-1', '300.1.1.1'])('refuses %s, naming the variable', (value) => {
    expect(load(`192.0.2.1, ${value}`)).toThrow(ConfigError);
    expect(load(`192.0.2.1, ${value}`)).toThrow(`FLOWGATE_TRUSTED_PROXIES: ${JSON.stringify(value)} is not an IP address or network (CIDR)`);
  });
});
