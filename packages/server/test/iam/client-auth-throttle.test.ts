/**
 * Guessing is slowed down: wrong client secrets and wrong passwords are counted per
 * client id / per tenant and username; past the limit (5 by default) the key is locked,
 * even for the right secret, with 429 and Retry-After. Every failure is audited. Time is
 * a ManualClock, so the lock runs out without the test sleeping.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/kernel/clock.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { api, clientToken, postForm, type JsonResponse } from '../support/http.js';
import { createTenant, createUser, pkce, submitLogin, submitLoginAt, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';

const MAX_FAILURES = 5;
const LOCK_SECONDS = 60;
const REDIRECT = 'http://127.0.0.1:40000/callback';

describe('throttling of client secret and password guessing', () => {
  const clock = new ManualClock();
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer({ clock });
    base = server.url;
    acme = await createTenant(base, 'acme');
  });
  afterAll(async () => server.close());

  /** A fresh service account to guess at, so tests do not share a throttle key. */
  async function newAccount(name: string): Promise<{ id: string; client_id: string; client_secret: string }> {
    const owner = await clientToken(base, acme.clientId, acme.clientSecret);
    const res = await api(base, 'POST', '/api/v1/service-accounts', { token: owner, body: { name, scopes: ['forms:read'] } });
    expect(res.status).toBe(201);
    return res.body;
  }

  const tokenWith = (id: string, secret: string) => postForm(base, '/oauth/token', { grant_type: 'client_credentials' }, { basic: [id, secret] });

  const eventsFor = (action: string, actor: string) => server.audit.events.filter((e) => e.action === action && e.actor === actor);

  function expectInvalidClient(res: JsonResponse): void {
    expectProblem(res, 401, 'FLOWGATE_ERR_OAUTH_INVALID_CLIENT');
    expect(res.body.error).toBe('invalid_client');
    expect(res.headers.get('www-authenticate')).toBe('Basic realm="flowgate"');
  }

  function expectThrottled(res: JsonResponse, retryAfter: number): void {
    expectProblem(res, 429, 'FLOWGATE_ERR_AUTH_THROTTLED');
    expect(res.headers.get('retry-after')).toBe(String(retryAfter));
  }

  describe('client secrets', () => {
    it('locks a client after 5 wrong secrets, refusing even the right one with 429 and Retry-After', async () => {
      const target = await newAccount('guessed');
      for (let i = 1; i <= MAX_FAILURES; i++) {
        expectInvalidClient(await tokenWith(target.client_id, `fgs_wrong-guess-${i}`));
      }
      const right = await tokenWith(target.client_id, target.client_secret);
      expectThrottled(right, LOCK_SECONDS);
      expect(right.body.access_token).toBeUndefined();
      // The lock covers every endpoint that authenticates clients, and client_secret_post too.
      expectThrottled(await postForm(base, '/oauth/token', { grant_type: 'client_credentials', client_id: target.client_id, client_secret: target.client_secret }), LOCK_SECONDS);
      expectThrottled(await postForm(base, '/oauth/introspect', { token: 'x' }, { basic: [target.client_id, target.client_secret] }), LOCK_SECONDS);
      expectThrottled(await postForm(base, '/oauth/revoke', { token: 'x' }, { basic: [target.client_id, target.client_secret] }), LOCK_SECONDS);
    });

    it('audits every failure as iam.client_auth.failed, and each refusal while locked', async () => {
      const target = await newAccount('audited');
      for (let i = 1; i <= MAX_FAILURES; i++) await tokenWith(target.client_id, `fgs_wrong-${i}`);
      await tokenWith(target.client_id, target.client_secret);

      const failed = eventsFor('iam.client_auth.failed', target.client_id);
      expect(failed).toHaveLength(MAX_FAILURES);
      for (const [i, event] of failed.entries()) {
        expect(event).toMatchObject({ tenant: 'acme', outcome: 'failure', details: { reason: 'wrong_secret' } });
        expect(event.traceId).toMatch(/^[0-9a-f]{32}$/);
        expect(event.details!.locked_seconds).toBe(i === MAX_FAILURES - 1 ? LOCK_SECONDS : 0);
      }
      expect(new Set(failed.map((e) => e.traceId)).size).toBe(MAX_FAILURES);
      expect(eventsFor('iam.client_auth.throttled', target.client_id)).toHaveLength(1);
      // The wrong secrets themselves are not in the audit trail.
      expect(JSON.stringify(server.audit.events)).not.toContain('fgs_wrong-');
    });

    it('lets the right secret in once the lock runs out, counting Retry-After down meanwhile', async () => {
      const target = await newAccount('waits');
      for (let i = 1; i <= MAX_FAILURES; i++) await tokenWith(target.client_id, `fgs_wrong-${i}`);
      expectThrottled(await tokenWith(target.client_id, target.client_secret), LOCK_SECONDS);
      clock.advance(45_000);
      expectThrottled(await tokenWith(target.client_id, target.client_secret), 15);
      clock.advance(14_500);
      expectThrottled(await tokenWith(target.client_id, target.client_secret), 1);
      clock.advance(500);
      const res = await tokenWith(target.client_id, target.client_secret);
      expect(res.status).toBe(200);
      expect(res.body.access_token).toEqual(expect.any(String));
      // A success forgets the failures: one more wrong secret does not lock again.
      expectInvalidClient(await tokenWith(target.client_id, 'fgs_wrong-again'));
      expect((await tokenWith(target.client_id, target.client_secret)).status).toBe(200);
    });

    it('doubles the lock for each further failure after a lock', async () => {
      const target = await newAccount('doubles');
      for (let i = 1; i <= MAX_FAILURES; i++) await tokenWith(target.client_id, `fgs_wrong-${i}`);
      clock.advance(LOCK_SECONDS * 1000);
      expectInvalidClient(await tokenWith(target.client_id, 'fgs_wrong-6'));
      expectThrottled(await tokenWith(target.client_id, target.client_secret), 2 * LOCK_SECONDS);
      const last = eventsFor('iam.client_auth.failed', target.client_id).at(-1)!;
      expect(last.details!.locked_seconds).toBe(2 * LOCK_SECONDS);
      clock.advance(2 * LOCK_SECONDS * 1000);
      expect((await tokenWith(target.client_id, target.client_secret)).status).toBe(200);
    });

    it('locks only the guessed client: others keep working', async () => {
      const target = await newAccount('locked-alone');
      const bystander = await newAccount('bystander');
      for (let i = 1; i <= MAX_FAILURES; i++) await tokenWith(target.client_id, `fgs_wrong-${i}`);
      expectThrottled(await tokenWith(target.client_id, target.client_secret), LOCK_SECONDS);
      expect((await tokenWith(bystander.client_id, bystander.client_secret)).status).toBe(200);
      clock.advance(LOCK_SECONDS * 1000);
    });

    it('refuses unknown client ids with 401 invalid_client and a Basic challenge, the same answer as a wrong secret', async () => {
      const known = await newAccount('known');
      const unknownId = 'fgc_does-not-exist';
      const unknown = await tokenWith(unknownId, 'fgs_anything-at-all');
      const wrong = await tokenWith(known.client_id, 'fgs_anything-at-all');
      expectInvalidClient(unknown);
      expectInvalidClient(wrong);
      expect(unknown.body.detail).toBe(wrong.body.detail);
      expectInvalidClient(await postForm(base, '/oauth/token', { grant_type: 'client_credentials', client_id: unknownId, client_secret: 'fgs_x' }));
      expectInvalidClient(await postForm(base, '/oauth/introspect', { token: 'x' }, { basic: [unknownId, 'fgs_x'] }));
      const events = eventsFor('iam.client_auth.failed', unknownId);
      expect(events.length).toBeGreaterThanOrEqual(3);
      expect(events[0]).toMatchObject({ tenant: null, details: { reason: 'unknown_client' } });
    });

    it('throttles unknown client ids too, so locking does not reveal which ids exist', async () => {
      const unknownId = 'fgc_never-existed';
      for (let i = 1; i <= MAX_FAILURES; i++) expectInvalidClient(await tokenWith(unknownId, `fgs_wrong-${i}`));
      expectThrottled(await tokenWith(unknownId, 'fgs_wrong-6'), LOCK_SECONDS);
      clock.advance(LOCK_SECONDS * 1000);
    });

    it('refuses requests with no client authentication or malformed Basic credentials with 401 invalid_client', async () => {
      expectInvalidClient(await postForm(base, '/oauth/token', { grant_type: 'client_credentials' }));
      expectInvalidClient(await postForm(base, '/oauth/token', { grant_type: 'client_credentials' }, { headers: { authorization: 'Basic !!!' } }));
      expectInvalidClient(await postForm(base, '/oauth/token', { grant_type: 'client_credentials' }, { headers: { authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` } }));
    });
  });

  describe('login passwords', () => {
    const wrongLogin = (username: string, password: string) =>
      submitLogin(base, { tenant: 'acme', username, password, redirectUri: REDIRECT, challenge: pkce().challenge });

    it('locks a user after 5 wrong passwords, refusing even the right one with 429, then lets them in once the lock runs out', async () => {
      const lou = await createUser(base, acme, 'lou', 'member');
      for (let i = 1; i <= MAX_FAILURES; i++) {
        const res = await wrongLogin('lou', `wrong password ${i}`);
        expect(res.status).toBe(401);
        expect(res.location).toBeNull();
      }
      const right = await wrongLogin('lou', lou.password);
      expect(right.status).toBe(429);
      expect(right.location).toBeNull();
      expect(right.body).toContain('Too many failed logins');

      const failed = server.audit.events.filter((e) => e.action === 'iam.login.failed' && e.actor === 'lou');
      expect(failed).toHaveLength(MAX_FAILURES);
      for (const event of failed) expect(event).toMatchObject({ tenant: 'acme', outcome: 'failure', details: { reason: 'wrong_password' } });
      expect(server.audit.events.filter((e) => e.action === 'iam.login.throttled' && e.actor === 'lou')).toHaveLength(1);

      clock.advance(LOCK_SECONDS * 1000);
      const after = await wrongLogin('lou', lou.password);
      expect(after.status).toBe(302);
      expect(new URL(after.location!).searchParams.get('code')).toEqual(expect.any(String));
    });

    it('answers a non-browser login while locked with a 429 problem document and Retry-After', async () => {
      const max = await createUser(base, acme, 'max', 'member');
      for (let i = 1; i <= MAX_FAILURES; i++) await wrongLogin('max', `wrong password ${i}`);
      // Open the form as a browser would, then submit it asking for JSON.
      const query = new URLSearchParams({
        response_type: 'code',
        client_id: 'flowgate-cli',
        redirect_uri: REDIRECT,
        code_challenge: pkce().challenge,
        code_challenge_method: 'S256',
        scope: 'openid',
        state: 's',
      });
      const page = await fetch(`${base}/oauth/authorize?${query.toString()}`, { headers: { accept: 'text/html' } });
      const html = await page.text();
      const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0]!;
      const fields: Record<string, string> = {};
      for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields[m[1]!] = m[2]!;
      const res = await postForm(base, '/oauth/authorize', { ...fields, tenant: 'acme', username: 'max', password: max.password }, { headers: { cookie, accept: 'application/json' } });
      expectProblem(res, 429, 'FLOWGATE_ERR_AUTH_THROTTLED');
      expect(Number(res.headers.get('retry-after'))).toBe(LOCK_SECONDS);
      clock.advance(LOCK_SECONDS * 1000);
      const later = await submitLoginAt(base, `${base}/oauth/authorize?${query.toString()}`, { tenant: 'acme', username: 'max', password: max.password });
      expect(later.status).toBe(302);
    });

    it('throttles guesses at unknown usernames the same way', async () => {
      for (let i = 1; i <= MAX_FAILURES; i++) expect((await wrongLogin('ghost', `wrong password ${i}`)).status).toBe(401);
      expect((await wrongLogin('ghost', 'whatever password')).status).toBe(429);
      const failed = server.audit.events.filter((e) => e.action === 'iam.login.failed' && e.actor === 'ghost');
      expect(failed[0]).toMatchObject({ details: { reason: 'unknown_user' } });
      clock.advance(LOCK_SECONDS * 1000);
    });
  });
});
