import { pooledRandom } from '../kernel/index.js';

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
  const m = TRACEPARENT.exec(header.trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string?];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return { traceId, parentSpanId: parentId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

/** Continues the caller's trace or starts a new one, with a fresh span id. */
export function startSpan(traceparent: string | undefined): TraceContext {
  const parent = parseTraceparent(traceparent);
  const spanId = pooledRandom(8).toString('hex');
  if (parent) return { ...parent, spanId };
  return { traceId: pooledRandom(16).toString('hex'), spanId, parentSpanId: undefined, sampled: true };
}

/** The `traceparent` header to send downstream for this span. */
export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-${ctx.sampled ? '01' : '00'}`;
}
