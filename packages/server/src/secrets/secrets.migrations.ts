import { sql, type Kysely } from 'kysely';
import type { NamedMigration } from '../storage/index.js';

/**
 * The secrets' schema:
 * - `secret_data_keys`: per tenant, AES-256 data keys wrapped by a master key (its id is
 *   kept, so a rotation knows what to re-wrap); one active key per tenant seals new values.
 * - `secrets`: a tenant's named secrets, sealed with one of its data keys.
 */
export const secretsMigrations: readonly NamedMigration[] = [
  {
    name: '20261123_03_secrets_initial',
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('secret_data_keys')
        .addColumn('id', 'varchar(40)', (c) => c.primaryKey())
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('master_key_id', 'varchar(40)', (c) => c.notNull())
        .addColumn('wrapped', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('retired_at', 'bigint')
        .execute();
      // At most one active data key per tenant, also when two instances create one at once.
      await db.schema.createIndex('secret_data_keys_active').on('secret_data_keys').column('tenant_id').unique().where(sql.ref('retired_at'), 'is', null).execute();
      await db.schema.createIndex('secret_data_keys_master').on('secret_data_keys').column('master_key_id').execute();

      await db.schema
        .createTable('secrets')
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(100)', (c) => c.notNull())
        .addColumn('kind', 'varchar(16)', (c) => c.notNull())
        .addColumn('description', 'varchar(500)')
        .addColumn('data_key_id', 'varchar(40)', (c) => c.notNull())
        .addColumn('ciphertext', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('secrets_pk', ['tenant_id', 'name'])
        .execute();
    },
  },
  {
    // The current access token of each oauth2 secret, sealed like the secret, shared by
    // every instance; `refreshing_until` is the lease of the one instance refreshing it.
    name: '20261123_06_secrets_oauth2_tokens',
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('secret_oauth2_tokens')
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(100)', (c) => c.notNull())
        .addColumn('data_key_id', 'varchar(40)')
        .addColumn('sealed', 'text')
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('refreshing_until', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('secret_oauth2_tokens_pk', ['tenant_id', 'name'])
        .execute();
    },
  },
];

/** The secrets' tables, as Kysely sees them. Times are epoch milliseconds. */
export interface SecretsTables {
  secret_data_keys: {
    id: string;
    tenant_id: string;
    master_key_id: string;
    wrapped: string;
    created_at: number;
    retired_at: number | null;
  };
  secret_oauth2_tokens: {
    tenant_id: string;
    name: string;
    data_key_id: string | null;
    sealed: string | null;
    expires_at: number;
    refreshing_until: number;
  };
  secrets: {
    tenant_id: string;
    name: string;
    kind: string;
    description: string | null;
    data_key_id: string;
    ciphertext: string;
    version: number;
    created_at: number;
    updated_at: number;
  };
}
