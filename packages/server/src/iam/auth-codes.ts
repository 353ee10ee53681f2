import { createHash } from 'node:crypto';
import type { Kysely, Selectable } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { randomToken, sha256Hex, type Clock } from '../kernel/index.js';
import type { AuthCodesTable, IamTables } from './iam.tables.js';

export type AuthCodeRow = Selectable<AuthCodesTable>;

/** RFC 7636 §4.1: 43–128 characters of the unreserved set. */
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

const badGrant = (detail: string) => new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_GRANT', detail);

/** The S256 code challenge of a verifier (RFC 7636 §4.2). */
export function s256Challenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/**
 * Authorization codes (RFC 6749 §4.1), single use, short-lived, stored hashed, bound to
 * the client, the redirect URI and a PKCE S256 challenge (RFC 7636; required, as in
 * OAuth 2.1). A code presented twice revokes the tokens the first use produced
 * (RFC 6749 §4.1.2).
 */
export class AuthCodeStore {
  constructor(
    private readonly db: Kysely<IamTables>,
    private readonly clock: Clock,
    private readonly lifetimeMs: number,
  ) {}

  async issue(row: Omit<AuthCodeRow, 'code_hash' | 'expires_at' | 'used_at' | 'family_id'>): Promise<string> {
    const code = randomToken(32, 'fgac_');
    await this.db
      .insertInto('auth_codes')
      .values({ ...row, code_hash: sha256Hex(code), expires_at: this.clock.now() + this.lifetimeMs, used_at: null, family_id: null })
      .execute();
    return code;
  }

  /**
   * Redeems a code. Returns its row, or throws `invalid_grant`; `onReplay` receives the
   * refresh-token family of the first redemption so it can be revoked.
   */
  async redeem(
    code: string,
    check: { clientId: string; redirectUri: string; verifier: string },
    onReplay: (familyId: string) => Promise<void>,
  ): Promise<AuthCodeRow> {
    const row = await this.db.selectFrom('auth_codes').selectAll().where('code_hash', '=', sha256Hex(code)).executeTakeFirst();
    if (!row) throw badGrant('The authorization code is not valid.');
    if (row.used_at !== null) {
      if (row.family_id) await onReplay(row.family_id);
      throw badGrant('The authorization code was already used.');
    }
    if (row.expires_at <= this.clock.now()) throw badGrant('The authorization code has expired.');
    if (row.client_id !== check.clientId) throw badGrant('The authorization code was issued to another client.');
    if (row.redirect_uri !== check.redirectUri) throw badGrant('redirect_uri does not match the authorization request.');
    if (!VERIFIER.test(check.verifier) || s256Challenge(check.verifier) !== row.code_challenge) {
      throw badGrant('The PKCE code_verifier does not match the code_challenge.');
    }
    const result = await this.db
      .updateTable('auth_codes')
      .set({ used_at: this.clock.now() })
      .where('code_hash', '=', row.code_hash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) === 0) throw badGrant('The authorization code was already used.');
    return row;
  }

  /** Records the refresh-token family a redeemed code produced. */
  async linkFamily(codeHashOf: string, familyId: string): Promise<void> {
    await this.db.updateTable('auth_codes').set({ family_id: familyId }).where('code_hash', '=', sha256Hex(codeHashOf)).execute();
    // Codes past their lifetime are useless; tidy them as we go.
    await this.db.deleteFrom('auth_codes').where('expires_at', '<', this.clock.now() - 86_400_000).execute();
  }
}
