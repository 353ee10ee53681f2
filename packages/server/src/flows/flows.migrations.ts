import { sql, type Kysely } from 'kysely';
import type { NamedMigration } from '../storage/index.js';

/** The flows feature's schema (issue 5): definitions and their versions, lifecycle, triggers, executions and steps. */
export const flowsMigrations: readonly NamedMigration[] = [
  {
    name: '20261123_09_flows_core',
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('flows')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('tenant', 'varchar(64)', (c) => c.notNull())
        .addColumn('name', 'varchar(64)', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('status_reason', 'text')
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('status_changed_at', 'bigint', (c) => c.notNull())
        .addColumn('definition', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addUniqueConstraint('flows_tenant_name', ['tenant', 'name'])
        .execute();
      await db.schema.createIndex('flows_status').on('flows').columns(['status', 'status_changed_at']).execute();
      await db.schema
        .createTable('flow_versions')
        .addColumn('flow_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('definition', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_versions_pk', ['flow_id', 'version'])
        .execute();
      await db.schema
        .createTable('flow_lifecycle_acks')
        .addColumn('flow_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('part', 'varchar(32)', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_lifecycle_acks_pk', ['flow_id', 'generation', 'part'])
        .execute();
      await db.schema
        .createTable('flow_webhooks')
        .addColumn('flow_id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('tenant', 'varchar(64)', (c) => c.notNull())
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('serving', 'integer', (c) => c.notNull())
        .addColumn('trigger', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('flow_webhook_signatures')
        .addColumn('flow_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('signature', 'varchar(128)', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_webhook_signatures_pk', ['flow_id', 'signature'])
        .execute();
      await db.schema.createIndex('flow_webhook_signatures_expiry').on('flow_webhook_signatures').column('expires_at').execute();
      await db.schema
        .createTable('flow_schedules')
        .addColumn('flow_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('trigger_index', 'integer', (c) => c.notNull())
        .addColumn('tenant', 'varchar(64)', (c) => c.notNull())
        .addColumn('generation', 'integer', (c) => c.notNull())
        .addColumn('expression', 'varchar(200)', (c) => c.notNull())
        .addColumn('timezone', 'varchar(64)', (c) => c.notNull())
        .addColumn('missed', 'varchar(16)', (c) => c.notNull())
        .addColumn('active', 'integer', (c) => c.notNull())
        .addColumn('next_due_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('flow_schedules_pk', ['flow_id', 'trigger_index'])
        .execute();
      await db.schema.createIndex('flow_schedules_due').on('flow_schedules').columns(['active', 'next_due_at']).execute();
      await db.schema
        .createTable('flow_executions')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('tenant', 'varchar(64)', (c) => c.notNull())
        .addColumn('flow_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('flow_version', 'integer', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('trigger', 'varchar(32)', (c) => c.notNull())
        .addColumn('input', 'text', (c) => c.notNull())
        .addColumn('output', 'text')
        .addColumn('error', 'text')
        .addColumn('idempotency_key', 'varchar(256)')
        .addColumn('concurrency_key', 'varchar(256)')
        .addColumn('traceparent', 'varchar(64)', (c) => c.notNull())
        .addColumn('response', 'text')
        .addColumn('parent_execution_id', 'varchar(64)')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('finished_at', 'bigint')
        .addColumn('deadline_at', 'bigint')
        .execute();
      // NULL keys never collide, so only keyed executions are held to one per key.
      await db.schema.createIndex('flow_executions_idempotency').unique().on('flow_executions').columns(['tenant', 'flow_id', 'idempotency_key']).execute();
      await db.schema.createIndex('flow_executions_tenant_created').on('flow_executions').columns(['tenant', 'created_at']).execute();
      await db.schema.createIndex('flow_executions_flow_status').on('flow_executions').columns(['flow_id', 'status']).execute();
      await db.schema.createIndex('flow_executions_deadline').on('flow_executions').columns(['status', 'deadline_at']).execute();
      // Concurrency limits count an execution's running peers; retention deletes by finish time.
      await db.schema.createIndex('flow_executions_concurrency').on('flow_executions').columns(['flow_id', 'concurrency_key', 'status']).execute();
      await db.schema.createIndex('flow_executions_finished').on('flow_executions').columns(['finished_at']).execute();
      await db.schema
        .createTable('flow_steps')
        .addColumn('id', 'varchar(64)', (c) => c.primaryKey())
        .addColumn('execution_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('tenant', 'varchar(64)', (c) => c.notNull())
        .addColumn('node', 'varchar(64)', (c) => c.notNull())
        .addColumn('phase', 'varchar(8)', (c) => c.notNull())
        .addColumn('parent_id', 'varchar(64)', (c) => c.notNull())
        .addColumn('status', 'varchar(16)', (c) => c.notNull())
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('input', 'text', (c) => c.notNull())
        .addColumn('output', 'text')
        .addColumn('error', 'text')
        .addColumn('due_at', 'bigint', (c) => c.notNull())
        .addColumn('lease_owner', 'varchar(64)')
        .addColumn('lease_until', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .addColumn('wait_key', 'varchar(320)')
        .addColumn('wait_state', 'text')
        .addUniqueConstraint('flow_steps_once', ['execution_id', 'parent_id', 'node', 'phase'])
        .execute();
      await db.schema.createIndex('flow_steps_execution').on('flow_steps').columns(['execution_id', 'created_at']).execute();
      // Claiming reads ready steps by due time, and expired leases of running ones.
      await db.schema.createIndex('flow_steps_claim').on('flow_steps').columns(['status', 'due_at']).execute();
      // A finished subflow or a matching event resolves the steps waiting on its key.
      await db.schema.createIndex('flow_steps_wait').on('flow_steps').columns(['tenant', 'wait_key']).execute();
    },
  },
  {
    name: '20261206_10_flow_executions_parent',
    async up(db: Kysely<unknown>) {
      // A parent's end cancels its open subflow children, and a re-run re-opens its failed ones.
      await db.schema.createIndex('flow_executions_parent').on('flow_executions').columns(['parent_execution_id', 'status']).execute();
    },
  },
  {
    name: '20261207_11_flow_steps_due_by_tenant',
    async up(db: Kysely<unknown>) {
      // A claim reads each tenant's first due steps, not every due step: the tenants with
      // work by a skip over this index, then each one's oldest in order. Partial, so it holds
      // only steps that wait to run (a step leaves it when it is leased).
      await sql`create index flow_steps_due_by_tenant on flow_steps (tenant, due_at, id) where status in ('ready', 'waiting')`.execute(db);
    },
  },
  {
    name: '20261207_12_flow_executions_partial_indexes',
    async up(db: Kysely<unknown>) {
      // Five indexes serve only executions that have the column set: an idempotency or
      // concurrency key, a deadline, a parent, a finish. Most have none of them, yet every
      // start wrote an entry to each and every finish moved the ones holding the status.
      // Partial, they hold only the rows their queries can find (each query compares the
      // column with a value, which implies it is not null).
      for (const name of ['flow_executions_idempotency', 'flow_executions_deadline', 'flow_executions_concurrency', 'flow_executions_parent', 'flow_executions_finished']) {
        await db.schema.dropIndex(name).execute();
      }
      await sql`create unique index flow_executions_idempotency on flow_executions (tenant, flow_id, idempotency_key) where idempotency_key is not null`.execute(db);
      await sql`create index flow_executions_deadline on flow_executions (status, deadline_at) where deadline_at is not null`.execute(db);
      await sql`create index flow_executions_concurrency on flow_executions (flow_id, concurrency_key, status) where concurrency_key is not null`.execute(db);
      await sql`create index flow_executions_parent on flow_executions (parent_execution_id, status) where parent_execution_id is not null`.execute(db);
      await sql`create index flow_executions_finished on flow_executions (finished_at) where finished_at is not null`.execute(db);
    },
  },
];
