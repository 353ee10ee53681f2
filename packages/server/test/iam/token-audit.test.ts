/**
 * Token grants and introspections leave audit records (issue 6: "tokens issued, exchanged,
 * introspected and revoked"), naming who, through which grant and with which scopes, and
 * never the token itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, postForm } from '../support/http.js';
import { createTenant, type TenantOwner } from '../support/iam.js';
import { startTestServer, type TestServer } from '../support/server.js';

describe('audit of token grants and introspection', () => {
  let server: TestServer;
  let acme: TenantOwner;
  let account: { id: string; client_id: string; client_secret: string };

  beforeAll(async () => {
    server = await startTestServer();
    acme = await createTenant(server.url, 'token-audit');
    account = (await api(server.url, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'audited', scopes: ['forms:read', 'forms:write'] } })).body;
  });
  afterAll(async () => server.close());

  it('records iam.token.issued for a client-credentials grant, with the grant, client, scopes and trace id', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const res = await postForm(server.url, '/oauth/token', { grant_type: 'client_credentials', scope: 'forms:read' }, {
      basic: [account.client_id, account.client_secret],
      headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
    });
    expect(res.status).toBe(200);
    const issued = server.audit.events.filter((e) => e.action === 'iam.token.issued' && e.actor === account.id);
    expect(issued).toEqual([
      {
        action: 'iam.token.issued',
        tenant: 'token-audit',
        actor: account.id,
        outcome: 'success',
        target: expect.stringMatching(/^jti:/),
        traceId,
        details: { grant: 'client_credentials', client_id: account.client_id, scope: 'forms:read' },
      },
    ]);
    expect(JSON.stringify(server.audit.events)).not.toContain(res.body.access_token);
  });

  it('records iam.token.introspected with whether the token was active, never the token', async () => {
    const token = (await postForm(server.url, '/oauth/token', { grant_type: 'client_credentials' }, { basic: [account.client_id, account.client_secret] })).body.access_token as string;
    const active = await postForm(server.url, '/oauth/introspect', { token }, { basic: [acme.clientId, acme.clientSecret] });
    expect(active.body.active).toBe(true);
    await postForm(server.url, '/oauth/introspect', { token: 'not-a-token' }, { basic: [acme.clientId, acme.clientSecret] });
    const introspected = server.audit.events.filter((e) => e.action === 'iam.token.introspected');
    expect(introspected.map((e) => ({ actor: e.actor, target: e.target, details: e.details }))).toEqual([
      { actor: acme.clientId, target: `jti:${active.body.jti}`, details: { active: true, sub: account.id } },
      { actor: acme.clientId, target: undefined, details: { active: false } },
    ]);
    expect(JSON.stringify(server.audit.events)).not.toContain(token);
  });
});
