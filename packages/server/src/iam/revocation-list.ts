import type { Kysely } from 'kysely';
import type { Clock } from '../kernel/index.js';
import type { IamTables } from './iam.tables.js';

/**
 * Revoked access tokens (RFC 7009), by `jti`, kept until they would have expired anyway.
 * A revocation is permanent, so a positive answer is cached; a negative one is not,
 * because another instance may revoke at any moment.
 */
export class RevocationList {
  private readonly known = new Set<string>();

  constructor(
    private readonly db: Kysely<IamTables>,
    private readonly clock: Clock,
  ) {}

  async revoke(jti: string, tenantId: string, expiresAtSeconds: number): Promise<void> {
    const now = this.clock.now();
    await this.db
      .insertInto('revoked_tokens')
      .values({ jti, tenant_id: tenantId, expires_at: expiresAtSeconds * 1000, revoked_at: now })
      .onConflict((oc) => oc.column('jti').doNothing())
      .execute();
    this.remember(jti);
    // Entries past their token's expiry protect nothing; drop them as we go.
    await this.db.deleteFrom('revoked_tokens').where('expires_at', '<', now).execute();
  }

  async isRevoked(jti: string): Promise<boolean> {
    if (this.known.has(jti)) return true;
    const row = await this.db.selectFrom('revoked_tokens').select('jti').where('jti', '=', jti).executeTakeFirst();
    if (row) this.remember(jti);
    return row !== undefined;
  }

  /** Caches a revocation; the cache is bounded, the table stays the truth. */
  private remember(jti: string): void {
    if (this.known.size >= 10_000) this.known.clear();
    this.known.add(jti);
  }
}
