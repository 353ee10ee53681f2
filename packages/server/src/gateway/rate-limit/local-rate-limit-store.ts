import { FlowgateError } from '../../errors/index.js';
import { msUntilFull, takeFromBucket, type BucketState, type RateDecision, type RateLimit, type RateLimitStore } from './token-bucket.js';

export interface LocalRateLimitStoreOptions {
  /** Most buckets kept at once; 100 000 unless told. */
  readonly maxKeys?: number;
  /** Milliseconds since the epoch; injected by tests. */
  readonly now?: () => number;
}

interface Bucket extends BucketState {
  /** When the bucket is full again, so the same as no bucket and safe to forget. */
  readonly fullAtMs: number;
}

/**
 * Token buckets in this process's memory: for a single instance, and as the Redis store's
 * fallback while Redis is unreachable. Answers synchronously.
 *
 * The map is bounded, since keys come from callers (consumers times routes). The Map's
 * order is least recently used first (a take re-inserts its key). When a new key finds the
 * map full, full buckets go first, as forgetting them changes nothing; if that is not
 * enough, the least recently used go, down to 90% of the bound so the O(n) sweep runs once
 * per many new keys rather than on each. A bucket evicted before it is full hands its key
 * a fresh burst: the price of a bound, paid only by keys idle longer than all the others.
 */
export class LocalRateLimitStore implements RateLimitStore {
  private readonly buckets = new Map<string, Bucket>();
  private readonly maxKeys: number;
  private readonly now: () => number;

  constructor(options: LocalRateLimitStoreOptions = {}) {
    this.maxKeys = options.maxKeys ?? 100_000;
    if (!Number.isSafeInteger(this.maxKeys) || this.maxKeys < 1) {
      throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `A local rate-limit store keeps at least 1 bucket, not ${this.maxKeys}.`);
    }
    this.now = options.now ?? (() => Date.now());
  }

  /** How many buckets are kept. */
  get size(): number {
    return this.buckets.size;
  }

  take(key: string, limit: RateLimit): RateDecision {
    const now = this.now();
    const existing = this.buckets.get(key);
    const { state, decision } = takeFromBucket(existing, limit, now);
    if (existing) this.buckets.delete(key);
    else if (this.buckets.size >= this.maxKeys) this.evict(now);
    this.buckets.set(key, { tokens: state.tokens, updatedAtMs: state.updatedAtMs, fullAtMs: now + msUntilFull(state.tokens, limit) });
    return decision;
  }

  close(): Promise<void> {
    this.buckets.clear();
    return Promise.resolve();
  }

  private evict(now: number): void {
    const target = Math.floor(this.maxKeys * 0.9);
    for (const [key, bucket] of this.buckets) if (bucket.fullAtMs <= now) this.buckets.delete(key);
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= target) break;
      this.buckets.delete(key);
    }
  }
}
