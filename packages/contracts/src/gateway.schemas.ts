/**
 * The API gateway's configuration: services (upstreams), routes (what the gateway
 * serves and where it sends it) and the policies attached to either. The same document
 * is a `flowgate apply -f gateway.yaml` file and the body of `PUT /api/v1/gateway/config`.
 *
 * These schemas check shape only; the server also checks meaning (a route's service
 * exists, scope templates name path parameters, reserved paths...) when it is applied.
 */
import Type from 'typebox';

/** Paths Flowgate serves itself: no gateway route may start with one. */
export const GATEWAY_RESERVED_PREFIXES = ['/api', '/oauth', '/.well-known', '/hook', '/maps', '/health', '/metrics', '/docs', '/ui'] as const;

/** Whether a request path or a route path falls under one of {@link GATEWAY_RESERVED_PREFIXES}. */
export function reservedPrefixOf(path: string): string | undefined {
  const lower = path.toLowerCase();
  return GATEWAY_RESERVED_PREFIXES.find((prefix) => lower === prefix || lower.startsWith(`${prefix}/`));
}

export const GATEWAY_NAME_PATTERN_SOURCE = '^[a-z][a-z0-9_-]{0,62}$';
export const GATEWAY_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export type GatewayMethod = (typeof GATEWAY_METHODS)[number];

const Name = Type.String({ pattern: GATEWAY_NAME_PATTERN_SOURCE, description: 'Lower-case letters, digits, - and _, starting with a letter' });
const HeaderName = Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$" });
const HeaderValue = Type.String({ maxLength: 4000, pattern: '^[^\\r\\n\\u0000]*$' });
const Cidr = Type.String({ minLength: 2, maxLength: 50, description: 'An address or network: 10.0.0.0/8, 192.0.2.7, 2001:db8::/32' });
const Method = Type.Union(GATEWAY_METHODS.map((m) => Type.Literal(m)));

// --- Policies ------------------------------------------------------------------------

export const AuthPolicySchema = Type.Union([
  Type.Object({ type: Type.Literal('none') }, { additionalProperties: false }),
  Type.Object(
    {
      type: Type.Literal('jwt'),
      issuers: Type.Optional(
        Type.Array(Type.String({ minLength: 1, maxLength: 500 }), {
          minItems: 1,
          description: "Issuers whose tokens this route accepts: 'flowgate' (this server) and/or trusted external issuers from the server config. Default: all of them.",
        }),
      ),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('api-key'),
      header: Type.Optional(HeaderName),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      type: Type.Literal('jwt-or-api-key'),
      issuers: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 500 }), { minItems: 1 })),
      header: Type.Optional(HeaderName),
    },
    { additionalProperties: false },
  ),
]);
export type AuthPolicy = Type.Static<typeof AuthPolicySchema>;

export const ScopesPolicySchema = Type.Object(
  {
    required: Type.Array(Type.String({ minLength: 3, maxLength: 300 }), {
      minItems: 1,
      description: 'Scopes the caller must hold, all of them; `{param}` takes the value of a path parameter: data:read:visit={visit}',
    }),
  },
  { additionalProperties: false },
);
export type ScopesPolicy = Type.Static<typeof ScopesPolicySchema>;

export const RateLimitPolicySchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Requests allowed per window' }),
    windowSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, description: 'Default 60' })),
    burst: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: 'Bucket size; default: limit' })),
    by: Type.Optional(Type.Union([Type.Literal('consumer'), Type.Literal('ip')], { description: 'consumer (the authenticated subject, else the IP; default) or ip' })),
  },
  { additionalProperties: false },
);
export type RateLimitPolicy = Type.Static<typeof RateLimitPolicySchema>;

export const UpstreamAuthPolicySchema = Type.Union([
  Type.Object({ mode: Type.Literal('none') }, { additionalProperties: false }),
  Type.Object({ mode: Type.Literal('forward') }, { additionalProperties: false, description: "Forwards the caller's own Authorization header: an explicit choice" }),
  Type.Object(
    {
      mode: Type.Literal('mint-jwt'),
      audience: Type.String({ minLength: 1, maxLength: 500 }),
      ttlSeconds: Type.Optional(Type.Integer({ minimum: 30, maximum: 3600, description: 'Default 300' })),
    },
    { additionalProperties: false, description: "A short-lived JWT for the upstream's audience with the caller's subject, tenant and scopes" },
  ),
  Type.Object(
    {
      mode: Type.Literal('secret-header'),
      header: HeaderName,
      secret: Type.String({ pattern: '^[a-z][a-z0-9_]{0,99}$', description: 'Name of a secret in the secrets store' }),
      tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: "Whose secret; default: the caller's tenant" })),
      shared: Type.Optional(
        Type.Boolean({ description: "With tenant: send that tenant's secret for callers of every tenant (a platform-wide credential). Default: only for callers of that tenant" }),
      ),
      prefix: Type.Optional(Type.String({ maxLength: 50, pattern: '^[^\\r\\n\\u0000]*$', description: 'Put before the value, e.g. "Bearer "' })),
    },
    { additionalProperties: false },
  ),
]);
export type UpstreamAuthPolicy = Type.Static<typeof UpstreamAuthPolicySchema>;

export const CorsPolicySchema = Type.Object(
  {
    origins: Type.Array(Type.String({ minLength: 1, maxLength: 500 }), { minItems: 1, description: "Allowed origins (https://app.example.com) or '*'" }),
    methods: Type.Optional(Type.Array(Method, { minItems: 1 })),
    headers: Type.Optional(Type.Array(HeaderName)),
    exposeHeaders: Type.Optional(Type.Array(HeaderName)),
    credentials: Type.Optional(Type.Boolean()),
    maxAgeSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400 })),
  },
  { additionalProperties: false },
);
export type CorsPolicy = Type.Static<typeof CorsPolicySchema>;

export const RequestSizeLimitPolicySchema = Type.Object(
  { maxBytes: Type.Integer({ minimum: 0, maximum: 1024 * 1024 * 1024 * 1024 }) },
  { additionalProperties: false },
);
export type RequestSizeLimitPolicy = Type.Static<typeof RequestSizeLimitPolicySchema>;

export const HeadersPolicySchema = Type.Object(
  {
    set: Type.Optional(Type.Record(HeaderName, HeaderValue)),
    remove: Type.Optional(Type.Array(HeaderName)),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type HeadersPolicy = Type.Static<typeof HeadersPolicySchema>;

export const IpListPolicySchema = Type.Object({ cidrs: Type.Array(Cidr, { minItems: 1 }) }, { additionalProperties: false });
export type IpListPolicy = Type.Static<typeof IpListPolicySchema>;

export const PoliciesSchema = Type.Object(
  {
    auth: Type.Optional(AuthPolicySchema),
    scopes: Type.Optional(ScopesPolicySchema),
    'rate-limit': Type.Optional(RateLimitPolicySchema),
    'upstream-auth': Type.Optional(UpstreamAuthPolicySchema),
    cors: Type.Optional(CorsPolicySchema),
    'request-size-limit': Type.Optional(RequestSizeLimitPolicySchema),
    'request-headers': Type.Optional(HeadersPolicySchema),
    'response-headers': Type.Optional(HeadersPolicySchema),
    'ip-allow': Type.Optional(IpListPolicySchema),
    'ip-deny': Type.Optional(IpListPolicySchema),
  },
  { additionalProperties: false, description: "Policies by name; a route's policy replaces its service's policy of the same name" },
);
export type Policies = Type.Static<typeof PoliciesSchema>;
export type PolicyName = keyof Policies;

// --- Services and routes -------------------------------------------------------------

export const HealthCheckSchema = Type.Object(
  {
    path: Type.String({ pattern: '^/', maxLength: 500 }),
    intervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000, description: 'Default 5000' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000, description: 'Default 2000' })),
    healthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'Default 2' })),
    unhealthyThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, description: 'Default 2' })),
  },
  { additionalProperties: false },
);
export type HealthCheck = Type.Static<typeof HealthCheckSchema>;

export const GatewayServiceSchema = Type.Object(
  {
    name: Name,
    targets: Type.Array(Type.String({ minLength: 8, maxLength: 2000, description: 'http(s) URL; its path is put before the forwarded path' }), {
      minItems: 1,
      maxItems: 100,
    }),
    connectTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000, description: 'Default 5000' })),
    readTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000, description: 'Time to the first byte of the answer (default 60000)' })),
    retries: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 10, description: 'Tries on another target when a connection fails, for idempotent requests without a body (default 1)' }),
    ),
    healthCheck: Type.Optional(HealthCheckSchema),
    policies: Type.Optional(PoliciesSchema),
  },
  { additionalProperties: false },
);
export type GatewayService = Type.Static<typeof GatewayServiceSchema>;

export const GatewayRouteSchema = Type.Object(
  {
    name: Name,
    service: Name,
    paths: Type.Array(Type.String({ pattern: '^/', maxLength: 500, description: 'A path; `:name` is a parameter, a final `*` matches the rest' }), {
      minItems: 1,
      maxItems: 50,
    }),
    methods: Type.Optional(Type.Array(Method, { minItems: 1, description: 'Default: every method' })),
    hosts: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253, pattern: '^[A-Za-z0-9.*-]+$', description: 'A host name, or *.example.com; the port is not compared' }), { minItems: 1 })),
    stripPrefix: Type.Optional(
      Type.Union([Type.Boolean(), Type.String({ pattern: '^/', maxLength: 500 })], {
        description: 'Removes the given prefix (or, with true, the part of the path before the first parameter) before forwarding',
      }),
    ),
    allowInPaths: Type.Optional(
      Type.Array(Type.Union([Type.Literal('encoded-slashes'), Type.Literal('empty-segments'), Type.Literal('parameters')]), {
        uniqueItems: true,
        description:
          "Path spellings refused by default (400) because an upstream could read them as another route's path, allowed on this route: `%2F`, `%5C` and `\\` (APIs such as GitLab's and RabbitMQ's put encoded slashes in names), `//`, and `;parameters`. `.` and `..` segments are always refused.",
      }),
    ),
    policies: Type.Optional(PoliciesSchema),
  },
  { additionalProperties: false },
);
export type GatewayRoute = Type.Static<typeof GatewayRouteSchema>;

export const GatewayConfigSchema = Type.Object(
  {
    services: Type.Array(GatewayServiceSchema, { default: [] }),
    routes: Type.Array(GatewayRouteSchema, { default: [] }),
  },
  { additionalProperties: false },
);
export type GatewayConfig = Type.Static<typeof GatewayConfigSchema>;

export const GatewayChangeSchema = Type.Object({
  kind: Type.Union([Type.Literal('service'), Type.Literal('route')]),
  name: Type.String(),
  op: Type.Union([Type.Literal('create'), Type.Literal('update'), Type.Literal('delete')]),
});
export type GatewayChange = Type.Static<typeof GatewayChangeSchema>;

export const GatewayConfigStateSchema = Type.Object({
  revision: Type.Integer({ description: 'Counts applied changes' }),
  services: Type.Array(GatewayServiceSchema),
  routes: Type.Array(GatewayRouteSchema),
});
export type GatewayConfigState = Type.Static<typeof GatewayConfigStateSchema>;

export const GatewayApplyResultSchema = Type.Object({
  revision: Type.Integer({ description: 'The revision now served (unchanged by a dry run or when nothing changed)' }),
  dryRun: Type.Boolean(),
  changes: Type.Array(GatewayChangeSchema),
});
export type GatewayApplyResult = Type.Static<typeof GatewayApplyResultSchema>;

export const GatewayApplyQuerySchema = Type.Object({ dryRun: Type.Optional(Type.Boolean({ default: false })) }, { additionalProperties: false });
export const GatewayNameParamsSchema = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) });
export const GatewayServiceListSchema = Type.Object({ items: Type.Array(GatewayServiceSchema) });
export const GatewayRouteListSchema = Type.Object({ items: Type.Array(GatewayRouteSchema) });
