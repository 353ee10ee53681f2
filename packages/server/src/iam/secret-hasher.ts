import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Hashes passwords and client secrets with scrypt (RFC 7914), the memory-hard KDF in
 * Node's standard library. The stored form names its parameters, so they can be raised
 * later without breaking existing hashes: `scrypt$<log2 N>$<r>$<p>$<salt>$<hash>`.
 */
export interface SecretHasher {
  hash(secret: string): Promise<string>;
  verify(secret: string, stored: string): Promise<boolean>;
}

/** Cost parameters; OWASP's floor for scrypt is N=2^15, r=8, p=1 (~32 MiB per hash). */
export interface ScryptCost {
  readonly log2N: number;
  readonly r: number;
  readonly p: number;
}

export const DEFAULT_SCRYPT_COST: ScryptCost = { log2N: 15, r: 8, p: 1 };
const KEY_LENGTH = 32;

function scrypt(secret: string, salt: Buffer, cost: ScryptCost): Promise<Buffer> {
  const N = 2 ** cost.log2N;
  const options: ScryptOptions = { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r + 1024 * 1024 };
  return new Promise((resolve, reject) => {
    scryptCallback(secret.normalize('NFC'), salt, KEY_LENGTH, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/**
 * Verifies a secret against a stored hash, or, when there is none (unknown user or
 * client), against a throwaway hash and answers false: the same scrypt work either way,
 * so timing does not reveal which names exist.
 */
export function createConstantWorkVerifier(hasher: SecretHasher): (secret: string, stored: string | undefined) => Promise<boolean> {
  let dummy: Promise<string> | undefined;
  return async (secret, stored) => {
    if (stored !== undefined) return hasher.verify(secret, stored);
    dummy ??= hasher.hash('flowgate-dummy-secret-for-constant-work');
    await hasher.verify(secret, await dummy);
    return false;
  };
}

/** The scrypt hasher. */
export function createScryptHasher(cost: ScryptCost = DEFAULT_SCRYPT_COST): SecretHasher {
  return {
    async hash(secret) {
      const salt = randomBytes(16);
      const key = await scrypt(secret, salt, cost);
      return ['scrypt', cost.log2N, cost.r, cost.p, salt.toString('base64url'), key.toString('base64url')].join('$');
    },
    async verify(secret, stored) {
      const parts = stored.split('$');
      if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
      const [log2N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
      if (![log2N, r, p].every((n) => Number.isInteger(n) && n > 0) || log2N > 20) return false;
      const expected = Buffer.from(parts[5]!, 'base64url');
      const actual = await scrypt(secret, Buffer.from(parts[4]!, 'base64url'), { log2N, r, p });
      return expected.length === actual.length && timingSafeEqual(expected, actual);
    },
  };
}
