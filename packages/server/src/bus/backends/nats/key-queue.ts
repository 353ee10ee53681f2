/** Something handed out under an ordering key (undefined: no order to keep). */
export interface Keyed {
  readonly id: string;
  readonly key: string | undefined;
}

/**
 * Order per key within one group member: an item whose key has one out must wait, and
 * waiting items go out in arrival order once their key is free again.
 */
export class KeyQueue<T extends Keyed> {
  private readonly out = new Map<string, number>();
  private waiting: T[] = [];

  /** Items waiting behind their key, in arrival order. */
  get queued(): readonly T[] {
    return this.waiting;
  }

  /** Whether `item` must wait behind an earlier item of its key. */
  mustWait(item: T): boolean {
    return item.key !== undefined && this.out.has(item.key);
  }

  wait(item: T): void {
    this.waiting.push(item);
  }

  /** `item` goes out: later items of its key wait until it is {@link settled}. */
  handedOut(item: T): void {
    if (item.key !== undefined) this.out.set(item.key, (this.out.get(item.key) ?? 0) + 1);
  }

  settled(item: T): void {
    if (item.key === undefined) return;
    const n = (this.out.get(item.key) ?? 1) - 1;
    if (n > 0) this.out.set(item.key, n);
    else this.out.delete(item.key);
  }

  /** Removes the waiting item `id`; whether there was one. */
  remove(id: string): boolean {
    const index = this.waiting.length === 0 ? -1 : this.waiting.findIndex((w) => w.id === id);
    if (index >= 0) this.waiting.splice(index, 1);
    return index >= 0;
  }

  /** The first waiting item whose key is free, taken off the queue. */
  next(): T | undefined {
    const index = this.waiting.findIndex((w) => w.key === undefined || !this.out.has(w.key));
    return index < 0 ? undefined : this.waiting.splice(index, 1)[0];
  }

  /** Forgets what waits (it is returned) and, with `all`, which keys are out too. */
  clear(all: boolean): T[] {
    const waited = this.waiting;
    this.waiting = [];
    if (all) this.out.clear();
    return waited;
  }
}
