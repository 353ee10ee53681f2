import type { Kysely } from 'kysely';
import type { NamedMigration } from '../storage/index.js';

/**
 * The gateway's schema. Services and routes are stored as the JSON documents the
 * operator applied (validated before they are written); `gateway_state.revision` grows
 * with each change, and every instance polls it to reload.
 */
export const gatewayMigrations: readonly NamedMigration[] = [
  {
    name: '20261123_08_gateway_config',
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('gateway_services')
        .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('gateway_routes')
        .addColumn('name', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('spec', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('gateway_state')
        .addColumn('id', 'integer', (c) => c.primaryKey())
        .addColumn('revision', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.insertInto('gateway_state' as never).values({ id: 1, revision: 0, updated_at: 0 }).execute();
    },
  },
];
