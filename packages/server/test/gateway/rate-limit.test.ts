/**
 * The buckets of the gateway's `rate-limit` policy: the token-bucket arithmetic with a
 * frozen clock, the local store with an injected clock, and the Redis store against a real
 * Redis (127.0.0.1:6379, each test its own key prefix). Tests that stop or pause Redis run
 * their own redis-server on a free port. Nothing here asserts timing: Redis tests count
 * decisions, and wait for conditions with a generous timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { isFlowgateError } from '../../src/errors/index.js';
import {
  createRateLimitStore,
  LocalRateLimitStore,
  RedisRateLimitStore,
  takeFromBucket,
  type BucketState,
  type RateDecision,
  type RateLimit,
  type RateLimitStore,
} from '../../src/gateway/rate-limit/index.js';

const REDIS_URL = process.env.FLOWGATE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const T0 = Date.UTC(2026, 0, 1);

/** Three requests at once, then three an hour: nothing refills while a test runs. */
const SLOW: RateLimit = { capacity: 3, refillPerSecond: 3 / 3600 };

const cleanups: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A key prefix no other test uses. */
function uniquePrefix(): string {
  return `rl-test-${randomBytes(5).toString('hex')}`;
}

/** Deletes the buckets a test left under its prefix (some would outlive us all). */
async function forgetPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url);
  try {
    const keys = await redis.keys(`flowgate:rl:${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
  } finally {
    redis.disconnect();
  }
}

/** Takes `n` tokens one after the other and returns the decisions. */
async function takeMany(store: RateLimitStore, key: string, limit: RateLimit, n: number): Promise<RateDecision[]> {
  const decisions: RateDecision[] = [];
  for (let i = 0; i < n; i++) decisions.push(await store.take(key, limit));
  return decisions;
}

const allowedCount = (decisions: readonly RateDecision[]) => decisions.filter((d) => d.allowed).length;

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP port nothing listens on (a moment ago). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** A throwaway redis-server of this test's own, for tests that stop or pause it. */
async function startPrivateRedis(port: number): Promise<{ admin: Redis; stop(): Promise<void> }> {
  const server: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const admin = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
  admin.on('error', () => undefined);
  await waitFor(`redis-server on port ${port}`, async () => {
    try {
      await admin.connect();
      return (await admin.ping()) === 'PONG';
    } catch {
      admin.disconnect();
      return false;
    }
  });
  const stop = async () => {
    admin.disconnect();
    server.kill('SIGKILL');
    await exited;
  };
  cleanups.push(stop);
  return { admin, stop };
}

/** A Redis store closed after the test, recording its outages. */
function redisStore(url: string, keyPrefix: string, options: { retryIntervalMs?: number } = {}) {
  const events: string[] = [];
  const store = new RedisRateLimitStore({
    url,
    keyPrefix,
    ...options,
    onDegraded: (message) => events.push(`degraded: ${message}`),
    onRecovered: () => events.push('recovered'),
  });
  cleanups.push(() => store.close());
  return { store, events };
}

/** A Redis store whose connection is ready, so that its first take goes to Redis. */
async function readyRedisStore(url: string, keyPrefix: string, options: { retryIntervalMs?: number } = {}) {
  const opened = redisStore(url, keyPrefix, options);
  cleanups.push(() => forgetPrefix(url, keyPrefix));
  // The store's own connection is not exposed; a take that reaches Redis leaves a key.
  await waitFor('the store to reach Redis', async () => {
    await opened.store.take('__ready', SLOW);
    const check = new Redis(url);
    try {
      return (await check.exists(`flowgate:rl:${keyPrefix}:__ready`)) === 1;
    } finally {
      check.disconnect();
    }
  });
  return opened;
}

describe('takeFromBucket', () => {
  const limit: RateLimit = { capacity: 10, refillPerSecond: 2 };

  it('starts a new bucket full, so the first request is allowed', () => {
    const { state, decision } = takeFromBucket(undefined, limit, T0);
    expect(decision).toEqual({ allowed: true, remaining: 9, resetSeconds: 1, retryAfterSeconds: 0 });
    expect(state).toEqual({ tokens: 9, updatedAtMs: T0 });
  });

  it('allows a burst of capacity requests at one instant, then refuses', () => {
    let state: BucketState | undefined;
    const decisions: RateDecision[] = [];
    for (let i = 0; i < 11; i++) {
      const taken = takeFromBucket(state, limit, T0);
      state = taken.state;
      decisions.push(taken.decision);
    }
    expect(decisions.map((d) => d.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0]);
    expect(allowedCount(decisions)).toBe(10);
    // Empty: 10 tokens at 2 a second refill in 5 s; one token is 0.5 s away, rounded up.
    expect(decisions[10]).toEqual({ allowed: false, remaining: 0, resetSeconds: 5, retryAfterSeconds: 1 });
  });

  it('refills continuously, in fractions of a token, up to the capacity and no further', () => {
    const empty: BucketState = { tokens: 0, updatedAtMs: T0 };
    expect(takeFromBucket(empty, limit, T0 + 250).decision.allowed).toBe(false); // 0.5 tokens
    expect(takeFromBucket(empty, limit, T0 + 500).decision).toEqual({ allowed: true, remaining: 0, resetSeconds: 5, retryAfterSeconds: 0 });
    expect(takeFromBucket(empty, limit, T0 + 1750).state.tokens).toBeCloseTo(2.5);
    expect(takeFromBucket(empty, limit, T0 + 3_600_000).decision).toEqual({ allowed: true, remaining: 9, resetSeconds: 1, retryAfterSeconds: 0 });
  });

  it('takes nothing from a refused request, so a caller that keeps retrying gets through', () => {
    let state: BucketState = { tokens: 0, updatedAtMs: T0 };
    let allowedAt: number | undefined;
    for (let t = T0; allowedAt === undefined; t += 100) {
      const taken = takeFromBucket(state, limit, t);
      state = taken.state;
      if (taken.decision.allowed) allowedAt = t;
    }
    expect(allowedAt).toBe(T0 + 500);
  });

  it('rounds Retry-After up to whole seconds, and never below 1', () => {
    const slow: RateLimit = { capacity: 5, refillPerSecond: 0.5 };
    const empty: BucketState = { tokens: 0, updatedAtMs: T0 };
    expect(takeFromBucket(empty, slow, T0).decision.retryAfterSeconds).toBe(2);
    expect(takeFromBucket(empty, slow, T0 + 1).decision.retryAfterSeconds).toBe(2); // 1.998 s
    expect(takeFromBucket(empty, slow, T0 + 1000).decision.retryAfterSeconds).toBe(1);
    expect(takeFromBucket(empty, slow, T0 + 1999).decision.retryAfterSeconds).toBe(1); // 1 ms
    const fast: RateLimit = { capacity: 5, refillPerSecond: 1000 };
    expect(takeFromBucket(empty, fast, T0).decision.retryAfterSeconds).toBe(1); // 1 ms
  });

  it('reports RateLimit-Reset as the seconds until the bucket is full, rounded up', () => {
    const slow: RateLimit = { capacity: 60, refillPerSecond: 1 / 60 };
    expect(takeFromBucket(undefined, slow, T0).decision.resetSeconds).toBe(60);
    expect(takeFromBucket({ tokens: 0, updatedAtMs: T0 }, slow, T0).decision.resetSeconds).toBe(3600);
  });

  it('does not lose a token to floating-point drift', () => {
    // 10/3 tokens a second is one token every 300 ms, which is not exact in binary.
    const thirds: RateLimit = { capacity: 1, refillPerSecond: 10 / 3 };
    let state = takeFromBucket(undefined, thirds, T0).state;
    for (let i = 1; i <= 1000; i++) {
      const taken = takeFromBucket(state, thirds, T0 + i * 300);
      expect(taken.decision.allowed).toBe(true);
      state = taken.state;
    }
  });

  it('refills nothing when the clock steps back, and resumes from the new time', () => {
    const state: BucketState = { tokens: 0, updatedAtMs: T0 };
    const back = takeFromBucket(state, limit, T0 - 60_000);
    expect(back.decision.allowed).toBe(false);
    expect(back.state).toEqual({ tokens: 0, updatedAtMs: T0 - 60_000 });
    expect(takeFromBucket(back.state, limit, T0 - 59_500).decision.allowed).toBe(true);
  });

  it('refuses limits and costs that make no sense, with FLOWGATE_ERR_GATEWAY_CONFIG_INVALID', () => {
    const bad: Array<[RateLimit, number]> = [
      [{ capacity: 0, refillPerSecond: 1 }, 1],
      [{ capacity: -1, refillPerSecond: 1 }, 1],
      [{ capacity: 1.5, refillPerSecond: 1 }, 1],
      [{ capacity: Number.NaN, refillPerSecond: 1 }, 1],
      [{ capacity: Number.POSITIVE_INFINITY, refillPerSecond: 1 }, 1],
      [{ capacity: 1, refillPerSecond: 0 }, 1],
      [{ capacity: 1, refillPerSecond: -1 }, 1],
      [{ capacity: 1, refillPerSecond: Number.NaN }, 1],
      [{ capacity: 1, refillPerSecond: Number.POSITIVE_INFINITY }, 1],
      [{ capacity: 1_000_000, refillPerSecond: 1e-12 }, 1],
      [{ capacity: 5, refillPerSecond: 1 }, 0],
      [{ capacity: 5, refillPerSecond: 1 }, 6],
      [{ capacity: 5, refillPerSecond: 1 }, Number.NaN],
    ];
    for (const [badLimit, cost] of bad) {
      let thrown: unknown;
      try {
        takeFromBucket(undefined, badLimit, T0, cost);
      } catch (error) {
        thrown = error;
      }
      expect(isFlowgateError(thrown, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID'), `${JSON.stringify(badLimit)} cost ${cost}`).toBe(true);
    }
  });
});

/** Every store keeps the same promises; time-dependent ones are tested per store below. */
const STORES: Array<[string, () => Promise<RateLimitStore>]> = [
  ['local', () => Promise.resolve(new LocalRateLimitStore())],
  ['redis', async () => (await readyRedisStore(REDIS_URL, uniquePrefix())).store],
];

describe.each(STORES)('%s store', (_name, open) => {
  it('allows a burst of capacity, then refuses with Retry-After and RateLimit-Reset', async () => {
    const store = await open();
    const decisions = await takeMany(store, 'consumer-a:route-1', SLOW, 4);
    expect(decisions.map((d) => [d.allowed, d.remaining])).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
      [false, 0],
    ]);
    const refused = decisions[3]!;
    // One token refills in 1 200 s and the whole bucket in 3 600 s; a little has passed.
    expect(refused.retryAfterSeconds).toBeGreaterThan(1100);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(1200);
    expect(refused.resetSeconds).toBeGreaterThan(3500);
    expect(refused.resetSeconds).toBeLessThanOrEqual(3600);
    expect(decisions.slice(0, 3).every((d) => d.retryAfterSeconds === 0)).toBe(true);
  });

  it('keeps one bucket per key', async () => {
    const store = await open();
    await takeMany(store, 'consumer-a:route-1', SLOW, 3);
    expect((await store.take('consumer-a:route-1', SLOW)).allowed).toBe(false);
    expect((await store.take('consumer-b:route-1', SLOW)).allowed).toBe(true);
    expect((await store.take('consumer-a:route-2', SLOW)).allowed).toBe(true);
  });

  it('throws for a limit that makes no sense, rather than answering', async () => {
    const store = await open();
    let thrown: unknown;
    try {
      await store.take('k', { capacity: 0, refillPerSecond: 1 });
    } catch (error) {
      thrown = error;
    }
    expect(isFlowgateError(thrown, 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID')).toBe(true);
  });
});

describe('LocalRateLimitStore', () => {
  const limit: RateLimit = { capacity: 2, refillPerSecond: 1 };

  it('answers synchronously and refills with its clock', () => {
    let now = T0;
    const store = new LocalRateLimitStore({ now: () => now });
    expect([store.take('k', limit), store.take('k', limit), store.take('k', limit)].map((d) => d.allowed)).toEqual([true, true, false]);
    now += 1000;
    expect(store.take('k', limit)).toEqual({ allowed: true, remaining: 0, resetSeconds: 2, retryAfterSeconds: 0 });
    expect(store.take('k', limit).allowed).toBe(false);
  });

  it('never keeps more buckets than its bound', () => {
    const store = new LocalRateLimitStore({ maxKeys: 100, now: () => T0 });
    for (let i = 0; i < 10_000; i++) {
      store.take(`consumer-${i}`, SLOW);
      expect(store.size).toBeLessThanOrEqual(100);
    }
  });

  it('forgets full buckets first, and keeps remembering busy ones', () => {
    let now = T0;
    const store = new LocalRateLimitStore({ maxKeys: 4, now: () => now });
    store.take('busy', limit);
    store.take('busy', limit);
    for (const key of ['idle-1', 'idle-2', 'idle-3']) store.take(key, limit);
    now += 1000; // the idle buckets are full again; 'busy' has one token of two
    store.take('newcomer', limit);
    expect(store.size).toBe(2);
    expect(store.take('busy', limit)).toMatchObject({ allowed: true, remaining: 0 });
    expect(store.take('busy', limit).allowed).toBe(false);
  });

  it('when no bucket is full, forgets the least recently used', () => {
    const store = new LocalRateLimitStore({ maxKeys: 10, now: () => T0 });
    for (let i = 0; i < 10; i++) store.take(`k${i}`, SLOW);
    store.take('k0', SLOW); // k0 is now the most recently used; k1 the least
    store.take('k10', SLOW);
    expect(store.size).toBeLessThanOrEqual(10);
    expect(store.take('k0', SLOW).remaining).toBe(0); // remembered: its third token
    expect(store.take('k1', SLOW).remaining).toBe(2); // forgotten: a fresh bucket
  });
});

describe('RedisRateLimitStore', () => {
  it('shares one budget between instances, each with its own connection', async () => {
    const prefix = uniquePrefix();
    const a = (await readyRedisStore(REDIS_URL, prefix)).store;
    const b = (await readyRedisStore(REDIS_URL, prefix)).store;
    const limit: RateLimit = { capacity: 20, refillPerSecond: 20 / 3600 };
    // Concurrent takes from both instances: the script refills and takes atomically.
    const decisions = await Promise.all(Array.from({ length: 50 }, async (_, i) => (i % 2 === 0 ? a : b).take('consumer:route', limit)));
    expect(allowedCount(decisions)).toBe(20);
    expect(a.isDegraded || b.isDegraded).toBe(false);
  });

  it('refills the shared budget as time passes', async () => {
    const prefix = uniquePrefix();
    const a = (await readyRedisStore(REDIS_URL, prefix)).store;
    const b = (await readyRedisStore(REDIS_URL, prefix)).store;
    const limit: RateLimit = { capacity: 2, refillPerSecond: 10 };
    let refusedOnce = false;
    await waitFor('a refusal', async () => (refusedOnce = !(await a.take('k', limit)).allowed));
    expect(refusedOnce).toBe(true);
    await waitFor('a refill seen by the other instance', async () => (await b.take('k', limit)).allowed);
  });

  it('keeps buckets under flowgate:rl:<prefix>: and lets them expire when they would be full', async () => {
    const prefix = uniquePrefix();
    const { store } = await readyRedisStore(REDIS_URL, prefix);
    await store.take('consumer:route', { capacity: 5, refillPerSecond: 10 });
    const inspect = new Redis(REDIS_URL);
    cleanups.push(() => void inspect.disconnect());
    const key = `flowgate:rl:${prefix}:consumer:route`;
    expect(await inspect.hkeys(key)).toEqual(['t', 'u']);
    const ttl = await inspect.pttl(key);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(100); // one token at 10 a second
    await waitFor('the bucket to expire', async () => (await inspect.exists(key)) === 0);
  });

  it('handles the slowest limit the gateway accepts (a burst of a billion, one a day)', async () => {
    const prefix = uniquePrefix();
    const { store } = await readyRedisStore(REDIS_URL, prefix);
    const inspect = new Redis(REDIS_URL);
    cleanups.push(() => void inspect.disconnect());
    const key = `flowgate:rl:${prefix}:consumer:route`;
    // An empty bucket, as of the Redis clock: emptying it by requests would take a billion of them.
    const [seconds, micros] = await inspect.time();
    await inspect.hset(key, { t: '0', u: String(Number(seconds) * 1000 + Number(micros) / 1000) });
    const decision = await store.take('consumer:route', { capacity: 1_000_000_000, refillPerSecond: 1 / 86_400 });
    expect(decision).toMatchObject({ allowed: false, remaining: 0, retryAfterSeconds: 86_400 });
    expect(decision.resetSeconds).toBeGreaterThan(86_399 * 1e9);
    expect(await inspect.pttl(key)).toBeGreaterThan(86_399 * 1e12);
    expect(store.isDegraded).toBe(false);
  });

  it('limits per instance when Redis is unreachable, without hanging or throwing, and says so once', async () => {
    const port = await freePort();
    const { store, events } = redisStore(`redis://127.0.0.1:${port}`, uniquePrefix());
    const decisions = await takeMany(store, 'consumer:route', SLOW, 5);
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false, false]);
    await waitFor('onDegraded', () => events.length > 0);
    // Several reconnect attempts fail meanwhile; the outage is still one.
    await sleep(500);
    expect(allowedCount(await takeMany(store, 'consumer:route', SLOW, 3))).toBe(0);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatch(new RegExp(`^degraded: Redis at 127\\.0\\.0\\.1:${port} cannot be used for rate limits`));
    expect(store.isDegraded).toBe(true);
  });

  it('createRateLimitStore falls back to local limiting too', async () => {
    const events: string[] = [];
    const store = createRateLimitStore({ redisUrl: `redis://127.0.0.1:${await freePort()}`, onDegraded: (m) => events.push(m) });
    cleanups.push(() => store.close());
    expect(store).toBeInstanceOf(RedisRateLimitStore);
    expect(allowedCount(await takeMany(store, 'k', SLOW, 5))).toBe(3);
    await waitFor('onDegraded', () => events.length === 1);
    expect(createRateLimitStore()).toBeInstanceOf(LocalRateLimitStore);
  });

  it('goes back to Redis once it is reachable again', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const prefix = uniquePrefix();
    const { store, events } = redisStore(url, prefix, { retryIntervalMs: 50 });
    await waitFor('onDegraded', () => events.length === 1);
    await startPrivateRedis(port);
    await waitFor('onRecovered', async () => {
      await store.take('warm-up', SLOW);
      return events.includes('recovered');
    });
    expect(events).toEqual([expect.stringMatching(/^degraded: /), 'recovered']);
    // Back on Redis: a second instance shares the budget.
    const other = (await readyRedisStore(url, prefix)).store;
    const limit: RateLimit = { capacity: 4, refillPerSecond: 4 / 3600 };
    const decisions = [...(await takeMany(store, 'k', limit, 3)), ...(await takeMany(other, 'k', limit, 3))];
    expect(allowedCount(decisions)).toBe(4);
  });

  it('answers locally when Redis accepts the call but does not answer in time, and recovers after', async () => {
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const redis = await startPrivateRedis(port);
    const { store, events } = await readyRedisStore(url, uniquePrefix(), { retryIntervalMs: 50 });
    await redis.admin.call('CLIENT', 'PAUSE', '1500', 'ALL');
    const decision = await store.take('consumer:route', SLOW); // times out after 200 ms
    expect(decision).toMatchObject({ allowed: true, remaining: 2 });
    expect(events).toEqual([expect.stringMatching(/Command timed out/)]);
    await waitFor('onRecovered', async () => {
      await store.take('warm-up', SLOW);
      return events.includes('recovered');
    });
    expect(events).toHaveLength(2);
  });
});
