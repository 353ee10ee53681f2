import { scopesGrant } from '@flowgate/contracts';

/** The RFC 8693 §4.1 `act` claim: who acts, and before them who acted (nested). */
export interface ActClaim {
  readonly sub: string;
  readonly client_id?: string;
  readonly act?: ActClaim;
}

/** Kinds of principal a token can stand for. */
export type PrincipalKind = 'user' | 'service_account' | 'external';

/**
 * Who is calling, as established by a verified access token. Everything downstream
 * (tenant isolation, scope checks, audit) reads this, never the raw token.
 */
export interface Principal {
  readonly kind: PrincipalKind;
  /** Subject: the user or account id (for external tokens, the issuer's `sub`). */
  readonly sub: string;
  readonly tenant: string;
  readonly scopes: readonly string[];
  /** The OAuth client the token was issued to. */
  readonly clientId: string | null;
  readonly act: ActClaim | undefined;
  readonly jti: string | null;
  readonly issuer: string;
  /** Expiry, epoch seconds. */
  readonly exp: number;
  readonly iat: number;
  readonly name: string | undefined;
}

/** Whether the principal's scopes grant `scope`. */
export function principalHas(principal: Pick<Principal, 'scopes'>, scope: string): boolean {
  return scopesGrant(principal.scopes, scope);
}
