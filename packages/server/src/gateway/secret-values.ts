import type { AuditRecorder, Clock } from '../kernel/index.js';
import { secretValue, type OAuth2Tokens, type SecretStore } from '../secrets/index.js';
import type { SecretValues } from './policies/index.js';

const CACHE_MS = 30_000;
const MAX_ENTRIES = 1_000;

/**
 * Secret values for `upstream-auth: secret-header`, kept in memory for 30 s so the hot
 * path does not decrypt per request (a changed secret is picked up within that time).
 * An oauth2 secret yields its current access token. Each read from the store is
 * audited as `secrets.read` by the gateway; the value never is.
 */
export class GatewaySecretValues implements SecretValues {
  private readonly cache = new Map<string, { value: string; until: number }>();

  constructor(
    private readonly secrets: SecretStore,
    private readonly oauth2: OAuth2Tokens,
    private readonly clock: Clock,
    private readonly audit: AuditRecorder,
  ) {}

  value(tenant: string, name: string): string | Promise<string> {
    const key = `${tenant}\n${name}`;
    const hit = this.cache.get(key);
    if (hit && hit.until > this.clock.now()) return hit.value;
    return this.read(key, tenant, name);
  }

  private async read(key: string, tenant: string, name: string): Promise<string> {
    const { value, expiring } = await secretValue(this.secrets, this.oauth2, tenant, name);
    this.audit.record({ action: 'secrets.read', tenant, actor: 'gateway', outcome: 'success', target: `secret:${name}`, details: { component: 'gateway' } });
    if (this.cache.size >= MAX_ENTRIES) this.cache.clear();
    // An oauth2 access token may expire sooner; OAuth2Tokens refreshes it early, and a
    // shorter cache keeps the gateway's copy within its lifetime.
    this.cache.set(key, { value, until: this.clock.now() + (expiring ? CACHE_MS / 3 : CACHE_MS) });
    return value;
  }
}
