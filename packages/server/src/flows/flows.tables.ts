/**
 * The flows feature's tables. Times are epoch milliseconds; JSON documents are text.
 */
export interface FlowsTables {
  /** One row per flow; `generation` grows with every start and stop, so late answers of an earlier attempt are ignored. */
  flows: {
    id: string;
    tenant: string;
    name: string;
    version: number;
    status: string;
    status_reason: string | null;
    generation: number;
    /** When the status last changed: a `starting` or `stopping` flow older than the lifecycle timeout fails. */
    status_changed_at: number;
    definition: string;
    created_at: number;
    updated_at: number;
  };
  /** Every saved definition, so an execution can run (and show) the version it started with. */
  flow_versions: { flow_id: string; version: number; definition: string; created_at: number };
  /** Which parts (webhooks, scheduler, events, engine) are ready for a flow's start or stop attempt. */
  flow_lifecycle_acks: { flow_id: string; generation: number; part: string; created_at: number };
  /** The webhook part's record of a flow: kept from `flow.starting`, serving from `flow.started`. */
  flow_webhooks: { flow_id: string; tenant: string; generation: number; serving: number; trigger: string; created_at: number };
  /** Accepted webhook signatures, until they are too old to be replayed anyway. */
  flow_webhook_signatures: { flow_id: string; signature: string; expires_at: number };
  /** The scheduler's record: one row per cron trigger of a started flow, with its next due time. */
  flow_schedules: {
    flow_id: string;
    trigger_index: number;
    tenant: string;
    generation: number;
    expression: string;
    timezone: string;
    missed: string;
    active: number;
    next_due_at: number | null;
    created_at: number;
  };
  flow_executions: {
    id: string;
    tenant: string;
    flow_id: string;
    flow_version: number;
    status: string;
    trigger: string;
    input: string;
    output: string | null;
    error: string | null;
    idempotency_key: string | null;
    concurrency_key: string | null;
    traceparent: string;
    /** The answer of a `respond` node, for a webhook waiting synchronously. */
    response: string | null;
    parent_execution_id: string | null;
    created_at: number;
    updated_at: number;
    finished_at: number | null;
    deadline_at: number | null;
  };
  /**
   * One row per step: a node's pre-hook, main or post-hook phase for one message. The
   * unique (execution, parent, node, phase) key makes scheduling a successor idempotent.
   */
  flow_steps: {
    id: string;
    execution_id: string;
    tenant: string;
    node: string;
    phase: string;
    /** The step whose completion created this one ('' for the first). */
    parent_id: string;
    status: string;
    attempt: number;
    input: string;
    output: string | null;
    error: string | null;
    /** Ready steps run from this time; waiting steps wake at it. */
    due_at: number;
    lease_owner: string | null;
    lease_until: number | null;
    created_at: number;
    started_at: number | null;
    finished_at: number | null;
    /** What a waiting step waits for (`execution:<id>`, `event:…`); null once resolved or when not waiting. */
    wait_key: string | null;
    /** A waiting step's {@link WaitState} (JSON): what a timeout does, and the result once resolved. */
    wait_state: string | null;
  };
}

/** What a step waiting on a key keeps: its timeout policy, then the result that resolved it. */
export interface WaitState {
  readonly onTimeout: 'fail' | 'continue';
  readonly result?: { readonly output: unknown } | { readonly error: { readonly code: string; readonly message: string } };
}
