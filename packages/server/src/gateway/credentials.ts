import type { Iam, Principal } from '../iam/index.js';
import { setBounded, type Clock } from '../kernel/index.js';
import type { CredentialVerifier, UpstreamTokenMinter } from './policies/index.js';
import { OWN_ISSUER } from './policies/index.js';

const MAX_ENTRIES = 10_000;
/** How stale a cached "not revoked" may be: a revoked token stops working within this time. */
const REVOCATION_RECHECK_MS = 5_000;

interface CachedToken {
  readonly principal: Principal;
  readonly expiresAt: number;
  checkedAt: number;
}

/**
 * The gateway's view of callers' credentials. A token is verified (signature, claims)
 * once and then served from memory until it expires: per-request ES256 verification
 * would halve the gateway's throughput. Revocation is asked again at most every 5 s
 * per token (one indexed read), so revoking a token takes effect within that time.
 */
export class GatewayCredentials implements CredentialVerifier {
  private readonly tokens = new Map<string, CachedToken>();
  readonly knownIssuers: ReadonlySet<string>;

  constructor(
    private readonly iam: Iam,
    private readonly clock: Clock,
    trustedIssuers: readonly string[],
  ) {
    this.knownIssuers = new Set([OWN_ISSUER, ...trustedIssuers]);
  }

  ownIssuer(): string {
    return this.iam.tokens.issuer;
  }

  verifyToken(token: string): Principal | Promise<Principal> {
    const hit = this.tokens.get(token);
    if (hit) {
      const now = this.clock.now();
      if (hit.expiresAt > now) {
        if (now - hit.checkedAt < REVOCATION_RECHECK_MS || hit.principal.jti === null || hit.principal.issuer !== this.ownIssuer()) return hit.principal;
        return this.recheck(token, hit, now);
      }
      this.tokens.delete(token);
    }
    return this.verifyNew(token);
  }

  verifyApiKey(key: string): Promise<Principal> {
    return this.iam.apiKeys.verify(key);
  }

  private async verifyNew(token: string): Promise<Principal> {
    const principal = await this.iam.verifier.verify(token);
    const now = this.clock.now();
    setBounded(this.tokens, token, { principal, expiresAt: principal.exp * 1000, checkedAt: now }, MAX_ENTRIES);
    return principal;
  }

  private async recheck(token: string, hit: CachedToken, now: number): Promise<Principal> {
    // Concurrent requests with this token share the answer of the first recheck.
    hit.checkedAt = now;
    if (await this.iam.verifier.isRevoked(hit.principal.jti!)) {
      this.tokens.delete(token);
      return this.iam.verifier.verify(token);
    }
    return hit.principal;
  }
}

interface MintedEntry {
  readonly token: string;
  readonly renewAt: number;
}

/**
 * Mints the upstream tokens of `upstream-auth: mint-jwt`, reusing one per caller,
 * audience and scopes until half its lifetime has passed: an ES256 signature per
 * request would cost as much as verifying one.
 */
export class UpstreamTokens implements UpstreamTokenMinter {
  private readonly minted = new Map<string, MintedEntry>();

  constructor(
    private readonly iam: Iam,
    private readonly clock: Clock,
  ) {}

  get ownAudience(): string {
    return this.iam.tokens.audience;
  }

  tokenFor(principal: Principal | null, audience: string, ttlSeconds: number): string | Promise<string> {
    if (!principal) throw new Error('mint-jwt needs an authenticated caller; the configuration check should have refused this route.');
    const key = `${audience}\n${ttlSeconds}\n${principal.tenant}\n${principal.sub}\n${principal.clientId ?? ''}\n${principal.scopes.join(' ')}\n${JSON.stringify(principal.act ?? null)}`;
    const hit = this.minted.get(key);
    const now = this.clock.now();
    if (hit && hit.renewAt > now) return hit.token;
    return this.mint(key, principal, audience, ttlSeconds);
  }

  private async mint(key: string, principal: Principal, audience: string, ttlSeconds: number): Promise<string> {
    const minted = await this.iam.tokens.mintAccessToken({
      sub: principal.sub,
      kind: principal.kind,
      tenant: principal.tenant,
      scopes: principal.scopes,
      clientId: principal.clientId ?? 'flowgate-gateway',
      act: principal.act,
      ttlSeconds,
      audience,
    });
    setBounded(this.minted, key, { token: minted.token, renewAt: this.clock.now() + (ttlSeconds * 1000) / 2 }, MAX_ENTRIES);
    return minted.token;
  }
}
