import { Redis } from 'ioredis';
import { LocalRateLimitStore } from './local-rate-limit-store.js';
import { checkRateLimit, TOKEN_EPSILON, type RateDecision, type RateLimit, type RateLimitStore } from './token-bucket.js';

/** Every key this store writes starts with this. */
export const RATE_LIMIT_KEY_ROOT = 'flowgate:rl:';

/**
 * Refills a token bucket and takes from it, atomically: the arithmetic of takeFromBucket
 * (token-bucket.ts), keep the two in step.
 *
 * KEYS[1]  the bucket: a hash of t (tokens, fractional) and u (last update, ms of the Redis clock)
 * ARGV     capacity, refillPerSecond, cost, epsilon
 * returns  {allowed (1 or 0), remaining, resetSeconds, retryAfterSeconds}, all whole numbers
 *
 * The time is the Redis server's own (TIME), so instances whose clocks disagree share one
 * budget. Redis 5 and later replicate a script's writes rather than the script, which is
 * what allows TIME before a write. The bucket expires when it would be full again, from
 * when it is the same as no bucket. The TTL goes out through %d: a large number passed as
 * a Lua number could be written in exponent form, which PEXPIRE refuses.
 */
const TAKE_SCRIPT = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local epsilon = tonumber(ARGV[4])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local bucket = redis.call('HMGET', KEYS[1], 't', 'u')
local stored, updated = tonumber(bucket[1]), tonumber(bucket[2])
local tokens = capacity
if stored and updated then
  tokens = math.min(capacity, stored + math.max(0, now - updated) * rate / 1000)
end
local allowed = 0
if tokens + epsilon >= cost then
  allowed = 1
  tokens = math.max(0, tokens - cost)
end
local fullInMs = math.max(0, math.ceil((capacity - tokens) / rate * 1000 - epsilon))
local retryAfter = 0
if allowed == 0 then
  retryAfter = math.max(1, math.ceil((cost - tokens) / rate - epsilon))
end
redis.call('HSET', KEYS[1], 't', tokens, 'u', now)
redis.call('PEXPIRE', KEYS[1], string.format('%d', math.max(1, fullInMs)))
return {allowed, math.floor(tokens + epsilon), math.ceil(fullInMs / 1000), retryAfter}
`;

/** The script, as ioredis's defineCommand adds it (EVALSHA, and EVAL once after NOSCRIPT). */
interface TakeCommand {
  flowgateRateLimitTake(key: string, capacity: number, refillPerSecond: number, cost: number, epsilon: number): Promise<unknown>;
}

export interface RedisRateLimitStoreOptions {
  /** `redis://[:password@]host:port[/db]` or `rediss://…`. */
  readonly url: string;
  /**
   * Goes between `flowgate:rl:` and the bucket key (`flowgate:rl:<keyPrefix>:<key>`); give each
   * deployment sharing a Redis its own.
   */
  readonly keyPrefix?: string;
  /** How long one call may take before the request is answered locally; 200 ms unless told. */
  readonly commandTimeoutMs?: number;
  /** How long a connection attempt may take; 1 000 ms unless told. */
  readonly connectTimeoutMs?: number;
  /** While degraded, how often one request tries Redis again; 1 000 ms unless told. */
  readonly retryIntervalMs?: number;
  /** Limits each instance on its own while Redis cannot be used; a new LocalRateLimitStore unless given. */
  readonly fallback?: LocalRateLimitStore;
  /** Called once when Redis becomes unusable; `message` is safe to log (no URL, no password). */
  readonly onDegraded?: (message: string, cause: unknown) => void;
  /** Called once when Redis answers again after {@link onDegraded}. */
  readonly onRecovered?: () => void;
}

/**
 * Token buckets in Redis, shared by every Flowgate instance: one script call per request.
 *
 * Redis must never make the gateway slow or fail. Commands are not queued while the
 * connection is down (enableOfflineQueue off), not resent after a reconnect (a stale take
 * would count twice) and time out after `commandTimeoutMs`. A request Redis cannot answer
 * is answered by the local fallback store instead: still limited, but per instance, so
 * with N instances a consumer gets up to N budgets until Redis is back, and a fresh bucket
 * on each instance when the outage starts.
 *
 * The store is degraded from the first failure (a failed call, a connection error or
 * close) until Redis answers again; `onDegraded` and `onRecovered` are called once each per
 * outage. While degraded, requests go straight to the fallback, without waiting on Redis;
 * once the connection is ready, one request at a time, at most once per `retryIntervalMs`,
 * tries Redis again (a half-open circuit breaker), so a Redis that accepts connections but
 * does not answer costs one slow request a second, not every request. While the first
 * connection is still being made, requests are answered locally without declaring an outage.
 */
export class RedisRateLimitStore implements RateLimitStore {
  private readonly client: Redis & TakeCommand;
  private readonly prefix: string;
  private readonly fallback: LocalRateLimitStore;
  private readonly retryIntervalMs: number;
  private degraded = false;
  private closed = false;
  private trialRunning = false;
  private lastTrialMs = 0;

  constructor(private readonly options: RedisRateLimitStoreOptions) {
    this.prefix = RATE_LIMIT_KEY_ROOT + (options.keyPrefix ? `${options.keyPrefix}:` : '');
    this.fallback = options.fallback ?? new LocalRateLimitStore();
    this.retryIntervalMs = options.retryIntervalMs ?? 1000;
    const client = new Redis(options.url, {
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 200,
      connectTimeout: options.connectTimeoutMs ?? 1000,
    });
    client.defineCommand('flowgateRateLimitTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    this.client = client as Redis & TakeCommand;
    // Without an 'error' listener ioredis prints every failed reconnect to the console.
    client.on('error', (error) => this.degrade(error));
    client.on('close', () => this.degrade(new Error('the connection closed')));
  }

  ready(timeoutMs: number): Promise<void> {
    if (this.client.status === 'ready' || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      const client = this.client;
      function done(): void {
        clearTimeout(timer);
        client.off('ready', done);
        resolve();
      }
      client.once('ready', done);
    });
  }

  /** Whether requests are being answered locally because Redis cannot be used. */
  get isDegraded(): boolean {
    return this.degraded;
  }

  take(key: string, limit: RateLimit): RateDecision | Promise<RateDecision> {
    checkRateLimit(limit);
    if (this.closed || this.client.status !== 'ready') return this.fallback.take(key, limit);
    if (!this.degraded) return this.takeFromRedis(key, limit, false);
    const now = Date.now();
    if (this.trialRunning || now - this.lastTrialMs < this.retryIntervalMs) return this.fallback.take(key, limit);
    this.trialRunning = true;
    this.lastTrialMs = now;
    return this.takeFromRedis(key, limit, true);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.client.status === 'ready') {
      try {
        await this.client.quit();
      } catch {
        this.client.disconnect();
      }
    } else {
      this.client.disconnect();
    }
    await this.fallback.close();
  }

  private async takeFromRedis(key: string, limit: RateLimit, trial: boolean): Promise<RateDecision> {
    try {
      const reply = await this.client.flowgateRateLimitTake(this.prefix + key, limit.capacity, limit.refillPerSecond, 1, TOKEN_EPSILON);
      const decision = toDecision(reply);
      // Only a trial ends an outage: a call sent before the outage that happens to succeed
      // after it says little about Redis now.
      if (trial) this.recover();
      return decision;
    } catch (error) {
      this.degrade(error);
      return this.fallback.take(key, limit);
    } finally {
      if (trial) this.trialRunning = false;
    }
  }

  private degrade(cause: unknown): void {
    if (this.closed || this.degraded) return;
    this.degraded = true;
    this.lastTrialMs = Date.now();
    const { host, port } = this.client.options;
    const reason = cause instanceof Error ? cause.message : String(cause);
    notify(() => this.options.onDegraded?.(`Redis at ${host ?? 'localhost'}:${port ?? 6379} cannot be used for rate limits (${reason}); each instance limits on its own until it is back.`, cause));
  }

  private recover(): void {
    if (this.closed || !this.degraded) return;
    this.degraded = false;
    notify(() => this.options.onRecovered?.());
  }
}

/** The script's reply as a decision; anything else is a failure like any other. */
function toDecision(reply: unknown): RateDecision {
  if (!Array.isArray(reply) || reply.length !== 4 || !reply.every((n) => typeof n === 'number')) {
    throw new Error('the rate-limit script answered with something other than four numbers');
  }
  const [allowed, remaining, resetSeconds, retryAfterSeconds] = reply as [number, number, number, number];
  return { allowed: allowed === 1, remaining, resetSeconds, retryAfterSeconds };
}

/**
 * Runs a callback of the caller's (a logger, most likely) so that its failure cannot fail
 * the request that noticed the outage: there is nowhere better to report it.
 */
function notify(callback: () => void): void {
  try {
    callback();
  } catch {
    // Deliberately ignored; see above.
  }
}
