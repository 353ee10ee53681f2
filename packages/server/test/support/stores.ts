/**
 * Opens a fresh, migrated store of either kind so one suite can run against both
 * dialects: SQLite in a new temporary folder, PostgreSQL in a new schema of its own.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { iamMigrations } from '../../src/iam/iam.migrations.js';
import { openStore, type NamedMigration, type Store } from '../../src/storage/store.js';

/** The store kinds every storage suite runs against. */
export const STORE_KINDS = ['sqlite', 'postgres'] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/** Where the PostgreSQL tests connect. */
export const TEST_DATABASE_URL = process.env.FLOWGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestStore {
  readonly store: Store;
  /** Closes the store and removes what it created (the folder or the schema). */
  cleanup(): Promise<void>;
}

export interface OpenTestStoreOptions {
  /** Apply migrations before returning (default true). */
  readonly migrate?: boolean;
  /** Which migrations (default: the IAM's); `ALL_MIGRATIONS` for a feature's own tables. */
  readonly migrations?: readonly NamedMigration[];
}

/** Opens a store of `kind`, with the IAM migrations (or those given) applied unless told otherwise. */
export async function openTestStore(kind: StoreKind, options: OpenTestStoreOptions = {}): Promise<TestStore> {
  const migrate = options.migrate ?? true;
  const migrations = options.migrations ?? iamMigrations;
  if (kind === 'sqlite') {
    const dataDir = await mkdtemp(join(tmpdir(), 'flowgate-test-'));
    let store: Store | undefined;
    try {
      store = await openStore({ dataDir });
      if (migrate) await store.migrate(migrations);
    } catch (err) {
      await store?.close();
      await rm(dataDir, { recursive: true, force: true });
      throw err;
    }
    const opened = store;
    return {
      store: opened,
      async cleanup() {
        try {
          await opened.close();
        } finally {
          await rm(dataDir, { recursive: true, force: true });
        }
      },
    };
  }

  const schema = `t_${randomBytes(8).toString('hex')}`;
  const store = await openStore({ url: TEST_DATABASE_URL, schema, dataDir: tmpdir(), poolSize: 4 });
  const dropSchema = async () => {
    await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(store.db());
  };
  try {
    if (migrate) await store.migrate(migrations);
  } catch (err) {
    try {
      await dropSchema();
    } finally {
      await store.close();
    }
    throw err;
  }
  return {
    store,
    async cleanup() {
      try {
        await dropSchema();
      } finally {
        await store.close();
      }
    },
  };
}
