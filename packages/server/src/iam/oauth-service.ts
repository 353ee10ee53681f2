import { ROLE_SCOPES, isOidcScope, isScope, missingScopes, scopesGrant, splitScopeParam, type Role } from '@flowgate/contracts';
import type { AuditRecorder } from '../kernel/index.js';
import { FlowgateError } from '../errors/index.js';
import { epochSeconds, type Clock } from '../kernel/index.js';
import type { AuthCodeStore } from './auth-codes.js';
import type { AuthenticatedClient } from './client-auth.js';
import type { MemberRepository } from './member.repository.js';
import type { Principal } from './principal.js';
import type { RefreshTokenStore } from './refresh-tokens.js';
import type { RevocationList } from './revocation-list.js';
import { accountScopes, type ServiceAccountRepository, type ServiceAccountRow } from './service-account.repository.js';
import { decideTokenExchange } from './token-exchange.js';
import type { TokenService } from './token-service.js';
import type { TokenVerifier } from './token-verifier.js';
import type { UserRepository, UserRow } from './user.repository.js';

/** The token endpoint's answer (RFC 6749 §5.1, RFC 8693 §2.2.1, OIDC Core §3.1.3.3). */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
  id_token?: string;
  issued_token_type?: string;
}

export const TOKEN_TYPE_ACCESS = 'urn:ietf:params:oauth:token-type:access_token';
const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';

export interface OAuthServiceDeps {
  readonly tokens: TokenService;
  readonly verifier: TokenVerifier;
  readonly users: UserRepository;
  readonly accounts: ServiceAccountRepository;
  readonly members: MemberRepository;
  readonly refreshTokens: RefreshTokenStore;
  readonly authCodes: AuthCodeStore;
  readonly revocations: RevocationList;
  readonly audit: AuditRecorder;
  readonly clock: Clock;
}

const invalidScope = (detail: string) => new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_SCOPE', detail);
const invalidRequest = (detail: string) => new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', detail);
const invalidGrant = (detail: string) => new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_GRANT', detail);

/** The grants of the token endpoint, introspection and revocation. */
export class OAuthService {
  constructor(private readonly deps: OAuthServiceDeps) {}

  /** The scopes a service account holds: its own list plus its role's. */
  async accountScopes(account: ServiceAccountRow): Promise<string[]> {
    const role = await this.deps.members.roleOf(account.tenant_id, account.id);
    return [...new Set([...accountScopes(account), ...(role ? ROLE_SCOPES[role] : [])])];
  }

  /** The scopes a user holds in their tenant: those of their role. */
  async userScopes(user: UserRow): Promise<string[]> {
    const role = await this.deps.members.roleOf(user.tenant_id, user.id);
    return role ? [...ROLE_SCOPES[role]] : [];
  }

  /** RFC 6749 §4.4: a service account gets a token for itself. */
  async clientCredentials(client: AuthenticatedClient, scopeParam: string | undefined, traceId?: string): Promise<TokenResponse> {
    if (client.kind !== 'confidential') {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'Public clients cannot use the client_credentials grant.');
    }
    const held = await this.accountScopes(client.account);
    const scopes = narrow(held, scopeParam);
    const minted = await this.deps.tokens.mintAccessToken({
      sub: client.account.id,
      kind: 'service_account',
      tenant: client.account.tenant_id,
      scopes,
      clientId: client.clientId,
      name: client.account.name,
    });
    this.recordIssued({ grant: 'client_credentials', tenant: client.account.tenant_id, sub: client.account.id, clientId: client.clientId, scopes, jti: minted.jti, traceId });
    return { access_token: minted.token, token_type: 'Bearer', expires_in: minted.expiresIn, scope: scopes.join(' ') };
  }

  /** RFC 6749 §4.1.3 with PKCE: a user's login, redeemed by the public client that started it. */
  async authorizationCode(
    client: AuthenticatedClient,
    params: { code?: string | undefined; redirect_uri?: string | undefined; code_verifier?: string | undefined },
    traceId?: string,
  ): Promise<TokenResponse> {
    if (client.kind !== 'public') {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'Service accounts cannot use the authorization_code grant.');
    }
    if (!params.code || !params.redirect_uri || !params.code_verifier) {
      throw invalidRequest('code, redirect_uri and code_verifier are required.');
    }
    const row = await this.deps.authCodes.redeem(
      params.code,
      { clientId: client.clientId, redirectUri: params.redirect_uri, verifier: params.code_verifier },
      (family) => this.deps.refreshTokens.revokeFamily(family),
    );
    const user = await this.activeUser(row.tenant_id, row.user_id);
    const scopes = narrow(await this.userScopes(user), row.scope, true);
    const response = await this.userTokens(user, client.clientId, scopes, row.auth_time, undefined, undefined);
    this.recordIssued({ grant: 'authorization_code', tenant: user.tenant_id, sub: user.id, clientId: client.clientId, scopes, jti: response.jti, traceId });
    await this.deps.authCodes.linkFamily(params.code, response.familyId);
    if (splitScopeParam(row.scope).includes('openid')) {
      response.body.id_token = await this.deps.tokens.mintIdToken({
        sub: user.id,
        clientId: client.clientId,
        tenant: user.tenant_id,
        authTime: row.auth_time,
        nonce: row.nonce,
        username: user.username,
        name: user.display_name,
      });
    }
    return response.body;
  }

  /** RFC 6749 §6 with rotation: the old refresh token is spent, a new one returned. */
  async refresh(client: AuthenticatedClient, token: string | undefined, scopeParam: string | undefined, traceId?: string): Promise<TokenResponse> {
    if (!token) throw invalidRequest('refresh_token is required.');
    const found = await this.deps.refreshTokens.find(token);
    if (!found || found.client_id !== client.clientId || found.principal_type !== 'user') {
      throw invalidGrant('The refresh token is not valid for this client.');
    }
    // Check the request before spending the token: a refused scope must leave the client
    // its refresh token, or its retry would look like a replay and end the session.
    const user = await this.activeUser(found.tenant_id, found.principal_id);
    // Rights are read afresh: a demoted user's refresh gives the new, smaller set.
    const current = await this.userScopes(user);
    const granted = splitScopeParam(found.scope).filter((s) => scopesGrant(current, s));
    const scopes = narrow(granted, scopeParam);
    const row = await this.deps.refreshTokens.spend(token, client.clientId);
    // RFC 6749 §6: the new refresh token keeps the scope of the old one, however narrow
    // this access token is.
    const { body, jti } = await this.userTokens(user, client.clientId, scopes, row.auth_time, row.family_id, row.expires_at, row.scope);
    this.recordIssued({ grant: 'refresh_token', tenant: user.tenant_id, sub: user.id, clientId: client.clientId, scopes, jti, traceId });
    return body;
  }

  /**
   * RFC 8693: a service account (the actor) trades a user's token for a narrower,
   * shorter one that names the actor in `act`. The rules are in {@link decideTokenExchange}.
   */
  async exchange(
    client: AuthenticatedClient,
    params: Record<string, string | undefined>,
    traceId: string,
  ): Promise<TokenResponse> {
    if (client.kind !== 'confidential') {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'Only service accounts may exchange tokens.');
    }
    const { subject_token, subject_token_type, actor_token, actor_token_type, requested_token_type } = params;
    if (!subject_token || !subject_token_type) throw invalidRequest('subject_token and subject_token_type are required.');
    for (const [name, type] of [['subject_token_type', subject_token_type], ['actor_token_type', actor_token_type]] as const) {
      if (type !== undefined && type !== TOKEN_TYPE_ACCESS && type !== TOKEN_TYPE_JWT) {
        throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE', `${name} must be ${TOKEN_TYPE_ACCESS}.`);
      }
    }
    if (actor_token !== undefined && actor_token_type === undefined) throw invalidRequest('actor_token_type is required with actor_token.');
    if (requested_token_type !== undefined && requested_token_type !== TOKEN_TYPE_ACCESS) {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNSUPPORTED_TOKEN_TYPE', `Only ${TOKEN_TYPE_ACCESS} can be issued.`);
    }
    const subject = await this.verifyForExchange(subject_token, 'subject_token');
    const actorToken = actor_token === undefined ? undefined : await this.verifyForExchange(actor_token, 'actor_token');
    const requestedScopes = params.scope === undefined ? undefined : splitScopeParam(params.scope);
    if (requestedScopes?.some((s) => !isScope(s) && !isOidcScope(s))) throw invalidScope('A requested scope is not well formed.');
    const ttlText = params.expires_in;
    if (ttlText !== undefined && !/^\d{1,9}$/.test(ttlText)) throw invalidRequest('expires_in must be a positive whole number of seconds.');
    const decision = decideTokenExchange({
      subject,
      actor: { sub: client.account.id, clientId: client.clientId, tenant: client.account.tenant_id, scopes: await this.accountScopes(client.account) },
      actorToken,
      requestedScopes,
      requestedTtl: ttlText === undefined ? undefined : Number(ttlText),
      defaultTtl: this.deps.tokens.defaultTtl,
      now: epochSeconds(this.deps.clock),
    });
    if (!decision.ok) {
      this.deps.audit.record({
        action: 'iam.token.exchange_refused',
        tenant: client.account.tenant_id,
        actor: client.account.id,
        outcome: 'failure',
        target: `${subject.kind}:${subject.sub}`,
        traceId,
        details: { code: decision.code },
      });
      throw new FlowgateError(decision.code, decision.detail);
    }
    const minted = await this.deps.tokens.mintAccessToken({
      sub: subject.sub,
      kind: subject.kind,
      tenant: subject.tenant,
      scopes: decision.scopes,
      clientId: client.clientId,
      act: decision.act,
      ttlSeconds: decision.ttl,
      name: subject.name,
    });
    this.deps.audit.record({
      action: 'iam.token.exchanged',
      tenant: subject.tenant,
      actor: client.account.id,
      outcome: 'success',
      target: `${subject.kind}:${subject.sub}`,
      traceId,
      details: { scope: decision.scopes.join(' '), expires_in: decision.ttl },
    });
    return {
      access_token: minted.token,
      issued_token_type: TOKEN_TYPE_ACCESS,
      token_type: 'Bearer',
      expires_in: minted.expiresIn,
      scope: decision.scopes.join(' '),
    };
  }

  /**
   * RFC 7662. Any problem with the token is `active: false`, with no reason given;
   * tokens of another tenant are inactive to this caller.
   */
  async introspect(client: AuthenticatedClient, token: string | undefined, hint: string | undefined, traceId?: string): Promise<Record<string, unknown>> {
    const answer = await this.introspectToken(client, token, hint);
    // Who looked at which token, and whether it was active; never the token itself.
    this.deps.audit.record({
      action: 'iam.token.introspected',
      tenant: client.kind === 'confidential' ? client.account.tenant_id : null,
      actor: client.clientId,
      outcome: 'success',
      ...(typeof answer.jti === 'string' ? { target: `jti:${answer.jti}` } : {}),
      ...(traceId ? { traceId } : {}),
      details: { active: answer.active === true, ...(typeof answer.sub === 'string' ? { sub: answer.sub } : {}) },
    });
    return answer;
  }

  private async introspectToken(client: AuthenticatedClient, token: string | undefined, hint: string | undefined): Promise<Record<string, unknown>> {
    if (client.kind !== 'confidential') {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT', 'Only service accounts may introspect tokens.');
    }
    if (!token) throw invalidRequest('token is required.');
    const tenant = client.account.tenant_id;
    const platform = scopesGrant(await this.accountScopes(client.account), 'platform:admin');
    const tryRefresh = async () => {
      const row = await this.deps.refreshTokens.find(token);
      if (!row || !this.deps.refreshTokens.isActive(row) || (row.tenant_id !== tenant && !platform)) return undefined;
      return {
        active: true,
        token_type: 'refresh_token',
        scope: row.scope,
        client_id: row.client_id,
        sub: row.principal_id,
        tenant: row.tenant_id,
        exp: Math.floor(row.expires_at / 1000),
        iat: Math.floor(row.created_at / 1000),
        iss: this.deps.tokens.issuer,
      };
    };
    if (hint === 'refresh_token' || token.startsWith('fgr_')) return (await tryRefresh()) ?? { active: false };
    let principal: Principal;
    try {
      principal = await this.deps.verifier.verify(token);
    } catch {
      return { active: false };
    }
    if (principal.tenant !== tenant && !platform) return { active: false };
    const answer: Record<string, unknown> = {
      active: true,
      token_type: 'Bearer',
      scope: principal.scopes.join(' '),
      client_id: principal.clientId,
      sub: principal.sub,
      tenant: principal.tenant,
      principal: principal.kind,
      iss: principal.issuer,
      exp: principal.exp,
      iat: principal.iat,
    };
    if (principal.issuer === this.deps.tokens.issuer) answer.aud = this.deps.tokens.audience;
    if (principal.jti) answer.jti = principal.jti;
    if (principal.name) answer.username = principal.name;
    if (principal.act) answer.act = principal.act;
    return answer;
  }

  /**
   * RFC 7009: revokes an access or refresh token. Unknown, invalid or foreign tokens
   * are answered the same as revoked ones (§2.2), so the endpoint reveals nothing.
   */
  async revoke(client: AuthenticatedClient, token: string | undefined, traceId: string): Promise<void> {
    if (!token) throw invalidRequest('token is required.');
    // §2.1: only the client a token was issued to may revoke it; others are ignored silently.
    const row = await this.deps.refreshTokens.find(token);
    if (row) {
      if (row.client_id === client.clientId) {
        await this.deps.refreshTokens.revokeFamily(row.family_id);
        this.deps.audit.record({ action: 'iam.token.revoked', tenant: row.tenant_id, actor: client.clientId, outcome: 'success', target: `refresh_family:${row.family_id}`, traceId });
      }
      return;
    }
    let principal: Principal;
    try {
      principal = await this.deps.verifier.verify(token);
    } catch {
      return;
    }
    if (!principal.jti || principal.issuer !== this.deps.tokens.issuer) return;
    if (principal.clientId !== client.clientId) return;
    await this.deps.revocations.revoke(principal.jti, principal.tenant, principal.exp);
    this.deps.audit.record({ action: 'iam.token.revoked', tenant: principal.tenant, actor: client.clientId, outcome: 'success', target: `jti:${principal.jti}`, traceId });
  }

  /** Issues the authorization code for a logged-in user. */
  async issueCode(input: { user: UserRow; clientId: string; redirectUri: string; codeChallenge: string; scope: string; nonce: string | null }): Promise<string> {
    return this.deps.authCodes.issue({
      tenant_id: input.user.tenant_id,
      user_id: input.user.id,
      client_id: input.clientId,
      redirect_uri: input.redirectUri,
      code_challenge: input.codeChallenge,
      scope: input.scope,
      nonce: input.nonce,
      auth_time: this.deps.clock.now(),
    });
  }

  /** `iam.token.issued`: who got a token, through which grant, with which scopes. */
  private recordIssued(issued: { grant: string; tenant: string; sub: string; clientId: string; scopes: readonly string[]; jti: string; traceId: string | undefined }): void {
    this.deps.audit.record({
      action: 'iam.token.issued',
      tenant: issued.tenant,
      actor: issued.sub,
      outcome: 'success',
      target: `jti:${issued.jti}`,
      ...(issued.traceId ? { traceId: issued.traceId } : {}),
      details: { grant: issued.grant, client_id: issued.clientId, scope: issued.scopes.join(' ') },
    });
  }

  /** The user behind a code or refresh token, if they may still log in. */
  private async activeUser(tenant: string, id: string): Promise<UserRow> {
    const user = await this.deps.users.get(tenant, id);
    if (!user || user.disabled) throw invalidGrant('The user no longer exists or is disabled.');
    const role: Role | undefined = await this.deps.members.roleOf(tenant, id);
    if (!role) throw invalidGrant('The user is no longer a member of the tenant.');
    return user;
  }

  private async userTokens(
    user: UserRow,
    clientId: string,
    scopes: string[],
    authTime: number,
    familyId: string | undefined,
    familyExpiresAt: number | undefined,
    refreshScope: string = scopes.join(' '),
  ): Promise<{ body: TokenResponse; familyId: string; jti: string }> {
    const minted = await this.deps.tokens.mintAccessToken({
      sub: user.id,
      kind: 'user',
      tenant: user.tenant_id,
      scopes,
      clientId,
      name: user.username,
    });
    const refresh = await this.deps.refreshTokens.issue({
      tenantId: user.tenant_id,
      principalId: user.id,
      principalType: 'user',
      clientId,
      scope: refreshScope,
      authTime,
      ...(familyId ? { familyId } : {}),
      ...(familyExpiresAt ? { expiresAt: familyExpiresAt } : {}),
    });
    return {
      body: { access_token: minted.token, token_type: 'Bearer', expires_in: minted.expiresIn, scope: scopes.join(' '), refresh_token: refresh.token },
      familyId: refresh.familyId,
      jti: minted.jti,
    };
  }

  /** Verifies a token offered for exchange; any failure is `invalid_grant` (RFC 8693 §2.2.2). */
  private async verifyForExchange(token: string, name: string): Promise<Principal> {
    try {
      return await this.deps.verifier.verify(token);
    } catch (err) {
      throw invalidGrant(`The ${name} is not valid: ${(err as Error).message}`);
    }
  }
}

/**
 * The scopes to put in a token: what was asked for, each of which must be held
 * (`invalid_scope` otherwise), or everything held when nothing was asked for.
 * OIDC scopes (`openid`…) name claims, not rights, and are dropped. With `lenient`
 * (user logins) scopes the role does not grant are left out rather than refused.
 */
export function narrow(held: readonly string[], scopeParam: string | undefined, lenient = false): string[] {
  const asked = splitScopeParam(scopeParam).filter((s) => !isOidcScope(s));
  if (asked.length === 0) return [...held];
  const malformed = asked.filter((s) => !isScope(s));
  if (malformed.length > 0) throw invalidScope(`Not a scope: ${malformed.join(' ')}.`);
  const missing = missingScopes(held, asked);
  if (lenient) {
    const kept = asked.filter((s) => !missing.includes(s));
    if (kept.length === 0) throw invalidScope('You hold none of the requested scopes.');
    return kept;
  }
  if (missing.length > 0) throw invalidScope(`This client does not hold: ${missing.join(' ')}.`);
  return asked;
}
