/**
 * Storage: one Kysely store over SQLite (embedded default) or PostgreSQL (scale-out),
 * and the migrations each feature brings for its own tables.
 */
export { openStore, redactUrl, type Store, type StoreOptions, type StoreCapabilities, type NamedMigration, type NativeSqlite, type NativeConnection } from './store.js';
export { toPage, pageSize, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, type Page } from './paging.js';
export { isTransactionConflict, isUniqueViolation, retryOnConflict } from './constraint-errors.js';
export { rebind } from './rebind.js';
