/** Starts asked for in one turn of the event loop share one commit; one bad write fails only its caller. */
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/flows/engine/group-commit.js';

/** A transaction runner that records each transaction's writes, and keeps them only if it commits. */
function recordingStore() {
  const committed: string[][] = [];
  let transactions = 0;
  const transaction = async <T>(work: (trx: string[]) => Promise<T>): Promise<T> => {
    transactions++;
    const writes: string[] = [];
    const result = await work(writes);
    committed.push(writes);
    return result;
  };
  return { committed, transaction, transactions: () => transactions };
}

describe('GroupCommit', () => {
  it('commits the writes of one event-loop turn together and answers each caller its own result', async () => {
    const store = recordingStore();
    const group = new GroupCommit(store.transaction, (trx: string[], names: readonly string[]) => Promise.resolve((trx.push(...names), names.map((n) => `${n}!`))));
    const answers = await Promise.all(['a', 'b', 'c'].map((name) => group.run(name)));
    expect(answers).toEqual(['a!', 'b!', 'c!']);
    expect(store.committed).toEqual([['a', 'b', 'c']]);
    // The next turn's writes get their own commit.
    await group.run('d');
    expect(store.committed).toEqual([['a', 'b', 'c'], ['d']]);
  });

  it('fails only the write that fails: the others commit, each alone', async () => {
    const store = recordingStore();
    const group = new GroupCommit(store.transaction, (trx: string[], names: readonly string[]) => {
      if (names.includes('bad')) return Promise.reject(new Error('refused'));
      trx.push(...names);
      return Promise.resolve([...names]);
    });
    const results = await Promise.allSettled(['a', 'bad', 'c'].map((name) => group.run(name)));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toEqual(new Error('refused'));
    expect(store.committed).toEqual([['a'], ['c']]);
    expect(store.transactions()).toBe(4);
  });
});
