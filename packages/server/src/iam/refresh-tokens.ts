import type { Kysely, Selectable } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { newId, randomToken, sha256Hex, type Clock } from '../kernel/index.js';
import type { IamTables, RefreshTokensTable } from './iam.tables.js';

export type RefreshTokenRow = Selectable<RefreshTokensTable>;

export interface IssueRefreshToken {
  readonly tenantId: string;
  readonly principalId: string;
  readonly principalType: 'user' | 'service_account';
  readonly clientId: string;
  readonly scope: string;
  readonly authTime: number;
  /** The family to continue; a new family when absent. */
  readonly familyId?: string;
  /** Absolute end of the family; now + lifetime for a new family. */
  readonly expiresAt?: number;
}

const badGrant = (detail: string) => new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_GRANT', detail);

/**
 * Opaque refresh tokens, stored as SHA-256 hashes, rotated on every use (OAuth 2.1 §4.3.1,
 * RFC 9700 §4.14.2). Tokens issued from one login form a family with one absolute
 * lifetime; presenting a token that was already rotated means it leaked, so the whole
 * family is revoked.
 */
export class RefreshTokenStore {
  constructor(
    private readonly db: Kysely<IamTables>,
    private readonly clock: Clock,
    private readonly lifetimeMs: number,
  ) {}

  async issue(req: IssueRefreshToken): Promise<{ token: string; familyId: string }> {
    const now = this.clock.now();
    const token = randomToken(32, 'fgr_');
    const familyId = req.familyId ?? newId();
    await this.db
      .insertInto('refresh_tokens')
      .values({
        token_hash: sha256Hex(token),
        family_id: familyId,
        tenant_id: req.tenantId,
        principal_id: req.principalId,
        principal_type: req.principalType,
        client_id: req.clientId,
        scope: req.scope,
        auth_time: req.authTime,
        created_at: now,
        expires_at: req.expiresAt ?? now + this.lifetimeMs,
        used_at: null,
        revoked_at: null,
      })
      .execute();
    return { token, familyId };
  }

  /** The row of a token, whatever its state. */
  async find(token: string): Promise<RefreshTokenRow | undefined> {
    return this.db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', sha256Hex(token)).executeTakeFirst();
  }

  /** Whether a token is usable now. */
  isActive(row: RefreshTokenRow): boolean {
    return row.used_at === null && row.revoked_at === null && row.expires_at > this.clock.now();
  }

  /**
   * Spends a refresh token presented by `clientId` and returns its row; the caller
   * issues the successor. A replayed token revokes its family.
   */
  async spend(token: string, clientId: string): Promise<RefreshTokenRow> {
    const row = await this.find(token);
    if (!row || row.client_id !== clientId) throw badGrant('The refresh token is not valid for this client.');
    if (row.revoked_at !== null) throw badGrant('The refresh token has been revoked.');
    if (row.expires_at <= this.clock.now()) throw badGrant('The refresh token has expired.');
    // Mark it used only if nobody else did: two concurrent uses cannot both succeed.
    const result = await this.db
      .updateTable('refresh_tokens')
      .set({ used_at: this.clock.now() })
      .where('token_hash', '=', row.token_hash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) {
      await this.revokeFamily(row.family_id);
      throw badGrant('The refresh token was already used; every token of this session has been revoked.');
    }
    return row;
  }

  /** Revokes every session of a principal (password changed, disabled, removed, demoted). */
  async revokePrincipal(tenantId: string, principalId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: this.clock.now() })
      .where('tenant_id', '=', tenantId)
      .where('principal_id', '=', principalId)
      .where('revoked_at', 'is', null)
      .execute();
  }

  async revokeFamily(familyId: string): Promise<void> {
    await this.db
      .updateTable('refresh_tokens')
      .set({ revoked_at: this.clock.now() })
      .where('family_id', '=', familyId)
      .where('revoked_at', 'is', null)
      .execute();
  }
}
