/**
 * Runs the writes asked for in one turn of the event loop in one transaction, so they share
 * one commit: on SQLite a durable commit is an fsync that blocks the event loop, and a burst
 * of webhooks would otherwise pay one each. Each caller still learns its own result only
 * once the shared commit is done. If the shared transaction fails, each write is tried
 * again alone, so one bad write fails only its own caller.
 */
export class GroupCommit<Trx> {
  private queue: Array<{ work: (trx: Trx) => Promise<unknown>; resolve: (value: unknown) => void; reject: (error: unknown) => void }> = [];
  private scheduled = false;

  constructor(private readonly transaction: <T>(work: (trx: Trx) => Promise<T>) => Promise<T>) {}

  run<T>(work: (trx: Trx) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
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
        const results = await this.transaction(async (trx) => {
          const out: unknown[] = [];
          for (const item of batch) out.push(await item.work(trx));
          return out;
        });
        batch.forEach((item, i) => item.resolve(results[i]));
        return;
      } catch {
        // Fall through: each alone, so the failure lands on its own caller.
      }
    }
    for (const item of batch) {
      try {
        item.resolve(await this.transaction(item.work));
      } catch (error) {
        item.reject(error);
      }
    }
  }
}
