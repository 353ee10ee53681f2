/**
 * The IAM's tables. Times are epoch milliseconds; booleans are 0/1 integers, the same on
 * SQLite and PostgreSQL. Every tenant-owned row carries `tenant_id`, and every query on
 * it filters by tenant (see the repositories).
 */
import type { Generated } from 'kysely';

export interface TenantsTable {
  id: string;
  created_at: number;
}

export interface UsersTable {
  id: string;
  tenant_id: string;
  username: string;
  password_hash: string;
  display_name: string | null;
  disabled: Generated<number>;
  created_at: number;
}

export interface ServiceAccountsTable {
  id: string;
  tenant_id: string;
  name: string;
  client_id: string;
  secret_hash: string;
  /** JSON array of scope strings. */
  scopes: string;
  created_by: string | null;
  disabled: Generated<number>;
  created_at: number;
}

export interface MembersTable {
  tenant_id: string;
  principal_id: string;
  principal_type: 'user' | 'service_account';
  role: string;
  created_at: number;
}

export interface SigningKeysTable {
  kid: string;
  alg: string;
  public_jwk: string;
  /** Private JWK. Stored as is until the secrets service (issue 6) wraps it. */
  private_jwk: string;
  created_at: number;
  retired_at: number | null;
}

export interface RefreshTokensTable {
  token_hash: string;
  family_id: string;
  tenant_id: string;
  principal_id: string;
  principal_type: 'user' | 'service_account';
  client_id: string;
  scope: string;
  auth_time: number;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  revoked_at: number | null;
}

export interface AuthCodesTable {
  code_hash: string;
  tenant_id: string;
  user_id: string;
  client_id: string;
  redirect_uri: string;
  code_challenge: string;
  scope: string;
  nonce: string | null;
  auth_time: number;
  expires_at: number;
  used_at: number | null;
  /** Refresh-token family issued from this code, revoked if the code is replayed. */
  family_id: string | null;
}

export interface RevokedTokensTable {
  jti: string;
  tenant_id: string;
  expires_at: number;
  revoked_at: number;
}

export interface AuthFailuresTable {
  key: string;
  failures: number;
  window_start: number;
  locked_until: number;
}

/**
 * API keys of service accounts, for the gateway's `auth: api-key` policy. Only the
 * SHA-256 of the secret part is kept: the secret is 256 random bits, so a fast hash is
 * as strong as a slow one and keeps the gateway's hot path cheap.
 */
export interface ApiKeysTable {
  id: string;
  tenant_id: string;
  service_account_id: string;
  name: string;
  /** JSON array of scope strings: a subset of the account's when created. */
  scopes: string;
  /** SHA-256 of the key's secret part, hex. */
  secret_hash: string;
  /** The key's last four characters, to tell keys apart in lists. */
  last4: string;
  created_by: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface IamTables {
  tenants: TenantsTable;
  users: UsersTable;
  service_accounts: ServiceAccountsTable;
  members: MembersTable;
  signing_keys: SigningKeysTable;
  refresh_tokens: RefreshTokensTable;
  auth_codes: AuthCodesTable;
  revoked_tokens: RevokedTokensTable;
  auth_failures: AuthFailuresTable;
  api_keys: ApiKeysTable;
}
