import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { FlowgateError } from '../errors/index.js';

/** AES-256-GCM with a 96-bit random nonce (NIST SP 800-38D §8.2.2) and a 128-bit tag. */
const ALGORITHM = 'aes-256-gcm';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const VERSION = 'v1';

/**
 * Encrypts `plaintext` under `key`, bound to `context`: the same bytes sealed for another
 * context (another tenant, another secret's name) do not open, so a ciphertext copied
 * from one row to another is refused rather than revealed. Output:
 * `v1.<nonce>.<tag>.<ciphertext>`, base64url.
 */
export function seal(key: Buffer, plaintext: Buffer, context: string): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return [VERSION, nonce.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
}

/**
 * Opens what {@link seal} sealed with the same key and context. A wrong key, another
 * context or a changed byte fails with FLOWGATE_ERR_SECRETS_UNREADABLE; the message
 * names `what`, never the key or the content.
 */
export function open(key: Buffer, sealed: string, context: string, what: string): Buffer {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== VERSION) throw unreadable(what);
  const [, nonce, tag, body] = parts as [string, string, string, string];
  try {
    const decipher = createDecipheriv(ALGORITHM, key, Buffer.from(nonce, 'base64url'), { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(context, 'utf8'));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]);
  } catch {
    throw unreadable(what);
  }
}

function unreadable(what: string): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_SECRETS_UNREADABLE', `${what} could not be decrypted: it was changed, or sealed with another key.`);
}
