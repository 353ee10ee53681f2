import { createHmac } from 'node:crypto';
import { safeEqual } from '../../kernel/index.js';

/** How far a signature's timestamp may be from the server's clock. */
export const SIGNATURE_WINDOW_MS = 5 * 60_000;
export const SIGNATURE_HEADER = 'x-flowgate-signature';

/** Why a signature was refused, for the caller; undefined when it is valid. */
export type SignatureVerdict = { readonly ok: true; readonly timestamp: number; readonly signature: string } | { readonly ok: false; readonly reason: string };

/**
 * Checks `X-Flowgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>`
 * (the scheme Stripe and others use): the timestamp within {@link SIGNATURE_WINDOW_MS} of
 * `now`, the HMAC equal in constant time. Several `v1` values may be sent while keys
 * rotate. Replays within the window are refused by the caller, which records each signature.
 */
export function verifySignature(header: string | undefined, body: Buffer, key: string, now: number): SignatureVerdict {
  if (!header) return { ok: false, reason: `The ${SIGNATURE_HEADER} header is missing.` };
  let timestamp: number | undefined;
  const signatures: string[] = [];
  for (const part of header.split(',')) {
    const [name, value] = part.trim().split('=', 2);
    if (name === 't' && value && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    else if (name === 'v1' && value && /^[0-9a-f]{64}$/i.test(value)) signatures.push(value.toLowerCase());
  }
  if (timestamp === undefined || signatures.length === 0) return { ok: false, reason: `The ${SIGNATURE_HEADER} header must read t=<unix seconds>,v1=<hex>.` };
  if (Math.abs(now - timestamp * 1000) > SIGNATURE_WINDOW_MS) return { ok: false, reason: 'The signature timestamp is more than 5 minutes from the server clock.' };
  const expected = createHmac('sha256', key).update(`${timestamp}.`).update(body).digest('hex');
  const match = signatures.find((s) => safeEqual(s, expected));
  if (!match) return { ok: false, reason: 'The signature does not match the body.' };
  return { ok: true, timestamp, signature: match };
}

/** Signs a body the way {@link verifySignature} checks it (for callers and tests). */
export function signBody(body: string | Buffer, key: string, timestampSeconds: number): string {
  const hmac = createHmac('sha256', key).update(`${timestampSeconds}.`).update(body).digest('hex');
  return `t=${timestampSeconds},v1=${hmac}`;
}
