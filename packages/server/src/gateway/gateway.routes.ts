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
  type GatewayRoute,
  type GatewayService,
} from '@flowgate/contracts';
import type { FastifyRequest } from 'fastify';
import type { TSchema } from 'typebox';
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

  for (const kind of ['service', 'route'] as const) registerItemRoutes(app, kind, gateway, afterChange);
}

/**
 * What differs between the service and the route endpoints. The schemas are typed loosely
 * on purpose: one handler serves both kinds, and the schemas still validate every body
 * and answer.
 */
const ITEMS: Record<'service' | 'route', { list: 'services' | 'routes'; schema: TSchema; listSchema: TSchema; deleteSummary: string }> = {
  service: { list: 'services', schema: GatewayServiceSchema, listSchema: GatewayServiceListSchema, deleteSummary: 'Deletes a gateway service no route uses' },
  route: { list: 'routes', schema: GatewayRouteSchema, listSchema: GatewayRouteListSchema, deleteSummary: 'Deletes a gateway route' },
};

/** /api/v1/gateway/{services,routes}[/:name]: list, read, create or replace, delete. */
function registerItemRoutes(
  app: HttpApp,
  kind: keyof typeof ITEMS,
  gateway: Gateway,
  afterChange: (request: FastifyRequest, outcome: ApplyOutcome) => Promise<void>,
): void {
  const { list, schema, listSchema, deleteSummary } = ITEMS[kind];
  const base = `/api/v1/gateway/${list}`;
  const items = async (): Promise<ReadonlyArray<{ name: string }>> => (await gateway.config.load())[list];

  app.get(
    base,
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: `The gateway ${list}`, response: { 200: listSchema, ...problems(401, 403) } } },
    async () => ({ items: await items() }),
  );

  app.get(
    `${base}/:name`,
    { config: { scope: SCOPE }, schema: { ...secured, tags, summary: `One gateway ${kind}`, params: GatewayNameParamsSchema, response: { 200: schema, ...problems(401, 403, 404) } } },
    async (request) => found((await items()).find((item) => item.name === request.params.name), kind, request.params.name),
  );

  app.put(
    `${base}/:name`,
    {
      config: { scope: SCOPE },
      schema: {
        ...secured,
        tags,
        summary: `Creates or replaces a gateway ${kind}`,
        params: GatewayNameParamsSchema,
        body: schema,
        response: { 200: schema, 201: schema, ...problems(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const item = request.body as GatewayService | GatewayRoute;
      sameName(request.params.name, item.name);
      const outcome = await gateway.config.put(kind, item);
      await afterChange(request, outcome);
      return reply.code(outcome.changes.some((c) => c.op === 'create') ? 201 : 200).send(item);
    },
  );

  app.delete(
    `${base}/:name`,
    {
      config: { scope: SCOPE },
      schema: { ...secured, tags, summary: deleteSummary, params: GatewayNameParamsSchema, response: { 204: { type: 'null' }, ...problems(400, 401, 403, 404) } },
    },
    async (request, reply) => {
      const outcome = await gateway.config.remove(kind, request.params.name);
      if (outcome.changes.length === 0) throw notFound(kind, request.params.name);
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
