/**
 * The IAM: tenants, users, service accounts (and their API keys), roles and scopes; Flowgate's OAuth 2 /
 * OpenID Connect server (tokens, JWKS, introspection, revocation, token exchange).
 */
export { createIam, type Iam, type IamDeps } from './create-iam.js';
export type { KeySealer } from './signing-keys.js';
export { iamMigrations } from './iam.migrations.js';
export { authenticateBearer, callerOf } from './auth-hook.js';
export { principalHas, type Principal, type ActClaim } from './principal.js';
export { createScryptHasher, type SecretHasher, type ScryptCost } from './secret-hasher.js';
export { DEFAULT_TENANT, PLATFORM_ADMIN_SCOPES } from './bootstrap.js';
export { s256Challenge } from './auth-codes.js';
export { TOKEN_TYPE_ACCESS } from './oauth-service.js';
export type { TokenVerifier } from './token-verifier.js';
export type { TokenService } from './token-service.js';
export { API_KEY_CACHE_MS, type ApiKeyVerifier } from './api-keys.js';
