import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Kysely, Selectable } from 'kysely';
import type { Clock } from '../kernel/index.js';
import type { IamTables, SigningKeysTable } from './iam.tables.js';

/** The algorithm of every key Flowgate signs with (ES256: ECDSA P-256 with SHA-256, RFC 7518 §3.4). */
export const SIGNING_ALG = 'ES256';

type KeyRow = Selectable<SigningKeysTable>;

interface LoadedKey {
  readonly row: KeyRow;
  readonly publicKey: CryptoKey;
  readonly publicJwk: JWK;
}

export interface SigningKeyStoreOptions {
  /** How long an instance trusts its cached key list before re-reading the store. */
  readonly cacheMs: number;
  /**
   * How long a retired key stays published after retirement: long enough for every
   * token it signed to expire (token lifetime + clock tolerance + the cache time,
   * during which another instance may still sign with it).
   */
  readonly publishMs: number;
}

/**
 * The IAM's signing keys, shared by every Flowgate instance through the store. The
 * newest unretired key signs; `rotate()` makes a new one and retires the rest, which stay
 * in the JWKS until every token they signed has expired.
 */
export class SigningKeyStore {
  private cache: { loadedAt: number; keys: LoadedKey[] } | undefined;
  private lastMissReload = 0;
  private signing: { kid: string; key: CryptoKey } | undefined;

  constructor(
    private readonly db: Kysely<IamTables>,
    private readonly clock: Clock,
    private readonly options: SigningKeyStoreOptions,
    /** Encrypts private keys at rest; without one they are stored in the clear. */
    private readonly sealer?: KeySealer,
  ) {}

  /** Makes sure a signing key exists (the first start creates one). */
  async init(): Promise<void> {
    const keys = await this.load();
    if (!keys.some((k) => k.row.retired_at === null)) {
      await this.insertNewKey(this.db);
      await this.load();
    }
  }

  /** The key to sign with now. */
  async activeKey(): Promise<{ kid: string; key: CryptoKey }> {
    const keys = await this.keys();
    const active = keys.filter((k) => k.row.retired_at === null).sort((a, b) => b.row.created_at - a.row.created_at)[0];
    if (!active) {
      await this.init();
      return this.activeKey();
    }
    if (this.signing?.kid !== active.row.kid) {
      const jwk = JSON.parse(await this.privateJwkText(active.row)) as JWK;
      this.signing = { kid: active.row.kid, key: (await importJWK(jwk, SIGNING_ALG)) as CryptoKey };
    }
    return this.signing;
  }

  /**
   * The public key with this `kid`, if it is published. An unknown kid re-reads the
   * store (at most once a second, so forged kids cannot hammer it): another instance
   * may have rotated.
   */
  async publicKey(kid: string): Promise<CryptoKey | undefined> {
    const now = this.clock.now();
    let found = (await this.keys()).find((k) => k.row.kid === kid && this.isPublished(k.row, now));
    if (!found && now - this.lastMissReload >= 1000) {
      this.lastMissReload = now;
      found = (await this.load()).find((k) => k.row.kid === kid && this.isPublished(k.row, now));
    }
    return found?.publicKey;
  }

  /** The JSON Web Key Set (RFC 7517 §5) of every published public key. */
  async jwks(): Promise<{ keys: JWK[] }> {
    const now = this.clock.now();
    const keys = (await this.keys()).filter((k) => this.isPublished(k.row, now));
    return { keys: keys.map((k) => k.publicJwk) };
  }

  /** Every key with its status, newest first. */
  async list(): Promise<Array<{ kid: string; alg: string; createdAt: number; retiredAt: number | null; publishedUntil: number | null }>> {
    const keys = await this.load();
    return keys
      .sort((a, b) => b.row.created_at - a.row.created_at)
      .map((k) => ({
        kid: k.row.kid,
        alg: k.row.alg,
        createdAt: k.row.created_at,
        retiredAt: k.row.retired_at,
        publishedUntil: k.row.retired_at === null ? null : k.row.retired_at + this.options.publishMs,
      }));
  }

  /**
   * Creates a new signing key and retires the others, in one transaction. Keys whose
   * publication window has passed lose their private half; their public half stays, so
   * what they signed for the long term (audit checkpoints) can still be verified.
   */
  async rotate(): Promise<{ kid: string; createdAt: number }> {
    const now = this.clock.now();
    // Made (and sealed, which reads the store) before the transaction: SQLite has one connection.
    const fresh = await this.newKeyRow();
    await this.db.transaction().execute(async (trx) => {
      await trx.updateTable('signing_keys').set({ retired_at: now }).where('retired_at', 'is', null).execute();
      await trx.updateTable('signing_keys').set({ private_jwk: '' }).where('retired_at', '<', now - this.options.publishMs).execute();
      await trx.insertInto('signing_keys').values(fresh).execute();
    });
    await this.load();
    return { kid: fresh.kid, createdAt: fresh.created_at };
  }

  /**
   * The public key `kid`, published or long retired: for signatures meant to outlive
   * tokens, such as audit checkpoints. Undefined when the IAM never had it.
   */
  async historicPublicKey(kid: string): Promise<CryptoKey | undefined> {
    const known = (await this.keys()).find((k) => k.row.kid === kid) ?? (await this.load()).find((k) => k.row.kid === kid);
    return known?.publicKey;
  }

  /** Seals private keys stored in the clear (from before the sealer existed). */
  async sealStoredKeys(): Promise<number> {
    if (!this.sealer) return 0;
    const rows = await this.db.selectFrom('signing_keys').select(['kid', 'private_jwk']).execute();
    let sealed = 0;
    for (const row of rows) {
      if (row.private_jwk === '' || row.private_jwk.startsWith(SEALED)) continue;
      const text = await this.sealer.seal(row.private_jwk, sealContext(row.kid));
      await this.db.updateTable('signing_keys').set({ private_jwk: `${SEALED}${text}` }).where('kid', '=', row.kid).where('private_jwk', '=', row.private_jwk).execute();
      sealed++;
    }
    return sealed;
  }

  private async privateJwkText(row: KeyRow): Promise<string> {
    if (!row.private_jwk.startsWith(SEALED)) return row.private_jwk;
    if (!this.sealer) throw new Error(`signing key ${row.kid} is sealed, and this IAM has no sealer`);
    return this.sealer.open(row.private_jwk.slice(SEALED.length), sealContext(row.kid));
  }

  private isPublished(row: KeyRow, now: number): boolean {
    return row.retired_at === null || row.retired_at + this.options.publishMs > now;
  }

  private async keys(): Promise<LoadedKey[]> {
    if (this.cache && this.clock.now() - this.cache.loadedAt < this.options.cacheMs) return this.cache.keys;
    return this.load();
  }

  private async load(): Promise<LoadedKey[]> {
    const rows = await this.db.selectFrom('signing_keys').selectAll().execute();
    const keys = await Promise.all(
      rows.map(async (row) => {
        const publicJwk = JSON.parse(row.public_jwk) as JWK;
        return { row, publicJwk, publicKey: (await importJWK(publicJwk, row.alg)) as CryptoKey };
      }),
    );
    this.cache = { loadedAt: this.clock.now(), keys };
    return keys;
  }

  private async insertNewKey(db: Kysely<IamTables>): Promise<{ kid: string; createdAt: number }> {
    const row = await this.newKeyRow();
    await db.insertInto('signing_keys').values(row).execute();
    return { kid: row.kid, createdAt: row.created_at };
  }

  private async newKeyRow() {
    const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
    const publicJwk = await exportJWK(publicKey);
    // The kid is the key's RFC 7638 thumbprint: derived from the key, never reused.
    const kid = await calculateJwkThumbprint(publicJwk);
    const published: JWK = { ...publicJwk, kid, alg: SIGNING_ALG, use: 'sig' };
    const privateText = JSON.stringify({ ...(await exportJWK(privateKey)), kid, alg: SIGNING_ALG });
    return {
      kid,
      alg: SIGNING_ALG,
      public_jwk: JSON.stringify(published),
      private_jwk: this.sealer ? `${SEALED}${await this.sealer.seal(privateText, sealContext(kid))}` : privateText,
      created_at: this.clock.now(),
      retired_at: null,
    };
  }
}

/** Encrypts text at rest (the secrets service's envelope encryption). */
export interface KeySealer {
  seal(plain: string, context: string): Promise<string>;
  open(sealed: string, context: string): Promise<string>;
}

/** Marks a sealed private key; a stored JWK in the clear starts with `{`. */
const SEALED = 'sealed:';

function sealContext(kid: string): string {
  return `flowgate iam signing key\u0000${kid}`;
}
