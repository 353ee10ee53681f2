import { SignJWT } from 'jose';
import { epochSeconds, newId, type Clock } from '../kernel/index.js';
import type { ActClaim, PrincipalKind } from './principal.js';
import { SIGNING_ALG, type SigningKeyStore } from './signing-keys.js';

/** What goes into an access token. */
export interface AccessTokenRequest {
  readonly sub: string;
  readonly kind: Exclude<PrincipalKind, 'external'> | 'external';
  readonly tenant: string;
  readonly scopes: readonly string[];
  readonly clientId: string;
  readonly act?: ActClaim | undefined;
  /** Lifetime in seconds; the configured default when absent. */
  readonly ttlSeconds?: number;
  readonly name?: string | undefined;
  /** Whom the token is for; this server's own audience when absent (the gateway mints for upstreams). */
  readonly audience?: string;
}

export interface MintedToken {
  readonly token: string;
  readonly jti: string;
  readonly iat: number;
  readonly exp: number;
  readonly expiresIn: number;
}

export interface TokenServiceOptions {
  readonly issuer: () => string;
  readonly audience: string;
  readonly accessTokenTtl: number;
}

/**
 * Mints Flowgate's JWTs, signed ES256 with the active key: access tokens in the
 * RFC 9068 profile (`typ: at+jwt`; `iss`, `aud`, `sub`, `client_id`, `iat`, `exp`, `jti`,
 * `scope`) plus Flowgate's `tenant`, and OpenID Connect ID tokens.
 */
export class TokenService {
  constructor(
    private readonly keys: SigningKeyStore,
    private readonly clock: Clock,
    private readonly options: TokenServiceOptions,
  ) {}

  get issuer(): string {
    return this.options.issuer();
  }

  get audience(): string {
    return this.options.audience;
  }

  get defaultTtl(): number {
    return this.options.accessTokenTtl;
  }

  async mintAccessToken(req: AccessTokenRequest): Promise<MintedToken> {
    const { kid, key } = await this.keys.activeKey();
    const iat = epochSeconds(this.clock);
    const expiresIn = Math.max(1, Math.floor(req.ttlSeconds ?? this.options.accessTokenTtl));
    const exp = iat + expiresIn;
    const jti = newId();
    const claims: Record<string, unknown> = {
      tenant: req.tenant,
      scope: req.scopes.join(' '),
      client_id: req.clientId,
      principal: req.kind,
    };
    if (req.act) claims.act = req.act;
    if (req.name !== undefined) claims.name = req.name;
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'at+jwt' })
      .setIssuer(this.issuer)
      .setAudience(req.audience ?? this.options.audience)
      .setSubject(req.sub)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .setJti(jti)
      .sign(key);
    return { token, jti, iat, exp, expiresIn };
  }

  /** An OpenID Connect ID token (OIDC Core §2) for a user who logged in. */
  async mintIdToken(req: {
    sub: string;
    clientId: string;
    tenant: string;
    authTime: number;
    nonce: string | null;
    username: string;
    name: string | null;
  }): Promise<string> {
    const { kid, key } = await this.keys.activeKey();
    const iat = epochSeconds(this.clock);
    const claims: Record<string, unknown> = {
      tenant: req.tenant,
      auth_time: Math.floor(req.authTime / 1000),
      preferred_username: req.username,
    };
    if (req.name) claims.name = req.name;
    if (req.nonce) claims.nonce = req.nonce;
    return new SignJWT(claims)
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(req.clientId)
      .setSubject(req.sub)
      .setIssuedAt(iat)
      .setExpirationTime(iat + this.options.accessTokenTtl)
      .sign(key);
  }
}
