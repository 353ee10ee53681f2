/**
 * W3C trace context parsing: the hand-written parser of the usual `00-…` spelling must
 * answer exactly what the general (regex) parser answers, for valid and invalid headers
 * alike, and ids must be fresh lower-case hex.
 */
import { describe, expect, it } from 'vitest';
import { formatTraceparent, parseTraceparent, startSpan } from '../../src/observability/index.js';

/** The parser as it was before the fast path: the reference. */
function reference(header: string | undefined): ReturnType<typeof parseTraceparent> {
  if (header === undefined) return undefined;
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec(header.trim().toLowerCase());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string?];
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (/^0+$/.test(traceId) || /^0+$/.test(parentId)) return undefined;
  return { traceId, parentSpanId: parentId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';

describe('parseTraceparent', () => {
  const headers = [
    `00-${TRACE}-${PARENT}-01`,
    `00-${TRACE}-${PARENT}-00`,
    `00-${TRACE}-${PARENT}-03`,
    `00-${TRACE}-${PARENT}-ff`,
    `00-${TRACE.toUpperCase()}-${PARENT}-01`,
    `00-${TRACE}-${PARENT.toUpperCase()}-01`,
    `00-${TRACE}-${PARENT}-0A`,
    `00-${'0'.repeat(32)}-${PARENT}-01`,
    `00-${TRACE}-${'0'.repeat(16)}-01`,
    `00-${TRACE}-${PARENT}-0g`,
    `00-${TRACE.slice(0, 31)}g-${PARENT}-01`,
    `00-${TRACE}-${PARENT.slice(0, 15)}x-01`,
    `00_${TRACE}-${PARENT}-01`,
    `00-${TRACE}_${PARENT}-01`,
    `00-${TRACE}-${PARENT}_01`,
    `00-${TRACE}-${PARENT}-01-extra`,
    `01-${TRACE}-${PARENT}-01-extra`,
    `ff-${TRACE}-${PARENT}-01`,
    ` 00-${TRACE}-${PARENT}-01 `,
    `00-${TRACE}-${PARENT}-1`,
    '',
    'garbage',
  ];
  it.each(headers)('answers %j as the general parser does', (header) => {
    expect(parseTraceparent(header)).toEqual(reference(header));
  });

  it('answers random headers of the usual length as the general parser does', () => {
    const alphabet = '0123456789abcdefABCDEF-x';
    const mismatches: string[] = [];
    for (let n = 0; n < 5000; n++) {
      const chars = `00-${TRACE}-${PARENT}-01`.split('');
      // Change one to three characters, anywhere: separators, digits, case.
      for (let k = 0; k <= n % 3; k++) chars[Math.floor(Math.random() * chars.length)] = alphabet[Math.floor(Math.random() * alphabet.length)]!;
      const header = chars.join('');
      mismatches.push(...(JSON.stringify(parseTraceparent(header)) === JSON.stringify(reference(header)) ? [] : [header]));
    }
    expect(mismatches).toEqual([]);
  });
});

describe('startSpan', () => {
  it('continues the caller trace with a new span id, or starts a new trace', () => {
    const child = startSpan(`00-${TRACE}-${PARENT}-01`);
    expect(child).toMatchObject({ traceId: TRACE, parentSpanId: PARENT, sampled: true });
    expect(child.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(formatTraceparent(child)).toBe(`00-${TRACE}-${child.spanId}-01`);
    const fresh = startSpan(undefined);
    expect(fresh.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(fresh.parentSpanId).toBeUndefined();
  });

  it('never hands out the same id twice across refills of the random pool', () => {
    const seen = new Set<string>();
    for (let n = 0; n < 2000; n++) {
      const span = startSpan(undefined);
      seen.add(span.traceId);
      seen.add(span.spanId);
    }
    expect(seen.size).toBe(4000);
  });
});
