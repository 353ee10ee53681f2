import {
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
  type ProtectedHeaderParameters,
} from 'jose';
import { PLATFORM_RESOURCE, isScope, parseScope, splitScopeParam } from '@flowgate/contracts';
import type { TrustedIssuerConfig } from '../config/index.js';
import { FlowgateError } from '../errors/index.js';
import type { Clock } from '../kernel/index.js';
import type { ActClaim, Principal } from './principal.js';
import type { RevocationList } from './revocation-list.js';
import { SIGNING_ALG, type SigningKeyStore } from './signing-keys.js';

/**
 * Header parameters that would make a verifier fetch or trust key material named by the
 * token itself (RFC 7515 §4.1.2–4.1.6). jose never follows them; Flowgate refuses any
 * token that carries them, so a forged `jku` cannot even reach the key lookup.
 */
const FORBIDDEN_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const;

export interface TokenVerifierOptions {
  readonly issuer: () => string;
  readonly audience: string;
  readonly clockToleranceSeconds: number;
  readonly maxTokenBytes: number;
  readonly trustedIssuers: readonly TrustedIssuerConfig[];
  /** Whether a tenant exists (tokens naming an unknown tenant are refused). */
  readonly tenantExists: (tenant: string) => Promise<boolean>;
  /** Key source per external issuer; tests pass local key sets. Default: the JWKS URL. */
  readonly externalKeys?: (issuer: TrustedIssuerConfig) => JWTVerifyGetKey;
}

const invalid = (detail: string, cause?: unknown) =>
  new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_INVALID', detail, cause === undefined ? {} : { cause });

/**
 * Verifies bearer access tokens: Flowgate's own (ES256, keys from the store) and those
 * of trusted external issuers (keys from their JWKS). Signature and claim checks are
 * jose's; this class decides which key, which issuer and which claims count, and turns
 * every failure into one catalogue code with a safe reason.
 */
export class TokenVerifier {
  private readonly external = new Map<string, { config: TrustedIssuerConfig; keys: JWTVerifyGetKey }>();

  constructor(
    private readonly keys: SigningKeyStore,
    private readonly revocations: RevocationList,
    private readonly clock: Clock,
    private readonly options: TokenVerifierOptions,
  ) {
    for (const issuer of options.trustedIssuers) {
      const keySource =
        options.externalKeys?.(issuer) ??
        createRemoteJWKSet(new URL(issuer.jwksUri), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 600_000 });
      this.external.set(issuer.issuer, { config: issuer, keys: keySource });
    }
  }

  /** Verifies a bearer token and returns who it stands for. Throws `FLOWGATE_ERR_AUTH_TOKEN_*`. */
  async verify(token: string): Promise<Principal> {
    if (token.length > this.options.maxTokenBytes) {
      throw invalid(`The token is larger than ${this.options.maxTokenBytes} bytes.`);
    }
    let header: ProtectedHeaderParameters;
    let unverified: JWTPayload;
    try {
      header = decodeProtectedHeader(token);
      unverified = decodeJwt(token);
    } catch (cause) {
      throw invalid('The token is not a well-formed JWT.', cause);
    }
    for (const name of FORBIDDEN_HEADERS) {
      if (name in header) throw invalid(`Tokens carrying a "${name}" header are not accepted.`);
    }
    if (unverified.iss === this.options.issuer()) return this.verifyOwn(token, header);
    const trusted = typeof unverified.iss === 'string' ? this.external.get(unverified.iss) : undefined;
    if (trusted) return this.verifyExternal(token, trusted.config, trusted.keys);
    throw invalid('The token was issued by an issuer this server does not trust.');
  }

  /**
   * Whether a token of this server, verified earlier, has been revoked since: callers
   * that cache verified tokens (the gateway) re-ask this instead of verifying again.
   */
  isRevoked(jti: string): Promise<boolean> {
    return this.revocations.isRevoked(jti);
  }

  private async verifyOwn(token: string, header: ProtectedHeaderParameters): Promise<Principal> {
    if (header.alg !== SIGNING_ALG) throw invalid(`The token must be signed with ${SIGNING_ALG}.`);
    if (typeof header.kid !== 'string') throw invalid('The token names no signing key.');
    const key = await this.keys.publicKey(header.kid);
    if (!key) throw invalid('The token was signed with a key this server does not know.');
    const payload = await this.jwtVerify(token, key, {
      issuer: this.options.issuer(),
      audience: this.options.audience,
      algorithms: [SIGNING_ALG],
      typ: 'at+jwt',
      requiredClaims: ['sub', 'exp', 'iat', 'jti', 'tenant'],
    });
    const jti = payload.jti!;
    if (await this.revocations.isRevoked(jti)) {
      throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_REVOKED', 'The token has been revoked.');
    }
    const tenant = stringClaim(payload, 'tenant');
    const kind = payload.principal === 'user' || payload.principal === 'service_account' ? payload.principal : 'external';
    return {
      kind,
      sub: payload.sub!,
      tenant,
      scopes: splitScopeParam(typeof payload.scope === 'string' ? payload.scope : ''),
      clientId: typeof payload.client_id === 'string' ? payload.client_id : null,
      act: isActClaim(payload.act) ? payload.act : undefined,
      jti,
      issuer: payload.iss!,
      exp: payload.exp!,
      iat: payload.iat!,
      name: typeof payload.name === 'string' ? payload.name : undefined,
    };
  }

  private async verifyExternal(token: string, config: TrustedIssuerConfig, keys: JWTVerifyGetKey): Promise<Principal> {
    const payload = await this.jwtVerify(token, keys, {
      issuer: config.issuer,
      algorithms: config.algorithms,
      requiredClaims: ['exp', 'iat'],
      ...(config.audience ? { audience: config.audience } : {}),
    });
    const tenant = config.tenant ?? readClaim(payload, config.claims.tenant);
    if (typeof tenant !== 'string' || tenant.length === 0) {
      throw invalid(`The token has no "${config.claims.tenant}" claim naming a tenant.`);
    }
    if (!(await this.options.tenantExists(tenant))) throw invalid('The token names a tenant that does not exist.');
    const sub = readClaim(payload, config.claims.subject);
    if (typeof sub !== 'string' || sub.length === 0) throw invalid(`The token has no "${config.claims.subject}" claim.`);
    const name = readClaim(payload, config.claims.name);
    return {
      kind: 'external',
      sub,
      tenant,
      scopes: externalScopes(payload, config),
      clientId: typeof payload.azp === 'string' ? payload.azp : typeof payload.client_id === 'string' ? payload.client_id : null,
      act: isActClaim(payload.act) ? payload.act : undefined,
      jti: typeof payload.jti === 'string' ? payload.jti : null,
      issuer: config.issuer,
      exp: payload.exp!,
      iat: payload.iat!,
      name: typeof name === 'string' ? name : undefined,
    };
  }

  private async jwtVerify(
    token: string,
    key: Parameters<typeof jwtVerify>[1] | JWTVerifyGetKey,
    options: Parameters<typeof jwtVerify>[2],
  ): Promise<JWTPayload> {
    const now = this.clock.now();
    try {
      const { payload } = await jwtVerify(token, key, {
        ...options,
        clockTolerance: this.options.clockToleranceSeconds,
        currentDate: new Date(now),
      });
      // jose checks `iat` only against a maximum age; a token issued in the future is as
      // suspicious as one not yet valid (RFC 7519 §4.1.6).
      if (typeof payload.iat === 'number' && payload.iat > now / 1000 + this.options.clockToleranceSeconds) {
        throw invalid('The token was issued in the future.');
      }
      return payload;
    } catch (err) {
      throw mapJoseError(err);
    }
  }
}

function mapJoseError(err: unknown): FlowgateError {
  if (err instanceof FlowgateError) return err;
  const code = (err as { code?: string }).code ?? 'unknown';
  const claim = (err as { claim?: string }).claim;
  switch (code) {
    case 'ERR_JWT_EXPIRED':
      return new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_EXPIRED', 'The token has expired.', { cause: err });
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      if (claim === 'nbf') return invalid('The token is not valid yet.', err);
      if (claim === 'iss') return invalid('The token has the wrong issuer.', err);
      if (claim === 'aud') return invalid('The token is not meant for this audience.', err);
      if (claim === 'typ') return invalid('The token is not an access token (typ must be at+jwt).', err);
      return invalid(`The token's "${claim ?? 'unknown'}" claim is missing or wrong.`, err);
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return invalid('The token is signed with an algorithm that is not accepted.', err);
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return invalid('The token signature does not verify.', err);
    case 'ERR_JWKS_NO_MATCHING_KEY':
      return invalid("The token was signed with a key the issuer does not publish.", err);
    case 'ERR_JWKS_TIMEOUT':
    case 'ERR_JWKS_INVALID':
      return invalid("The issuer's signing keys could not be fetched.", err);
    default:
      return invalid('The token is not valid.', err);
  }
}

function stringClaim(payload: JWTPayload, name: string): string {
  const value = payload[name];
  if (typeof value !== 'string' || value.length === 0) throw invalid(`The token's "${name}" claim is missing.`);
  return value;
}

/** Reads a claim by dotted path (`realm_access.roles`). */
function readClaim(payload: JWTPayload, path: string): unknown {
  let node: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** Scopes an external token grants: its scope claim, plus what its roles map to. */
function externalScopes(payload: JWTPayload, config: TrustedIssuerConfig): string[] {
  const scopes = new Set<string>();
  const raw = readClaim(payload, config.claims.scopes);
  const listed = typeof raw === 'string' ? splitScopeParam(raw) : Array.isArray(raw) ? raw : [];
  for (const s of listed) if (typeof s === 'string' && isScope(s)) scopes.add(s);
  if (config.claims.roles) {
    const roles = readClaim(payload, config.claims.roles);
    if (Array.isArray(roles)) {
      for (const role of roles) {
        if (typeof role !== 'string') continue;
        for (const s of config.roleScopes[role] ?? []) scopes.add(s);
      }
    }
  }
  // Another identity provider may grant tenant rights, never platform administration.
  return [...scopes].filter((s) => parseScope(s)?.resource !== PLATFORM_RESOURCE);
}

function isActClaim(value: unknown): value is ActClaim {
  if (typeof value !== 'object' || value === null) return false;
  const act = value as Record<string, unknown>;
  return typeof act.sub === 'string' && (act.act === undefined || isActClaim(act.act));
}
