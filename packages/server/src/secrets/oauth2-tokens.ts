import type { OAuth2SecretValue } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { SingleFlight, type AuditRecorder, type Clock } from '../kernel/index.js';
import type { OutboundClient } from '../outbound/index.js';
import { isUniqueViolation, type Store } from '../storage/index.js';
import type { DataKeys } from './data-keys.js';
import { open, seal } from './envelope.js';
import type { SecretStore } from './secret-store.js';
import type { SecretsTables } from './secrets.migrations.js';

type Db = Kysely<SecretsTables>;

/** A token is refreshed this long before it expires, so callers never get one about to. */
const EARLY_MS = 60_000;
/** How long one instance may take to refresh before another may try. */
const LEASE_MS = 30_000;
/** How often an instance waiting on another's refresh looks again. */
const WAIT_STEP_MS = 100;
/** Used when the token endpoint does not say (RFC 6749 §5.1 makes expires_in optional). */
const DEFAULT_EXPIRES_IN_S = 3600;

/**
 * Valid access tokens for oauth2 secrets (the Open Integration Hub secret service's job):
 * the current token is kept sealed in the store and shared by every instance; when it is
 * missing or about to expire, exactly one caller refreshes it (one per process through a
 * shared promise, one per fleet through a lease row), using the refresh token if the secret
 * has one, else the client credentials grant. A rotated refresh token is saved.
 */
export class OAuth2Tokens {
  private readonly refreshes = new SingleFlight<string, string>();

  constructor(
    private readonly store: Store,
    private readonly secrets: SecretStore,
    private readonly keys: DataKeys,
    private readonly client: OutboundClient,
    private readonly clock: Clock,
    private readonly audit: AuditRecorder,
    /** How long a token request may take in all (the client's own timeout counts idle time only). */
    private readonly refreshTimeoutMs = 30_000,
  ) {}

  private get db(): Db {
    return this.store.db<SecretsTables>();
  }

  /** A valid access token of the tenant's oauth2 secret `name`. Never log it. */
  accessToken(tenant: string, name: string): Promise<string> {
    return this.refreshes.run(`${tenant}\u0000${name}`, () => this.obtain(tenant, name));
  }

  private async obtain(tenant: string, name: string): Promise<string> {
    // Only an oauth2 secret ever has a token row; the kind is checked before making one.
    let checked = false;
    for (let waited = 0; waited <= LEASE_MS; waited += WAIT_STEP_MS) {
      const now = this.clock.now();
      const row = await this.db.selectFrom('secret_oauth2_tokens').selectAll().where('tenant_id', '=', tenant).where('name', '=', name).executeTakeFirst();
      if (row?.sealed && row.data_key_id && Number(row.expires_at) - EARLY_MS > now) {
        const key = await this.keys.byId(tenant, row.data_key_id);
        return open(key.key, row.sealed, tokenContext(tenant, name), `The access token of ${name}`).toString('utf8');
      }
      if (!checked) {
        if ((await this.secrets.get(tenant, name)).kind !== 'oauth2') throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', `The secret ${name} is not an oauth2 secret.`);
        checked = true;
      }
      if (await this.takeLease(tenant, name, now, row)) {
        try {
          return await this.refresh(tenant, name);
        } catch (error) {
          await this.db.updateTable('secret_oauth2_tokens').set({ refreshing_until: 0 }).where('tenant_id', '=', tenant).where('name', '=', name).execute();
          throw error;
        }
      }
      // Another instance is refreshing it: wait for its token.
      await new Promise((resolve) => setTimeout(resolve, WAIT_STEP_MS));
    }
    throw new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `No access token for ${name}: another instance's refresh did not finish in time.`);
  }

  /** Takes the refresh lease by compare-and-set; false when another instance holds it. */
  private async takeLease(tenant: string, name: string, now: number, row: SecretsTables['secret_oauth2_tokens'] | undefined): Promise<boolean> {
    if (!row) {
      try {
        await this.db.insertInto('secret_oauth2_tokens').values({ tenant_id: tenant, name, data_key_id: null, sealed: null, expires_at: 0, refreshing_until: now + LEASE_MS }).execute();
        return true;
      } catch (error) {
        if (isUniqueViolation(error)) return false;
        throw error;
      }
    }
    if (Number(row.refreshing_until) > now) return false;
    const taken = await this.db
      .updateTable('secret_oauth2_tokens')
      .set({ refreshing_until: now + LEASE_MS })
      .where('tenant_id', '=', tenant)
      .where('name', '=', name)
      .where('refreshing_until', '=', row.refreshing_until)
      .executeTakeFirst();
    return Number(taken.numUpdatedRows) === 1;
  }

  private async refresh(tenant: string, name: string): Promise<string> {
    const credentials = (await this.secrets.reveal(tenant, name)) as OAuth2SecretValue;
    const form = new URLSearchParams(credentials.refreshToken ? { grant_type: 'refresh_token', refresh_token: credentials.refreshToken } : { grant_type: 'client_credentials' });
    if (credentials.scope) form.set('scope', credentials.scope);
    // RFC 6749 §2.3.1: HTTP Basic with the form-encoded client id and secret.
    const basic = Buffer.from(`${formEncode(credentials.clientId)}:${formEncode(credentials.clientSecret)}`).toString('base64');
    const res = await this.client
      .request(credentials.tokenUrl, {
        method: 'POST',
        headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: form.toString(),
        // No step waits on a refresh with its own timeout: an endpoint answering a byte at a time must not hold it for ever.
        signal: AbortSignal.timeout(this.refreshTimeoutMs),
      })
      .catch((error: unknown) => {
        if ((error as Error).name !== 'TimeoutError') throw error;
        throw new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `The token endpoint of ${name} did not answer within ${this.refreshTimeoutMs} ms.`, { cause: error });
      });
    const answer = parseJson(res.text);
    if (res.status !== 200 || typeof answer?.access_token !== 'string') {
      const reason = typeof answer?.error === 'string' ? answer.error : `HTTP ${res.status}`;
      this.audit.record({ action: 'secrets.oauth2_refresh', tenant, actor: null, outcome: 'failure', target: `secret:${name}`, details: { reason } });
      throw new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `The token endpoint of ${name} did not issue an access token (${reason}).`);
    }
    const expiresIn = typeof answer.expires_in === 'number' && answer.expires_in > 0 ? answer.expires_in : DEFAULT_EXPIRES_IN_S;
    if (typeof answer.refresh_token === 'string' && answer.refresh_token !== credentials.refreshToken) {
      // The endpoint rotated the refresh token (RFC 6749 §6): the old one may be dead now.
      await this.secrets.update(tenant, name, { value: { ...credentials, refreshToken: answer.refresh_token } }, { keepToken: true });
    }
    const key = await this.keys.active(tenant);
    await this.db
      .updateTable('secret_oauth2_tokens')
      .set({ data_key_id: key.id, sealed: seal(key.key, Buffer.from(answer.access_token, 'utf8'), tokenContext(tenant, name)), expires_at: this.clock.now() + expiresIn * 1000, refreshing_until: 0 })
      .where('tenant_id', '=', tenant)
      .where('name', '=', name)
      .execute();
    this.audit.record({ action: 'secrets.oauth2_refresh', tenant, actor: null, outcome: 'success', target: `secret:${name}`, details: { expiresIn } });
    return answer.access_token;
  }
}

function tokenContext(tenant: string, name: string): string {
  return `flowgate oauth2 access token\u0000${tenant}\u0000${name}`;
}

/** application/x-www-form-urlencoded encoding of one value (RFC 6749 Appendix B). */
function formEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
