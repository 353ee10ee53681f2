/**
 * The buckets of the gateway's `rate-limit` policy: a token bucket per key (consumer and
 * route), kept in this process or, across instances, in Redis.
 */
import { LocalRateLimitStore } from './local-rate-limit-store.js';
import { RedisRateLimitStore } from './redis-rate-limit-store.js';
import type { RateLimitStore } from './token-bucket.js';

export {
  checkRateLimit,
  msUntilFull,
  takeFromBucket,
  TOKEN_EPSILON,
  type BucketState,
  type BucketTake,
  type RateDecision,
  type RateLimit,
  type RateLimitStore,
} from './token-bucket.js';
export { LocalRateLimitStore, type LocalRateLimitStoreOptions } from './local-rate-limit-store.js';
export { RATE_LIMIT_KEY_ROOT, RedisRateLimitStore, type RedisRateLimitStoreOptions } from './redis-rate-limit-store.js';

export interface RateLimitStoreConfig {
  /** Share the buckets of every instance through this Redis; without it each instance keeps its own. */
  readonly redisUrl?: string;
  /** For Redis keys: `flowgate:rl:<keyPrefix>:<key>`. */
  readonly keyPrefix?: string;
  /** Redis became unusable; requests are limited per instance until it is back. */
  readonly onDegraded?: (message: string, cause: unknown) => void;
  /** Redis answers again. */
  readonly onRecovered?: () => void;
}

/** The Redis store when a URL is given, else the local one. Connects in the background; never throws for Redis being down. */
export function createRateLimitStore(config: RateLimitStoreConfig = {}): RateLimitStore {
  if (!config.redisUrl) return new LocalRateLimitStore();
  return new RedisRateLimitStore({
    url: config.redisUrl,
    keyPrefix: config.keyPrefix,
    onDegraded: config.onDegraded,
    onRecovered: config.onRecovered,
  });
}
