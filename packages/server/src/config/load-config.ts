/**
 * Loads Flowgate's configuration: defaults, then an optional YAML file, then
 * `FLOWGATE_*` variables, validated once. A bad value stops the start with a
 * {@link ConfigError} naming the key the way the operator wrote it (the variable
 * name, or the file and its dotted path).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Value from 'typebox/value';
import { parse as parseYaml } from 'yaml';
import { FlowgateError } from '../errors/index.js';
import { parseNetwork } from '../kernel/index.js';
import { ConfigSchema, type FlowgateConfig } from './config.schema.js';

type EnvKind = 'string' | 'integer' | 'boolean';

/** Every `FLOWGATE_*` variable the server reads, and where it goes in the config. */
export const ENV_KEYS: Readonly<Record<string, { path: string; kind: EnvKind }>> = {
  FLOWGATE_HOST: { path: 'server.host', kind: 'string' },
  FLOWGATE_PORT: { path: 'server.port', kind: 'integer' },
  FLOWGATE_PUBLIC_URL: { path: 'server.publicUrl', kind: 'string' },
  FLOWGATE_BODY_LIMIT_BYTES: { path: 'server.bodyLimitBytes', kind: 'integer' },
  FLOWGATE_SHUTDOWN_TIMEOUT_MS: { path: 'server.shutdownTimeoutMs', kind: 'integer' },
  FLOWGATE_DATA_DIR: { path: 'dataDir', kind: 'string' },
  FLOWGATE_DATABASE_URL: { path: 'database.url', kind: 'string' },
  FLOWGATE_DATABASE_SCHEMA: { path: 'database.schema', kind: 'string' },
  FLOWGATE_DATABASE_POOL_SIZE: { path: 'database.poolSize', kind: 'integer' },
  FLOWGATE_LOG_LEVEL: { path: 'log.level', kind: 'string' },
  FLOWGATE_TOKEN_AUDIENCE: { path: 'iam.audience', kind: 'string' },
  FLOWGATE_ACCESS_TOKEN_TTL: { path: 'iam.accessTokenTtl', kind: 'integer' },
  FLOWGATE_REFRESH_TOKEN_TTL: { path: 'iam.refreshTokenTtl', kind: 'integer' },
  FLOWGATE_BOOTSTRAP_CLIENT_ID: { path: 'iam.bootstrap.clientId', kind: 'string' },
  FLOWGATE_BOOTSTRAP_CLIENT_SECRET: { path: 'iam.bootstrap.clientSecret', kind: 'string' },
  FLOWGATE_BUS_URL: { path: 'bus.url', kind: 'string' },
  FLOWGATE_BUS_PREFIX: { path: 'bus.prefix', kind: 'string' },
  FLOWGATE_BUS_PUBLISH_RATE: { path: 'bus.publishRate', kind: 'integer' },
  FLOWGATE_BUS_MAX_BACKLOG: { path: 'bus.maxBacklog', kind: 'integer' },
  FLOWGATE_AUDIT_RETENTION_DAYS: { path: 'audit.retentionDays', kind: 'integer' },
  FLOWGATE_OUTBOUND_ALLOW: { path: 'outbound.allow', kind: 'string' },
  FLOWGATE_MASTER_KEY: { path: 'secrets.masterKey', kind: 'string' },
  FLOWGATE_MASTER_KEY_FILE: { path: 'secrets.masterKeyFile', kind: 'string' },
  FLOWGATE_GATEWAY_RELOAD_MS: { path: 'gateway.reloadMs', kind: 'integer' },
  FLOWGATE_GATEWAY_ACCESS_LOG: { path: 'gateway.accessLog', kind: 'boolean' },
  FLOWGATE_GATEWAY_DENIED_AUDIT_WINDOW_MS: { path: 'gateway.deniedAuditWindowMs', kind: 'integer' },
  FLOWGATE_TRUSTED_PROXIES: { path: 'gateway.trustedProxies', kind: 'string' },
  FLOWGATE_REDIS_URL: { path: 'redis.url', kind: 'string' },
  FLOWGATE_FLOWS_LIFECYCLE_TIMEOUT_MS: { path: 'flows.lifecycleTimeoutMs', kind: 'integer' },
  FLOWGATE_FLOWS_LEASE_MS: { path: 'flows.leaseMs', kind: 'integer' },
  FLOWGATE_FLOWS_MAX_IN_FLIGHT: { path: 'flows.maxInFlight', kind: 'integer' },
  FLOWGATE_FLOWS_POLL_MS: { path: 'flows.pollMs', kind: 'integer' },
  FLOWGATE_FLOWS_EVENT_SYNC_MS: { path: 'flows.eventSyncMs', kind: 'integer' },
  FLOWGATE_FLOWS_STEP_TIMEOUT_MS: { path: 'flows.stepTimeoutMs', kind: 'integer' },
  FLOWGATE_FLOWS_RETENTION_DAYS: { path: 'flows.retentionDays', kind: 'integer' },
  FLOWGATE_FLOWS_RETENTION_INTERVAL_MS: { path: 'flows.retentionIntervalMs', kind: 'integer' },
  FLOWGATE_FLOWS_COMPONENTS_DIR: { path: 'flows.componentsDir', kind: 'string' },
  FLOWGATE_OTLP_ENDPOINT: { path: 'telemetry.otlpEndpoint', kind: 'string' },
  FLOWGATE_SERVICE_NAME: { path: 'telemetry.serviceName', kind: 'string' },
};

/** Settings that list addresses and networks (comma-separated), checked entry by entry. */
const ADDRESS_LISTS = ['gateway.trustedProxies'];

/**
 * Variables that belong to the `flowgate` CLI as a client, or name the config file
 * itself: the server neither reads nor refuses them.
 */
const NOT_SERVER_KEYS = new Set([
  'FLOWGATE_CONFIG',
  'FLOWGATE_URL',
  'FLOWGATE_TOKEN',
  'FLOWGATE_CLIENT_ID',
  'FLOWGATE_CLIENT_SECRET',
  'FLOWGATE_CREDENTIALS_FILE',
]);

/** Thrown when the configuration is not valid; its message names every bad key. */
export class ConfigError extends FlowgateError {
  constructor(readonly problems: readonly string[]) {
    super('FLOWGATE_ERR_CONFIG_INVALID', `Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  /** The environment to read; `process.env` is passed by `main.ts` only. */
  env: Readonly<Record<string, string | undefined>>;
  /** Where relative paths (the YAML file, the data folder) are resolved from. */
  cwd: string;
}

/** Reads, merges and validates the configuration. Throws {@link ConfigError}. */
export function loadConfig({ env, cwd }: LoadConfigOptions): FlowgateConfig {
  const problems: string[] = [];
  const labels = new Map<string, string>();

  const explicitFile = env.FLOWGATE_CONFIG;
  const file = resolve(cwd, explicitFile ?? 'flowgate.yaml');
  let raw: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      const parsed: unknown = parseYaml(readFileSync(file, 'utf8'));
      if (parsed !== null && parsed !== undefined) {
        if (typeof parsed !== 'object' || Array.isArray(parsed)) problems.push(`${file}: the top level must be a mapping`);
        else raw = parsed as Record<string, unknown>;
      }
    } catch (err) {
      problems.push(`${file}: not valid YAML (${(err as Error).message.split('\n')[0]})`);
    }
  } else if (explicitFile !== undefined) {
    problems.push(`FLOWGATE_CONFIG: the file ${file} does not exist`);
  }
  const fileLabel = (path: string) => `${file}: ${path}`;

  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('FLOWGATE_') || value === undefined || NOT_SERVER_KEYS.has(name)) continue;
    const key = ENV_KEYS[name];
    if (!key) {
      problems.push(`${name}: unknown setting (known: ${Object.keys(ENV_KEYS).join(', ')})`);
      continue;
    }
    let typed: unknown = value;
    if (key.kind === 'integer') {
      if (!/^-?\d+$/.test(value.trim())) {
        problems.push(`${name}: must be an integer (got ${JSON.stringify(truncate(value))})`);
        continue;
      }
      typed = Number.parseInt(value, 10);
    }
    if (key.kind === 'boolean') {
      const word = value.trim().toLowerCase();
      if (!['true', 'false', '1', '0'].includes(word)) {
        problems.push(`${name}: must be true or false (got ${JSON.stringify(truncate(value))})`);
        continue;
      }
      typed = word === 'true' || word === '1';
    }
    const parent = key.path.split('.').slice(0, -1).join('.');
    const existing = parent ? getPath(raw, parent) : raw;
    if (existing !== undefined && (typeof existing !== 'object' || existing === null || Array.isArray(existing))) {
      // Never let a variable paper over a broken section of the file.
      problems.push(`${fileLabel(parent)}: must be a mapping`);
      continue;
    }
    setPath(raw, key.path, typed);
    labels.set(key.path, name);
  }
  if (problems.length > 0) throw new ConfigError(problems);

  const withDefaults = Value.Default(ConfigSchema, Value.Clone(raw));
  const reported = new Set<string>();
  for (const error of Value.Errors(ConfigSchema, withDefaults)) {
    if (error.keyword === 'boolean') continue; // reported by its `additionalProperties` twin
    const path = pointerToPath(error.instancePath);
    // A union fails once per branch; say it once, listing the allowed values.
    if (reported.has(path)) continue;
    const allowed = allowedValues(path);
    if (allowed) {
      reported.add(path);
      const label = labels.get(path) ?? fileLabel(path);
      problems.push(`${label}: must be one of ${allowed.join(', ')} (got ${JSON.stringify(truncate(getPath(withDefaults, path)))})`);
      continue;
    }
    if (error.keyword !== 'additionalProperties') reported.add(path);
    if (error.keyword === 'additionalProperties') {
      const extra = (error.params).additionalProperties;
      for (const k of extra) problems.push(`${fileLabel(path ? `${path}.${k}` : k)}: unknown setting`);
      continue;
    }
    const label = labels.get(path) ?? fileLabel(path || '(top level)');
    const got = getPath(withDefaults, path);
    const shown = isSecretPath(path) ? '' : ` (got ${JSON.stringify(truncate(got))})`;
    problems.push(`${label}: ${error.message}${shown}`);
  }
  for (const path of ADDRESS_LISTS) {
    const value = getPath(withDefaults, path);
    if (typeof value !== 'string') continue;
    for (const entry of value.split(',').map((s) => s.trim())) {
      if (entry !== '' && !parseNetwork(entry)) {
        problems.push(`${labels.get(path) ?? fileLabel(path)}: ${JSON.stringify(truncate(entry))} is not an IP address or network (CIDR) such as 10.0.0.0/8`);
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const config = withDefaults as FlowgateConfig;
  config.dataDir = resolve(cwd, config.dataDir);
  return config;
}

/** Builds a configuration for tests and embedders: defaults plus the given overrides. */
export function defaultConfig(overrides: DeepPartial<FlowgateConfig> = {}): FlowgateConfig {
  const merged = Value.Default(ConfigSchema, Value.Clone(overrides));
  if (!Value.Check(ConfigSchema, merged)) {
    const first = Value.Errors(ConfigSchema, merged)[0];
    throw new ConfigError([`${pointerToPath(first?.instancePath ?? '')}: ${first?.message ?? 'invalid'}`]);
  }
  return merged;
}

/** A recursive partial, for configuration overrides. */
export type DeepPartial<T> = T extends readonly (infer U)[]
  ? readonly U[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** The literal values a union-of-constants setting accepts, if that is what it is. */
function allowedValues(path: string): string[] | undefined {
  let node: unknown = ConfigSchema;
  for (const part of path.split('.')) {
    const properties = (node as { properties?: Record<string, unknown> }).properties;
    if (!properties?.[part]) return undefined;
    node = properties[part];
  }
  const anyOf = (node as { anyOf?: Array<{ const?: unknown }> }).anyOf;
  if (!anyOf || !anyOf.every((b) => typeof b.const === 'string')) return undefined;
  return anyOf.map((b) => b.const as string);
}

function isSecretPath(path: string): boolean {
  // Database URLs may carry a password; a mistyped one must not print it.
  return /secret|password|key|url/i.test(path);
}

function truncate(value: unknown): unknown {
  return typeof value === 'string' && value.length > 80 ? `${value.slice(0, 80)}…` : value;
}

function pointerToPath(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    .join('.');
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts[parts.length - 1]!] = value;
}

function getPath(source: unknown, path: string): unknown {
  if (!path) return source;
  let node = source;
  for (const part of path.split('.')) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}
