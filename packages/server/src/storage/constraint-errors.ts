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

/**
 * Whether a driver error says the transaction lost to another and may simply be run again:
 * PostgreSQL's deadlock (SQLSTATE 40P01, one of two transactions waiting on each other is
 * cancelled) or serialization failure (40001).
 */
export function isTransactionConflict(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  return code === '40P01' || code === '40001';
}

/**
 * Runs `work` (a whole transaction) again while it loses to another transaction
 * ({@link isTransactionConflict}), up to `attempts` times in all; any other error, or the
 * last conflict, is thrown.
 */
export async function retryOnConflict<T>(work: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= attempts || !isTransactionConflict(error)) throw error;
    }
  }
}
