/**
 * A standard OpenID Connect client library (openid-client, by the author of jose) talks
 * to Flowgate knowing nothing but its URL: discovery, client credentials, introspection,
 * revocation, the authorization code flow with PKCE and ID token validation, userinfo,
 * refresh and token exchange. If Flowgate strays from the RFCs, this is where it shows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as client from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startTestServer, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, type TestServer } from '../support/server.js';
import { createTenant, createUser, submitLoginAt, type TenantOwner } from '../support/iam.js';
import { api } from '../support/http.js';

describe('a standard OpenID Connect client (openid-client)', () => {
  let server: TestServer;
  let issuer: URL;
  let acme: TenantOwner;

  beforeAll(async () => {
    server = await startTestServer();
    issuer = new URL(server.url);
    acme = await createTenant(server.url, 'acme');
  });
  afterAll(async () => server.close());

  const confidential = (id: string, secret: string) =>
    client.discovery(issuer, id, { id_token_signed_response_alg: 'ES256' }, client.ClientSecretBasic(secret), { execute: [client.allowInsecureRequests] });

  it('discovers the server and gets a client_credentials token it can verify against the JWKS', async () => {
    const config = await confidential(ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET);
    const metadata = config.serverMetadata();
    expect(metadata.issuer).toBe(server.url);
    expect(metadata.code_challenge_methods_supported).toEqual(['S256']);

    const tokens = await client.clientCredentialsGrant(config, { scope: 'tenants:read' });
    expect(tokens.token_type).toBe('bearer');
    expect(tokens.scope).toBe('tenants:read');

    const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri!));
    const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, { issuer: server.url, audience: 'flowgate', typ: 'at+jwt' });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ tenant: 'default', client_id: ADMIN_CLIENT_ID, scope: 'tenants:read' });
  });

  it('introspects and revokes through the advertised endpoints', async () => {
    const config = await confidential(acme.clientId, acme.clientSecret);
    const { access_token } = await client.clientCredentialsGrant(config);
    expect(await client.tokenIntrospection(config, access_token)).toMatchObject({ active: true, tenant: 'acme' });
    await client.tokenRevocation(config, access_token);
    expect(await client.tokenIntrospection(config, access_token)).toEqual({ active: false });
  });

  it('runs the authorization code flow with PKCE, validates the ID token, reads userinfo and refreshes', async () => {
    const user = await createUser(server.url, acme, 'erin', 'admin');
    const config = await client.discovery(issuer, 'flowgate-cli', { id_token_signed_response_alg: 'ES256' }, client.None(), {
      execute: [client.allowInsecureRequests],
    });
    const verifier = client.randomPKCECodeVerifier();
    const state = client.randomState();
    const nonce = client.randomNonce();
    const redirectUri = 'http://127.0.0.1:53682/callback';
    const authorizeUrl = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid users:read',
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });

    const login = await submitLoginAt(server.url, authorizeUrl.href, { tenant: 'acme', username: user.username, password: user.password });
    expect(login.status).toBe(302);
    const tokens = await client.authorizationCodeGrant(config, new URL(login.location!), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    const claims = tokens.claims()!;
    expect(claims).toMatchObject({ sub: user.id, iss: server.url, aud: 'flowgate-cli', tenant: 'acme', preferred_username: 'erin' });
    expect(tokens.scope).toBe('users:read');

    const info = await client.fetchUserInfo(config, tokens.access_token, user.id);
    expect(info).toMatchObject({ sub: user.id, tenant: 'acme' });

    const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.refresh_token).not.toBe(tokens.refresh_token);
    const me = await api(server.url, 'GET', '/api/v1/me', { token: refreshed.access_token });
    expect(me.body).toMatchObject({ sub: user.id, scopes: ['users:read'] });
  });

  it('exchanges a token with the generic grant request (RFC 8693)', async () => {
    const created = await api(server.url, 'POST', '/api/v1/service-accounts', { token: acme.token, body: { name: 'exchanger', scopes: ['tokens:exchange'] } });
    const config = await confidential(created.body.client_id, created.body.client_secret);
    const exchanged = await client.genericGrantRequest(config, 'urn:ietf:params:oauth:grant-type:token-exchange', {
      subject_token: acme.token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'forms:read',
    });
    expect(exchanged.issued_token_type).toBe('urn:ietf:params:oauth:token-type:access_token');
    expect(exchanged.scope).toBe('forms:read');
  });
});
