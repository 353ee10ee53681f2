import type { Logger } from '../observability/index.js';

/** One thing worth proving later: who did what to which object, and whether it worked. */
export interface AuditEvent {
  /** Dotted event name, e.g. `iam.client_auth.failed`. */
  readonly action: string;
  readonly tenant: string | null;
  /** The principal that acted (`sub`), or what it claimed to be when authentication failed. */
  readonly actor: string | null;
  readonly outcome: 'success' | 'failure';
  /** The object acted on, e.g. `service_account:<id>`. */
  readonly target?: string;
  readonly traceId?: string;
  /** Extra facts; never secrets. */
  readonly details?: Readonly<Record<string, string | number | boolean | null>>;
}

/**
 * Where audit events go. Features depend on this port only; the audit log of issue 6
 * (a tamper-evident store fed by the bus) replaces the log-only recorder below.
 */
export interface AuditRecorder {
  record(event: AuditEvent): void;
}

/** Writes audit events as JSON log lines tagged `audit: true`. */
export function createLogAuditRecorder(logger: Logger): AuditRecorder {
  const log = logger.child({ audit: true });
  return {
    record(event) {
      log.info({ event }, `audit ${event.action} ${event.outcome}`);
    },
  };
}

/** An in-memory recorder for tests and embedders that want to read events back. */
export class MemoryAuditRecorder implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
}
