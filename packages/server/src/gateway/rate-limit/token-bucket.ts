import { FlowgateError } from '../../errors/index.js';

/** A token bucket's size and speed: `capacity` requests at once, then `refillPerSecond` a second. */
export interface RateLimit {
  readonly capacity: number;
  readonly refillPerSecond: number;
}

/** The answer to one request, with what the RateLimit-* and Retry-After headers need. */
export interface RateDecision {
  readonly allowed: boolean;
  /** Whole tokens left after this request. */
  readonly remaining: number;
  /** Seconds until the bucket is full again (for RateLimit-Reset), rounded up. */
  readonly resetSeconds: number;
  /** When refused: seconds until one token is available (for Retry-After), rounded up, >= 1. 0 when allowed. */
  readonly retryAfterSeconds: number;
}

/**
 * Where the buckets live: {@link LocalRateLimitStore} in this process, or
 * {@link RedisRateLimitStore} shared by every instance. The gateway calls `take` on its hot
 * path, once per request: the local store answers synchronously, the Redis one in one round
 * trip. `take` never rejects for the store's own trouble (a store that cannot reach its
 * backend answers from a fallback); it throws only for a limit {@link checkRateLimit} refuses.
 */
export interface RateLimitStore {
  /** Takes one token from the bucket of `key` (a consumer and a route, say; never a secret). */
  take(key: string, limit: RateLimit): RateDecision | Promise<RateDecision>;
  /** Forgets the buckets (local) or closes the connection (Redis). */
  close(): Promise<void>;
  /**
   * Resolves once the store can share budgets (Redis connected), or after `timeoutMs`
   * when it cannot yet (it limits per instance meanwhile). Never rejects.
   */
  ready?(timeoutMs: number): Promise<void>;
}

/** What a store keeps per key. A missing bucket is a full one. */
export interface BucketState {
  /** Tokens in the bucket at `updatedAtMs`; fractional, since the bucket refills continuously. */
  readonly tokens: number;
  readonly updatedAtMs: number;
}

/** The bucket after a take, and the answer to give. */
export interface BucketTake {
  readonly state: BucketState;
  readonly decision: RateDecision;
}

/**
 * Slack for floating-point drift: a bucket refilled by 0.1 + 0.2 tokens holds the 0.3 it
 * should, so a token that is due counts as there and a full bucket resets in 0 seconds.
 * The Redis script uses the same value.
 */
export const TOKEN_EPSILON = 1e-9;

/**
 * Refills the bucket for the time since its last update, then takes `cost` tokens if it
 * holds them. Pure: time comes in as `nowMs`, so the local store passes its clock and the
 * Redis script mirrors this arithmetic with the Redis server's own time.
 *
 * A refused request takes nothing, so callers that keep retrying are not starved for ever.
 * A clock that stepped back refills nothing (rather than freezing the bucket until it
 * catches up). Throws FLOWGATE_ERR_GATEWAY_CONFIG_INVALID for a limit {@link checkRateLimit}
 * refuses, or a `cost` that is not in (0, capacity].
 */
export function takeFromBucket(state: BucketState | undefined, limit: RateLimit, nowMs: number, cost = 1): BucketTake {
  checkRateLimit(limit);
  if (!(cost > 0 && cost <= limit.capacity)) {
    throw new FlowgateError('FLOWGATE_ERR_GATEWAY_CONFIG_INVALID', `A rate-limit request costs more than 0 and at most the capacity (${limit.capacity}) tokens, not ${cost}.`);
  }
  const available = state === undefined ? limit.capacity : Math.min(limit.capacity, state.tokens + (Math.max(0, nowMs - state.updatedAtMs) * limit.refillPerSecond) / 1000);
  const allowed = available + TOKEN_EPSILON >= cost;
  const tokens = allowed ? Math.max(0, available - cost) : available;
  return {
    state: { tokens, updatedAtMs: nowMs },
    decision: {
      allowed,
      remaining: Math.floor(tokens + TOKEN_EPSILON),
      resetSeconds: Math.ceil(msUntilFull(tokens, limit) / 1000),
      retryAfterSeconds: allowed ? 0 : Math.max(1, Math.ceil((cost - tokens) / limit.refillPerSecond - TOKEN_EPSILON)),
    },
  };
}

/**
 * Milliseconds until a bucket holding `tokens` is full. From then on the bucket is the same
 * as no bucket, which is why stores may forget it (the local store evicts it, Redis expires it).
 */
export function msUntilFull(tokens: number, limit: RateLimit): number {
  return Math.max(0, Math.ceil(((limit.capacity - tokens) / limit.refillPerSecond) * 1000 - TOKEN_EPSILON));
}

/**
 * Throws FLOWGATE_ERR_GATEWAY_CONFIG_INVALID unless `capacity` is a whole number of at
 * least 1 and `refillPerSecond` a finite number above 0. The seconds to refill an empty
 * bucket must fit in a safe integer, so that Retry-After and RateLimit-Reset stay whole
 * numbers and the Redis expiry (in ms) fits in a 64-bit integer: that bound is some 285
 * million years, far beyond any limit the gateway's configuration accepts.
 * The policy should call this when its options are read; the stores call it too.
 */
export function checkRateLimit(limit: RateLimit): void {
  const { capacity, refillPerSecond } = limit;
  if (!Number.isSafeInteger(capacity) || capacity < 1) {
    throw new FlowgateError('FLOWGATE_ERR_GATEWAY_CONFIG_INVALID', `A rate limit's capacity is a whole number of at least 1, not ${capacity}.`);
  }
  if (!Number.isFinite(refillPerSecond) || refillPerSecond <= 0) {
    throw new FlowgateError('FLOWGATE_ERR_GATEWAY_CONFIG_INVALID', `A rate limit refills more than 0 tokens a second, not ${refillPerSecond}.`);
  }
  if (capacity / refillPerSecond > Number.MAX_SAFE_INTEGER) {
    throw new FlowgateError('FLOWGATE_ERR_GATEWAY_CONFIG_INVALID', `A rate limit of ${capacity} tokens refilled at ${refillPerSecond} a second would take too long to refill.`);
  }
}
