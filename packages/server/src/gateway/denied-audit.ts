import type { FlowgateError } from '../errors/index.js';
import { setBounded, type AuditRecorder, type Clock } from '../kernel/index.js';
import type { GatewayExchange } from './exchange.js';

/** One refused gateway request, as the `gateway.denied` audit event tells it. */
export interface Refusal {
  readonly tenant: string | null;
  readonly actor: string | null;
  readonly route: string;
  readonly status: number;
  readonly code: string;
  readonly reason: string;
  readonly method: string;
  readonly path: string;
  readonly ip: string;
  readonly traceId: string;
}

/** The refusal a gateway answer with `error` makes of `exchange`. */
export function refusalOf(exchange: GatewayExchange, error: FlowgateError): Refusal {
  const principal = exchange.principal;
  return {
    tenant: principal?.tenant ?? null,
    actor: principal?.sub ?? null,
    route: exchange.route.name,
    status: error.status,
    code: error.code,
    reason: error.detail,
    method: exchange.method,
    path: exchange.path,
    ip: exchange.clientIp,
    traceId: exchange.trace.traceId,
  };
}

/** The refusals of one caller and kind since its last record. */
interface Tracked {
  /** When the window that is counting began. */
  start: number;
  /** Refusals in this window not recorded yet. */
  count: number;
  firstAt: number;
  lastAt: number;
  /** The latest of them: the summary tells its trace, method and path. */
  last: Refusal;
}

const DEFAULT_MAX_KEYS = 10_000;

/**
 * Audits gateway refusals (`gateway.denied`) without letting a flood of them flood the
 * audit log. Refusals are grouped by chain (tenant, or the platform's for anonymous
 * callers), actor, route, status, code and client address. The first of a group is
 * recorded at once, as it comes; later ones within `windowMs` are counted, and when the
 * window ends one summary record carries their `count` with `first_at` and `last_at`. A
 * group that stays quiet for a whole window is forgotten, so its next refusal is recorded
 * at once again. With `windowMs` 0 every refusal is recorded.
 *
 * Invariant: nothing is dropped: the refusals of a group are its records plus the sum of
 * its summaries' counts. At most `maxKeys` groups are tracked; past that the oldest is
 * summarised early and forgotten. {@link close} summarises every pending count.
 */
export class DeniedAudit {
  private readonly tracked = new Map<string, Tracked>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly audit: AuditRecorder,
    private readonly clock: Clock,
    private readonly windowMs: number,
    private readonly maxKeys = DEFAULT_MAX_KEYS,
  ) {}

  /** Audits one refusal: at once, or counted into its group's next summary. */
  refused(refusal: Refusal): void {
    if (this.windowMs === 0 || this.closed) {
      this.write(refusal);
      return;
    }
    const now = this.clock.now();
    const key = `${refusal.tenant ?? ''}\n${refusal.actor ?? ''}\n${refusal.route}\n${refusal.status}\n${refusal.code}\n${refusal.ip}`;
    const group = this.tracked.get(key);
    if (group !== undefined && now - group.start >= this.windowMs) {
      this.endWindow(key, group, now);
    }
    const open = this.tracked.get(key);
    if (open !== undefined) {
      if (open.count === 0) open.firstAt = now;
      open.count++;
      open.lastAt = now;
      open.last = refusal;
      return;
    }
    // A group pushed out for room is summarised first: its refusals are not lost.
    const evicted = setBounded(this.tracked, key, { start: now, count: 0, firstAt: 0, lastAt: 0, last: refusal }, this.maxKeys);
    if (evicted) this.summarise(evicted[1]);
    this.write(refusal);
    this.timer ??= setInterval(() => this.sweep(), this.windowMs).unref();
  }

  /** Summarises every pending count; later refusals are recorded one by one. */
  close(): void {
    this.closed = true;
    this.stopTimer();
    for (const group of this.tracked.values()) this.summarise(group);
    this.tracked.clear();
  }

  /** Ends the windows that are over: a summary where refusals were counted. */
  private sweep(): void {
    const now = this.clock.now();
    for (const [key, group] of this.tracked) {
      if (now - group.start >= this.windowMs) this.endWindow(key, group, now);
    }
    if (this.tracked.size === 0) this.stopTimer();
  }

  /** A window with refusals is summarised and the next begins; a quiet one ends the group. */
  private endWindow(key: string, group: Tracked, now: number): void {
    if (group.count === 0) {
      this.tracked.delete(key);
      return;
    }
    this.summarise(group);
    group.count = 0;
    group.start = now;
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private summarise(group: Tracked): void {
    if (group.count === 0) return;
    this.write(group.last, { count: group.count, first_at: new Date(group.firstAt).toISOString(), last_at: new Date(group.lastAt).toISOString() });
  }

  private write(refusal: Refusal, summary?: { count: number; first_at: string; last_at: string }): void {
    this.audit.record({
      action: 'gateway.denied',
      tenant: refusal.tenant,
      actor: refusal.actor,
      outcome: 'failure',
      target: `route:${refusal.route}`,
      traceId: refusal.traceId,
      details: {
        status: refusal.status,
        code: refusal.code,
        reason: refusal.reason,
        method: refusal.method,
        path: refusal.path,
        ip: refusal.ip,
        ...summary,
      },
    });
  }
}
