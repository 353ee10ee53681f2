/**
 * Flows (issue 5): definitions with versions, the start/stop lifecycle, webhook, cron,
 * event and manual triggers, and the durable engine that runs executions step by step.
 */
export { createFlows, type Flows, type FlowsDeps } from './create-flows.js';
export { flowsMigrations } from './flows.migrations.js';
export type { FlowsTables } from './flows.tables.js';
export { defineComponent, NonRetryableError, RetryLaterError, type Component, type ComponentCall, type ComponentContext } from './components/index.js';
export { signBody } from './webhooks/signature.js';
