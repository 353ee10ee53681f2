import type { ExecutionStatus } from '@flowgate/contracts';
import type { Registry } from 'prom-client';
import type { EventBus } from '../bus/index.js';
import type { FlowgateConfig } from '../config/index.js';
import type { HttpApp } from '../http/index.js';
import type { AuditRecorder, Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { OutboundClient } from '../outbound/index.js';
import { secretValue, type OAuth2Tokens, type SecretStore } from '../secrets/index.js';
import type { Store } from '../storage/index.js';
import { isFlowgateError } from '../errors/index.js';
import { builtinComponents, ComponentRegistry, GuardedComponentHttp, loadCustomComponents, NonRetryableError, subflowComponent, type Subflows } from './components/index.js';
import { EnginePart } from './engine-part.js';
import { ExecutionQueries } from './engine/execution-queries.js';
import { ExecutionRetention } from './engine/execution-retention.js';
import { ExecutionStore } from './engine/execution.store.js';
import { FlowEngine } from './engine/flow-engine.js';
import { StepRunner, type SecretReader } from './engine/step-runner.js';
import { EventTriggers } from './event-triggers.js';
import { FlowRepository } from './flow.repository.js';
import { registerFlowRoutes } from './flows.routes.js';
import { FlowLifecycle } from './lifecycle.js';
import { CronScheduler } from './scheduler/index.js';
import { WebhookPart } from './webhooks/webhook-part.js';
import { registerWebhookRoutes } from './webhooks/webhooks.routes.js';

export interface FlowsDeps {
  readonly config: FlowgateConfig;
  readonly store: Store;
  readonly bus: EventBus;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditRecorder;
  readonly secrets: SecretStore;
  readonly oauth2: OAuth2Tokens;
  readonly outbound: OutboundClient;
  readonly registry: Registry;
  /** This server's own URL, where `http` nodes reach gateway routes. */
  readonly selfUrl: () => string;
}

/** The flows feature, built: what the composition root starts, serves and stops. */
export interface Flows {
  readonly components: ComponentRegistry;
  readonly repository: FlowRepository;
  readonly lifecycle: FlowLifecycle;
  readonly engine: FlowEngine;
  readonly scheduler: CronScheduler;
  readonly retention: ExecutionRetention;
  /** Begins lifecycle reactions, scheduling, event triggers and step work. */
  start(): Promise<void>;
  registerRoutes(app: HttpApp): Promise<void>;
  /** Stops triggers first, then lets running steps finish. */
  close(): Promise<void>;
}

/** Builds the flows feature (issue 5) from its dependencies. */
export async function createFlows(deps: FlowsDeps): Promise<Flows> {
  const { config, store, bus, clock, logger, audit } = deps;
  const components = new ComponentRegistry();
  for (const component of builtinComponents()) components.register(component);
  if (config.flows.componentsDir) {
    const custom = await loadCustomComponents(config.flows.componentsDir);
    for (const component of custom) components.register(component);
    logger.info({ components: custom.map((c) => c.name), dir: config.flows.componentsDir }, 'custom flow components loaded');
  }
  const secrets: SecretReader = async (tenant, name) => (await secretValue(deps.secrets, deps.oauth2, tenant, name)).value;
  const repository = new FlowRepository(store, clock, components);
  const executions = new ExecutionStore(store, bus, clock);
  const runner = new StepRunner({
    clock,
    logger,
    audit,
    components,
    secrets,
    http: new GuardedComponentHttp(deps.outbound, deps.selfUrl),
    bus: (tenant, traceparent, flowId) => ({
      publish: async (topic, payload, options) => {
        const envelope = await bus.publish(tenant, { topic, payload, ...(options?.key ? { key: options.key } : {}) }, { traceparent, serviceName: `flow:${flowId}` });
        return { id: envelope.id };
      },
    }),
    defaultStepTimeoutMs: config.flows.stepTimeoutMs,
  });
  const engine = new FlowEngine({
    executions,
    flows: repository,
    runner,
    clock,
    logger,
    settings: { leaseMs: config.flows.leaseMs, maxInFlight: config.flows.maxInFlight, pollMs: config.flows.pollMs },
  });
  components.register(subflowComponent(subflowsOf(repository, engine)));
  const webhooks = new WebhookPart(store, clock);
  const scheduler = new CronScheduler(store, clock, logger, engine, { registry: deps.registry });
  const events = new EventTriggers(store, bus, engine, clock, logger, config.flows.eventSyncMs);
  const lifecycle = new FlowLifecycle({
    store,
    bus,
    clock,
    logger,
    audit,
    flows: repository,
    parts: [new EnginePart(components), webhooks, scheduler, events],
    timeoutMs: config.flows.lifecycleTimeoutMs,
  });
  const queries = new ExecutionQueries(store);
  const retention = new ExecutionRetention(store, clock, logger, { days: config.flows.retentionDays, intervalMs: config.flows.retentionIntervalMs });
  let signatureSweep: NodeJS.Timeout | undefined;

  return {
    components,
    repository,
    lifecycle,
    engine,
    scheduler,
    retention,
    async start() {
      engine.begin();
      await lifecycle.begin();
      scheduler.start();
      events.begin();
      retention.begin();
      signatureSweep = setInterval(() => void webhooks.dropExpiredSignatures().catch(() => undefined), 60_000);
      signatureSweep.unref();
    },
    async registerRoutes(app) {
      await registerWebhookRoutes(app, { webhooks, engine, secrets, clock, audit });
      registerFlowRoutes(app, { flows: repository, lifecycle, engine, queries, audit });
    },
    async close() {
      if (signatureSweep) clearInterval(signatureSweep);
      await scheduler.close();
      await events.close();
      await retention.close();
      await lifecycle.close();
      await engine.close();
    },
  };
}

/** The engine as the subflow component uses it: children by flow name, once per parent step. */
function subflowsOf(repository: FlowRepository, engine: FlowEngine): Subflows {
  return {
    async start({ tenant, flow, input, parentExecutionId, stepId, traceparent }) {
      let record;
      try {
        record = await repository.find(tenant, flow);
      } catch (error) {
        if (isFlowgateError(error) && error.status === 404) throw new NonRetryableError(`There is no flow named "${flow}".`, 'SUBFLOW_MISSING');
        throw error;
      }
      const { execution, created } = await engine.start(record, { input, trigger: 'subflow', idempotencyKey: `subflow:${stepId}`, traceparent, parentExecutionId });
      return { id: execution.id, status: execution.status as ExecutionStatus, output: execution.output === null ? null : JSON.parse(execution.output), created };
    },
  };
}
