/**
 * API keys of service accounts, for callers that cannot run an OAuth client: the
 * gateway's `auth: api-key` policy takes one from a header on every request.
 *
 * A key reads `fgk_<keyId>_<secret>`: the key id (a UUIDv7, also the row's id) finds the
 * row, the secret (256 bits from the CSPRNG, base64url) proves possession. Only the
 * SHA-256 of the secret is stored. A slow hash (scrypt) protects low-entropy passwords
 * from guessing; 256 random bits cannot be guessed, so a fast hash is as strong and keeps
 * the gateway's hot path at one SHA-256 and a Map lookup.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { ROLE_SCOPES, isRole, scopesGrant, type Role } from '@flowgate/contracts';
import type { Kysely, Selectable } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { newId, randomToken, setBounded, SingleFlight, type Clock } from '../kernel/index.js';
import { pageSize, toPage, type Page } from '../storage/index.js';
import type { ApiKeysTable, IamTables } from './iam.tables.js';
import type { Principal } from './principal.js';
import { accountScopes } from './service-account.repository.js';

export type ApiKeyRow = Selectable<ApiKeysTable>;

const SECRET_BYTES = 32;
const MAX_KEY_LENGTH = 200;
/** `fgk_`, a lower-case UUID, `_`, 43 base64url characters (32 bytes, unpadded). */
const KEY_PATTERN = /^fgk_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

/** How long a verified key is taken on trust before the store is asked again. */
export const API_KEY_CACHE_MS = 5_000;
const API_KEY_CACHE_ENTRIES = 10_000;
/** Reads of one verification when forgets of its key or account keep landing during them; then it gives up (503). */
const MAX_READS = 4;

/** A new key: the whole key (shown once) and what is stored of it. */
export interface NewApiKey {
  readonly id: string;
  readonly key: string;
  readonly secretHash: string;
  readonly last4: string;
}

/** Makes a new key. */
export function newApiKey(): NewApiKey {
  const id = newId();
  const secret = randomToken(SECRET_BYTES);
  const key = `fgk_${id}_${secret}`;
  return { id, key, secretHash: secretDigest(secret).toString('hex'), last4: key.slice(-4) };
}

/** Splits a key into its id and secret; `undefined` when it is not a key's shape. */
export function parseApiKey(key: string): { id: string; secret: string } | undefined {
  if (key.length > MAX_KEY_LENGTH) return undefined;
  const match = KEY_PATTERN.exec(key);
  return match ? { id: match[1]!, secret: match[2]! } : undefined;
}

function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Compares two digests in constant time. */
function sameDigest(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The scopes a service account holds: its own list plus its role's (as the token endpoint counts them). */
export function accountHeldScopes(listed: readonly string[], role: Role | null): string[] {
  return [...new Set([...listed, ...(role ? ROLE_SCOPES[role] : [])])];
}

/** Reads a JSON scope list as stored. */
export function storedScopes(json: string): string[] {
  return accountScopes({ scopes: json });
}

/** A key with what verifying it needs of its account. */
export interface ApiKeyWithAccount {
  readonly id: string;
  readonly tenant_id: string;
  readonly service_account_id: string;
  readonly scopes: string;
  readonly secret_hash: string;
  readonly expires_at: number | null;
  readonly revoked_at: number | null;
  readonly client_id: string;
  readonly account_name: string;
  readonly account_scopes: string;
  readonly disabled: number;
  readonly role: string | null;
}

/** API keys of a tenant's service accounts. Every query but the verifier's filters by tenant and account. */
export class ApiKeyRepository {
  constructor(private readonly db: Kysely<IamTables>) {}

  async create(row: ApiKeyRow): Promise<ApiKeyRow> {
    await this.db.insertInto('api_keys').values(row).execute();
    return row;
  }

  async get(tenantId: string, accountId: string, id: string): Promise<ApiKeyRow | undefined> {
    return this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('service_account_id', '=', accountId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  async list(tenantId: string, accountId: string, limit?: number, cursor?: string): Promise<Page<ApiKeyRow>> {
    const n = pageSize(limit);
    let q = this.db
      .selectFrom('api_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('service_account_id', '=', accountId)
      .orderBy('id')
      .limit(n + 1);
    if (cursor) q = q.where('id', '>', cursor);
    return toPage(await q.execute(), n, (r) => r.id, (r) => r);
  }

  /** Marks a key revoked; false when it was not there or already revoked. */
  async revoke(tenantId: string, accountId: string, id: string, at: number): Promise<boolean> {
    const result = await this.db
      .updateTable('api_keys')
      .set({ revoked_at: at })
      .where('tenant_id', '=', tenantId)
      .where('service_account_id', '=', accountId)
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /**
   * A key by its id, across tenants, with its account and the account's role: the key
   * names its tenant only once verified. The account must be of the key's tenant.
   */
  async findForVerification(id: string): Promise<ApiKeyWithAccount | undefined> {
    return this.db
      .selectFrom('api_keys as k')
      .innerJoin('service_accounts as a', (join) => join.onRef('a.id', '=', 'k.service_account_id').onRef('a.tenant_id', '=', 'k.tenant_id'))
      .leftJoin('members as m', (join) => join.onRef('m.tenant_id', '=', 'k.tenant_id').onRef('m.principal_id', '=', 'k.service_account_id'))
      .select([
        'k.id',
        'k.tenant_id',
        'k.service_account_id',
        'k.scopes',
        'k.secret_hash',
        'k.expires_at',
        'k.revoked_at',
        'a.client_id',
        'a.name as account_name',
        'a.scopes as account_scopes',
        'a.disabled',
        'm.role',
      ])
      .where('k.id', '=', id)
      .executeTakeFirst();
  }
}

/** How an {@link ApiKeyVerifier} names its principals and caches its answers. */
export interface ApiKeyVerifierOptions {
  /** The server's issuer URL: the `issuer` of the principals a key stands for. */
  readonly issuer: () => string;
  /** How long a positive answer is reused, in ms ({@link API_KEY_CACHE_MS}); 0 turns the cache off. */
  readonly cacheMs?: number;
  /** The most keys kept in the cache; the oldest entry goes first. */
  readonly cacheEntries?: number;
}

interface CachedKey {
  readonly digest: Buffer;
  readonly principal: Principal;
  readonly tenant: string;
  readonly accountId: string;
  /** Until when the answer stands: the cache time, cut short by the key's expiry. */
  readonly until: number;
}

/** A row as read, when the read began (an answer stands from then) and the forgets seen by then. */
interface KeyRead {
  readonly row: ApiKeyWithAccount | undefined;
  readonly readAt: number;
  readonly forgetsBefore: number;
}

/** Forgets remembered one by one; past this many the oldest go, and reads older than them read again. */
const FORGETS_KEPT = 1_000;

/**
 * The forgets this instance has seen, numbered, by key and by account: whether one
 * touched a given key since a read began. A forget of another key does not make a read
 * stale. Bounded: a read that began before the oldest forgotten forget counts as touched.
 */
class ForgetLog {
  private count = 0;
  private readonly byKey = new Map<string, number>();
  private readonly byAccount = new Map<string, number>();
  /** The number of the newest forget dropped from the maps. */
  private dropped = 0;

  /** How many forgets there have been: a read records it when it begins. */
  get seen(): number {
    return this.count;
  }

  key(keyId: string): void {
    this.record(this.byKey, keyId);
  }

  account(tenantId: string, accountId: string): void {
    this.record(this.byAccount, `${tenantId}/${accountId}`);
  }

  /** Whether a forget of this key or of its account came after `seen`. */
  touchedSince(seen: number, row: ApiKeyWithAccount): boolean {
    return (
      seen < this.dropped ||
      (this.byKey.get(row.id) ?? 0) > seen ||
      (this.byAccount.get(`${row.tenant_id}/${row.service_account_id}`) ?? 0) > seen
    );
  }

  private record(forgets: Map<string, number>, name: string): void {
    this.count++;
    const dropped = setBounded(forgets, name, this.count, FORGETS_KEPT);
    if (dropped) this.dropped = Math.max(this.dropped, dropped[1]);
  }
}

const invalid = (detail: string) => new FlowgateError('FLOWGATE_ERR_AUTH_API_KEY_INVALID', detail);
/** One answer for an unknown id and a wrong secret: nothing to tell them apart. */
const unknownKey = () => invalid('The API key is not known.');

/**
 * Verifies API keys and answers the principal of their service account.
 *
 * Positive answers are cached in memory for {@link API_KEY_CACHE_MS} (bounded), so the
 * hot path is one SHA-256 and a Map lookup; refusals are not cached. Revoking a key, or
 * deleting, demoting or rotating the secret of its account, on this instance forgets
 * it at once ({@link forget}, {@link forgetAccount}), and once that returns no
 * verification on this instance accepts the key: one whose read of the store was under
 * way at the time reads again. Other instances sharing the store keep accepting it until
 * their cached answer runs out: at most the cache time after the revoke, since an answer
 * stands from when its read began.
 * Refusals name why only to a caller holding the right secret (revoked, expired,
 * disabled account); anyone else learns only that the key is not known.
 */
export class ApiKeyVerifier {
  private readonly cache = new Map<string, CachedKey>();
  /** Reads under way, by forgets seen and key id: a read never serves a verification that began after a forget. */
  private readonly lookups = new SingleFlight<string, KeyRead>();
  /** A read that began before a forget of its key or account may predate the revoke, and is not used. */
  private readonly forgets = new ForgetLog();
  private readonly cacheMs: number;
  private readonly cacheEntries: number;

  constructor(
    private readonly keys: ApiKeyRepository,
    private readonly clock: Clock,
    private readonly options: ApiKeyVerifierOptions,
  ) {
    this.cacheMs = options.cacheMs ?? API_KEY_CACHE_MS;
    this.cacheEntries = options.cacheEntries ?? API_KEY_CACHE_ENTRIES;
  }

  /** The principal an API key stands for. Throws `FLOWGATE_ERR_AUTH_API_KEY_INVALID`. */
  async verify(key: string): Promise<Principal> {
    const parsed = parseApiKey(key);
    if (!parsed) throw invalid('The value is not a Flowgate API key (fgk_<id>_<secret>).');
    const digest = secretDigest(parsed.secret);
    const now = this.clock.now();
    const cached = this.cache.get(parsed.id);
    if (cached) {
      if (cached.until > now) {
        if (!sameDigest(cached.digest, digest)) throw unknownKey();
        return cached.principal;
      }
      this.cache.delete(parsed.id);
    }

    // A forget is called once the revoke (or account change) is in the store: a read that
    // began before a forget of its key or account may hold the row as it was, so it is
    // read again. Checked after the await and used without another, so no forget can slip
    // between check and cache.
    let read: KeyRead;
    for (let attempt = 1; ; attempt++) {
      read = await this.read(parsed.id);
      if (!read.row || !this.forgets.touchedSince(read.forgetsBefore, read.row)) break;
      if (attempt === MAX_READS) throw new FlowgateError('FLOWGATE_ERR_SERVER_NOT_READY', 'API keys are being revoked; retry shortly.');
    }
    const { row, readAt } = read;
    if (!row || !sameDigest(Buffer.from(row.secret_hash, 'hex'), digest)) throw unknownKey();
    if (row.revoked_at !== null) throw invalid('The API key has been revoked.');
    if (row.expires_at !== null && row.expires_at <= now) throw invalid('The API key has expired.');
    if (row.disabled) throw invalid('The service account of this API key is disabled.');

    const until = Math.min(readAt + this.cacheMs, row.expires_at ?? Number.POSITIVE_INFINITY);
    const principal = this.principalOf(row, now, until);
    if (until > this.clock.now()) this.remember(parsed.id, { digest, principal, tenant: row.tenant_id, accountId: row.service_account_id, until });
    return principal;
  }

  /**
   * The key's row as read now. Callers of one key at once (a burst as its cache entry
   * runs out) share one read, but only between forgets: a verification that began after
   * a forget never takes the answer of a read that began before it.
   */
  private read(id: string): Promise<KeyRead> {
    const forgetsBefore = this.forgets.seen;
    return this.lookups.run(`${forgetsBefore}:${id}`, async () => {
      const readAt = this.clock.now();
      return { row: await this.keys.findForVerification(id), readAt, forgetsBefore };
    });
  }

  /** Forgets a key on this instance (it was revoked): its next use asks the store. */
  forget(keyId: string): void {
    this.forgets.key(keyId);
    this.cache.delete(keyId);
  }

  /** Forgets every key of an account on this instance (it was deleted, demoted or rotated). */
  forgetAccount(tenantId: string, accountId: string): void {
    this.forgets.account(tenantId, accountId);
    for (const [id, entry] of this.cache) {
      if (entry.tenant === tenantId && entry.accountId === accountId) this.cache.delete(id);
    }
  }

  /**
   * The account's principal, holding the key's scopes that the account still holds now:
   * a key never outgrows its account. `exp` is when this answer stops standing (the
   * cache time or the key's expiry), since a key has no token lifetime of its own.
   */
  private principalOf(row: ApiKeyWithAccount, now: number, until: number): Principal {
    const role = row.role !== null && isRole(row.role) ? row.role : null;
    const held = accountHeldScopes(storedScopes(row.account_scopes), role);
    const scopes = Object.freeze(storedScopes(row.scopes).filter((s) => scopesGrant(held, s)));
    return Object.freeze({
      kind: 'service_account' as const,
      sub: row.service_account_id,
      tenant: row.tenant_id,
      scopes,
      clientId: row.client_id,
      act: undefined,
      jti: null,
      issuer: this.options.issuer(),
      iat: Math.floor(now / 1000),
      exp: Math.ceil(until / 1000),
      name: row.account_name,
    });
  }

  private remember(id: string, entry: CachedKey): void {
    setBounded(this.cache, id, entry, this.cacheEntries);
  }
}
