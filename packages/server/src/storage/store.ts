import { mkdirSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type Migration, type SqliteDatabase } from 'kysely';
import pg from 'pg';
import { FlowgateError } from '../errors/index.js';
import { setBounded } from '../kernel/index.js';
import { PostgresClient } from './postgres-client.js';
import { BACKSTOP_AUTOCHECKPOINT_PAGES, SqliteCheckpointer } from './sqlite-checkpointer.js';

/** What a store can do that the other kind cannot; features branch on these, not on names. */
export interface StoreCapabilities {
  /** Several Flowgate processes may share this store (PostgreSQL yes, SQLite file no). */
  readonly sharedAcrossProcesses: boolean;
}

/**
 * SQLite's connection without the query builder, for the few hot paths where building a
 * query costs more than running it (the event log's appends and acks). Statements are
 * prepared once and kept. Only valid while the caller holds the connection: inside
 * {@link NativeSqlite.exclusive}, or inside a transaction through {@link NativeSqlite.within}.
 */
export interface NativeConnection {
  prepare(text: string): SQLite.Statement;
  /**
   * Runs `work` in BEGIN … COMMIT (rolled back if it throws). `relaxed` commits without
   * an fsync, as {@link Store.relaxedTransaction} does.
   */
  transaction<T>(work: () => T, options?: { relaxed?: boolean }): T;
}

export interface NativeSqlite {
  /** Runs `work` holding the single connection: no other query interleaves. */
  exclusive<T>(work: (connection: NativeConnection) => T): Promise<T>;
  /** The connection of `trx`, a transaction the caller is running on this store. */
  within(trx: Kysely<unknown>): NativeConnection;
}

/** Where and how to open the store. */
export interface StoreOptions {
  /** `postgres://…` or `sqlite:<path>`; absent → SQLite at `<dataDir>/flowgate.db`. */
  url?: string | undefined;
  /** PostgreSQL schema to use (created when missing). */
  schema?: string | undefined;
  dataDir: string;
  poolSize?: number;
  /** Told when background work (SQLite's WAL checkpoints) fails; the store carries on. */
  onBackgroundError?: (message: string) => void;
}

/** A named migration, owned by the feature whose tables it creates. */
export interface NamedMigration extends Migration {
  /** Sorts migrations: `<yyyymmdd>_<nn>_<feature>_<what>`. */
  readonly name: string;
}

/**
 * The state store: a Kysely instance over SQLite or PostgreSQL. Features receive it
 * typed with their own tables through {@link Store.db}.
 */
export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  readonly capabilities: StoreCapabilities;
  /** The query builder, typed with the caller's tables. */
  db<Tables>(): Kysely<Tables>;
  /** Applies every pending migration, in name order. */
  migrate(migrations: readonly NamedMigration[]): Promise<string[]>;
  /**
   * Serialises the transactions that take the same `key` until each commits or rolls
   * back (a PostgreSQL advisory lock). SQLite transactions are serialised already.
   * Used where commit order must follow insertion order, as in the event log.
   */
  lockTransaction(trx: Kysely<unknown>, key: string): Promise<void>;
  /**
   * Runs `work` in a transaction whose commit survives a crash of the process but may be
   * lost if the machine loses power before the next durable commit: SQLite commits it
   * without an fsync (synchronous=NORMAL in WAL; the next FULL commit syncs it along),
   * PostgreSQL with synchronous_commit off. Only for writes whose loss repeats work and
   * loses none, such as a consumer's acks: every other write stays durable at commit.
   */
  relaxedTransaction<T>(work: (trx: Kysely<unknown>) => Promise<T>): Promise<T>;
  /**
   * Like {@link relaxedTransaction}, for one statement that needs no transaction around
   * it (a claim, a lease renewal): on PostgreSQL it runs on its own, on a session with
   * synchronous_commit off, one round trip instead of four.
   */
  relaxed<T>(work: (db: Kysely<unknown>) => Promise<T>): Promise<T>;
  /** Gives the space of deleted rows back to the file system where the store can. */
  reclaimSpace(): Promise<void>;
  /** SQLite stores only: the raw connection for hot paths. */
  readonly native?: NativeSqlite;
  /** Whether the store answers a trivial query within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Opens the store named by `options`. */
export async function openStore(options: StoreOptions): Promise<Store> {
  const url = options.url;
  if (url && /^postgres(ql)?:\/\//.test(url)) return openPostgres(url, options);
  const file = sqliteFile(url, options.dataDir);
  return openSqlite(file, options.onBackgroundError ?? (() => undefined));
}

function sqliteFile(url: string | undefined, dataDir: string): string {
  if (!url) return join(dataDir, 'flowgate.db');
  const path = url.replace(/^sqlite:(\/\/)?/, '');
  if (path === ':memory:') return path;
  return isAbsolute(path) ? path : resolve(dataDir, path);
}

function openSqlite(file: string, onBackgroundError: (message: string) => void): Store {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const database = new SQLite(file);
  // Incremental auto-vacuum lets retention give deleted events' pages back to the file
  // system (reclaimSpace). It can only be switched on before the first table exists.
  database.pragma('auto_vacuum = INCREMENTAL');
  // WAL lets readers proceed during a write. synchronous=FULL fsyncs the WAL at every
  // commit: with NORMAL a committed transaction can roll back on power loss, and an
  // accepted event or completed step must survive that (DEVELOPERS.md rule 4).
  database.pragma('journal_mode = WAL');
  database.pragma('synchronous = FULL');
  database.pragma('foreign_keys = ON');
  database.pragma('busy_timeout = 5000');
  const checkpointer = file === ':memory:' ? undefined : new SqliteCheckpointer(file, onBackgroundError);
  if (checkpointer) database.pragma(`wal_autocheckpoint = ${BACKSTOP_AUTOCHECKPOINT_PAGES}`);
  const cached = withStatementCache(database);
  const kysely = new Kysely<unknown>({ dialect: new SqliteDialect({ database: cached }) });
  // A relaxed commit skips the fsync (synchronous=NORMAL in WAL); the setting is the
  // connection's, so callers hold the one connection from setting it to setting it back.
  const relaxed = <T>(work: () => T): T => {
    database.pragma('synchronous = NORMAL');
    const restore = () => database.pragma('synchronous = FULL');
    try {
      const result = work();
      if (result instanceof Promise) return result.finally(restore) as T;
      restore();
      return result;
    } catch (error) {
      restore();
      throw error;
    }
  };
  const connection: NativeConnection = {
    prepare: (text) => cached.prepare(text) as SQLite.Statement,
    transaction: (work, options) => (options?.relaxed ? relaxed(() => database.transaction(work)()) : database.transaction(work)()),
  };
  const native: NativeSqlite = {
    // Kysely hands its one connection to one user at a time; holding it keeps every
    // other query (and transaction) out while `work` runs synchronously.
    exclusive: (work) => kysely.connection().execute(() => Promise.resolve(work(connection))),
    within: (trx) => {
      if (!trx.isTransaction) throw new Error('NativeSqlite.within needs a transaction');
      return connection;
    },
  };
  return makeStore('sqlite', kysely, { sharedAcrossProcesses: false }, undefined, {
    native,
    relaxedTransaction: (work) => kysely.connection().execute((connection) => relaxed(() => connection.transaction().execute(work))),
    relaxed: (work) => kysely.connection().execute((connection) => relaxed(() => connection.transaction().execute(work))),
    lockTransaction: () => Promise.resolve(),
    reclaimSpace: async () => {
      // incremental_vacuum frees one page per step of its statement: run through Kysely it
      // was stepped once and freed one page. exec() steps it to the end, holding the one
      // connection so no transaction of another caller is open meanwhile.
      await native.exclusive(() => database.exec('pragma incremental_vacuum'));
      await sql`pragma wal_checkpoint(TRUNCATE)`.execute(kysely);
    },
    beforeClose: () => checkpointer?.close(),
  });
}

/** Prepared statements kept per SQL text; enough for every query shape of the hot paths. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely's SQLite driver prepares every query anew, and preparing costs more than running
 * a small statement (profiled: a third of the bus's end-to-end time). This keeps prepared
 * statements by SQL text, least recently used out first. A statement still being iterated
 * (a streamed query) is busy; the same SQL then gets a fresh one.
 */
function withStatementCache(database: SQLite.Database): SqliteDatabase & { prepare(text: string): SQLite.Statement } {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => database.close(),
    prepare(text: string) {
      const cached = cache.get(text);
      if (cached && !cached.busy) {
        // Re-inserting moves it to the young end of the map's order.
        cache.delete(text);
        cache.set(text, cached);
        return cached;
      }
      const statement = database.prepare(text);
      if (!cached) setBounded(cache, text, statement, STATEMENT_CACHE_SIZE);
      return statement;
    },
  };
}

async function openPostgres(url: string, options: StoreOptions): Promise<Store> {
  const schema = options.schema;
  const poolOf = (max: number, settings: string[]) => {
    const pool = new pg.Pool({
      Client: PostgresClient,
      // Lets a transaction's BEGIN go out in one write with its first statement (PostgresClient).
      pipeline: true,
      connectionString: url,
      max,
      connectionTimeoutMillis: 5000,
      ...(settings.length > 0 ? { options: settings.join(' ') } : {}),
      // int8 (bigint) columns hold epoch milliseconds; they fit a JS number exactly.
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === 20 ? (v: string) => Number(v) : (pg.types.getTypeParser(oid, format) as unknown)) as typeof pg.types.getTypeParser,
      },
    });
    // An idle client that loses its connection emits 'error'; without a listener the
    // process would crash. The next query gets a fresh connection.
    pool.on('error', () => undefined);
    return new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  };
  const searchPath = schema ? [`-c search_path=${schema}`] : [];
  const kysely = poolOf(options.poolSize ?? 10, searchPath);
  // Claims and lease renewals: single statements whose loss in a power cut only repeats work.
  const relaxedDb = poolOf(2, [...searchPath, '-c synchronous_commit=off']);
  try {
    if (schema) await sql`create schema if not exists ${sql.id(schema)}`.execute(kysely);
    else await sql`select 1`.execute(kysely);
  } catch (cause) {
    await kysely.destroy();
    await relaxedDb.destroy();
    throw new FlowgateError('FLOWGATE_ERR_SERVER_STORE_UNAVAILABLE', `Cannot connect to PostgreSQL at ${redactUrl(url)}.`, { cause });
  }
  return makeStore('postgres', kysely, { sharedAcrossProcesses: true }, schema, {
    lockTransaction: async (trx, key) => {
      await sql`select pg_advisory_xact_lock(hashtext(${key}))`.execute(trx);
    },
    relaxedTransaction: (work) =>
      kysely.transaction().execute(async (trx) => {
        await sql`set local synchronous_commit = off`.execute(trx);
        return work(trx);
      }),
    relaxed: (work) => work(relaxedDb),
    beforeClose: () => relaxedDb.destroy(),
    // PostgreSQL's autovacuum makes deleted rows' space reusable; nothing to do here.
    reclaimSpace: () => Promise.resolve(),
  });
}

function makeStore(
  dialect: Store['dialect'],
  kysely: Kysely<unknown>,
  capabilities: StoreCapabilities,
  schema: string | undefined,
  specifics: Pick<Store, 'lockTransaction' | 'relaxedTransaction' | 'relaxed' | 'reclaimSpace' | 'native'> & { beforeClose?: () => Promise<void> | undefined },
): Store {
  const { beforeClose: _, ...features } = specifics;
  return {
    dialect,
    capabilities,
    ...features,
    db<Tables>() {
      return kysely as unknown as Kysely<Tables>;
    },
    async migrate(migrations) {
      const byName = Object.fromEntries(migrations.map((m) => [m.name, m]));
      const migrator = new Migrator({
        db: kysely,
        provider: { getMigrations: () => Promise.resolve(byName) },
        migrationTableName: 'flowgate_migrations',
        migrationLockTableName: 'flowgate_migrations_lock',
        ...(schema ? { migrationTableSchema: schema } : {}),
      });
      let { error, results } = await migrator.migrateToLatest();
      // Kysely checks for its migration table by listing every table of the database;
      // PostgreSQL fails that listing (3F000 for the schema, 42P01 for one of its tables,
      // 42703 for one of their columns) when another schema is dropped meanwhile. Migrations
      // run in one transaction there, so nothing was applied and trying again is safe (a
      // migration that truly names a missing table or column fails three more times, the
      // same way).
      const raced = (e: unknown) => ['3F000', '42P01', '42703'].includes(String((e as { code?: unknown }).code));
      for (let attempt = 1; error && attempt < 4 && raced(error); attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
        ({ error, results } = await migrator.migrateToLatest());
      }
      if (error) throw new FlowgateError('FLOWGATE_ERR_SERVER_STORE_UNAVAILABLE', 'A database migration failed.', { cause: error });
      return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
    },
    async ping(timeoutMs = 1000) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('ping timed out')), timeoutMs);
        });
        await Promise.race([sql`select 1`.execute(kysely), timeout]);
        return true;
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await specifics.beforeClose?.();
      await kysely.destroy();
    },
  };
}

/** A database URL with its password removed, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
