/**
 * The secrets API over HTTP, against a real server on each store: values go in and never
 * come out, another tenant's secret is a 404, changes are audited without values.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api } from '../support/http.js';
import { createTenant, createUser, loginUser, type TenantOwner } from '../support/iam.js';
import { expectProblem } from '../support/problem.js';
import { startTestServer, type TestServer } from '../support/server.js';

const VALUE = 'sk-live-4f1c9a7e-never-show-me';
const OAUTH = { tokenUrl: 'https://idp.example/oauth/token', clientId: 'flowgate-crm', clientSecret: 'oauth-secret-93ab-never-show-me', refreshToken: 'refresh-77c1-never-show-me' };

describe.each(['sqlite', 'postgres'] as const)('secrets API on %s', (store) => {
  let server: TestServer;
  let base: string;
  let alpha: TenantOwner;
  let beta: TenantOwner;
  const everything: string[] = [];

  const call = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await api(base, method, path, { token, ...(body !== undefined ? { body } : {}) });
    everything.push(res.text);
    return res;
  };

  beforeAll(async () => {
    server = await startTestServer({ store });
    base = server.url;
    alpha = await createTenant(base, `sec-alpha-${store}`);
    beta = await createTenant(base, `sec-beta-${store}`);
  });
  afterAll(() => server.close());

  it('stores a secret and answers metadata only, in the answer, the list and a read', async () => {
    const created = await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'crm_api_key', kind: 'api_key', value: VALUE, description: 'CRM key' });
    expect(created.status).toBe(201);
    expect(created.body).toEqual({ name: 'crm_api_key', kind: 'api_key', description: 'CRM key', version: 1, created_at: expect.any(String), updated_at: expect.any(String) });
    const list = await call(alpha.token, 'GET', '/api/v1/secrets');
    expect(list.body.items.map((s: { name: string }) => s.name)).toEqual(['crm_api_key']);
    const one = await call(alpha.token, 'GET', '/api/v1/secrets/crm_api_key');
    expect(one.body).toMatchObject({ name: 'crm_api_key', version: 1 });
    // What a component gets at run time.
    expect(await server.flowgate.secrets.reveal(alpha.tenant, 'crm_api_key')).toBe(VALUE);
  });

  it('keeps oauth2 credentials as a whole and defaults the kind from the value', async () => {
    const created = await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'crm_oauth', value: OAUTH });
    expect(created.status).toBe(201);
    expect(created.body.kind).toBe('oauth2');
    expect(await server.flowgate.secrets.reveal(alpha.tenant, 'crm_oauth')).toEqual(OAUTH);
    const mismatched = await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'wrong_shape', kind: 'password', value: OAUTH });
    expectProblem(mismatched, 400, 'FLOWGATE_ERR_REQUEST_INVALID');
  });

  it("answers 404 for another tenant's secret, to read, change or delete", async () => {
    await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'alpha_only', value: 'alpha-value' });
    expectProblem(await call(beta.token, 'GET', '/api/v1/secrets/alpha_only'), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expectProblem(await call(beta.token, 'PATCH', '/api/v1/secrets/alpha_only', { value: 'hijack' }), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expectProblem(await call(beta.token, 'DELETE', '/api/v1/secrets/alpha_only'), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expect((await call(beta.token, 'GET', '/api/v1/secrets')).body.items).toEqual([]);
    expect(await server.flowgate.secrets.reveal(alpha.tenant, 'alpha_only')).toBe('alpha-value');
  });

  it('rotates a value (version 2), audits each change without the value, and deletes', async () => {
    await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'db_password', kind: 'password', value: 'first-value' });
    const rotated = await call(alpha.token, 'PATCH', '/api/v1/secrets/db_password', { value: 'second-value' });
    expect(rotated.body).toMatchObject({ version: 2 });
    expect(await server.flowgate.secrets.reveal(alpha.tenant, 'db_password')).toBe('second-value');
    expect((await call(alpha.token, 'DELETE', '/api/v1/secrets/db_password')).status).toBe(204);
    expectProblem(await call(alpha.token, 'GET', '/api/v1/secrets/db_password'), 404, 'FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    const actions = server.audit.events.filter((e) => e.target === 'secret:db_password').map((e) => [e.action, e.tenant]);
    expect(actions).toEqual([
      ['secrets.created', alpha.tenant],
      ['secrets.rotated', alpha.tenant],
      ['secrets.deleted', alpha.tenant],
    ]);
  });

  it('refuses a second secret of the same name, a bad name and an empty change', async () => {
    await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'twice', value: 'x' });
    expectProblem(await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'twice', value: 'y' }), 409, 'FLOWGATE_ERR_RESOURCE_CONFLICT');
    expectProblem(await call(alpha.token, 'POST', '/api/v1/secrets', { name: 'Not-A-Name', value: 'y' }), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
    expectProblem(await call(alpha.token, 'PATCH', '/api/v1/secrets/twice', {}), 400, 'FLOWGATE_ERR_REQUEST_INVALID');
  });

  it('lets a viewer list secrets but not write them', async () => {
    const viewer = await createUser(base, alpha, `viewer-${store}`, 'viewer');
    const token = (await loginUser(base, alpha.tenant, viewer)).access_token as string;
    expect((await call(token, 'GET', '/api/v1/secrets')).status).toBe(200);
    expectProblem(await call(token, 'POST', '/api/v1/secrets', { name: 'from_viewer', value: 'x' }), 403, 'FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE');
  });

  it('never shows a value in an answer, an audit event or a log line', () => {
    const seen = [...everything, ...server.logs, JSON.stringify(server.audit.events)].join('\n');
    for (const value of [VALUE, OAUTH.clientSecret, OAUTH.refreshToken, 'first-value', 'second-value', 'alpha-value']) expect(seen).not.toContain(value);
  });
});
