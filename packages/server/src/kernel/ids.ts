import { createHash, randomBytes, randomFillSync, timingSafeEqual } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';

const POOL_SIZE = 16 * 1024;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolOffset = POOL_SIZE;

/**
 * `size` bytes from the OS CSPRNG, taken from a pool refilled 16 KiB at a time: one
 * system call per thousand ids instead of one per id, which matters on the bus's hot
 * path. For ids and trace spans; secrets use {@link randomToken}, which never pools.
 */
export function pooledRandom(size: number): Buffer {
  if (poolOffset + size > POOL_SIZE) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const bytes = Buffer.from(pool.subarray(poolOffset, poolOffset + size));
  poolOffset += size;
  return bytes;
}

/** A new time-ordered id (UUIDv7, RFC 9562): sortable, so it doubles as a page cursor. */
export function newId(): string {
  return uuidv7({ random: pooledRandom(16) });
}

/** `bytes` of randomness from the OS CSPRNG, base64url-encoded, with an optional prefix. */
export function randomToken(bytes = 32, prefix = ''): string {
  return prefix + randomBytes(bytes).toString('base64url');
}

/** SHA-256 as hex: how high-entropy tokens (refresh tokens, codes) are stored. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}

/** Compares two strings in constant time (for equal lengths). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}
