import {
  GatewayApplyQuerySchema,
  GatewayApplyResultSchema,
  GatewayConfigSchema,
  GatewayConfigStateSchema,
  GatewayNameParamsSchema,
  GatewayRouteListSchema,
  GatewayRouteSchema,
  GatewayServiceListSchema,
  GatewayServiceSchema,
  type GatewayChange,
} from '@flowgate/contracts';
import type { FastifyRequest } from 'fastify';
import { FlowgateError } from '../errors/index.js';
import { bearerSecured, problemResponses, type HttpApp } from '../http/index.js';
import { callerOf } from '../iam/index.js';
import type { AuditRecorder } from '../kernel/index.js';
import type { ApplyOutcome } from './config-store.js';
import type { Gateway } from './gateway.js';

export interface GatewayRoutesOptions {
  readonly gateway: Gateway;
  readonly audit: AuditRecorder;
}

/** The gateway serves every tenant: only platform administrators configure it. */
const SCOPE = 'platform:admin';
const tags = ['gateway'];
const problems = problemResponses;
const secured = bearerSecured;

/**
 * /api/v1/gateway: the gateway's configuration, whole (`config`, what `flowgate apply`
 * uses) or one service or route at a time. Every change is validated as a whole
 * configuration, served at once by this instance and within the reload interval by the
 * others, and audited as `gateway.config_applied`.
 */
export function registerGatewayRoutes(app: HttpApp, { gateway, audit }: GatewayRoutesOptions): void {
  const record = (request: FastifyRequest, outcome: ApplyOutcome) => {
    if (outcome.changes.length === 0) return;
    audit.record({
      action: 'gateway.config_applied',
      tenant: null,
      actor: callerOf(request).sub,
      outcome: 'success',
      target: 'gateway:config',
      traceId: request.id,
      details: { revision: outcome.revision, changes: outcome.changes.map(describe).join(', ').slice(0, 2000) },
    });
  };
  const afterChange = async (request: FastifyRequest, outcome: ApplyOutcome) => {
    record(request, outcome);
    if (outcome.changes.length > 0) await gateway.reload();
  };

  app.get(
    '/api/v1/gateway/config',
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: 'The whole gateway configuration and its revision', response: { 200: GatewayConfigStateSchema, ...problems(401, 403) } } },
    async () => gateway.config.load(),
  );

  app.put(
    '/api/v1/gateway/config',
    {
      config: { scope: SCOPE },
      schema: {
        ...secured,
        tags,
        summary: 'Makes the gateway serve exactly this configuration',
        description: 'Creates, updates and deletes services and routes so that the stored configuration equals the body; answers what changed. With ?dryRun=true nothing is changed. An invalid configuration changes nothing and lists every problem.',
        querystring: GatewayApplyQuerySchema,
        body: GatewayConfigSchema,
        response: { 200: GatewayApplyResultSchema, ...problems(400, 401, 403, 409) },
      },
    },
    async (request) => {
      const dryRun = request.query.dryRun ?? false;
      const outcome = await gateway.config.apply(request.body, { dryRun });
      if (!dryRun) await afterChange(request, outcome);
      return { revision: outcome.revision, dryRun, changes: [...outcome.changes] };
    },
  );

  app.get(
    '/api/v1/gateway/services',
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: 'The gateway services', response: { 200: GatewayServiceListSchema, ...problems(401, 403) } } },
    async () => ({ items: (await gateway.config.load()).services }),
  );

  app.get(
    '/api/v1/gateway/services/:name',
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: 'One gateway service', params: GatewayNameParamsSchema, response: { 200: GatewayServiceSchema, ...problems(401, 403, 404) } } },
    async (request) => found((await gateway.config.load()).services.find((s) => s.name === request.params.name), 'service', request.params.name),
  );

  app.put(
    '/api/v1/gateway/services/:name',
    {
      config: { scope: SCOPE },
      schema: {
        ...secured,
        tags,
        summary: 'Creates or replaces a gateway service',
        params: GatewayNameParamsSchema,
        body: GatewayServiceSchema,
        response: { 200: GatewayServiceSchema, 201: GatewayServiceSchema, ...problems(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      sameName(request.params.name, request.body.name);
      const outcome = await gateway.config.putService(request.body);
      await afterChange(request, outcome);
      return reply.code(outcome.changes.some((c) => c.op === 'create') ? 201 : 200).send(request.body);
    },
  );

  app.delete(
    '/api/v1/gateway/services/:name',
    {
      config: { scope: SCOPE },
      schema: { ...secured, tags, summary: 'Deletes a gateway service no route uses', params: GatewayNameParamsSchema, response: { 204: { type: 'null' }, ...problems(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const outcome = await gateway.config.deleteService(request.params.name);
      if (outcome.changes.length === 0) throw notFound('service', request.params.name);
      await afterChange(request, outcome);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/gateway/routes',
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: 'The gateway routes', response: { 200: GatewayRouteListSchema, ...problems(401, 403) } } },
    async () => ({ items: (await gateway.config.load()).routes }),
  );

  app.get(
    '/api/v1/gateway/routes/:name',
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: 'One gateway route', params: GatewayNameParamsSchema, response: { 200: GatewayRouteSchema, ...problems(401, 403, 404) } } },
    async (request) => found((await gateway.config.load()).routes.find((r) => r.name === request.params.name), 'route', request.params.name),
  );

  app.put(
    '/api/v1/gateway/routes/:name',
    {
      config: { scope: SCOPE },
      schema: {
        ...secured,
        tags,
        summary: 'Creates or replaces a gateway route',
        params: GatewayNameParamsSchema,
        body: GatewayRouteSchema,
        response: { 200: GatewayRouteSchema, 201: GatewayRouteSchema, ...problems(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      sameName(request.params.name, request.body.name);
      const outcome = await gateway.config.putRoute(request.body);
      await afterChange(request, outcome);
      return reply.code(outcome.changes.some((c) => c.op === 'create') ? 201 : 200).send(request.body);
    },
  );

  app.delete(
    '/api/v1/gateway/routes/:name',
    {
      config: { scope: SCOPE },
      schema: { ...secured, tags, summary: 'Deletes a gateway route', params: GatewayNameParamsSchema, response: { 204: { type: 'null' }, ...problems(401, 403, 404) } },
    },
    async (request, reply) => {
      const outcome = await gateway.config.deleteRoute(request.params.name);
      if (outcome.changes.length === 0) throw notFound('route', request.params.name);
      await afterChange(request, outcome);
      return reply.code(204).send(null);
    },
  );
}

function describe(change: GatewayChange): string {
  return `${change.op} ${change.kind} ${change.name}`;
}

function sameName(inPath: string, inBody: string): void {
  if (inPath !== inBody) throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', `The body names "${inBody}" but the path names "${inPath}".`);
}

function notFound(kind: string, name: string): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `There is no gateway ${kind} "${name}".`);
}

function found<T>(item: T | undefined, kind: string, name: string): T {
  if (item === undefined) throw notFound(kind, name);
  return item;
}
