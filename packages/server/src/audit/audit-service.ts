import type { EventBus, ConsumerHandle } from '../bus/index.js';
import { isoTime, newId, type AuditEvent, type AuditRecorder, type Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
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
      .publish(event.tenant ?? PLATFORM_SCOPE, { topic: `audit.${event.action}`, payload: envelope }, { system: true, serviceName: 'audit' })
      .catch((error: unknown) => this.logger.error({ err: error, action: event.action, tenant: event.tenant }, 'audit event could not be published'));
  }
}

export interface AuditServiceOptions extends AuditLogOptions {
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
  readonly signer: CheckpointSigner;
  private consumer: ConsumerHandle | undefined;
  private timer: NodeJS.Timeout | undefined;

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
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.consumer?.close();
  }
}
