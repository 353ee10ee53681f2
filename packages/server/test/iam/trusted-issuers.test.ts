/**
 * Tokens from another identity provider (a Keycloak realm, say) are accepted when the
 * operator trusts its issuer, with its claims mapped to Flowgate's tenant and scopes.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignJWT, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose';
import { startTestServer, type TestServer } from '../support/server.js';
import { createTenant } from '../support/iam.js';
import { api } from '../support/http.js';

describe('trusted external issuers', () => {
  let idp: Server;
  let idpUrl: string;
  let key: CryptoKey;
  let jwk: JWK;
  let server: TestServer;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    key = pair.privateKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'idp-1', alg: 'RS256', use: 'sig' };
    idp = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.url === '/jwks' ? { keys: [jwk] } : {}));
    });
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    idpUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/realms/akvo`;
    server = await startTestServer({
      config: {
        iam: {
          trustedIssuers: [
            {
              issuer: idpUrl,
              jwksUri: `${idpUrl.replace('/realms/akvo', '')}/jwks`,
              audience: 'flowgate',
              algorithms: ['RS256'],
              claims: { tenant: 'org', subject: 'sub', name: 'preferred_username', scopes: 'scope', roles: 'realm_access.roles' },
              roleScopes: { akvo_flow_maps_client: ['maps:create'] },
            },
          ],
        },
      },
    });
    await createTenant(server.url, 'akvo');
  });
  afterAll(async () => {
    await server.close();
    await new Promise((resolve) => idp.close(resolve));
  });

  const idpToken = (claims: Record<string, unknown>, issuer = idpUrl) =>
    new SignJWT({ org: 'akvo', preferred_username: 'maria', scope: 'forms:read', realm_access: { roles: ['akvo_flow_maps_client'] }, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: 'idp-1' })
      .setIssuer(issuer)
      .setAudience('flowgate')
      .setSubject('kc-user-1')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(key);

  it('accepts its tokens, mapping the tenant claim and roles to scopes', async () => {
    const me = await api(server.url, 'GET', '/api/v1/me', { token: await idpToken({}) });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ sub: 'kc-user-1', tenant: 'akvo', principal_type: 'external', name: 'maria', issuer: idpUrl });
    expect(me.body.scopes).toEqual(expect.arrayContaining(['forms:read', 'maps:create']));
  });

  it('never lets another provider grant platform administration', async () => {
    const me = await api(server.url, 'GET', '/api/v1/me', { token: await idpToken({ scope: 'platform:admin forms:read' }) });
    expect(me.body.scopes).not.toContain('platform:admin');
    const create = await api(server.url, 'POST', '/api/v1/tenants', { token: await idpToken({ scope: 'platform:admin' }), body: { id: 'evil' } });
    expect(create.status).toBe(403);
  });

  it('refuses a token naming a tenant that does not exist', async () => {
    const res = await api(server.url, 'GET', '/api/v1/me', { token: await idpToken({ org: 'nowhere' }) });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('FLOWGATE_ERR_AUTH_TOKEN_INVALID');
  });

  it('refuses the same token from an issuer it does not trust', async () => {
    const res = await api(server.url, 'GET', '/api/v1/me', { token: await idpToken({}, 'http://127.0.0.1:1/realms/other') });
    expect(res.status).toBe(401);
    expect(res.body.detail).toContain('does not trust');
  });
});
