/**
 * Malformed input on every write route of the admin API, enumerated from the server's own
 * OpenAPI document (so a new route is covered without editing this file), and on the
 * OAuth form endpoints. Every refusal is an RFC 9457 problem document, and no body is
 * read before the caller has shown a token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, type TestServer } from '../support/server.js';
import { api, type JsonResponse } from '../support/http.js';
import { adminToken } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';

const BODY_LIMIT = 2048;
const WRITE_METHODS = ['post', 'put', 'patch'] as const;
const MISSING_ID = 'no-such-id';
const UNKNOWN_FIELD = 'surprise_field';

/** Malformed JSON documents, each sent as application/json. */
const MALFORMED = ['{', '{"id": ', 'not json', '{"a": 1,}', "{'single': 'quotes'}", '[1, 2', ''];

/**
 * A valid body for every admin route that declares one (by OpenAPI path): the unknown-field
 * check adds one field to it, so that field is the only thing wrong. A new route with a
 * body schema fails the coverage check below until it gets an entry here.
 */
const VALID_BODIES: Record<string, Record<string, unknown>> = {
  'POST /api/v1/tenants': { id: 'valid-tenant' },
  'POST /api/v1/topics/{topic}/events': { payload: { n: 1 } },
  'PUT /api/v1/topics/{topic}': { retention: { maxAgeMs: 60000 } },
  'POST /api/v1/consumer-groups/{group}/seek': { to: 'earliest' },
  'POST /api/v1/service-accounts': { name: 'valid-account', scopes: ['forms:read'] },
  'POST /api/v1/service-accounts/{id}/api-keys': { name: 'valid-key', scopes: ['forms:read'], expires_in_days: 30 },
  'POST /api/v1/users': { username: 'valid-user', password: 'a long enough password', role: 'viewer' },
  'PATCH /api/v1/users/{id}': { display_name: 'Valid Name' },
  'PUT /api/v1/members/{id}': { role: 'viewer' },
  'POST /api/v1/secrets': { name: 'valid_secret', value: 'x' },
  'PATCH /api/v1/secrets/{name}': { description: 'valid' },
  'PUT /api/v1/gateway/config': { services: [], routes: [] },
  'PUT /api/v1/gateway/services/{name}': { name: 'valid-service', targets: ['http://127.0.0.1:9'] },
  'PUT /api/v1/gateway/routes/{name}': { name: 'valid-route', service: 'valid-service', paths: ['/valid'] },
  'POST /api/v1/flows': { name: 'valid-flow', triggers: [], nodes: [{ id: 'a', component: 'transform', config: { expression: '$' } }] },
  'PUT /api/v1/flows/{id}': { name: 'valid-flow', triggers: [], nodes: [{ id: 'a', component: 'transform', config: { expression: '$' } }] },
  'POST /api/v1/flows/{id}/executions': { input: {} },
};

const OAUTH_FORMS = ['/oauth/token', '/oauth/introspect', '/oauth/revoke'] as const;
const FORM = 'application/x-www-form-urlencoded';

interface WriteRoute {
  readonly method: string;
  /** The OpenAPI path, e.g. /api/v1/users/{id}. */
  readonly template: string;
  /** A concrete URL path, path parameters filled with ids that do not exist. */
  readonly path: string;
  readonly hasBody: boolean;
  readonly key: string;
}

describe('malformed input', () => {
  let server: TestServer;
  let base: string;
  let token: string;
  let routes: WriteRoute[];

  beforeAll(async () => {
    server = await startTestServer({ config: { server: { bodyLimitBytes: BODY_LIMIT } } });
    base = server.url;
    token = await adminToken(base);
    const doc = await api(base, 'GET', '/api/openapi.json');
    if (doc.status !== 200) throw new Error(`no OpenAPI document: ${doc.status}`);
    routes = [];
    for (const [template, operations] of Object.entries<Record<string, any>>(doc.body.paths)) {
      if (!template.startsWith('/api/v1/')) continue;
      for (const method of WRITE_METHODS) {
        const op = operations[method];
        if (!op) continue;
        const upper = method.toUpperCase();
        routes.push({
          method: upper,
          template,
          path: template.replace(/\{[^}]+\}/g, MISSING_ID),
          hasBody: op.requestBody !== undefined,
          key: `${upper} ${template}`,
        });
      }
    }
  });
  afterAll(async () => server.close());

  const send = (method: string, path: string, body: string | undefined, headers: Record<string, string> = {}, withToken = true): Promise<JsonResponse> =>
    api(base, method, path, { ...(withToken ? { token } : {}), body, headers });

  describe('the admin API, route by route from the OpenAPI document', () => {
    it('finds every write route of the admin API in the OpenAPI document', () => {
      const keys = routes.map((r) => r.key);
      expect(keys).toEqual(
        expect.arrayContaining([
          'POST /api/v1/tenants',
          'POST /api/v1/service-accounts',
          'POST /api/v1/service-accounts/{id}/secret',
          'POST /api/v1/users',
          'PATCH /api/v1/users/{id}',
          'PUT /api/v1/members/{id}',
          'POST /api/v1/keys/rotate',
        ]),
      );
      expect(routes.filter((r) => r.hasBody).map((r) => r.key).filter((key) => !(key in VALID_BODIES))).toEqual([]);
    });

    it('refuses malformed JSON with 400 request-malformed-body, before looking up any id', async () => {
      for (const route of routes) {
        for (const body of MALFORMED) {
          const res = await send(route.method, route.path, body, { 'content-type': 'application/json' });
          expect({ route: route.key, body, status: res.status }).toEqual({ route: route.key, body, status: 400 });
          expectProblem(res, 400, 'FLOWGATE_ERR_REQUEST_MALFORMED_BODY');
          expect(res.body.instance).toBe(route.path);
        }
      }
    });

    it('refuses malformed JSON sent as another +json type the same way', async () => {
      for (const route of routes) {
        const res = await send(route.method, route.path, '{', { 'content-type': 'application/merge-patch+json' });
        expectProblem(res, 400, 'FLOWGATE_ERR_REQUEST_MALFORMED_BODY');
      }
    });

    it('refuses text/plain and form bodies with 415 unsupported-media-type', async () => {
      for (const route of routes) {
        for (const [type, body] of [
          ['text/plain', '{"id":"looks-like-json"}'],
          ['text/plain; charset=utf-8', 'hello'],
          [FORM, 'id=valid-tenant'],
          ['application/xml', '<id>x</id>'],
        ] as const) {
          const res = await send(route.method, route.path, body, { 'content-type': type });
          expect({ route: route.key, type, status: res.status }).toEqual({ route: route.key, type, status: 415 });
          expectProblem(res, 415, 'FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE');
        }
      }
    });

    it('refuses a body with an unknown property with 400 request-invalid and field errors, before looking up any id', async () => {
      const withBody = routes.filter((r) => r.hasBody);
      expect(withBody.length).toBeGreaterThanOrEqual(5);
      for (const route of withBody) {
        const body = { ...VALID_BODIES[route.key], [UNKNOWN_FIELD]: 1 };
        const res = await send(route.method, route.path, JSON.stringify(body));
        expect({ route: route.key, status: res.status }).toEqual({ route: route.key, status: 400 });
        expectProblem(res, 400, 'FLOWGATE_ERR_REQUEST_INVALID');
        expect(res.body.errors).toEqual(expect.any(Array));
        expect(res.body.errors.length).toBeGreaterThan(0);
        for (const error of res.body.errors) {
          expect(typeof error.path).toBe('string');
          expect(error.path).toMatch(/^body/);
          expect(typeof error.message).toBe('string');
        }
      }
      // Nothing was created by the refused requests.
      const tenants = await api(base, 'GET', '/api/v1/tenants', { token });
      expect(tenants.body.items.map((t: any) => t.id)).not.toContain('valid-tenant');
    });

    it('names the offending field of a body that breaks its schema', async () => {
      const res = await send('POST', '/api/v1/users', JSON.stringify({ username: 'ok-name', password: 'short', role: 'emperor' }));
      expectProblem(res, 400, 'FLOWGATE_ERR_REQUEST_INVALID');
      const paths = res.body.errors.map((e: any) => e.path);
      expect(paths).toEqual(expect.arrayContaining(['body.password', 'body.role']));
    });

    it('answers 401 without a token before reading the body: malformed, wrong type or too large', async () => {
      const tooLarge = JSON.stringify({ pad: 'x'.repeat(BODY_LIMIT * 2) });
      for (const route of routes) {
        for (const [type, body] of [
          ['application/json', '{'],
          ['application/json', ''],
          ['text/plain', 'hello'],
          ['application/json', tooLarge],
        ] as const) {
          const res = await send(route.method, route.path, body, { 'content-type': type }, false);
          expect({ route: route.key, type, status: res.status }).toEqual({ route: route.key, type, status: 401 });
          expectProblem(res, 401, 'FLOWGATE_ERR_AUTH_TOKEN_MISSING');
          expect(res.headers.get('www-authenticate')).toBe('Bearer realm="flowgate"');
        }
        const bad = await send(route.method, route.path, '{', { 'content-type': 'application/json', authorization: 'Bearer not-a-token' }, false);
        expectProblem(bad, 401, 'FLOWGATE_ERR_AUTH_TOKEN_INVALID');
      }
    });

    it('refuses a body over the configured limit with 413 request-too-large', async () => {
      const tooLarge = JSON.stringify({ id: 'x', pad: 'x'.repeat(BODY_LIMIT) });
      for (const route of routes) {
        const res = await send(route.method, route.path, tooLarge, { 'content-type': 'application/json' });
        expect({ route: route.key, status: res.status }).toEqual({ route: route.key, status: 413 });
        expectProblem(res, 413, 'FLOWGATE_ERR_REQUEST_TOO_LARGE');
      }
    });
  });

  describe('the OAuth form endpoints', () => {
    const basic = `Basic ${Buffer.from(`${ADMIN_CLIENT_ID}:${ADMIN_CLIENT_SECRET}`).toString('base64')}`;
    const form = (path: string, body: string, headers: Record<string, string> = {}) =>
      api(base, 'POST', path, { body, headers: { 'content-type': FORM, authorization: basic, ...headers } });

    it('refuses JSON and text bodies with 415 problem documents', async () => {
      for (const path of OAUTH_FORMS) {
        const json = await api(base, 'POST', path, { body: { grant_type: 'client_credentials', token: 'x' }, headers: { authorization: basic } });
        expectProblem(json, 415, 'FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE');
        const text = await form(path, 'grant_type=client_credentials', { 'content-type': 'text/plain' });
        expectProblem(text, 415, 'FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE');
      }
    });

    it('refuses a repeated parameter with 400 invalid_request (parameters the body schema does not declare)', async () => {
      const token = await form('/oauth/token', 'grant_type=client_credentials&requested_token_type=a&requested_token_type=b');
      expectProblem(token, 400, 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
      expect(token.body.error).toBe('invalid_request');
      expect(token.body.error_description).toContain('requested_token_type');
      for (const path of ['/oauth/introspect', '/oauth/revoke']) {
        const res = await form(path, 'token=a&extra=1&extra=2');
        expectProblem(res, 400, 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
        expect(res.body.error).toBe('invalid_request');
      }
      const login = await api(base, 'POST', '/oauth/authorize', { body: 'client_id=flowgate-cli&client_id=flowgate-web', headers: { 'content-type': FORM } });
      expectProblem(login, 400, 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
    });

    it('refuses an unsupported or missing grant_type', async () => {
      for (const grant of ['password', 'implicit', 'urn:ietf:params:oauth:grant-type:jwt-bearer', 'CLIENT_CREDENTIALS']) {
        const res = await form('/oauth/token', new URLSearchParams({ grant_type: grant, username: 'u', password: 'p' }).toString());
        expectProblem(res, 400, 'FLOWGATE_ERR_OAUTH_UNSUPPORTED_GRANT_TYPE');
        expect(res.body.error).toBe('unsupported_grant_type');
      }
      const missing = await form('/oauth/token', 'scope=users:read');
      expectProblem(missing, 400, 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
      expect(missing.body.error).toBe('invalid_request');
    });

    it('refuses a body over the configured limit with 413 request-too-large', async () => {
      const big = new URLSearchParams({ grant_type: 'client_credentials', token: 'x', pad: 'x'.repeat(BODY_LIMIT) }).toString();
      for (const path of OAUTH_FORMS) {
        const res = await form(path, big);
        expectProblem(res, 413, 'FLOWGATE_ERR_REQUEST_TOO_LARGE');
      }
    });

    it('still works with a well-formed request (the control)', async () => {
      const res = await form('/oauth/token', 'grant_type=client_credentials');
      expect(res.status).toBe(200);
      expect(res.body.access_token).toEqual(expect.any(String));
    });
  });

  describe('paths and methods', () => {
    it('answers an unknown path with 404 request-route-not-found, with or without a token', async () => {
      for (const path of ['/api/v1/nope', '/api/v2/tenants', '/api/v1/tenants/a/b/c', '/nope', '/oauth/nope']) {
        for (const withToken of [true, false]) {
          const res = await send('GET', path, undefined, {}, withToken);
          expectProblem(res, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
          const post = await send('POST', path, 'hello', { 'content-type': 'text/plain' }, withToken);
          expectProblem(post, 404, 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND');
        }
      }
    });

    it('answers a wrong method on a known path with 405 and an Allow header, with or without a token', async () => {
      const cases: Array<[string, string, string[]]> = [
        ['DELETE', '/api/v1/tenants', ['GET', 'POST']],
        ['PUT', '/api/v1/tenants', ['GET', 'POST']],
        ['POST', '/api/v1/me', ['GET']],
        ['PATCH', '/api/v1/members/some-id', ['PUT', 'DELETE']],
        ['GET', '/oauth/token', ['POST']],
        ['DELETE', '/oauth/revoke', ['POST']],
      ];
      for (const [method, path, allowed] of cases) {
        for (const withToken of [true, false]) {
          const res = await send(method, path, undefined, {}, withToken);
          expectProblem(res, 405, 'FLOWGATE_ERR_REQUEST_METHOD_NOT_ALLOWED');
          const allow = (res.headers.get('allow') ?? '').split(',').map((m) => m.trim()).filter((m) => m.length > 0);
          expect({ method, path, allow: allow.sort() }).toEqual({ method, path, allow: [...allowed].sort() });
        }
      }
    });
  });

  /** Defects this file found, and which the source now fixes; kept so they stay fixed. */
  describe('once-broken cases', () => {
    it('names the unknown property in errors[] of a body with an unknown property', async () => {
      for (const route of routes.filter((r) => r.hasBody)) {
        const res = await send(route.method, route.path, JSON.stringify({ ...VALID_BODIES[route.key], [UNKNOWN_FIELD]: 1 }));
        expect(res.status).toBe(400);
        const named = (res.body.errors as Array<{ path: string; message: string }>).some((e) => `${e.path} ${e.message}`.includes(UNKNOWN_FIELD));
        expect.soft({ route: route.key, errors: res.body.errors, namesTheField: named }).toEqual({ route: route.key, errors: res.body.errors, namesTheField: true });
      }
    });

    it('answers a repeated grant_type or token with the OAuth error invalid_request', async () => {
      const basic = `Basic ${Buffer.from(`${ADMIN_CLIENT_ID}:${ADMIN_CLIENT_SECRET}`).toString('base64')}`;
      const cases: Array<[string, string]> = [
        ['/oauth/token', 'grant_type=client_credentials&grant_type=client_credentials'],
        ['/oauth/token', 'grant_type=client_credentials&scope=users:read&scope=platform:admin'],
        ['/oauth/introspect', 'token=a&token=b'],
        ['/oauth/revoke', 'token=a&token=b'],
      ];
      for (const [path, body] of cases) {
        const res = await api(base, 'POST', path, { body, headers: { 'content-type': FORM, authorization: basic } });
        // RFC 6749 §5.2: an OAuth error answer carries `error`; a repeated parameter is invalid_request.
        const got = { path, body, status: res.status, error: res.body.error, code: res.body.code, detail: res.body.detail };
        expect.soft(got).toEqual({ ...got, status: 400, error: 'invalid_request', code: 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST' });
      }
    });

    it('answers 404/405 on unmatched paths without parsing the body', async () => {
      const tooLarge = JSON.stringify({ pad: 'x'.repeat(BODY_LIMIT * 2) });
      for (const withToken of [false, true]) {
        for (const body of ['{', tooLarge]) {
          const unknown = await send('POST', '/api/v1/nope', body, { 'content-type': 'application/json' }, withToken);
          const unknownGot = { request: 'POST /api/v1/nope', bytes: body.length, withToken, status: unknown.status, code: unknown.body.code };
          expect.soft(unknownGot).toEqual({ ...unknownGot, status: 404, code: 'FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND' });
          const wrongMethod = await send('DELETE', '/api/v1/tenants', body, { 'content-type': 'application/json' }, withToken);
          const wrongGot = { request: 'DELETE /api/v1/tenants', bytes: body.length, withToken, status: wrongMethod.status, code: wrongMethod.body.code };
          expect.soft(wrongGot).toEqual({ ...wrongGot, status: 405, code: 'FLOWGATE_ERR_REQUEST_METHOD_NOT_ALLOWED' });
        }
      }
    });
  });
});
