import type { GatewayService, HealthCheck } from '@flowgate/contracts';
import { Pool } from 'undici';
import { FlowgateError } from '../errors/index.js';
import type { Logger } from '../observability/index.js';

/** One target of a service: a connection pool and what the health checks think of it. */
export class Target {
  readonly pool: Pool;
  /** The target URL's path, put before every forwarded path ('' for '/'). */
  readonly basePath: string;
  /** Where to connect for requests the pool cannot carry (WebSocket upgrades). */
  readonly origin: URL;
  healthy = true;
  private successes = 0;
  private failures = 0;

  constructor(
    readonly url: string,
    service: GatewayService,
  ) {
    const parsed = new URL(url);
    this.basePath = parsed.pathname.replace(/\/+$/, '');
    this.origin = new URL(parsed.origin);
    this.pool = new Pool(parsed.origin, {
      connect: { timeout: service.connectTimeoutMs ?? 5000 },
      headersTimeout: service.readTimeoutMs ?? 60_000,
      // Streams may pause for as long as they like between chunks (SSE); the read
      // timeout is about the first byte.
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
    });
  }

  /** Counts a health check's outcome; true when that changed the target's health. */
  observe(ok: boolean, check: Required<HealthCheck>): boolean {
    if (ok) {
      this.failures = 0;
      this.successes++;
      if (!this.healthy && this.successes >= check.healthyThreshold) return (this.healthy = true);
    } else {
      this.successes = 0;
      this.failures++;
      if (this.healthy && this.failures >= check.unhealthyThreshold) return !(this.healthy = false);
    }
    return false;
  }
}

export interface UpstreamEvents {
  readonly logger: Logger;
  /** Told whenever a target's health is known or changes (for the health gauge). */
  readonly onHealth: (service: string, target: string, healthy: boolean) => void;
}

/**
 * A service's upstream: its targets, shared round-robin, skipping those the active
 * health checks found down. Pools are kept across configuration reloads while the
 * service's connection settings stay the same, and closed gracefully (requests in
 * flight finish) when it goes away.
 */
export class Upstream {
  readonly targets: readonly Target[];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Requests holding this upstream (matched, maybe still in their policies). */
  private inflight = 0;
  private retiring: (() => void) | undefined;
  private readonly check: Required<HealthCheck> | undefined;

  constructor(
    readonly service: GatewayService,
    private readonly events: UpstreamEvents,
  ) {
    this.targets = service.targets.map((url) => new Target(url, service));
    const hc = service.healthCheck;
    this.check = hc && { path: hc.path, intervalMs: hc.intervalMs ?? 5000, timeoutMs: hc.timeoutMs ?? 2000, healthyThreshold: hc.healthyThreshold ?? 2, unhealthyThreshold: hc.unhealthyThreshold ?? 2 };
    for (const target of this.targets) events.onHealth(service.name, target.url, true);
  }

  get name(): string {
    return this.service.name;
  }

  get retries(): number {
    return this.service.retries ?? 1;
  }

  /** The next healthy target, skipping `tried`; throws a 503 when none is healthy. */
  pick(tried?: ReadonlySet<Target>): Target | undefined {
    const count = this.targets.length;
    let anyHealthy = false;
    for (let i = 0; i < count; i++) {
      const target = this.targets[(this.next + i) % count]!;
      if (!target.healthy) continue;
      anyHealthy = true;
      if (tried?.has(target)) continue;
      this.next = (this.next + i + 1) % count;
      return target;
    }
    if (!anyHealthy) {
      throw new FlowgateError('FLOWGATE_ERR_GATEWAY_NO_HEALTHY_UPSTREAM', `No target of the service "${this.name}" is healthy.`, {
        headers: { 'retry-after': String(Math.ceil((this.check?.intervalMs ?? 1000) / 1000)) },
      });
    }
    return undefined;
  }

  /** Starts the active health checks, when the service has them. */
  start(): void {
    const check = this.check;
    if (!check || this.timer) return;
    const probe = () => {
      for (const target of this.targets) void this.probe(target, check);
    };
    this.timer = setInterval(probe, check.intervalMs);
    this.timer.unref();
    probe();
  }

  private async probe(target: Target, check: Required<HealthCheck>): Promise<void> {
    let ok = false;
    try {
      const answer = await target.pool.request({ method: 'GET', path: target.basePath + check.path, headersTimeout: check.timeoutMs, signal: AbortSignal.timeout(check.timeoutMs) });
      await answer.body.dump();
      ok = answer.statusCode >= 200 && answer.statusCode < 400;
    } catch {
      ok = false;
    }
    if (this.timer === undefined) return;
    if (target.observe(ok, check)) {
      this.events.onHealth(this.name, target.url, target.healthy);
      this.events.logger.warn({ service: this.name, target: target.url, healthy: target.healthy }, target.healthy ? 'gateway target healthy again' : 'gateway target unhealthy');
    }
  }

  acquire(): void {
    this.inflight++;
  }

  release(): void {
    this.inflight--;
    if (this.inflight === 0) this.retiring?.();
  }

  /**
   * Taken out of service by a reload: closes once no request holds it any more, so a
   * request still in its policies never finds its pool closed.
   */
  retire(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    const idle = this.inflight === 0 ? Promise.resolve() : new Promise<void>((resolve) => (this.retiring = resolve));
    return idle.then(() => this.close());
  }

  /** Stops the checks and closes the pools once their requests in flight are done. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(this.targets.map((t) => t.pool.close().catch(() => undefined)));
  }

  /** Destroys the pools at once (shutdown past its timeout). */
  async destroy(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(this.targets.map((t) => t.pool.destroy().catch(() => undefined)));
  }
}
