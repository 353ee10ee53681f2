/**
 * JSON Schemas (TypeBox) of the Flowgate admin API's bodies and answers. The server
 * validates with them and publishes them in its OpenAPI document; the CLI and the web UI
 * use the same types.
 */
import Type from 'typebox';
import { ROLES, SCOPE_PATTERN_SOURCE } from './scopes.js';

/** RFC 9457 problem details, with Flowgate's `code` and `traceId` extension members. */
export const ProblemSchema = Type.Object(
  {
    type: Type.String({ description: 'Stable URN naming the error, e.g. urn:flowgate:error:auth-token-invalid' }),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    instance: Type.Optional(Type.String()),
    code: Type.String({ description: 'Stable catalogue code, e.g. FLOWGATE_ERR_AUTH_TOKEN_INVALID' }),
    traceId: Type.String({ description: 'W3C trace id of the request' }),
    errors: Type.Optional(
      Type.Array(Type.Object({ path: Type.String(), message: Type.String() }), {
        description: 'Validation failures, one per offending field',
      }),
    ),
    error: Type.Optional(Type.String({ description: 'OAuth 2 error code (RFC 6749 §5.2), on OAuth endpoints' })),
    error_description: Type.Optional(Type.String()),
  },
  { $id: 'Problem', additionalProperties: true },
);
/** A problem document. */
export type Problem = Type.Static<typeof ProblemSchema>;

/** Tenant ids are slugs: they appear in tokens, topics and URLs. */
export const TENANT_ID_PATTERN = '^[a-z0-9][a-z0-9-]{1,62}$';

export const ScopeString = Type.String({ pattern: SCOPE_PATTERN_SOURCE, maxLength: 256 });
export const RoleSchema = Type.Union([Type.Literal('owner'), Type.Literal('admin'), Type.Literal('member'), Type.Literal('viewer')], {
  description: `One of ${ROLES.join(', ')}`,
});
const Timestamp = Type.String({ format: 'date-time' });
const Id = Type.String({ minLength: 1, maxLength: 64 });

export const PageQuerySchema = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 128 })),
  },
  { additionalProperties: false },
);
export type PageQuery = Type.Static<typeof PageQuerySchema>;

export const IdParamsSchema = Type.Object({ id: Id });

/** A page of items and the cursor of the next page (`null` on the last page). */
export function PageSchema<T extends Type.TSchema>(item: T) {
  return Type.Object({ items: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });
}

// --- Tenants --------------------------------------------------------------------------
export const TenantSchema = Type.Object({ id: Type.String(), created_at: Timestamp }, { $id: 'Tenant' });
export type Tenant = Type.Static<typeof TenantSchema>;

export const TenantCreateSchema = Type.Object(
  { id: Type.String({ pattern: TENANT_ID_PATTERN, description: 'Slug, e.g. acme' }) },
  { additionalProperties: false },
);
export type TenantCreate = Type.Static<typeof TenantCreateSchema>;

// --- Service accounts -------------------------------------------------------------------
export const ServiceAccountCreateSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    scopes: Type.Array(ScopeString, { maxItems: 100, uniqueItems: true }),
  },
  { additionalProperties: false },
);
export type ServiceAccountCreate = Type.Static<typeof ServiceAccountCreateSchema>;

export const ServiceAccountSchema = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    client_id: Type.String(),
    scopes: Type.Array(Type.String()),
    role: Type.Union([RoleSchema, Type.Null()]),
    created_at: Timestamp,
  },
  { $id: 'ServiceAccount' },
);
export type ServiceAccount = Type.Static<typeof ServiceAccountSchema>;

export const ServiceAccountCreatedSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  client_id: Type.String(),
  client_secret: Type.String({ description: 'Shown once, in this answer only' }),
  scopes: Type.Array(Type.String()),
  role: Type.Union([RoleSchema, Type.Null()]),
  created_at: Timestamp,
});
export type ServiceAccountCreated = Type.Static<typeof ServiceAccountCreatedSchema>;

export const TenantCreatedSchema = Type.Object({
  tenant: TenantSchema,
  owner: ServiceAccountCreatedSchema,
});
export type TenantCreated = Type.Static<typeof TenantCreatedSchema>;

// --- API keys of service accounts ---------------------------------------------------------
/** The longest lifetime an API key may be given, in days (ten years). */
export const API_KEY_MAX_DAYS = 3650;

export const ApiKeyParamsSchema = Type.Object({ id: Id, keyId: Id });

export const ApiKeyCreateSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    scopes: Type.Optional(
      Type.Array(ScopeString, { maxItems: 100, uniqueItems: true, description: "A subset of the account's scopes. Default: every scope the account holds" }),
    ),
    expires_in_days: Type.Optional(Type.Integer({ minimum: 1, maximum: API_KEY_MAX_DAYS, description: 'Default: the key does not expire' })),
  },
  { additionalProperties: false },
);
export type ApiKeyCreate = Type.Static<typeof ApiKeyCreateSchema>;

const apiKeyFields = {
  id: Type.String(),
  service_account_id: Type.String(),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  last4: Type.String({ description: 'The last four characters of the key, to tell keys apart' }),
  created_at: Timestamp,
  expires_at: Type.Union([Timestamp, Type.Null()]),
  revoked_at: Type.Union([Timestamp, Type.Null()]),
};

/** An API key's metadata; the key itself is never shown again after creation. */
export const ApiKeySchema = Type.Object(apiKeyFields, { $id: 'ApiKey' });
export type ApiKey = Type.Static<typeof ApiKeySchema>;

export const ApiKeyCreatedSchema = Type.Object({
  ...apiKeyFields,
  key: Type.String({ description: 'fgk_<id>_<secret>: shown once, in this answer only' }),
});
export type ApiKeyCreated = Type.Static<typeof ApiKeyCreatedSchema>;

// --- Users and members -----------------------------------------------------------------------
export const USERNAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$';

export const UserCreateSchema = Type.Object(
  {
    username: Type.String({ pattern: USERNAME_PATTERN }),
    password: Type.String({ minLength: 12, maxLength: 1024 }),
    role: RoleSchema,
    display_name: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
export type UserCreate = Type.Static<typeof UserCreateSchema>;

export const UserUpdateSchema = Type.Object(
  {
    display_name: Type.Optional(Type.String({ maxLength: 200 })),
    password: Type.Optional(Type.String({ minLength: 12, maxLength: 1024 })),
    disabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UserUpdate = Type.Static<typeof UserUpdateSchema>;

export const UserSchema = Type.Object(
  {
    id: Type.String(),
    username: Type.String(),
    display_name: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([RoleSchema, Type.Null()]),
    disabled: Type.Boolean(),
    created_at: Timestamp,
  },
  { $id: 'User' },
);
export type User = Type.Static<typeof UserSchema>;

export const MemberSchema = Type.Object(
  {
    principal_id: Type.String(),
    principal_type: Type.Union([Type.Literal('user'), Type.Literal('service_account')]),
    name: Type.String(),
    role: RoleSchema,
    created_at: Timestamp,
  },
  { $id: 'Member' },
);
export type Member = Type.Static<typeof MemberSchema>;

export const MemberUpdateSchema = Type.Object({ role: RoleSchema }, { additionalProperties: false });
export type MemberUpdate = Type.Static<typeof MemberUpdateSchema>;

// --- Who am I, keys -------------------------------------------------------------------------
export const WhoAmISchema = Type.Object({
  sub: Type.String(),
  tenant: Type.String(),
  principal_type: Type.Union([Type.Literal('user'), Type.Literal('service_account'), Type.Literal('external')]),
  name: Type.String(),
  scopes: Type.Array(Type.String()),
  client_id: Type.Union([Type.String(), Type.Null()]),
  act: Type.Optional(Type.Unknown()),
  issuer: Type.String(),
  expires_at: Timestamp,
});
export type WhoAmI = Type.Static<typeof WhoAmISchema>;

export const SigningKeySchema = Type.Object({
  kid: Type.String(),
  alg: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('retired')]),
  created_at: Timestamp,
  retired_at: Type.Union([Timestamp, Type.Null()]),
  published_until: Type.Union([Timestamp, Type.Null()]),
});
export type SigningKey = Type.Static<typeof SigningKeySchema>;
