import type { Kysely } from 'kysely';
import { sha256Hex, type Clock } from '../kernel/index.js';
import type { IamTables } from './iam.tables.js';

export interface ThrottleOptions {
  /** Failures within the window before the key is locked. */
  readonly maxFailures: number;
  readonly windowSeconds: number;
  /** First lock length; each further failure while over the limit doubles it, up to the window. */
  readonly lockSeconds: number;
}

/**
 * Slows down guessing of client secrets and passwords. Failures are counted per key
 * (`client:<id>`, `user:<tenant>/<name>`) in the store, so every instance sees them;
 * past the limit the key is locked, even for the right secret, with a lock that grows.
 */
export class FailureThrottle {
  constructor(
    private readonly db: Kysely<IamTables>,
    private readonly clock: Clock,
    private readonly options: ThrottleOptions,
  ) {}

  /** Seconds until the key may try again; 0 when it may try now. */
  async retryAfter(name: string): Promise<number> {
    const key = storedKey(name);
    const row = await this.db.selectFrom('auth_failures').select('locked_until').where('key', '=', key).executeTakeFirst();
    const wait = (row?.locked_until ?? 0) - this.clock.now();
    return wait > 0 ? Math.ceil(wait / 1000) : 0;
  }

  /** Records a failure; returns the seconds the key is now locked for (0 if not locked). */
  async recordFailure(name: string): Promise<number> {
    const key = storedKey(name);
    const now = this.clock.now();
    const windowMs = this.options.windowSeconds * 1000;
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('auth_failures').selectAll().where('key', '=', key).executeTakeFirst();
      const fresh = !row || now - row.window_start > windowMs;
      const failures = fresh ? 1 : row.failures + 1;
      const windowStart = fresh ? now : row.window_start;
      const over = failures - this.options.maxFailures;
      const lockMs = over >= 0 ? Math.min(this.options.lockSeconds * 1000 * 2 ** over, windowMs) : 0;
      const lockedUntil = lockMs > 0 ? now + lockMs : 0;
      await trx
        .insertInto('auth_failures')
        .values({ key, failures, window_start: windowStart, locked_until: lockedUntil })
        .onConflict((oc) => oc.column('key').doUpdateSet({ failures, window_start: windowStart, locked_until: lockedUntil }))
        .execute();
      return Math.ceil(lockMs / 1000);
    });
  }

  /** Forgets the failures of a key after a success. */
  async reset(name: string): Promise<void> {
    await this.db.deleteFrom('auth_failures').where('key', '=', storedKey(name)).execute();
  }
}

/** Keys are hashed: usernames and client ids come from strangers and may be any length. */
function storedKey(name: string): string {
  return sha256Hex(name);
}
