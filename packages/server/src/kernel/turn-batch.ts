/**
 * Reads asked for in one turn of the event loop go to the store together: `fetch` gets
 * every distinct key asked for and answers what it found, by key. Nothing is cached: a key
 * asked for in a later turn is read again, and every read begins after every request it
 * answers was made, so none gets an answer older than itself. On PostgreSQL each read is a
 * round trip; a burst of requests in one turn then shares one.
 */
export class TurnBatch<K, V> {
  private waiting = new Map<K, Array<{ resolve: (value: V | undefined) => void; reject: (error: unknown) => void }>>();
  private scheduled = false;

  constructor(private readonly fetch: (keys: readonly K[]) => Promise<ReadonlyMap<K, V>>) {}

  /** What the store holds for `key` now, or `undefined`. */
  load(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const callers = this.waiting.get(key);
      if (callers) callers.push({ resolve, reject });
      else this.waiting.set(key, [{ resolve, reject }]);
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => void this.run());
    });
  }

  private async run(): Promise<void> {
    this.scheduled = false;
    const batch = this.waiting;
    this.waiting = new Map();
    try {
      const found = await this.fetch([...batch.keys()]);
      for (const [key, callers] of batch) for (const caller of callers) caller.resolve(found.get(key));
    } catch (error) {
      for (const callers of batch.values()) for (const caller of callers) caller.reject(error);
    }
  }
}
