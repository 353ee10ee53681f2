import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/audit/index.js';

describe('canonical JSON', () => {
  it('gives the same text for the same record built in any order', () => {
    const a = canonicalJson({ b: 1, a: { y: [1, 'two', null], x: true }, c: 'é' });
    const b = canonicalJson({ c: 'é', a: { x: true, y: [1, 'two', null] }, b: 1 });
    expect(a).toBe(b);
    expect(a).toBe('{"a":{"x":true,"y":[1,"two",null]},"b":1,"c":"é"}');
  });

  it('leaves out undefined members and refuses numbers JSON cannot carry', () => {
    expect(canonicalJson({ a: undefined, b: 2 })).toBe('{"b":2}');
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(TypeError);
  });
});
