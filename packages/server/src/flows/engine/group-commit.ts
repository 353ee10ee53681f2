/**
 * Writes the items asked for in one turn of the event loop together, in one transaction, so
 * they share one commit and, where the writer can, one statement per table: on SQLite a
 * durable commit is an fsync that blocks the event loop, on PostgreSQL each statement is a
 * round trip, and a burst of webhooks would otherwise pay for each alone. Each caller still
 * learns its own result only once the shared commit is done. If the shared transaction
 * fails, each item is written again alone, so one bad item fails only its own caller.
 */
export class GroupCommit<Trx, Item, Result> {
  private queue: Array<{ item: Item; resolve: (value: Result) => void; reject: (error: unknown) => void }> = [];
  private scheduled = false;

  /** `write` writes `items` in `trx` and answers one result per item, in order. */
  constructor(
    private readonly transaction: <T>(work: (trx: Trx) => Promise<T>) => Promise<T>,
    private readonly write: (trx: Trx, items: readonly Item[]) => Promise<Result[]>,
  ) {}

  run(item: Item): Promise<Result> {
    return new Promise<Result>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      setImmediate(() => void this.commit());
    });
  }

  private async commit(): Promise<void> {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length > 1) {
      try {
        const results = await this.transaction((trx) => this.write(trx, batch.map((b) => b.item)));
        batch.forEach((b, i) => b.resolve(results[i]!));
        return;
      } catch {
        // Fall through: each alone, so the failure lands on its own caller.
      }
    }
    for (const b of batch) {
      try {
        const [result] = await this.transaction((trx) => this.write(trx, [b.item]));
        b.resolve(result!);
      } catch (error) {
        b.reject(error);
      }
    }
  }
}
