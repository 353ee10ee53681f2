/**
 * The secrets API (/api/v1/secrets): what goes in and what comes out. A value goes in
 * and never comes out: every answer carries metadata only.
 */
import Type from 'typebox';

export const SECRET_SCOPES = {
  read: 'secrets:read',
  write: 'secrets:write',
} as const;

export const SECRET_KINDS = ['generic', 'api_key', 'password', 'oauth2', 'certificate'] as const;
export type SecretKind = (typeof SECRET_KINDS)[number];

/** A name a flow can refer to as `{{secrets.<name>}}`. */
export const SECRET_NAME_PATTERN_SOURCE = '^[a-z][a-z0-9_]{0,99}$';

const Timestamp = Type.String({ format: 'date-time' });
const Name = Type.String({ pattern: SECRET_NAME_PATTERN_SOURCE, description: 'Lower-case letters, digits and _, starting with a letter; referred to as {{secrets.<name>}}' });
const Kind = Type.Union([Type.Literal('generic'), Type.Literal('api_key'), Type.Literal('password'), Type.Literal('oauth2'), Type.Literal('certificate')], {
  description: `One of ${SECRET_KINDS.join(', ')}`,
});
const Description = Type.String({ maxLength: 500 });

/** An oauth2 secret: the client's credentials at a third-party token endpoint. */
export const OAuth2SecretValueSchema = Type.Object(
  {
    tokenUrl: Type.String({ format: 'uri', maxLength: 2000 }),
    clientId: Type.String({ minLength: 1, maxLength: 500 }),
    clientSecret: Type.String({ minLength: 1, maxLength: 4000 }),
    refreshToken: Type.Optional(Type.String({ minLength: 1, maxLength: 8000 })),
    scope: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);
export type OAuth2SecretValue = Type.Static<typeof OAuth2SecretValueSchema>;

/** A string for every kind but oauth2, whose value is {@link OAuth2SecretValueSchema}. */
const Value = Type.Union([Type.String({ minLength: 1, maxLength: 65_536 }), OAuth2SecretValueSchema]);

/** Any name in a path: one that cannot exist is simply not found. */
export const SecretParamsSchema = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) });

export const SecretCreateSchema = Type.Object(
  {
    name: Name,
    kind: Type.Optional(Kind),
    value: Value,
    description: Type.Optional(Description),
  },
  { additionalProperties: false },
);
export type SecretCreate = Type.Static<typeof SecretCreateSchema>;

export const SecretUpdateSchema = Type.Object(
  {
    value: Type.Optional(Value),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type SecretUpdate = Type.Static<typeof SecretUpdateSchema>;

export const SecretSchema = Type.Object({
  name: Type.String(),
  kind: Kind,
  description: Type.Union([Type.String(), Type.Null()]),
  version: Type.Integer({ description: 'Counts changes; 1 when created' }),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export type Secret = Type.Static<typeof SecretSchema>;

export const SecretListSchema = Type.Object({ items: Type.Array(SecretSchema) });
