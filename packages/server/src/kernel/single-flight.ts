/**
 * One run per key at a time: whoever asks for a key while its run is under way gets that
 * run's promise (its value, or its failure) instead of starting another. For reads and
 * refreshes that many callers want at once, such as a topic's schema or an access token.
 */
export class SingleFlight<K, V> {
  private readonly running = new Map<K, Promise<V>>();

  /** Whether a run for `key` is under way. */
  has(key: K): boolean {
    return this.running.has(key);
  }

  run(key: K, work: () => Promise<V>): Promise<V> {
    let run = this.running.get(key);
    if (!run) {
      run = work().finally(() => this.running.delete(key));
      this.running.set(key, run);
    }
    return run;
  }
}
