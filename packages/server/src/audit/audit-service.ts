import type { EventBus, ConsumerHandle, PublishItem } from '../bus/index.js';
import { isoTime, newId, type AuditEvent, type AuditRecorder, type Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import { verifyChain, type VerifyReport } from './audit-verify.js';
import { AuditLog, PLATFORM_SCOPE, type AuditEnvelope, type AuditLogOptions, type CheckpointSigner } from './audit-log.js';


/** The consumer group that stores audit events. */
export const AUDIT_GROUP = 'flowgate-audit-log';

/**
 * Records audit events by publishing them on `audit.<action>` in their tenant (platform
 * events in `_platform`). Recording never blocks or fails the action it describes; a
 * publish that fails is logged at error level.
 */
export class BusAuditRecorder implements AuditRecorder {
  constructor(
    private readonly bus: EventBus,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  record(event: AuditEvent): void {
    const envelope: AuditEnvelope = { ...event, id: newId(), time: isoTime(this.clock.now()) };
    this.bus
      .publish(event.tenant ?? PLATFORM_SCOPE, auditPublishItem(envelope), { system: true, serviceName: 'audit' })
      .catch((error: unknown) => this.logger.error({ err: error, action: event.action, tenant: event.tenant }, 'audit event could not be published'));
  }
}

/** How an audit event travels on the bus (in its tenant, or `_platform`, with `system`). */
export function auditPublishItem(envelope: AuditEnvelope): PublishItem {
  // Keyed by chain: the audit group appends a chain's events one at a time, in the order
  // they were recorded.
  return { topic: `audit.${envelope.action}`, payload: envelope, key: envelope.tenant ?? PLATFORM_SCOPE };
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** How often records past their retention are looked for. */
const RETENTION_INTERVAL_MS = 60 * 60 * 1000;

export interface AuditServiceOptions extends AuditLogOptions {
  /** Days records are kept; 0 keeps them for ever. */
  readonly retentionDays: number;
  readonly store: Store;
  readonly bus: EventBus;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly signer: CheckpointSigner;
}

/**
 * The audit service: a platform consumer group over every tenant's `audit.**` topics
 * that chains each event into the audit log once, and a timer that signs checkpoints
 * of chains that have been quiet.
 */
export class AuditService {
  readonly log: AuditLog;
  private readonly signer: CheckpointSigner;
  private consumer: ConsumerHandle | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: AuditServiceOptions) {
    this.signer = options.signer;
    this.log = new AuditLog(options.store, options.clock, options.signer, options);
  }

  async start(): Promise<void> {
    this.consumer = await this.options.bus.subscribe({ tenant: null, group: AUDIT_GROUP, filter: 'audit.**', maxInFlight: 32 }, async (event) => {
      await this.log.append(event.payload as AuditEnvelope);
    });
    this.timer = setInterval(() => {
      this.log.checkpointStale().catch((error: unknown) => this.options.logger.warn({ err: error }, 'audit checkpoint failed; retrying'));
    }, Math.min(60_000, this.options.checkpointMs));
    this.timer.unref();
    if (this.options.retentionDays > 0) {
      this.retentionTimer = setInterval(() => void this.applyRetention(), RETENTION_INTERVAL_MS);
      this.retentionTimer.unref();
    }
  }

  /** Walks a chain (a tenant's, or the platform's) and reports the first thing wrong. */
  verify(scope: string): Promise<VerifyReport> {
    return verifyChain(this.options.store, this.signer, scope, { retentionMs: this.options.retentionDays * DAY_MS, now: this.options.clock.now() });
  }

  /** Deletes records older than the retention, keeping what verification needs. */
  async applyRetention(): Promise<number> {
    if (this.options.retentionDays <= 0) return 0;
    try {
      const deleted = await this.log.applyRetention(this.options.retentionDays * DAY_MS);
      if (deleted > 0) this.options.logger.info({ deleted, retentionDays: this.options.retentionDays }, 'audit records past their retention deleted');
      return deleted;
    } catch (error) {
      this.options.logger.warn({ err: error }, 'audit retention failed; retrying later');
      return 0;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.retentionTimer);
    await this.consumer?.close();
  }
}
