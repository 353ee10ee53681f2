/**
 * The shape of Flowgate's configuration, with its defaults. It is filled from an
 * optional `flowgate.yaml` and then from `FLOWGATE_*` variables (see `env-keys.ts`),
 * and validated once at start.
 */
import Type from 'typebox';

const Seconds = (def: number, description: string) =>
  Type.Integer({ minimum: 1, maximum: 31_536_000, default: def, description });

const TrustedIssuerSchema = Type.Object(
  {
    issuer: Type.String({ minLength: 1, description: 'The `iss` the external provider puts in its tokens' }),
    jwksUri: Type.String({ pattern: '^https?://', description: 'Where its signing keys are published' }),
    audience: Type.Optional(Type.String({ description: 'Required `aud`; when absent any audience is accepted' })),
    algorithms: Type.Array(Type.String(), { default: ['RS256', 'ES256'], minItems: 1 }),
    tenant: Type.Optional(Type.String({ description: 'Fixed tenant for every token of this issuer' })),
    claims: Type.Object(
      {
        tenant: Type.String({ default: 'tenant', description: 'Claim (dotted path) naming the tenant' }),
        subject: Type.String({ default: 'sub' }),
        name: Type.String({ default: 'preferred_username' }),
        scopes: Type.String({ default: 'scope', description: 'Claim holding scopes: a space-separated string or an array' }),
        roles: Type.Optional(Type.String({ description: 'Claim holding roles, e.g. realm_access.roles' })),
      },
      { default: {}, additionalProperties: false },
    ),
    roleScopes: Type.Record(Type.String(), Type.Array(Type.String()), {
      default: {},
      description: 'External role → Flowgate scopes it grants, e.g. akvo_flow_maps_client: [maps:create]',
    }),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ minLength: 1, default: '127.0.0.1' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080 }),
        publicUrl: Type.Optional(
          Type.String({
            pattern: '^https?://[^/?#]+(/[^?#]*[^/?#])?$',
            description: 'The URL clients use to reach this server; the OAuth issuer. Default: http://host:port',
          }),
        ),
        bodyLimitBytes: Type.Integer({ minimum: 1024, default: 1_048_576 }),
        shutdownTimeoutMs: Type.Integer({ minimum: 0, default: 10_000 }),
      },
      { default: {}, additionalProperties: false },
    ),
    dataDir: Type.String({ minLength: 1, default: './data' }),
    database: Type.Object(
      {
        url: Type.Optional(
          Type.String({
            pattern: '^(postgres|postgresql)://|^sqlite:',
            description: 'postgres://… for PostgreSQL; default: SQLite in the data folder',
          }),
        ),
        schema: Type.Optional(Type.String({ pattern: '^[a-z_][a-z0-9_]{0,62}$', description: 'PostgreSQL schema' })),
        poolSize: Type.Integer({ minimum: 1, maximum: 200, default: 10 }),
      },
      { default: {}, additionalProperties: false },
    ),
    log: Type.Object(
      {
        level: Type.Union(
          [
            Type.Literal('fatal'),
            Type.Literal('error'),
            Type.Literal('warn'),
            Type.Literal('info'),
            Type.Literal('debug'),
            Type.Literal('trace'),
            Type.Literal('silent'),
          ],
          { default: 'info' },
        ),
      },
      { default: {}, additionalProperties: false },
    ),
    iam: Type.Object(
      {
        audience: Type.String({ minLength: 1, default: 'flowgate' }),
        accessTokenTtl: Seconds(900, 'Lifetime of access tokens, in seconds'),
        refreshTokenTtl: Seconds(2_592_000, 'Lifetime of a refresh token family, in seconds'),
        authCodeTtl: Seconds(60, 'Lifetime of an authorization code, in seconds'),
        clockTolerance: Type.Integer({ minimum: 0, maximum: 300, default: 5 }),
        maxTokenBytes: Type.Integer({ minimum: 1024, maximum: 65536, default: 8192 }),
        keyCacheSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30 }),
        throttle: Type.Object(
          {
            maxFailures: Type.Integer({ minimum: 1, default: 5 }),
            windowSeconds: Type.Integer({ minimum: 1, default: 900 }),
            lockSeconds: Type.Integer({ minimum: 1, default: 60 }),
          },
          { default: {}, additionalProperties: false },
        ),
        bootstrap: Type.Object(
          {
            clientId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.-]{3,128}$' })),
            clientSecret: Type.Optional(Type.String({ minLength: 16, maxLength: 512 })),
          },
          { default: {}, additionalProperties: false },
        ),
        trustedIssuers: Type.Array(TrustedIssuerSchema, { default: [] }),
      },
      { default: {}, additionalProperties: false },
    ),
    bus: Type.Object(
      {
        url: Type.Optional(
          Type.String({
            pattern: '^nats://',
            description: 'nats://host:port for NATS JetStream (scale-out); default: the embedded log in the state store',
          }),
        ),
        prefix: Type.String({
          pattern: '^[a-z0-9][a-z0-9_-]{0,31}$',
          default: 'fg',
          description: "With NATS: the start of every stream and subject name, so several Flowgate deployments can share one NATS server",
        }),
        publishRate: Type.Integer({ minimum: 0, default: 0, description: 'Events per second a tenant may publish; 0 = no limit' }),
        maxBacklog: Type.Integer({ minimum: 0, default: 0, description: "Unhandled events of a tenant's slowest group before publishing is refused; 0 = no limit" }),
        lagIntervalMs: Type.Integer({ minimum: 100, default: 5000, description: 'How often consumer lag is sampled' }),
        retentionIntervalMs: Type.Integer({ minimum: 1000, default: 60_000, description: 'How often topic retention runs' }),
      },
      { default: {}, additionalProperties: false },
    ),
    audit: Type.Object(
      {
        checkpointEvery: Type.Integer({ minimum: 1, default: 1000, description: 'Sign a checkpoint of a chain after this many records' }),
        checkpointMs: Type.Integer({ minimum: 1000, default: 600_000, description: '…or this long after its last checkpoint, when records came since' }),
        retentionDays: Type.Integer({ minimum: 0, default: 0, description: 'Days audit records are kept (up to a signed checkpoint); 0 = for ever' }),
      },
      { default: {}, additionalProperties: false },
    ),
    outbound: Type.Object(
      {
        allow: Type.String({ default: '', description: 'CIDRs (comma-separated) outbound requests may reach despite being private or loopback, e.g. 10.0.0.0/8' }),
      },
      { default: {}, additionalProperties: false },
    ),
    telemetry: Type.Object(
      {
        otlpEndpoint: Type.Optional(
          Type.String({ pattern: '^https?://', description: 'OpenTelemetry collector (OTLP/HTTP, e.g. http://collector:4318): one span per request is exported there' }),
        ),
        serviceName: Type.String({ minLength: 1, default: 'flowgate', description: 'service.name of exported spans' }),
      },
      { default: {}, additionalProperties: false },
    ),
    gateway: Type.Object(
      {
        reloadMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 1000, description: 'How often each instance checks for a changed gateway configuration' }),
        accessLog: Type.Boolean({ default: true, description: 'One info log line per gateway request' }),
        trustedProxies: Type.String({
          default: '',
          description: 'Addresses and networks (comma-separated CIDRs) of proxies in front of Flowgate: behind them the client address is taken from X-Forwarded-For; default: none',
        }),
        deniedAuditWindowMs: Type.Integer({
          minimum: 0,
          maximum: 3_600_000,
          default: 10_000,
          description: 'Repeated gateway refusals of one caller are audited once, then as one summary per this window; 0 = each refusal',
        }),
      },
      { default: {}, additionalProperties: false },
    ),
    flows: Type.Object(
      {
        lifecycleTimeoutMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 30_000, description: 'A flow still starting or stopping after this long fails, naming the parts that did not answer' }),
        leaseMs: Type.Integer({ minimum: 200, maximum: 3_600_000, default: 30_000, description: "How long a running step is leased: after a crash, its steps run again this long after the last renewal" }),
        maxInFlight: Type.Integer({ minimum: 1, maximum: 10_000, default: 256, description: 'Steps one process runs at once' }),
        pollMs: Type.Integer({ minimum: 10, maximum: 60_000, default: 200, description: 'How often each process looks for due steps that nothing announced (retries, other processes)' }),
        eventSyncMs: Type.Integer({
          minimum: 100,
          maximum: 60_000,
          default: 2000,
          description: "How often each process brings its event trigger subscriptions in line with the active flows (a flow started or stopped on another process)",
        }),
        stepTimeoutMs: Type.Integer({ minimum: 1, maximum: 86_400_000, default: 60_000, description: "Step timeout for nodes and flows that set none" }),
        componentsDir: Type.Optional(Type.String({ minLength: 1, description: 'Folder of custom components (compiled .js/.mjs modules using defineComponent), loaded at start' })),
        retentionDays: Type.Integer({ minimum: 0, maximum: 36_500, default: 30, description: 'Days finished executions (and their steps) are kept; 0 = for ever' }),
        retentionIntervalMs: Type.Integer({ minimum: 1000, default: 60_000, description: 'How often execution retention runs' }),
      },
      { default: {}, additionalProperties: false },
    ),
    redis: Type.Object(
      {
        url: Type.Optional(Type.String({ pattern: '^rediss?://', description: 'redis://host:port: shares gateway rate limits across instances; default: per instance' })),
      },
      { default: {}, additionalProperties: false },
    ),
    secrets: Type.Object(
      {
        masterKey: Type.Optional(
          Type.String({ minLength: 1, description: 'Base64 of 32 random bytes; several separated by commas, the first current. Default: the key file' }),
        ),
        masterKeyFile: Type.Optional(
          Type.String({ minLength: 1, description: 'Master keys, one per line, the first current; created (mode 0600) when missing. Default: <dataDir>/master.key' }),
        ),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

/** Flowgate's validated configuration. */
export type FlowgateConfig = Type.Static<typeof ConfigSchema>;
/** One trusted external token issuer. */
export type TrustedIssuerConfig = FlowgateConfig['iam']['trustedIssuers'][number];
