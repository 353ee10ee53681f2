import {
  API_SCOPES,
  IdParamsSchema,
  MemberSchema,
  MemberUpdateSchema,
  PageQuerySchema,
  PageSchema,
  ServiceAccountCreateSchema,
  ServiceAccountCreatedSchema,
  ServiceAccountSchema,
  SigningKeySchema,
  TenantCreateSchema,
  TenantCreatedSchema,
  TenantSchema,
  UserCreateSchema,
  UserSchema,
  UserUpdateSchema,
  WhoAmISchema,
} from '@flowgate/contracts';
import Type from 'typebox';
import { bearerSecured, problemResponses, type HttpApp } from '../http/index.js';
import { isoTime } from '../kernel/index.js';
import { callerOf } from './auth-hook.js';
import type { IamAdmin } from './iam-admin.js';
import type { SigningKeyStore } from './signing-keys.js';
import type { AuditRecorder } from '../kernel/index.js';

export interface AdminRoutesDeps {
  readonly admin: IamAdmin;
  readonly keys: SigningKeyStore;
  readonly audit: AuditRecorder;
}

const problems = problemResponses;
const secured = bearerSecured;
const NoContent = { 204: Type.Null({ description: 'Done' }) };

/** The admin API under /api/v1: tenants, users, members, service accounts, signing keys. */
export function registerAdminRoutes(app: HttpApp, { admin, keys, audit }: AdminRoutesDeps): void {
  app.get(
    '/api/v1/me',
    { config: { scope: null }, schema: { ...secured, tags: ['iam'], summary: 'Who the bearer token stands for', response: { 200: WhoAmISchema, ...problems(401) } } },
    (request) => {
      const p = callerOf(request);
      return {
        sub: p.sub,
        tenant: p.tenant,
        principal_type: p.kind,
        name: p.name ?? p.sub,
        scopes: [...p.scopes],
        client_id: p.clientId,
        ...(p.act ? { act: p.act } : {}),
        issuer: p.issuer,
        expires_at: isoTime(p.exp * 1000),
      };
    },
  );

  // --- Tenants -----------------------------------------------------------------------------
  app.get(
    '/api/v1/tenants',
    {
      config: { scope: API_SCOPES.tenantsRead },
      schema: { ...secured, tags: ['tenants'], summary: 'Tenants you can see', querystring: PageQuerySchema, response: { 200: PageSchema(TenantSchema), ...problems(401, 403) } },
    },
    (request) => admin.listTenants(callerOf(request), request.query.limit, request.query.cursor),
  );
  app.post(
    '/api/v1/tenants',
    {
      config: { scope: API_SCOPES.platformAdmin },
      schema: {
        ...secured,
        tags: ['tenants'],
        summary: 'Creates a tenant and its owner service account (secret shown once)',
        body: TenantCreateSchema,
        response: { 201: TenantCreatedSchema, ...problems(400, 401, 403, 409) },
      },
    },
    async (request, reply) => reply.code(201).send(await admin.createTenant(callerOf(request), request.body.id, request.id)),
  );
  app.get(
    '/api/v1/tenants/:id',
    {
      config: { scope: API_SCOPES.tenantsRead },
      schema: { ...secured, tags: ['tenants'], params: IdParamsSchema, response: { 200: TenantSchema, ...problems(401, 403, 404) } },
    },
    (request) => admin.getTenant(callerOf(request), request.params.id),
  );

  // --- Service accounts ------------------------------------------------------------------
  app.get(
    '/api/v1/service-accounts',
    {
      config: { scope: API_SCOPES.accountsRead },
      schema: { ...secured, tags: ['service accounts'], querystring: PageQuerySchema, response: { 200: PageSchema(ServiceAccountSchema), ...problems(401, 403) } },
    },
    (request) => admin.listServiceAccounts(callerOf(request), request.query.limit, request.query.cursor),
  );
  app.post(
    '/api/v1/service-accounts',
    {
      config: { scope: API_SCOPES.accountsWrite },
      schema: {
        ...secured,
        tags: ['service accounts'],
        summary: 'Creates a service account; it may hold only scopes you hold. The secret is shown once.',
        body: ServiceAccountCreateSchema,
        response: { 201: ServiceAccountCreatedSchema, ...problems(400, 401, 403) },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await admin.createServiceAccount(callerOf(request), request.body.name, request.body.scopes, request.id)),
  );
  app.get(
    '/api/v1/service-accounts/:id',
    {
      config: { scope: API_SCOPES.accountsRead },
      schema: { ...secured, tags: ['service accounts'], params: IdParamsSchema, response: { 200: ServiceAccountSchema, ...problems(401, 403, 404) } },
    },
    (request) => admin.getServiceAccount(callerOf(request), request.params.id),
  );
  app.post(
    '/api/v1/service-accounts/:id/secret',
    {
      config: { scope: API_SCOPES.accountsWrite },
      schema: {
        ...secured,
        tags: ['service accounts'],
        summary: 'Replaces the secret (shown once); the old one stops working',
        params: IdParamsSchema,
        response: { 200: ServiceAccountCreatedSchema, ...problems(401, 403, 404) },
      },
    },
    (request) => admin.rotateServiceAccountSecret(callerOf(request), request.params.id, request.id),
  );
  app.delete(
    '/api/v1/service-accounts/:id',
    {
      config: { scope: API_SCOPES.accountsWrite },
      schema: { ...secured, tags: ['service accounts'], params: IdParamsSchema, response: { ...NoContent, ...problems(401, 403, 404, 409) } },
    },
    async (request, reply) => {
      await admin.deleteServiceAccount(callerOf(request), request.params.id, request.id);
      return reply.code(204).send(null);
    },
  );

  // --- Users -------------------------------------------------------------------------------
  app.get(
    '/api/v1/users',
    {
      config: { scope: API_SCOPES.usersRead },
      schema: { ...secured, tags: ['users'], querystring: PageQuerySchema, response: { 200: PageSchema(UserSchema), ...problems(401, 403) } },
    },
    (request) => admin.listUsers(callerOf(request), request.query.limit, request.query.cursor),
  );
  app.post(
    '/api/v1/users',
    {
      config: { scope: API_SCOPES.usersWrite },
      schema: { ...secured, tags: ['users'], summary: 'Creates a user with a role in this tenant', body: UserCreateSchema, response: { 201: UserSchema, ...problems(400, 401, 403, 409) } },
    },
    async (request, reply) => reply.code(201).send(await admin.createUser(callerOf(request), request.body, request.id)),
  );
  app.get(
    '/api/v1/users/:id',
    {
      config: { scope: API_SCOPES.usersRead },
      schema: { ...secured, tags: ['users'], params: IdParamsSchema, response: { 200: UserSchema, ...problems(401, 403, 404) } },
    },
    (request) => admin.getUser(callerOf(request), request.params.id),
  );
  app.patch(
    '/api/v1/users/:id',
    {
      config: { scope: API_SCOPES.usersWrite },
      schema: { ...secured, tags: ['users'], params: IdParamsSchema, body: UserUpdateSchema, response: { 200: UserSchema, ...problems(400, 401, 403, 404) } },
    },
    (request) => admin.updateUser(callerOf(request), request.params.id, request.body, request.id),
  );
  app.delete(
    '/api/v1/users/:id',
    {
      config: { scope: API_SCOPES.usersWrite },
      schema: { ...secured, tags: ['users'], params: IdParamsSchema, response: { ...NoContent, ...problems(401, 403, 404, 409) } },
    },
    async (request, reply) => {
      await admin.deleteUser(callerOf(request), request.params.id, request.id);
      return reply.code(204).send(null);
    },
  );

  // --- Members -----------------------------------------------------------------------------
  app.get(
    '/api/v1/members',
    {
      config: { scope: API_SCOPES.membersRead },
      schema: { ...secured, tags: ['members'], querystring: PageQuerySchema, response: { 200: PageSchema(MemberSchema), ...problems(401, 403) } },
    },
    (request) => admin.listMembers(callerOf(request), request.query.limit, request.query.cursor),
  );
  app.put(
    '/api/v1/members/:id',
    {
      config: { scope: API_SCOPES.membersWrite },
      schema: {
        ...secured,
        tags: ['members'],
        summary: 'Gives a user or service account a role (nobody grants above their own)',
        params: IdParamsSchema,
        body: MemberUpdateSchema,
        response: { 200: MemberSchema, ...problems(400, 401, 403, 404, 409) },
      },
    },
    (request) => admin.setRole(callerOf(request), request.params.id, request.body.role, request.id),
  );
  app.delete(
    '/api/v1/members/:id',
    {
      config: { scope: API_SCOPES.membersWrite },
      schema: { ...secured, tags: ['members'], params: IdParamsSchema, response: { ...NoContent, ...problems(401, 403, 404, 409) } },
    },
    async (request, reply) => {
      await admin.removeMember(callerOf(request), request.params.id, request.id);
      return reply.code(204).send(null);
    },
  );

  // --- Signing keys (platform) -----------------------------------------------------------
  const keyView = (k: Awaited<ReturnType<SigningKeyStore['list']>>[number]) => ({
    kid: k.kid,
    alg: k.alg,
    status: k.retiredAt === null ? ('active' as const) : ('retired' as const),
    created_at: isoTime(k.createdAt),
    retired_at: k.retiredAt === null ? null : isoTime(k.retiredAt),
    published_until: k.publishedUntil === null ? null : isoTime(k.publishedUntil),
  });
  app.get(
    '/api/v1/keys',
    {
      config: { scope: API_SCOPES.platformAdmin },
      schema: { ...secured, tags: ['keys'], summary: 'Signing keys and their status', response: { 200: Type.Object({ items: Type.Array(SigningKeySchema) }), ...problems(401, 403) } },
    },
    async () => ({ items: (await keys.list()).map(keyView) }),
  );
  app.post(
    '/api/v1/keys/rotate',
    {
      config: { scope: API_SCOPES.platformAdmin },
      schema: {
        ...secured,
        tags: ['keys'],
        summary: 'Makes a new signing key; old keys stay in the JWKS until their tokens expire',
        response: { 200: Type.Object({ items: Type.Array(SigningKeySchema) }), ...problems(401, 403) },
      },
    },
    async (request) => {
      const created = await keys.rotate();
      const caller = callerOf(request);
      audit.record({ action: 'iam.keys.rotated', tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: `key:${created.kid}`, traceId: request.id });
      return { items: (await keys.list()).map(keyView) };
    },
  );
}
