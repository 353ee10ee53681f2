import { describe, expect, it } from 'vitest';
import { SingleFlight } from '../../src/kernel/index.js';

describe('SingleFlight', () => {
  it('gives callers of a key under way the same run, and starts a new one after it ends', async () => {
    const flight = new SingleFlight<string, number>();
    let runs = 0;
    const work = async () => {
      const run = ++runs;
      await new Promise((resolve) => setImmediate(resolve));
      return run;
    };
    const [a, b, other] = await Promise.all([flight.run('k', work), flight.run('k', work), flight.run('other', work)]);
    expect([a, b]).toEqual([1, 1]);
    expect(other).toBe(2);
    expect(flight.has('k')).toBe(false);
    expect(await flight.run('k', work)).toBe(3);
  });

  it('shares a failure with every caller of that run, and forgets it', async () => {
    const flight = new SingleFlight<string, number>();
    const failing = () => Promise.reject(new Error('store down'));
    const results = await Promise.allSettled([flight.run('k', failing), flight.run('k', () => Promise.resolve(1))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(await flight.run('k', () => Promise.resolve(2))).toBe(2);
  });
});
