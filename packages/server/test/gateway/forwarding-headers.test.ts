/**
 * The answer's headers built straight from undici's raw list must be what undici's own
 * parsing followed by the hop-by-hop filter gave: same names, values, duplicates.
 */
import { util } from 'undici';
import { describe, expect, it } from 'vitest';
import { downstreamHeaders, downstreamHeadersFromRaw } from '../../src/gateway/forwarding-headers.js';

const raw = (...pairs: string[]) => pairs.map((p) => Buffer.from(p, 'latin1'));

describe('downstreamHeadersFromRaw', () => {
  const cases: Array<[string, Buffer[]]> = [
    ['plain', raw('Content-Type', 'application/json', 'Content-Length', '100', 'Date', 'Mon, 23 Nov 2026 18:00:00 GMT')],
    ['hop-by-hop', raw('Connection', 'keep-alive', 'Keep-Alive', 'timeout=5', 'Transfer-Encoding', 'chunked', 'X-Ok', '1')],
    ['connection tokens', raw('Connection', 'close, X-Secret', 'X-Secret', 's', 'x-kept', 'k')],
    ['duplicated connection', raw('Connection', 'x-a', 'Connection', 'X-B', 'x-a', '1', 'x-b', '2', 'x-c', '3')],
    ['duplicates', raw('Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'SET-COOKIE', 'c=3', 'Vary', 'Origin')],
    ['prototype names', raw('constructor', 'c', 'toString', 't', '__proto__', 'p', 'hasOwnProperty', 'h')],
    ['latin1 value', raw('X-Name', 'caf\u00e9')],
  ];
  it.each(cases)('builds what parsing then filtering built (%s)', (_name, headers) => {
    const expected = downstreamHeaders(util.parseHeaders(headers));
    expect(downstreamHeadersFromRaw(headers)).toEqual(expected);
    expect(Object.keys(downstreamHeadersFromRaw(headers))).toEqual(Object.keys(expected));
  });
});
