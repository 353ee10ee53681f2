/** The audit API (/api/v1/audit): reading, exporting and verifying the audit log. */
import Type from 'typebox';

export const AUDIT_SCOPES = {
  read: 'audit:read',
} as const;

const Timestamp = Type.String({ format: 'date-time' });

export const AuditQuerySchema = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Records at or after this time' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Records before this time' })),
    action: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'An action, or a prefix ending in * (iam.*)' })),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'The subject that acted' })),
    outcome: Type.Optional(Type.Union([Type.Literal('success'), Type.Literal('failure')])),
    trace_id: Type.Optional(Type.String({ pattern: '^[0-9a-f]{32}$' })),
    cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$', description: 'next_cursor of the previous page' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 100 })),
    scope: Type.Optional(Type.Literal('platform', { description: "Platform admins: read the platform's own records instead of their tenant's" })),
  },
  { additionalProperties: false },
);
export type AuditQueryParams = Type.Static<typeof AuditQuerySchema>;

export const AuditRecordSchema = Type.Object(
  {
    id: Type.String(),
    seq: Type.Integer(),
    time: Timestamp,
    tenant: Type.Union([Type.String(), Type.Null()]),
    action: Type.String(),
    outcome: Type.String(),
    actor: Type.Union([Type.String(), Type.Null()]),
    target: Type.Optional(Type.String()),
    traceId: Type.Optional(Type.String()),
    details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: true },
);

export const AuditPageSchema = Type.Object({ items: Type.Array(AuditRecordSchema), next_cursor: Type.Union([Type.String(), Type.Null()]) });

export const AuditVerifySchema = Type.Object({
  ok: Type.Boolean(),
  records: Type.Integer({ description: 'Records checked' }),
  checkpoints: Type.Integer({ description: 'Signed checkpoints checked' }),
  verified_to: Type.Union([Type.Object({ seq: Type.Integer(), time: Timestamp }), Type.Null()], { description: 'The newest checkpoint the chain matches' }),
  problem: Type.Optional(
    Type.Object({
      kind: Type.Union([Type.Literal('changed'), Type.Literal('removed'), Type.Literal('inserted'), Type.Literal('checkpoint')]),
      seq: Type.Integer(),
      event_id: Type.Optional(Type.String()),
      detail: Type.String(),
    }),
  ),
});
export type AuditVerify = Type.Static<typeof AuditVerifySchema>;
