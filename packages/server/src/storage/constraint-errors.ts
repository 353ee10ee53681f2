/**
 * Whether a driver error is a unique-key violation: SQLite's `SQLITE_CONSTRAINT_UNIQUE`
 * / `_PRIMARYKEY`, PostgreSQL's SQLSTATE 23505. Lets repositories turn a lost race into
 * a clean 409 instead of a 500.
 */
export function isUniqueViolation(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
