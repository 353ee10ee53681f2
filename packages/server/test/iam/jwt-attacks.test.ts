/**
 * Forged, altered and misused bearer tokens. Each one is refused on the API with a 401
 * problem document and an RFC 6750 `invalid_token` challenge, and is inactive at the
 * introspection endpoint. Tokens "signed by the server" here are minted with the server's
 * own private key, read from its store, so that only the one claim under test is wrong.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { ManualClock } from '../../src/kernel/index.js';
import { startTestServer, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, type TestServer } from '../support/server.js';
import { api, clientToken, postForm } from '../support/http.js';
import { createTenant, createUser, loginUser, type TenantOwner } from '../support/iam.js';
import { expectInvalidToken, expectProblem } from '../support/problem.js';

const b64url = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

describe('bearer token attacks on the API', () => {
  const clock = new ManualClock();
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;
  let serverKid: string;
  let serverKey: CryptoKey;
  let attacker: { key: CryptoKey; publicJwk: JWK; kid: string };
  /** A small server the attacker controls; counts every request it gets. */
  let evil: Server;
  let evilUrl: string;
  let evilHits = 0;

  beforeAll(async () => {
    server = await startTestServer({ clock });
    base = server.url;
    acme = await createTenant(base, 'acme');

    // The attacks below forge tokens with the server's own key, taken from its IAM (the
    // database holds the private half sealed only).
    ({ kid: serverKid, key: serverKey } = await server.flowgate.iam.keys.activeKey());

    const pair = await generateKeyPair('ES256', { extractable: true });
    const publicJwk = await exportJWK(pair.publicKey);
    const kid = await calculateJwkThumbprint(publicJwk);
    attacker = { key: pair.privateKey, publicJwk: { ...publicJwk, kid, alg: 'ES256', use: 'sig' }, kid };

    evil = createServer((_req, res) => {
      evilHits += 1;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [attacker.publicJwk] }));
    });
    await new Promise<void>((resolve) => evil.listen(0, '127.0.0.1', resolve));
    evilUrl = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => evil.close(() => resolve()));
    await server.close();
  });

  const nowSeconds = () => Math.floor(clock.now() / 1000);

  /** Claims of a token the server would issue to its platform administrator. */
  const goodClaims = (): Record<string, unknown> => ({
    iss: base,
    aud: 'flowgate',
    sub: 'forged-subject',
    tenant: 'default',
    jti: randomUUID(),
    scope: '*:* platform:admin',
    client_id: ADMIN_CLIENT_ID,
    principal: 'service_account',
    iat: nowSeconds(),
    exp: nowSeconds() + 600,
  });

  /** Signs claims with ES256; by default with the server's own key, kid and `typ: at+jwt`. */
  const sign = (claims: Record<string, unknown>, header: Record<string, unknown> = {}, key: CryptoKey = serverKey) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: serverKid, typ: 'at+jwt', ...header }).sign(key);

  const me = (token: string) => api(base, 'GET', '/api/v1/me', { token });

  const introspect = (token: string) => postForm(base, '/oauth/introspect', { token }, { basic: [ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET] });

  /** The token is refused on the API (401, invalid_token) and inactive at introspection, even for the platform admin. */
  async function expectRefused(token: string, code: Parameters<typeof expectInvalidToken>[1] = 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', detail?: RegExp) {
    const res = await me(token);
    expectInvalidToken(res, code);
    if (detail) expect(res.body.detail).toMatch(detail);
    const inspected = await introspect(token);
    expect(inspected.status).toBe(200);
    expect(inspected.body).toEqual({ active: false });
    return res;
  }

  it('keeps the private signing key sealed in the database, never in the clear', async () => {
    const rows = await server.flowgate.store.db<any>().selectFrom('signing_keys').selectAll().execute();
    const active = rows.find((r: any) => r.kid === serverKid)!;
    expect(active.private_jwk).toMatch(/^sealed:dk_/);
    expect(active.private_jwk).not.toContain('"d"');
  });

  it('accepts a token minted here with the server key and the right claims (the control for every forgery below)', async () => {
    const res = await me(await sign(goodClaims()));
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ sub: 'forged-subject', tenant: 'default' });
    const inspected = await introspect(await sign(goodClaims()));
    expect(inspected.body.active).toBe(true);
  });

  describe('signature and algorithm', () => {
    it('refuses an unsigned token (alg "none")', async () => {
      const token = `${b64url({ alg: 'none', typ: 'at+jwt', kid: serverKid })}.${b64url(goodClaims())}.`;
      await expectRefused(token);
      const withBogusSignature = `${b64url({ alg: 'none', typ: 'at+jwt' })}.${b64url(goodClaims())}.${b64url('x')}`;
      await expectRefused(withBogusSignature);
    });

    it('refuses an HS256 token keyed with the server public key (algorithm confusion)', async () => {
      const jwks = (await api(base, 'GET', '/oauth/jwks')).text;
      const published = JSON.parse(jwks).keys.find((k: JWK) => k.kid === serverKid) as JWK;
      const secrets = [jwks, JSON.stringify(published), published.x!, Buffer.from(published.x!, 'base64url').toString('binary')];
      for (const secret of secrets) {
        const signingInput = `${b64url({ alg: 'HS256', typ: 'at+jwt', kid: serverKid })}.${b64url(goodClaims())}`;
        const mac = createHmac('sha256', secret).update(signingInput).digest('base64url');
        await expectRefused(`${signingInput}.${mac}`, 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /ES256/);
      }
    });

    it('refuses a token signed with another key under the server kid, a random kid or no kid', async () => {
      await expectRefused(await sign(goodClaims(), { kid: serverKid }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /signature/);
      await expectRefused(await sign(goodClaims(), { kid: attacker.kid }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /key this server does not know/);
      await expectRefused(await sign(goodClaims(), { kid: randomUUID() }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /key this server does not know/);
      await expectRefused(await sign(goodClaims(), { kid: undefined }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /names no signing key/);
    });

    it('refuses a valid token whose payload was altered, keeping the signature', async () => {
      const narrow = await clientToken(base, acme.clientId, acme.clientSecret, 'users:read');
      expect((await me(narrow)).status).toBe(200);
      const [header, payload, signature] = narrow.split('.') as [string, string, string];
      const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
      for (const change of [{ scope: 'users:write' }, { scope: '*:* platform:admin' }, { tenant: 'default' }, { exp: (claims.exp as number) + 3600 }]) {
        const tampered = `${header}.${b64url({ ...claims, ...change })}.${signature}`;
        await expectRefused(tampered, 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /signature/);
      }
    });
  });

  describe('header parameters that name key material', () => {
    it('refuses a jku header pointing at an attacker server, and never fetches it', async () => {
      const before = evilHits;
      await expectRefused(await sign(goodClaims(), { kid: attacker.kid, jku: `${evilUrl}/jwks.json` }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /"jku"/);
      // Even with the server's own kid and key, a jku is reason enough to refuse.
      await expectRefused(await sign(goodClaims(), { jku: `${evilUrl}/jwks.json` }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /"jku"/);
      expect(evilHits).toBe(before);
    });

    it('refuses an x5u header and never fetches it', async () => {
      const before = evilHits;
      await expectRefused(await sign(goodClaims(), { kid: attacker.kid, x5u: `${evilUrl}/cert.pem` }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /"x5u"/);
      expect(evilHits).toBe(before);
    });

    it('refuses a key embedded in the header (jwk) and a certificate chain (x5c)', async () => {
      const { kid: _kid, use: _use, ...embedded } = attacker.publicJwk;
      await expectRefused(await sign(goodClaims(), { kid: attacker.kid, jwk: embedded }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /"jwk"/);
      await expectRefused(await sign(goodClaims(), { jwk: embedded }, attacker.key), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /"jwk"/);
      await expectRefused(await sign(goodClaims(), { x5c: [Buffer.from('not a certificate').toString('base64')] }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /"x5c"/);
    });
  });

  describe('time', () => {
    it('accepts a real token up to exp plus the clock tolerance, then refuses it as expired', async () => {
      const start = clock.now();
      try {
        const token = await clientToken(base, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET);
        const { exp } = decodeJwt(token);
        expect((await me(token)).status).toBe(200);
        // Tolerance is 5 s: one second before it runs out the token still works.
        clock.set((exp! + 4) * 1000);
        expect((await me(token)).status).toBe(200);
        clock.set((exp! + 5) * 1000);
        await expectRefused(token, 'FLOWGATE_ERR_AUTH_TOKEN_EXPIRED');
        clock.advance(3600_000);
        await expectRefused(token, 'FLOWGATE_ERR_AUTH_TOKEN_EXPIRED');
      } finally {
        clock.set(start);
      }
    });

    it('refuses a token that is not valid yet (nbf in the future)', async () => {
      await expectRefused(await sign({ ...goodClaims(), nbf: nowSeconds() + 60 }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /not valid yet/);
    });

    it('refuses a token issued in the future (iat beyond the tolerance)', async () => {
      await expectRefused(await sign({ ...goodClaims(), iat: nowSeconds() + 60 }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /issued in the future/);
    });

    it('refuses a token without exp or iat', async () => {
      await expectRefused(await sign({ ...goodClaims(), exp: undefined }));
      await expectRefused(await sign({ ...goodClaims(), iat: undefined }));
    });
  });

  describe('claims', () => {
    it('refuses a token of another issuer, even signed with the server key', async () => {
      await expectRefused(await sign({ ...goodClaims(), iss: 'https://evil.example' }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /issuer/);
      await expectRefused(await sign({ ...goodClaims(), iss: `${base}/` }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /issuer/);
      await expectRefused(await sign({ ...goodClaims(), iss: undefined }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /issuer/);
    });

    it('refuses a token meant for another audience', async () => {
      await expectRefused(await sign({ ...goodClaims(), aud: 'another-api' }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /audience/);
      await expectRefused(await sign({ ...goodClaims(), aud: undefined }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /audience/);
    });

    it('refuses a token that is not typed at+jwt', async () => {
      await expectRefused(await sign(goodClaims(), { typ: 'JWT' }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /at\+jwt/);
      await expectRefused(await sign(goodClaims(), { typ: undefined }), 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /at\+jwt/);
    });

    it('refuses the ID token and the refresh token of a real login as access tokens', async () => {
      const user = await createUser(base, acme, 'ida', 'member');
      const tokens = await loginUser(base, 'acme', user, 'openid');
      expect((await me(tokens.access_token as string)).status).toBe(200);
      await expectRefused(tokens.id_token as string);
      const refresh = await me(tokens.refresh_token as string);
      expectInvalidToken(refresh);
    });

    it('refuses a token without a tenant, sub or jti', async () => {
      await expectRefused(await sign({ ...goodClaims(), tenant: undefined }));
      await expectRefused(await sign({ ...goodClaims(), sub: undefined }));
      await expectRefused(await sign({ ...goodClaims(), jti: undefined }));
    });

    it('refuses a token larger than 8 KiB, while a large one under the limit passes', async () => {
      const under = await sign({ ...goodClaims(), pad: 'x'.repeat(5000) });
      expect(under.length).toBeLessThan(8192);
      expect((await me(under)).status).toBe(200);
      const over = await sign({ ...goodClaims(), pad: 'x'.repeat(7000) });
      expect(over.length).toBeGreaterThan(8192);
      await expectRefused(over, 'FLOWGATE_ERR_AUTH_TOKEN_INVALID', /larger than 8192 bytes/);
    });
  });

  describe('the Authorization header', () => {
    it('asks for a token when there is none, with a bare Bearer challenge', async () => {
      const res = await api(base, 'GET', '/api/v1/me');
      expectProblem(res, 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="flowgate"');
    });

    it('refuses malformed Bearer headers and other schemes on API routes', async () => {
      const valid = await clientToken(base, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET);
      const basic = `Basic ${Buffer.from(`${ADMIN_CLIENT_ID}:${ADMIN_CLIENT_SECRET}`).toString('base64')}`;
      const headers = [
        'Bearer',
        'Bearer a b c',
        'Bearer tok@n!',
        `Bearer ${valid} ${valid}`,
        `Bearer ${valid}, Bearer ${valid}`,
        `Token ${valid}`,
        basic,
        'garbage',
      ];
      for (const authorization of headers) {
        const res = await api(base, 'GET', '/api/v1/me', { headers: { authorization } });
        expectProblem(res, 401, ['FLOWGATE_ERR_AUTH_TOKEN_MISSING', 'FLOWGATE_ERR_AUTH_TOKEN_INVALID']);
        expect({ authorization, challenge: res.headers.get('www-authenticate') }).toMatchObject({ challenge: expect.stringMatching(/^Bearer realm="flowgate"/) });
      }
      // The control: the same token, well formed, works.
      expect((await api(base, 'GET', '/api/v1/me', { headers: { authorization: `Bearer ${valid}` } })).status).toBe(200);
    });

    it('refuses garbage that is not a JWT at all', async () => {
      await expectRefused('not-a-jwt');
      await expectRefused('a.b.c');
      await expectRefused(`${b64url({ alg: 'ES256' })}.${b64url('not json')}.${b64url('sig')}`);
    });
  });
});
