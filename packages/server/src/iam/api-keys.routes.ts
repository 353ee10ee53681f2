import {
  API_SCOPES,
  ApiKeyCreateSchema,
  ApiKeyCreatedSchema,
  ApiKeyParamsSchema,
  ApiKeySchema,
  IdParamsSchema,
  PageQuerySchema,
  PageSchema,
} from '@flowgate/contracts';
import Type from 'typebox';
import { bearerSecured, problemResponses, type HttpApp } from '../http/index.js';
import type { ApiKeyAdmin } from './api-key-admin.js';
import { callerOf } from './auth-hook.js';

export interface ApiKeyRoutesDeps {
  readonly apiKeys: ApiKeyAdmin;
}

const problems = problemResponses;
const secured = bearerSecured;
const tags = ['service accounts'];

/** API keys of a service account, under /api/v1/service-accounts/:id/api-keys; the same rights as managing the account. */
export function registerApiKeyRoutes(app: HttpApp, { apiKeys }: ApiKeyRoutesDeps): void {
  app.get(
    '/api/v1/service-accounts/:id/api-keys',
    {
      config: { scope: API_SCOPES.accountsRead },
      schema: {
        ...secured,
        tags,
        summary: "The account's API keys, revoked ones included (never the keys themselves)",
        params: IdParamsSchema,
        querystring: PageQuerySchema,
        response: { 200: PageSchema(ApiKeySchema), ...problems(401, 403, 404) },
      },
    },
    (request) => apiKeys.list(callerOf(request), request.params.id, request.query.limit, request.query.cursor),
  );
  app.post(
    '/api/v1/service-accounts/:id/api-keys',
    {
      config: { scope: API_SCOPES.accountsWrite },
      schema: {
        ...secured,
        tags,
        summary: "Creates an API key holding some of the account's scopes. The key is shown once.",
        params: IdParamsSchema,
        body: ApiKeyCreateSchema,
        response: { 201: ApiKeyCreatedSchema, ...problems(400, 401, 403, 404) },
      },
    },
    async (request, reply) => reply.code(201).send(await apiKeys.create(callerOf(request), request.params.id, request.body, request.id)),
  );
  app.delete(
    '/api/v1/service-accounts/:id/api-keys/:keyId',
    {
      config: { scope: API_SCOPES.accountsWrite },
      schema: {
        ...secured,
        tags,
        summary: 'Revokes an API key: refused at once here, on other instances within seconds',
        params: ApiKeyParamsSchema,
        response: { 204: Type.Null({ description: 'Done' }), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      await apiKeys.revoke(callerOf(request), request.params.id, request.params.keyId, request.id);
      return reply.code(204).send(null);
    },
  );
}
