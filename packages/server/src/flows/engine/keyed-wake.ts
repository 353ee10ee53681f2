/**
 * Sleepers keyed by a name (an execution id): `wait` sleeps until `wake` is called for its
 * key or `ms` pass, whichever comes first. Nothing is kept for a key nobody waits on.
 */
export class KeyedWake {
  private readonly sleepers = new Map<string, Set<() => void>>();

  wait(key: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const set = this.sleepers.get(key) ?? new Set();
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0) this.sleepers.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      this.sleepers.set(key, set);
    });
  }

  wake(key: string): void {
    for (const done of [...(this.sleepers.get(key) ?? [])]) done();
  }
}
