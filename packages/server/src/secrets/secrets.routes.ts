import {
  SECRET_SCOPES,
  SecretCreateSchema,
  SecretListSchema,
  SecretParamsSchema,
  SecretSchema,
  SecretUpdateSchema,
  type Secret,
  type SecretKind,
} from '@flowgate/contracts';
import type { FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { AuditRecorder } from '../kernel/index.js';
import { FlowgateError } from '../errors/index.js';
import { bearerSecured, problemResponses, type HttpApp } from '../http/index.js';
import { callerOf } from '../iam/index.js';
import { isoTime } from '../kernel/index.js';
import type { SecretMetadata, SecretStore } from './secret-store.js';

export interface SecretRoutesOptions {
  readonly secrets: SecretStore;
  readonly audit: AuditRecorder;
}

const problems = problemResponses;
const secured = bearerSecured;
const tags = ['secrets'];

/**
 * /api/v1/secrets: the caller's tenant's secrets. Values go in and never come out; a
 * name of another tenant is simply not found. Every change is audited (without values).
 */
export function registerSecretRoutes(app: HttpApp, { secrets, audit }: SecretRoutesOptions): void {
  const record = (request: FastifyRequest, action: string, name: string, details?: Record<string, string | number>) => {
    const caller = callerOf(request);
    audit.record({ action: `secrets.${action}`, tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: `secret:${name}`, traceId: request.id, ...(details ? { details } : {}) });
  };

  app.get(
    '/api/v1/secrets',
    {
      config: { scope: SECRET_SCOPES.read },
      schema: { ...secured, tags, summary: "Your tenant's secrets: names and metadata, never values", response: { 200: SecretListSchema, ...problems(401, 403) } },
    },
    async (request) => ({ items: (await secrets.list(callerOf(request).tenant)).map(view) }),
  );

  app.post(
    '/api/v1/secrets',
    {
      config: { scope: SECRET_SCOPES.write },
      schema: {
        ...secured,
        tags,
        summary: 'Stores a secret, encrypted; answers its metadata',
        description: 'The value is a string, or for kind oauth2 an object {tokenUrl, clientId, clientSecret, refreshToken?, scope?}. It is never returned.',
        body: SecretCreateSchema,
        response: { 201: SecretSchema, ...problems(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const kind = kindFor(body.kind, body.value);
      const created = await secrets.create(callerOf(request).tenant, { name: body.name, kind, value: body.value, description: body.description });
      record(request, 'created', body.name, { kind });
      return reply.code(201).send(view(created));
    },
  );

  app.get(
    '/api/v1/secrets/:name',
    {
      config: { scope: SECRET_SCOPES.read },
      schema: { ...secured, tags, summary: "A secret's metadata", params: SecretParamsSchema, response: { 200: SecretSchema, ...problems(401, 403, 404) } },
    },
    async (request) => view(await secrets.get(callerOf(request).tenant, request.params.name)),
  );

  app.patch(
    '/api/v1/secrets/:name',
    {
      config: { scope: SECRET_SCOPES.write },
      schema: {
        ...secured,
        tags,
        summary: "Replaces a secret's value (rotation) or description",
        params: SecretParamsSchema,
        body: SecretUpdateSchema,
        response: { 200: SecretSchema, ...problems(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const tenant = callerOf(request).tenant;
      const { name } = request.params;
      if (request.body.value !== undefined) kindFor((await secrets.get(tenant, name)).kind, request.body.value);
      const updated = await secrets.update(tenant, name, request.body);
      record(request, request.body.value !== undefined ? 'rotated' : 'updated', name, { version: updated.version });
      return view(updated);
    },
  );

  app.delete(
    '/api/v1/secrets/:name',
    {
      config: { scope: SECRET_SCOPES.write },
      schema: { ...secured, tags, summary: 'Deletes a secret', params: SecretParamsSchema, response: { 204: Type.Null({ description: 'Deleted' }), ...problems(401, 403, 404) } },
    },
    async (request, reply) => {
      const { name } = request.params;
      if (!(await secrets.delete(callerOf(request).tenant, name))) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `There is no secret named ${name}.`);
      record(request, 'deleted', name);
      return reply.code(204).send(null);
    },
  );
}

/** The kind, defaulted from the value's shape; an oauth2 secret holds an object, every other kind a string. */
function kindFor(kind: SecretKind | undefined, value: unknown): SecretKind {
  const structured = typeof value === 'object' && value !== null;
  const resolved = kind ?? (structured ? 'oauth2' : 'generic');
  if ((resolved === 'oauth2') !== structured) {
    throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', resolved === 'oauth2' ? 'An oauth2 secret holds {tokenUrl, clientId, clientSecret, refreshToken?, scope?}.' : `A ${resolved} secret holds a string.`);
  }
  return resolved;
}

function view(secret: SecretMetadata): Secret {
  return { name: secret.name, kind: secret.kind, description: secret.description, version: secret.version, created_at: isoTime(secret.createdAt), updated_at: isoTime(secret.updatedAt) };
}
