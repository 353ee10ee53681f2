import { FlowgateError } from '../errors/index.js';
import type { Clock } from '../kernel/index.js';

/** Per-tenant limits on the bus; 0 means no limit. */
export interface BusQuotas {
  /** Events a tenant may publish per second (sustained; bursts up to one second's worth). */
  readonly publishRate: number;
  /** Events a tenant's slowest group may leave unhandled before publishing is refused. */
  readonly maxBacklog: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Keeps one tenant's burst from starving the others (issue 4, point 8): a token bucket per
 * tenant on publishing, and a backlog ceiling read from the last lag sample. Local to the
 * process: with several processes each enforces the rate on what it receives.
 */
export class TenantQuotas {
  private readonly buckets = new Map<string, Bucket>();
  private backlog = new Map<string, number>();

  constructor(
    private readonly quotas: BusQuotas,
    private readonly clock: Clock,
  ) {}

  /** Takes `count` events from the tenant's allowance, or throws a 429 problem. */
  take(tenant: string, count: number): void {
    if (this.quotas.maxBacklog > 0) {
      const backlog = this.backlog.get(tenant) ?? 0;
      if (backlog >= this.quotas.maxBacklog) {
        throw new FlowgateError('FLOWGATE_ERR_BUS_QUOTA_EXCEEDED', `The tenant's consumers are ${backlog} events behind (limit ${this.quotas.maxBacklog}); publish again once they catch up.`, {
          headers: { 'retry-after': '5' },
        });
      }
    }
    const rate = this.quotas.publishRate;
    if (rate <= 0) return;
    const now = this.clock.now();
    const bucket = this.buckets.get(tenant) ?? { tokens: rate, at: now };
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
    bucket.at = now;
    this.buckets.set(tenant, bucket);
    if (bucket.tokens < count) {
      const wait = Math.max(1, Math.ceil((count - bucket.tokens) / rate));
      throw new FlowgateError('FLOWGATE_ERR_BUS_QUOTA_EXCEEDED', `The tenant may publish ${rate} events per second; retry in ${wait} s.`, {
        headers: { 'retry-after': String(wait) },
      });
    }
    bucket.tokens -= count;
  }

  /** Records the latest backlog per tenant (largest lag of any of its groups). */
  setBacklog(backlog: Map<string, number>): void {
    this.backlog = backlog;
  }
}
