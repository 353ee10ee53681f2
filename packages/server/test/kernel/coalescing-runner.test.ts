import { describe, expect, it } from 'vitest';
import { CoalescingRunner } from '../../src/kernel/index.js';

/** A promise and the function that resolves it. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('CoalescingRunner', () => {
  it('runs once more after the run in progress, however often it was triggered meanwhile', async () => {
    const first = gate();
    let runs = 0;
    let concurrent = 0;
    let maxConcurrent = 0;
    const runner = new CoalescingRunner(
      async () => {
        runs++;
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        if (runs === 1) await first.promise;
        concurrent--;
      },
      { onError: () => false },
    );
    runner.trigger();
    for (let i = 0; i < 10; i++) runner.trigger();
    first.open();
    while (runner.busy) await tick();
    expect(runs).toBe(2);
    expect(maxConcurrent).toBe(1);
  });

  it('runs again while the work says more is waiting', async () => {
    let left = 3;
    const runner = new CoalescingRunner(() => Promise.resolve(--left > 0), { onError: () => false });
    runner.trigger();
    while (runner.busy) await tick();
    expect(left).toBe(0);
  });

  it('with defer, lets every trigger of the same turn share one run', async () => {
    let runs = 0;
    const runner = new CoalescingRunner(
      () => {
        runs++;
        return Promise.resolve();
      },
      { onError: () => false, defer: true },
    );
    runner.trigger();
    runner.trigger();
    runner.trigger();
    expect(runs).toBe(0);
    while (runner.busy) await tick();
    expect(runs).toBe(1);
  });

  it('asks onError whether to run again, and tells onIdle when it stops', async () => {
    const errors: string[] = [];
    let idle = 0;
    let runs = 0;
    const runner = new CoalescingRunner(
      () => {
        runs++;
        return runs === 1 ? Promise.reject(new Error('store down')) : Promise.resolve();
      },
      {
        onError: (error) => {
          errors.push((error as Error).message);
          return true;
        },
        onIdle: () => {
          idle++;
        },
      },
    );
    runner.trigger();
    while (runner.busy) await tick();
    expect(errors).toEqual(['store down']);
    expect(runs).toBe(2);
    expect(idle).toBe(1);
  });

  it('stop waits for the run in progress and starts no other', async () => {
    const release = gate();
    let runs = 0;
    let idle = 0;
    const runner = new CoalescingRunner(
      async () => {
        runs++;
        await release.promise;
      },
      { onError: () => false, onIdle: () => void idle++ },
    );
    runner.trigger();
    runner.trigger();
    const stopped = runner.stop();
    let done = false;
    void stopped.then(() => (done = true));
    await tick();
    expect(done).toBe(false);
    release.open();
    await stopped;
    runner.trigger();
    await tick();
    expect(runs).toBe(1);
    expect(idle).toBe(0);
    expect(runner.busy).toBe(false);
  });
});
