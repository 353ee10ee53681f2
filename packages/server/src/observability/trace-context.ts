import { randomFillSync } from 'node:crypto';

/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): a request continues the
 * caller's trace when it sends a valid `traceparent`, or starts a new one. Each request
 * handled here is a new span (parent-id = the caller's span).
 */
export interface TraceContext {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly sampled: boolean;
}

// version-traceid-parentid-flags; version ff is forbidden (§3.2.2.1), all-zero ids are invalid.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** Parses a `traceparent` header; `undefined` when absent or invalid (§3.2.2). */
export function parseTraceparent(header: string | undefined): Omit<TraceContext, 'spanId'> | undefined {
  if (header === undefined) return undefined;
  // Every request of the gateway and the API parses one: the usual spelling (version 00,
  // lower case, nothing around it) is checked by hand, without the regex's allocations.
  if (header.length === 55 && header.charCodeAt(0) === 48 && header.charCodeAt(1) === 48) return parseVersion00(header);
  return parseAny(header);
}

/** Any version, spacing and case, per §3.2.2. */
function parseAny(header: string): Omit<TraceContext, 'spanId'> | undefined {
  const m = TRACEPARENT.exec(header.trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string?];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return { traceId, parentSpanId: parentId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/**
 * `00-<32 hex>-<16 hex>-<2 hex>`, exactly 55 characters; upper-case hex (or anything else
 * unusual) is left to the general parser.
 */
function parseVersion00(header: string): Omit<TraceContext, 'spanId'> | undefined {
  if (header.charCodeAt(2) !== 45 || header.charCodeAt(35) !== 45 || header.charCodeAt(52) !== 45) return undefined;
  // Each id must be lower-case hex and not all zeros; ORing the digits' values finds zeros.
  let traceBits = 0;
  for (let i = 3; i < 35; i++) {
    const v = hexValue(header.charCodeAt(i));
    if (v < 0) return parseAny(header);
    traceBits |= v;
  }
  let parentBits = 0;
  for (let i = 36; i < 52; i++) {
    const v = hexValue(header.charCodeAt(i));
    if (v < 0) return parseAny(header);
    parentBits |= v;
  }
  const high = hexValue(header.charCodeAt(53));
  const low = hexValue(header.charCodeAt(54));
  if (high < 0 || low < 0) return parseAny(header);
  if (traceBits === 0 || parentBits === 0) return undefined;
  return { traceId: header.slice(3, 35), parentSpanId: header.slice(36, 52), sampled: (low & 1) === 1 };
}

/** The value of a lower-case hex digit, or -1. */
function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

// Ids are cut from a pool of random hex, refilled 4 KiB of CSPRNG output at a time: one
// system call and one hex encoding per ~170 requests instead of two of each per request.
const HEX_POOL_BYTES = 4096;
const hexPoolBuffer = Buffer.allocUnsafe(HEX_POOL_BYTES);
let hexPool = '';
let hexOffset = 0;

/** `bytes` random bytes from the OS CSPRNG, as lower-case hex. */
function randomHex(bytes: number): string {
  const chars = bytes * 2;
  if (hexOffset + chars > hexPool.length) {
    randomFillSync(hexPoolBuffer);
    hexPool = hexPoolBuffer.toString('hex');
    hexOffset = 0;
  }
  const id = hexPool.slice(hexOffset, hexOffset + chars);
  hexOffset += chars;
  return id;
}

/** Continues the caller's trace or starts a new one, with a fresh span id. */
export function startSpan(traceparent: string | undefined): TraceContext {
  const parent = parseTraceparent(traceparent);
  const spanId = randomHex(8);
  if (parent) return { traceId: parent.traceId, spanId, parentSpanId: parent.parentSpanId, sampled: parent.sampled };
  return { traceId: randomHex(16), spanId, parentSpanId: undefined, sampled: true };
}

/** The `traceparent` header to send downstream for this span. */
export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? '01' : '00'}`;
}
