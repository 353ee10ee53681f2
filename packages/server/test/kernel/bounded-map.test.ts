import { describe, expect, it } from 'vitest';
import { setBounded } from '../../src/kernel/index.js';

describe('setBounded', () => {
  it('keeps at most max entries, dropping the oldest and answering it', () => {
    const map = new Map<string, number>();
    expect(setBounded(map, 'a', 1, 2)).toBeUndefined();
    expect(setBounded(map, 'b', 2, 2)).toBeUndefined();
    expect(setBounded(map, 'c', 3, 2)).toEqual(['a', 1]);
    expect([...map]).toEqual([
      ['b', 2],
      ['c', 3],
    ]);
  });

  it('takes no room to set a key that is there, and makes it the newest', () => {
    const map = new Map([
      ['a', 1],
      ['b', 2],
    ]);
    expect(setBounded(map, 'a', 10, 2)).toBeUndefined();
    expect(setBounded(map, 'c', 3, 2)).toEqual(['b', 2]);
    expect([...map]).toEqual([
      ['a', 10],
      ['c', 3],
    ]);
  });
});
