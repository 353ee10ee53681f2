import {
  ExecutionListQuerySchema,
  ExecutionListSchema,
  ExecutionGetQuerySchema,
  ExecutionParamsSchema,
  EXECUTION_STEPS_PAGE,
  ExecutionSchema,
  ExecutionStartSchema,
  FLOW_SCOPES,
  FLOW_STATUSES,
  FlowDefinitionSchema,
  FlowListSchema,
  FlowParamsSchema,
  FlowSchema,
  flowRunScope,
} from '@flowgate/contracts';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { FastifyRequest } from 'fastify';
import Type from 'typebox';
import { FlowgateError } from '../errors/index.js';
import { bearerSecured, problemResponses, queryTime, type HttpApp } from '../http/index.js';
import { callerOf, principalHas, type Principal } from '../iam/index.js';
import type { AuditRecorder } from '../kernel/index.js';
import { formatTraceparent } from '../observability/index.js';
import { executionView, type ExecutionQueries } from './engine/execution-queries.js';
import type { FlowEngine } from './engine/flow-engine.js';
import { flowView, type FlowRepository } from './flow.repository.js';
import type { FlowLifecycle } from './lifecycle.js';

export interface FlowRoutesOptions {
  readonly flows: FlowRepository;
  readonly lifecycle: FlowLifecycle;
  readonly engine: FlowEngine;
  readonly queries: ExecutionQueries;
  readonly audit: AuditRecorder;
}

const problems = problemResponses;
const secured = bearerSecured;
const tags = ['flows'];
const DONE = { cancel: 'cancelled', pause: 'paused', resume: 'resumed', rerun: 'rerun' } as const;
// `addUsedSchema: false`: schemas are not registered by `$id`, which flows of several tenants may share.
const inputSchemas = new Ajv2020({ allErrors: true, strict: false, validateFormats: false, addUsedSchema: false });
/** Compiled input schemas by flow version: each run would otherwise compile (and Ajv keep) a fresh copy. */
const inputValidators = new Map<string, ValidateFunction>();
const MAX_INPUT_VALIDATORS = 1000;

function inputValidator(flowId: string, version: number, schema: Record<string, unknown>): ValidateFunction {
  const key = `${flowId}@${version}`;
  let validate = inputValidators.get(key);
  if (!validate) {
    validate = inputSchemas.compile(schema);
    // Ajv keeps every schema it compiled; drop them with our entries so memory stays bounded.
    if (inputValidators.size >= MAX_INPUT_VALIDATORS) {
      inputValidators.clear();
      inputSchemas.removeSchema();
    }
    inputValidators.set(key, validate);
  }
  return validate;
}

/**
 * /api/v1/flows and /api/v1/executions: the flow repository (definitions, versions,
 * start and stop) and the executions API. Another tenant's flow or execution is not found.
 */
export function registerFlowRoutes(app: HttpApp, options: FlowRoutesOptions): void {
  const { flows, lifecycle, engine, queries, audit } = options;
  // One shared copy: the definition schema is large, and each route compiling its own
  // took about half a second of every start.
  app.addSchema({ ...FlowDefinitionSchema, $id: 'FlowDefinition' });
  const definitionBody = { $ref: 'FlowDefinition#' } as unknown as typeof FlowDefinitionSchema;
  const record = (request: FastifyRequest, action: string, target: string, details?: Record<string, string | number>) => {
    const caller = callerOf(request);
    audit.record({ action, tenant: caller.tenant, actor: caller.sub, outcome: 'success', target, traceId: request.id, ...(details ? { details } : {}) });
  };

  app.get(
    '/api/v1/flows',
    {
      config: { scope: FLOW_SCOPES.read },
      schema: {
        ...secured,
        tags,
        summary: "Your tenant's flows",
        querystring: Type.Object({ status: Type.Optional(Type.Union(FLOW_STATUSES.map((s) => Type.Literal(s)))), cursor: Type.Optional(Type.String({ maxLength: 100 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })) }),
        response: { 200: FlowListSchema, ...problems(400, 401, 403) },
      },
    },
    async (request) => {
      const page = await flows.list(callerOf(request).tenant, request.query);
      return { items: page.items.map(flowView), next_cursor: page.next_cursor };
    },
  );

  app.post(
    '/api/v1/flows',
    {
      config: { scope: FLOW_SCOPES.write },
      schema: { ...secured, tags, summary: 'Creates a flow (inactive) from its definition', body: definitionBody, response: { 201: FlowSchema, ...problems(400, 401, 403, 409) } },
    },
    async (request, reply) => {
      const flow = await flows.create(callerOf(request).tenant, request.body);
      record(request, 'flows.flow.created', `flow:${flow.id}`, { name: flow.name, version: flow.version });
      return reply.code(201).header('location', `/api/v1/flows/${flow.id}`).send(flowView(flow));
    },
  );

  app.get(
    '/api/v1/flows/:id',
    { config: { scope: FLOW_SCOPES.read }, schema: { ...secured, tags, summary: 'A flow, by id or name', params: FlowParamsSchema, response: { 200: FlowSchema, ...problems(401, 403, 404) } } },
    async (request) => flowView(await flows.find(callerOf(request).tenant, request.params.id)),
  );

  app.put(
    '/api/v1/flows/:id',
    {
      config: { scope: FLOW_SCOPES.write },
      schema: { ...secured, tags, summary: 'Saves a new version of a stopped flow', params: FlowParamsSchema, body: definitionBody, response: { 200: FlowSchema, ...problems(400, 401, 403, 404, 409) } },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      const current = await flows.find(tenant, request.params.id);
      const flow = await flows.update(tenant, current.id, request.body);
      record(request, 'flows.flow.updated', `flow:${flow.id}`, { name: flow.name, version: flow.version });
      return flowView(flow);
    },
  );

  app.delete(
    '/api/v1/flows/:id',
    { config: { scope: FLOW_SCOPES.write }, schema: { ...secured, tags, summary: 'Deletes a stopped flow', params: FlowParamsSchema, response: { 204: Type.Null(), ...problems(401, 403, 404, 409) } } },
    async (request, reply) => {
      const tenant = callerOf(request).tenant;
      const current = await flows.find(tenant, request.params.id);
      await flows.delete(tenant, current.id);
      record(request, 'flows.flow.deleted', `flow:${current.id}`, { name: current.name });
      return reply.code(204).send(null);
    },
  );

  for (const action of ['start', 'stop'] as const) {
    app.post(
      `/api/v1/flows/:id/${action}`,
      {
        config: { scope: FLOW_SCOPES.write },
        schema: {
          ...secured,
          tags,
          summary: action === 'start' ? 'Starts a flow: starting, flow.starting … flow.started, active' : 'Stops a flow: stopping, flow.stopping … flow.stopped, inactive',
          params: FlowParamsSchema,
          response: { 202: FlowSchema, ...problems(401, 403, 404, 409) },
        },
      },
      async (request, reply) => {
        const caller = callerOf(request);
        const current = await flows.find(caller.tenant, request.params.id);
        const flow = await lifecycle[action](caller.tenant, current.id, caller.sub, formatTraceparent(request.trace));
        return reply.code(202).send(flowView(flow));
      },
    );
  }

  app.post(
    '/api/v1/flows/:id/executions',
    {
      config: { scope: null },
      schema: {
        ...secured,
        tags,
        summary: 'Runs an active flow with an input (needs flows:run or flows:run:flow=<name>)',
        description: "The input is checked against the manual trigger's inputSchema when the flow has one. An Idempotency-Key header makes a repeated call answer the first execution.",
        params: FlowParamsSchema,
        body: ExecutionStartSchema,
        response: { 201: ExecutionSchema, 200: ExecutionSchema, ...problems(400, 401, 403, 404, 409, 422) },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      // A token that may run no flow at all is refused before the lookup, so its answer does
      // not say which flows exist.
      if (!runsSomeFlow(caller)) {
        throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `This needs the "${FLOW_SCOPES.run}" scope (or "${FLOW_SCOPES.run}:flow=<name>"), which your token does not carry.`, { extensions: { required_scope: FLOW_SCOPES.run } });
      }
      const flow = await flows.find(caller.tenant, request.params.id);
      const wanted = flowRunScope(flow.name);
      if (!principalHas(caller, wanted)) {
        throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `This needs the "${wanted}" scope, which your token does not carry.`, { extensions: { required_scope: wanted } });
      }
      if (flow.status !== 'active') throw new FlowgateError('FLOWGATE_ERR_FLOW_STATUS_CONFLICT', `The flow is ${flow.status}; start it before running it.`, { extensions: { status: flow.status } });
      const input = request.body.input ?? {};
      const manual = flow.definition.triggers.find((t) => t.type === 'manual');
      if (manual?.type === 'manual' && manual.inputSchema) {
        const validate = inputValidator(flow.id, flow.version, manual.inputSchema);
        if (!validate(input)) {
          const errors = (validate.errors ?? []).slice(0, 20).map((e) => ({ path: `/input${e.instancePath}`, message: e.message ?? 'is not valid' }));
          throw new FlowgateError('FLOWGATE_ERR_FLOW_INPUT_INVALID', `${errors[0]?.path}: ${errors[0]?.message}`, { errors });
        }
      }
      const key = request.headers['idempotency-key'];
      const { execution, created } = await engine.start(flow, {
        input,
        trigger: 'manual',
        callerKey: typeof key === 'string' && key !== '' ? key.slice(0, 256) : undefined,
        traceparent: formatTraceparent(request.trace),
      });
      if (created) record(request, 'flows.execution.started', `execution:${execution.id}`, { flow: flow.id });
      return reply.code(created ? 201 : 200).header('location', `/api/v1/executions/${execution.id}`).send(executionView(execution));
    },
  );

  app.get(
    '/api/v1/executions',
    {
      config: { scope: FLOW_SCOPES.read },
      schema: { ...secured, tags, summary: "Your tenant's executions, newest first", querystring: ExecutionListQuerySchema, response: { 200: ExecutionListSchema, ...problems(400, 401, 403) } },
    },
    async (request) => {
      const { since, until, ...rest } = request.query;
      return queries.list(callerOf(request).tenant, { ...rest, since: since === undefined ? undefined : queryTime(since, 'since'), until: until === undefined ? undefined : queryTime(until, 'until') });
    },
  );

  app.get(
    '/api/v1/executions/:id',
    {
      config: { scope: null },
      schema: {
        ...secured,
        tags,
        summary: `An execution with its steps, ${EXECUTION_STEPS_PAGE} at a time (large inputs and outputs cut, secrets redacted); needs flows:read, or the run scope of its flow`,
        params: ExecutionParamsSchema,
        querystring: ExecutionGetQuerySchema,
        response: { 200: ExecutionSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      if (principalHas(caller, FLOW_SCOPES.read)) return queries.get(caller.tenant, request.params.id, request.query.steps_from);
      // A token that may run the execution's flow (flows:run:flow=<name>) may follow the
      // executions it starts (`flowgate flows run --wait`); one that may run none is refused
      // before the lookup.
      const refused = () => new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `This needs the "${FLOW_SCOPES.read}" scope, or the run scope of the execution's flow.`, { extensions: { required_scope: FLOW_SCOPES.read } });
      if (!runsSomeFlow(caller)) throw refused();
      const view = await queries.get(caller.tenant, request.params.id, request.query.steps_from);
      const flow = await flows.byId(view.flow_id);
      if (!flow || !principalHas(caller, flowRunScope(flow.name))) throw refused();
      return view;
    },
  );

  for (const action of ['cancel', 'pause', 'resume', 'rerun'] as const) {
    app.post(
      `/api/v1/executions/:id/${action}`,
      {
        config: { scope: FLOW_SCOPES.run },
        schema: { ...secured, tags, summary: `${action[0]!.toUpperCase()}${action.slice(1)}s an execution`, params: ExecutionParamsSchema, response: { 200: ExecutionSchema, ...problems(401, 403, 404, 409) } },
      },
      async (request) => {
        const tenant = callerOf(request).tenant;
        await engine[action](tenant, request.params.id);
        record(request, `flows.execution.${DONE[action]}`, `execution:${request.params.id}`);
        return queries.get(tenant, request.params.id);
      },
    );
  }
}

/** Whether a token may run some flow: `flows:run`, or `flows:run:flow=<name>` for one of them. */
function runsSomeFlow(caller: Pick<Principal, 'scopes'>): boolean {
  return principalHas(caller, FLOW_SCOPES.run) || caller.scopes.some((scope) => scope.startsWith(`${FLOW_SCOPES.run}:flow=`));
}
