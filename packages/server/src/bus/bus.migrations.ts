import { sql, SqliteAdapter, type ColumnDefinitionBuilder, type Generated, type Kysely } from 'kysely';
import type { NamedMigration } from '../storage/index.js';

/**
 * The bus's tables, in the state store:
 * - `bus_topics`: each tenant topic's schema and retention (both backends);
 * - `bus_outbox`: events written in a state transaction, waiting to be relayed to a
 *   backend that cannot join that transaction (NATS);
 * - `bus_log_*`, `bus_groups`, `bus_cursors`, `bus_pending`: the embedded backend's log
 *   and consumer groups.
 */
export const busMigrations: readonly NamedMigration[] = [
  {
    name: '20261123_02_bus_initial',
    async up(db: Kysely<unknown>) {
      const sqlite = db.getExecutor().adapter instanceof SqliteAdapter;
      // The log's sequence must never go back, even when retention deleted every event:
      // SQLite reuses the largest rowid unless AUTOINCREMENT is asked for.
      const serialKey = (c: ColumnDefinitionBuilder) => (sqlite ? c.primaryKey().autoIncrement() : c.primaryKey().generatedByDefaultAsIdentity());

      await db.schema
        .createTable('bus_topics')
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(200)', (c) => c.notNull())
        .addColumn('schema_kind', 'varchar(16)')
        .addColumn('schema_text', 'text')
        .addColumn('schema_version', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('max_age_ms', 'bigint')
        .addColumn('max_bytes', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('bus_topics_pk', ['tenant_id', 'name'])
        .execute();

      await db.schema
        .createTable('bus_outbox')
        .addColumn('id', sqlite ? 'integer' : 'bigint', serialKey)
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('topic', 'varchar(200)', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('bus_log_topics')
        .addColumn('id', sqlite ? 'integer' : 'bigint', serialKey)
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(200)', (c) => c.notNull())
        .addUniqueConstraint('bus_log_topics_name', ['tenant_id', 'name'])
        .execute();

      await db.schema
        .createTable('bus_log_events')
        .addColumn('seq', sqlite ? 'integer' : 'bigint', serialKey)
        .addColumn('topic_id', 'bigint', (c) => c.notNull())
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('event_key', 'varchar(200)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('size', 'integer', (c) => c.notNull())
        .addColumn('body', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('bus_log_events_topic').on('bus_log_events').columns(['topic_id', 'seq']).execute();
      await db.schema.createIndex('bus_log_events_tenant').on('bus_log_events').columns(['tenant_id', 'seq']).execute();

      await db.schema
        .createTable('bus_groups')
        .addColumn('id', sqlite ? 'integer' : 'bigint', serialKey)
        // A tenant id, or '*' for a platform group over every tenant.
        .addColumn('scope', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(100)', (c) => c.notNull())
        .addColumn('filter_kind', 'varchar(8)', (c) => c.notNull())
        .addColumn('filter_source', 'varchar(200)', (c) => c.notNull())
        // Where tenants not yet in bus_cursors start: the last seq before the group began.
        .addColumn('start_seq', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('bus_groups_name', ['scope', 'name'])
        .execute();

      await db.schema
        .createTable('bus_cursors')
        .addColumn('group_id', 'bigint', (c) => c.notNull())
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        // The last seq of this tenant claimed by the group; later events wait in the log.
        .addColumn('position', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('bus_cursors_pk', ['group_id', 'tenant_id'])
        .execute();

      await db.schema
        .createTable('bus_pending')
        .addColumn('group_id', 'bigint', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('event_key', 'varchar(200)')
        .addColumn('deliveries', 'integer', (c) => c.notNull())
        // Deliverable when visible_at <= now: 0 while waiting on an earlier event of the
        // same key, the ack deadline while delivered, the retry time after a nack.
        .addColumn('visible_at', 'bigint', (c) => c.notNull())
        .addColumn('delivery_id', 'bigint', (c) => c.notNull())
        .addColumn('last_error', 'text')
        .addPrimaryKeyConstraint('bus_pending_pk', ['group_id', 'seq'])
        .execute();
      await db.schema.createIndex('bus_pending_visible').on('bus_pending').columns(['group_id', 'visible_at']).execute();
      await db.schema.createIndex('bus_pending_key').on('bus_pending').columns(['group_id', 'event_key', 'seq']).execute();
    },
  },
  {
    // Most events have no key; the key index need not hold them (one index write less per
    // claimed event). Every query on it compares event_key, which implies it is not null.
    name: '20261123_05_bus_pending_key_partial',
    async up(db: Kysely<unknown>) {
      await db.schema.dropIndex('bus_pending_key').execute();
      await db.schema.createIndex('bus_pending_key').on('bus_pending').columns(['group_id', 'event_key', 'seq']).where(sql.ref('event_key'), 'is not', null).execute();
    },
  },
];

/** The bus's tables, as Kysely sees them. Times are epoch milliseconds. */
export interface BusTables {
  bus_topics: {
    tenant_id: string;
    name: string;
    schema_kind: string | null;
    schema_text: string | null;
    schema_version: number;
    max_age_ms: number | null;
    max_bytes: number | null;
    created_at: number;
    updated_at: number;
  };
  bus_outbox: { id: GeneratedId; tenant_id: string; topic: string; body: string; created_at: number };
  bus_log_topics: { id: GeneratedId; tenant_id: string; name: string };
  bus_log_events: {
    seq: GeneratedId;
    topic_id: number;
    tenant_id: string;
    event_key: string | null;
    created_at: number;
    size: number;
    body: string;
  };
  bus_groups: {
    id: GeneratedId;
    scope: string;
    name: string;
    filter_kind: string;
    filter_source: string;
    start_seq: number;
    created_at: number;
  };
  bus_cursors: { group_id: number; tenant_id: string; position: number };
  bus_pending: {
    group_id: number;
    seq: number;
    tenant_id: string;
    event_key: string | null;
    deliveries: number;
    visible_at: number;
    delivery_id: number;
    last_error: string | null;
  };
}

type GeneratedId = Generated<number>;
