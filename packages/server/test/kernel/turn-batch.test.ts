import { describe, expect, it } from 'vitest';
import { TurnBatch } from '../../src/kernel/index.js';

describe('TurnBatch', () => {
  /** A store of `values` that records every read's keys. */
  const reader = (values: Record<string, number>) => {
    const reads: string[][] = [];
    const batch = new TurnBatch<string, number>((keys) => {
      reads.push([...keys]);
      return Promise.resolve(new Map(keys.filter((k) => k in values).map((k) => [k, values[k]!])));
    });
    return { batch, reads };
  };

  it('answers the loads of one turn with one read of their distinct keys', async () => {
    const { batch, reads } = reader({ a: 1, b: 2 });
    const answers = await Promise.all([batch.load('a'), batch.load('b'), batch.load('a'), batch.load('missing')]);
    expect(answers).toEqual([1, 2, 1, undefined]);
    expect(reads).toEqual([['a', 'b', 'missing']]);
  });

  it('reads again in a later turn: nothing is kept', async () => {
    const values: Record<string, number> = { a: 1 };
    const { batch, reads } = reader(values);
    expect(await batch.load('a')).toBe(1);
    values.a = 2;
    expect(await batch.load('a')).toBe(2);
    expect(reads).toEqual([['a'], ['a']]);
  });

  it('fails every load of a read that fails, and reads afresh after', async () => {
    let fail = true;
    const batch = new TurnBatch<string, number>(() => (fail ? Promise.reject(new Error('store down')) : Promise.resolve(new Map([['a', 1]]))));
    const results = await Promise.allSettled([batch.load('a'), batch.load('b')]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    fail = false;
    expect(await batch.load('a')).toBe(1);
  });
});
