import type { OAuth2Tokens } from './oauth2-tokens.js';
import type { SecretStore } from './secret-store.js';

/**
 * What a caller sends for a secret: a string secret's value, or an oauth2 secret's
 * current access token (refreshed before expiry; `expiring` says so, for callers that
 * cache it). Never log or return it.
 */
export async function secretValue(secrets: SecretStore, oauth2: OAuth2Tokens, tenant: string, name: string): Promise<{ value: string; expiring: boolean }> {
  const revealed = await secrets.reveal(tenant, name);
  return typeof revealed === 'string' ? { value: revealed, expiring: false } : { value: await oauth2.accessToken(tenant, name), expiring: true };
}
