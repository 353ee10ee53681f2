import { CompactSign, compactVerify, type CryptoKey } from 'jose';
import type { CheckpointClaims, CheckpointSigner } from './audit-log.js';

/** What the audit log needs of the IAM's signing keys. */
export interface SigningKeys {
  activeKey(): Promise<{ kid: string; key: CryptoKey }>;
  /** Any key the IAM ever signed with, however long retired. */
  historicPublicKey(kid: string): Promise<CryptoKey | undefined>;
}

const TYP = 'flowgate-audit-checkpoint';
const ALG = 'ES256';

/**
 * Signs checkpoints with the IAM's active key (a compact JWS) and verifies them against
 * the IAM's keys only: the IAM keeps the public half of every key it retires, so old
 * checkpoints stay verifiable, and no table of the audit log can vouch for a key.
 */
export function createCheckpointSigner(keys: SigningKeys): CheckpointSigner {
  const encoder = new TextEncoder();
  return {
    async sign(claims: CheckpointClaims): Promise<string> {
      const { kid, key } = await keys.activeKey();
      return new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader({ alg: ALG, kid, typ: TYP }).sign(key);
    },
    async verify(signature: string): Promise<CheckpointClaims | undefined> {
      try {
        const { payload, protectedHeader } = await compactVerify(
          signature,
          async (header) => {
            const key = header.kid ? await keys.historicPublicKey(header.kid) : undefined;
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
