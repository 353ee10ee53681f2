/**
 * Secrets: per-tenant values sealed with envelope encryption (AES-256-GCM data keys per
 * tenant, wrapped by master keys from FLOWGATE_MASTER_KEY or a key file).
 */
export { MasterKeyRing, masterKeyId, type MasterKey, type MasterKeySource } from './master-keys.js';
export { DataKeys, type DataKey } from './data-keys.js';
export { SecretStore, type SecretMetadata, type NewSecret, type SecretChange } from './secret-store.js';
export { registerSecretRoutes } from './secrets.routes.js';
export { secretsMigrations, type SecretsTables } from './secrets.migrations.js';
export { createSecrets, type Secrets, type CreateSecretsOptions } from './create-secrets.js';
export { OAuth2Tokens } from './oauth2-tokens.js';
export { createTextSealer, PLATFORM_KEYS, type TextSealer } from './key-sealer.js';
export { secretValue } from './secret-value.js';
