/**
 * Flows (issue 5): a definition names its triggers (webhook, cron, event, manual), its
 * nodes (a component and its config) and the edges between them. The same document is a
 * `flowgate flows apply -f flow.yaml` file and the body of `POST /api/v1/flows`.
 *
 * These schemas check shape only; the server also checks meaning when a flow is saved:
 * JSONata expressions parse, cron expressions parse (with the position of the error) and
 * fire, nodes and edges form a graph without cycles, each node's config matches its
 * component's schema.
 */
import Type from 'typebox';

/** Scopes of the flow and execution APIs. `flows:run` may be narrowed to one flow: `flows:run:flow=<name>`. */
export const FLOW_SCOPES = {
  read: 'flows:read',
  write: 'flows:write',
  run: 'flows:run',
} as const;

/** The scope that lets a caller start executions of one flow. */
export function flowRunScope(flowName: string): string {
  return `${FLOW_SCOPES.run}:flow=${flowName}`;
}

export const FLOW_NAME_PATTERN_SOURCE = '^[a-z][a-z0-9_-]{0,62}$';
const Name = Type.String({ pattern: FLOW_NAME_PATTERN_SOURCE, description: 'Lower-case letters, digits, - and _, starting with a letter' });
const NodeId = Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_-]{0,62}$' });
const Expression = Type.String({ minLength: 1, maxLength: 10_000, description: 'A JSONata expression' });
const Millis = (max: number, description: string) => Type.Integer({ minimum: 1, maximum: max, description });
const DAY = 86_400_000;

// --- Triggers --------------------------------------------------------------------------

export const WebhookTriggerSchema = Type.Object(
  {
    type: Type.Literal('webhook'),
    hmac: Type.Optional(
      Type.Object(
        { secret: Type.String({ minLength: 1, maxLength: 100, description: "Name of the tenant's secret holding the shared HMAC key" }) },
        { additionalProperties: false, description: 'Callers sign `<timestamp>.<body>` with HMAC-SHA256 and send `X-Flowgate-Signature: t=<unix seconds>,v1=<hex>`' },
      ),
    ),
    respond: Type.Optional(
      Type.Union([Type.Literal('accepted'), Type.Literal('sync')], {
        description: "accepted (default): 202 with the execution id at once; sync: the output of the flow's respond node",
      }),
    ),
    timeoutMs: Type.Optional(Millis(120_000, 'With respond: sync, how long to wait before answering 504 (30 000 by default)')),
    maxBodyBytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 * 1024 * 1024, description: 'Largest accepted body (1 MiB by default)' })),
  },
  { additionalProperties: false },
);

export const CronTriggerSchema = Type.Object(
  {
    type: Type.Literal('cron'),
    expression: Type.String({ minLength: 1, maxLength: 200, description: 'Five fields, or six with seconds first' }),
    timezone: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IANA time zone; UTC by default' })),
    missed: Type.Optional(Type.Union([Type.Literal('skip'), Type.Literal('run-once')], { description: 'After downtime: skip the missed ticks (default) or run once for them' })),
  },
  { additionalProperties: false },
);

export const EventTriggerSchema = Type.Object(
  {
    type: Type.Literal('event'),
    topic: Type.String({ minLength: 1, maxLength: 300, description: 'A topic, a glob (orders.*) or a /regex/' }),
    group: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,99}$', description: 'Consumer group; flow-<id> by default' })),
  },
  { additionalProperties: false },
);

export const ManualTriggerSchema = Type.Object(
  {
    type: Type.Literal('manual'),
    inputSchema: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'JSON Schema the input of a manual run must match' })),
  },
  { additionalProperties: false },
);

export const FlowTriggerSchema = Type.Union([WebhookTriggerSchema, CronTriggerSchema, EventTriggerSchema, ManualTriggerSchema]);
export type FlowTrigger = Type.Static<typeof FlowTriggerSchema>;
export type WebhookTrigger = Type.Static<typeof WebhookTriggerSchema>;
export type CronTrigger = Type.Static<typeof CronTriggerSchema>;
export type EventTrigger = Type.Static<typeof EventTriggerSchema>;

// --- Nodes and edges -------------------------------------------------------------------

export const RetrySettingsSchema = Type.Object(
  {
    count: Type.Integer({ minimum: 0, maximum: 50, description: 'Retries after the first attempt' }),
    backoffMs: Type.Optional(Millis(DAY, 'First retry delay; doubles each time (1 000 by default)')),
    maxBackoffMs: Type.Optional(Millis(DAY, 'Longest retry delay (300 000 by default)')),
    jitter: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'Share of each delay that is random (0.2 by default)' })),
  },
  { additionalProperties: false },
);
export type RetrySettings = Type.Static<typeof RetrySettingsSchema>;

/** A hook around a node's main step: a JSONata expression or a component. */
export const NodeHookSchema = Type.Union([
  Type.Object({ expression: Expression }, { additionalProperties: false }),
  Type.Object({ component: Type.String({ minLength: 1, maxLength: 100 }), config: Type.Optional(Type.Record(Type.String(), Type.Unknown())) }, { additionalProperties: false }),
]);
export type NodeHook = Type.Static<typeof NodeHookSchema>;

export const FlowNodeSchema = Type.Object(
  {
    id: NodeId,
    component: Type.String({ minLength: 1, maxLength: 100, description: 'http, transform, filter, branch, delay, publish, respond, subflow, wait-for-event, or a custom component' }),
    config: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    pre: Type.Optional(NodeHookSchema),
    post: Type.Optional(NodeHookSchema),
    retries: Type.Optional(RetrySettingsSchema),
    timeoutMs: Type.Optional(Millis(DAY, "This node's step timeout")),
  },
  { additionalProperties: false },
);
export type FlowNode = Type.Static<typeof FlowNodeSchema>;

export const FlowEdgeSchema = Type.Object(
  {
    from: NodeId,
    to: NodeId,
    condition: Type.Optional(Expression),
    port: Type.Optional(Type.String({ minLength: 1, maxLength: 63, description: 'For a branch node: the branch this edge leaves from' })),
  },
  { additionalProperties: false },
);
export type FlowEdge = Type.Static<typeof FlowEdgeSchema>;

export const FlowSettingsSchema = Type.Object(
  {
    retries: Type.Optional(RetrySettingsSchema),
    stepTimeoutMs: Type.Optional(Millis(DAY, 'Default step timeout (60 000 by default)')),
    timeoutMs: Type.Optional(Millis(30 * DAY, 'Whole execution timeout')),
    concurrency: Type.Optional(
      Type.Object(
        {
          limit: Type.Integer({ minimum: 1, maximum: 10_000, description: 'Executions of this flow running at once' }),
          key: Type.Optional(Expression),
        },
        { additionalProperties: false, description: 'With key: the limit applies per value of the key expression over the input (e.g. per customer)' },
      ),
    ),
    idempotencyKey: Type.Optional(Expression),
    errorFlow: Type.Optional(Name),
  },
  { additionalProperties: false },
);
export type FlowSettings = Type.Static<typeof FlowSettingsSchema>;

export const FlowDefinitionSchema = Type.Object(
  {
    name: Name,
    description: Type.Optional(Type.String({ maxLength: 1000 })),
    triggers: Type.Array(FlowTriggerSchema, { maxItems: 20 }),
    nodes: Type.Array(FlowNodeSchema, { minItems: 1, maxItems: 200 }),
    edges: Type.Optional(Type.Array(FlowEdgeSchema, { maxItems: 1000 })),
    settings: Type.Optional(FlowSettingsSchema),
  },
  { additionalProperties: false },
);
export type FlowDefinition = Type.Static<typeof FlowDefinitionSchema>;

// --- Stored flows and their lifecycle -----------------------------------------------------

/** A flow's status, as the Open Integration Hub lifecycle names them. */
export const FLOW_STATUSES = ['inactive', 'starting', 'active', 'stopping', 'failed'] as const;
export type FlowStatus = (typeof FLOW_STATUSES)[number];

/** Lifecycle events, raised on the flow's tenant's bus with the flow as payload. */
export const FLOW_EVENTS = {
  starting: 'flow.starting',
  started: 'flow.started',
  stopping: 'flow.stopping',
  stopped: 'flow.stopped',
  failed: 'flow.failed',
} as const;

/** Execution events on the bus. */
export const EXECUTION_EVENTS = {
  started: 'execution.started',
  succeeded: 'execution.succeeded',
  failed: 'execution.failed',
  cancelled: 'execution.cancelled',
} as const;

export const FlowSchema = Type.Object({
  id: Type.String(),
  version: Type.Integer({ description: 'Grows by one with every saved change' }),
  status: Type.Union([Type.Literal('inactive'), Type.Literal('starting'), Type.Literal('active'), Type.Literal('stopping'), Type.Literal('failed')]),
  status_reason: Type.Union([Type.String(), Type.Null()]),
  // Loose in answers: the stored definition was checked when it was saved, and a deep
  // schema here would be compiled into every flow route's serializer (seconds at start).
  definition: Type.Record(Type.String(), Type.Unknown(), { description: 'The definition, as FlowDefinitionSchema describes it' }),
  created_at: Type.String(),
  updated_at: Type.String(),
});
export type FlowView = Type.Static<typeof FlowSchema>;

export const FlowListSchema = Type.Object({ items: Type.Array(FlowSchema), next_cursor: Type.Union([Type.String(), Type.Null()]) });
export const FlowParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

// --- Executions ------------------------------------------------------------------------

export const EXECUTION_STATUSES = ['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'] as const;
export type ExecutionStatus = (typeof EXECUTION_STATUSES)[number];
export const STEP_STATUSES = ['ready', 'running', 'waiting', 'held', 'succeeded', 'failed', 'cancelled'] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

const ExecutionStatusSchema = Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('paused'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')]);

export const StepSchema = Type.Object({
  id: Type.String(),
  node: Type.String(),
  phase: Type.String({ description: 'pre, main or post' }),
  status: Type.Union([Type.Literal('ready'), Type.Literal('running'), Type.Literal('waiting'), Type.Literal('held'), Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')]),
  attempt: Type.Integer(),
  input: Type.Unknown(),
  output: Type.Unknown(),
  error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
  started_at: Type.Union([Type.String(), Type.Null()]),
  finished_at: Type.Union([Type.String(), Type.Null()]),
});

export const ExecutionSchema = Type.Object({
  id: Type.String(),
  flow_id: Type.String(),
  flow_version: Type.Integer(),
  status: ExecutionStatusSchema,
  trigger: Type.String({ description: 'webhook, cron, event, manual, subflow (started by a subflow step) or error (an error flow)' }),
  input: Type.Unknown(),
  output: Type.Unknown(),
  error: Type.Union([Type.Object({ code: Type.String(), message: Type.String(), node: Type.Optional(Type.String()) }), Type.Null()]),
  parent_execution_id: Type.Union([Type.String(), Type.Null()], { description: 'For a subflow execution: the execution whose step started it' }),
  trace_id: Type.String(),
  created_at: Type.String(),
  finished_at: Type.Union([Type.String(), Type.Null()]),
  steps: Type.Optional(Type.Array(StepSchema)),
  steps_next: Type.Optional(Type.Union([Type.Integer(), Type.Null()], { description: 'Where the next page of steps starts (?steps_from=); null when these are the last' })),
});
export type ExecutionView = Type.Static<typeof ExecutionSchema>;
/** Steps shown per page of `GET /api/v1/executions/{id}` (each input and output cut at 64 KiB). */
export const EXECUTION_STEPS_PAGE = 100;
export const ExecutionGetQuerySchema = Type.Object({
  steps_from: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000, description: 'The first step shown, counted from 0 in the order they were made (the last page\'s steps_next)' })),
});

export const ExecutionListSchema = Type.Object({ items: Type.Array(ExecutionSchema), next_cursor: Type.Union([Type.String(), Type.Null()]) });
export const ExecutionListQuerySchema = Type.Object({
  status: Type.Optional(ExecutionStatusSchema),
  flow: Type.Optional(Type.String({ maxLength: 100 })),
  since: Type.Optional(Type.String({ format: 'date-time' })),
  until: Type.Optional(Type.String({ format: 'date-time' })),
  cursor: Type.Optional(Type.String({ maxLength: 100 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })),
});
export const ExecutionStartSchema = Type.Object({ input: Type.Optional(Type.Unknown()) }, { additionalProperties: false });
export const ExecutionParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });
