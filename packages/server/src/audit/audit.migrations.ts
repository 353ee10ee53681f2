import type { Kysely } from 'kysely';
import type { NamedMigration } from '../storage/index.js';

/**
 * The audit log's schema: per tenant, a hash chain of records (`audit_records`), its head
 * (`audit_heads`, which orders appends), and signed checkpoints of the head.
 */
export const auditMigrations: readonly NamedMigration[] = [
  {
    name: '20261123_04_audit_initial',
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('audit_records')
        // A tenant, or `_platform` for what no tenant owns.
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('event_id', 'varchar(64)', (c) => c.notNull().unique())
        .addColumn('occurred_at', 'bigint', (c) => c.notNull())
        .addColumn('action', 'varchar(100)', (c) => c.notNull())
        .addColumn('outcome', 'varchar(16)', (c) => c.notNull())
        .addColumn('actor', 'varchar(200)')
        .addColumn('trace_id', 'varchar(64)')
        // The record's canonical JSON: what the hash covers, and what the API shows.
        .addColumn('body', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'varchar(64)', (c) => c.notNull())
        .addColumn('hash', 'varchar(64)', (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_records_pk', ['tenant_id', 'seq'])
        .execute();
      await db.schema.createIndex('audit_records_time').on('audit_records').columns(['tenant_id', 'occurred_at']).execute();

      await db.schema
        .createTable('audit_heads')
        .addColumn('tenant_id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('hash', 'varchar(64)', (c) => c.notNull())
        .addColumn('checkpoint_seq', 'bigint', (c) => c.notNull())
        .addColumn('checkpoint_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('audit_checkpoints')
        .addColumn('tenant_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('seq', 'bigint', (c) => c.notNull())
        .addColumn('head_hash', 'varchar(64)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        // A JWS (compact) over {tenant, seq, head, time}, by the IAM's signing key.
        .addColumn('signature', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('audit_checkpoints_pk', ['tenant_id', 'seq'])
        .execute();
    },
  },
];

/** The audit tables, as Kysely sees them. Times are epoch milliseconds. */
export interface AuditTables {
  audit_records: {
    tenant_id: string;
    seq: number;
    event_id: string;
    occurred_at: number;
    action: string;
    outcome: string;
    actor: string | null;
    trace_id: string | null;
    body: string;
    prev_hash: string;
    hash: string;
  };
  audit_heads: { tenant_id: string; seq: number; hash: string; checkpoint_seq: number; checkpoint_at: number };
  audit_checkpoints: { tenant_id: string; seq: number; head_hash: string; created_at: number; signature: string };
}
