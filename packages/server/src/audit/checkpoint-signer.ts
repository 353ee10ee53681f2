import { CompactSign, compactVerify, importJWK, type CryptoKey, type JWK } from 'jose';
import type { Clock } from '../kernel/index.js';
import { isUniqueViolation, type Store } from '../storage/index.js';
import type { AuditTables } from './audit.migrations.js';
import type { CheckpointClaims, CheckpointSigner } from './audit-log.js';

/** What the audit log needs of the IAM's signing keys. */
export interface SigningKeys {
  activeKey(): Promise<{ kid: string; key: CryptoKey }>;
  jwks(): Promise<{ keys: JWK[] }>;
}

const TYP = 'flowgate-audit-checkpoint';
const ALG = 'ES256';

/**
 * Signs checkpoints with the IAM's active key (a compact JWS) and keeps each signing
 * key's public half, so checkpoints stay verifiable after the IAM has rotated the key
 * away.
 */
export function createCheckpointSigner(store: Store, keys: SigningKeys, clock: Clock): CheckpointSigner {
  const db = () => store.db<AuditTables>();
  const known = new Map<string, CryptoKey>();
  const encoder = new TextEncoder();

  const remember = async (kid: string): Promise<void> => {
    if (known.has(kid)) return;
    const jwk = (await keys.jwks()).keys.find((k) => k.kid === kid);
    if (!jwk) throw new Error(`the signing key ${kid} is not published`);
    try {
      await db().insertInto('audit_signer_keys').values({ kid, public_jwk: JSON.stringify(jwk), added_at: clock.now() }).execute();
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    known.set(kid, (await importJWK(jwk, ALG)) as CryptoKey);
  };

  const publicKey = async (kid: string): Promise<CryptoKey | undefined> => {
    const cached = known.get(kid);
    if (cached) return cached;
    const row = await db().selectFrom('audit_signer_keys').select('public_jwk').where('kid', '=', kid).executeTakeFirst();
    if (!row) return undefined;
    const key = (await importJWK(JSON.parse(row.public_jwk) as JWK, ALG)) as CryptoKey;
    known.set(kid, key);
    return key;
  };

  return {
    async sign(claims: CheckpointClaims): Promise<string> {
      const { kid, key } = await keys.activeKey();
      await remember(kid);
      return new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader({ alg: ALG, kid, typ: TYP }).sign(key);
    },
    async verify(signature: string): Promise<CheckpointClaims | undefined> {
      try {
        const { payload, protectedHeader } = await compactVerify(
          signature,
          async (header) => {
            const key = header.kid ? await publicKey(header.kid) : undefined;
            if (!key) throw new Error('unknown checkpoint key');
            return key;
          },
          { algorithms: [ALG] },
        );
        if (protectedHeader.typ !== TYP) return undefined;
        return JSON.parse(new TextDecoder().decode(payload)) as CheckpointClaims;
      } catch {
        return undefined;
      }
    },
  };
}
