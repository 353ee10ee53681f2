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
 * Where audit events go. Features depend on this port only, which is why it lives in the
 * kernel; the audit feature implements it (events travel on the bus into the
 * tamper-evident audit log).
 */
export interface AuditRecorder {
  record(event: AuditEvent): void;
}

/** An in-memory recorder for tests and embedders that want to read events back. */
export class MemoryAuditRecorder implements AuditRecorder {
  readonly events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
}
