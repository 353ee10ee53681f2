import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { newId, type Clock } from '../kernel/index.js';
import { isUniqueViolation, type Store } from '../storage/index.js';
import { open, seal } from './envelope.js';
import type { MasterKeyRing } from './master-keys.js';
import type { SecretsTables } from './secrets.migrations.js';

type Db = Kysely<SecretsTables>;

/** A tenant's data key, unwrapped (kept in memory only). */
export interface DataKey {
  readonly id: string;
  readonly tenant: string;
  readonly key: Buffer;
}

/**
 * Per-tenant AES-256 data keys, stored wrapped by a master key (envelope encryption): a
 * master-key rotation re-wraps these few keys, never the secrets themselves.
 */
export class DataKeys {
  private readonly unwrapped = new Map<string, DataKey>();

  constructor(
    private readonly store: Store,
    private readonly ring: MasterKeyRing,
    private readonly clock: Clock,
  ) {}

  private get db(): Db {
    return this.store.db<SecretsTables>();
  }

  /**
   * Refuses to start with master keys that cannot open this database's data keys, rather
   * than serving errors (or, worse, garbage) for every secret later.
   */
  async checkMasterKeys(): Promise<void> {
    const rows = await this.db.selectFrom('secret_data_keys').select('master_key_id').distinct().execute();
    const missing = rows.map((r) => r.master_key_id).filter((id) => !this.ring.find(id));
    if (missing.length > 0) {
      throw new FlowgateError(
        'FLOWGATE_ERR_SECRETS_MASTER_KEY',
        `The master key does not match this database: its secrets were encrypted under master key ${missing.join(', ')}, but the configured keys are ${this.ring.ids.join(', ')}. ` +
          'Give FLOWGATE_MASTER_KEY (or the key file FLOWGATE_MASTER_KEY_FILE) the key used before.',
      );
    }
    // The id is a digest of the key, so a matching id means the key is right; opening one
    // data key per master key proves it against the stored bytes too.
    for (const id of rows.map((r) => r.master_key_id)) {
      const one = await this.db.selectFrom('secret_data_keys').selectAll().where('master_key_id', '=', id).limit(1).executeTakeFirstOrThrow();
      this.unwrap(one);
    }
  }

  /** The tenant's active data key, created on first use. */
  async active(tenant: string): Promise<DataKey> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const row = await this.db.selectFrom('secret_data_keys').selectAll().where('tenant_id', '=', tenant).where('retired_at', 'is', null).executeTakeFirst();
      if (row) return this.unwrap(row);
      // A new data key goes under the newest master key, also when another instance
      // rotated it in after this one started (its old key may be removed later).
      this.ring.refresh();
      const master = this.ring.current;
      const id = `dk_${newId()}`;
      const key = randomBytes(32);
      try {
        await this.db
          .insertInto('secret_data_keys')
          .values({ id, tenant_id: tenant, master_key_id: master.id, wrapped: seal(master.key, key, wrapContext(tenant, id)), created_at: this.clock.now(), retired_at: null })
          .execute();
        const created = { id, tenant, key };
        this.unwrapped.set(id, created);
        return created;
      } catch (error) {
        // Another instance created the tenant's key first: use that one.
        if (!isUniqueViolation(error)) throw error;
      }
    }
    throw new FlowgateError('FLOWGATE_ERR_SERVER_INTERNAL', `No data key could be created for tenant ${tenant}.`);
  }

  /** A data key by id, which must belong to `tenant`. */
  async byId(tenant: string, id: string): Promise<DataKey> {
    const known = this.unwrapped.get(id);
    if (known) {
      if (known.tenant !== tenant) throw unreadable(tenant);
      return known;
    }
    const row = await this.db.selectFrom('secret_data_keys').selectAll().where('id', '=', id).where('tenant_id', '=', tenant).executeTakeFirst();
    if (!row) throw unreadable(tenant);
    return this.unwrap(row);
  }

  /**
   * Re-wraps every data key not wrapped by the current master key. Each row changes only
   * if no one changed it meanwhile; readers holding either key read on throughout.
   */
  async rewrapAll(): Promise<{ rewrapped: number; total: number }> {
    const current = this.ring.current;
    const rows = await this.db.selectFrom('secret_data_keys').selectAll().where('master_key_id', '<>', current.id).execute();
    let rewrapped = 0;
    for (const row of rows) {
      const { key } = this.unwrap(row);
      const result = await this.db
        .updateTable('secret_data_keys')
        .set({ master_key_id: current.id, wrapped: seal(current.key, key, wrapContext(row.tenant_id, row.id)) })
        .where('id', '=', row.id)
        .where('master_key_id', '=', row.master_key_id)
        .executeTakeFirst();
      rewrapped += Number(result.numUpdatedRows);
    }
    const total = await this.db.selectFrom('secret_data_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return { rewrapped, total: Number(total.n) };
  }

  private unwrap(row: SecretsTables['secret_data_keys']): DataKey {
    const known = this.unwrapped.get(row.id);
    if (known) return known;
    const master = this.ring.find(row.master_key_id);
    if (!master) throw new FlowgateError('FLOWGATE_ERR_SECRETS_MASTER_KEY', `Data key ${row.id} is wrapped by master key ${row.master_key_id}, which this server does not hold.`);
    const key = open(master.key, row.wrapped, wrapContext(row.tenant_id, row.id), `Data key ${row.id}`);
    const dataKey = { id: row.id, tenant: row.tenant_id, key };
    this.unwrapped.set(row.id, dataKey);
    return dataKey;
  }
}

function wrapContext(tenant: string, id: string): string {
  return `flowgate data key\0${tenant}\0${id}`;
}

function unreadable(tenant: string): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_SECRETS_UNREADABLE', `A secret of tenant ${tenant} names a data key that is not the tenant's.`);
}
