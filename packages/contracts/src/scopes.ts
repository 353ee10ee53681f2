/**
 * Flowgate scopes: `resource:action[:key=value]`, e.g. `forms:read`,
 * `flows:run:flow=my_analysis`, `data:read:visit=a1`.
 *
 * Implication (what a held scope allows):
 * - a scope implies itself;
 * - a scope without a qualifier implies every qualified form of it
 *   (`data:read` ⇒ `data:read:visit=a1`), never the other way round;
 * - `*` as the action implies every action of that resource (`flows:*` ⇒ `flows:run`);
 * - `*` as the resource implies every resource of the tenant except the reserved
 *   `platform` resource, which only an explicit `platform:…` scope grants.
 *
 * These are pure functions over strings, shared by the server, the CLI and the web UI.
 */

/** The resource that no wildcard reaches: platform-wide administration. */
export const PLATFORM_RESOURCE = 'platform';

/** Scopes defined by OpenID Connect; they name claims, not Flowgate permissions. */
export const OIDC_SCOPES = ['openid', 'profile', 'offline_access'] as const;

/** A parsed scope. */
export interface Scope {
  readonly resource: string;
  readonly action: string;
  readonly qualifier?: { readonly key: string; readonly value: string };
}

const NAME = '[a-z][a-z0-9_.-]{0,62}';
/** The scope grammar as a regular expression source, for JSON Schema `pattern`s. */
export const SCOPE_PATTERN_SOURCE = `^(\\*|${NAME}):(\\*|${NAME})(:[a-z][a-z0-9_-]{0,62}=[A-Za-z0-9_.~@-]{1,128})?$`;
const SCOPE_PATTERN = new RegExp(
  `^(?<resource>\\*|${NAME}):(?<action>\\*|${NAME})(?::(?<key>[a-z][a-z0-9_-]{0,62})=(?<value>[A-Za-z0-9_.~@-]{1,128}))?$`,
);

/** Parses one scope; `undefined` when it does not follow the grammar. */
export function parseScope(text: string): Scope | undefined {
  const match = SCOPE_PATTERN.exec(text);
  const groups = match?.groups;
  if (!groups) return undefined;
  const { resource, action, key, value } = groups;
  if (resource === undefined || action === undefined) return undefined;
  if (key !== undefined && value !== undefined) return { resource, action, qualifier: { key, value } };
  return { resource, action };
}

/** Whether a string is a well-formed scope. */
export function isScope(text: string): boolean {
  return parseScope(text) !== undefined;
}

/** Whether a string is an OpenID Connect scope (`openid`, `profile`, `offline_access`). */
export function isOidcScope(text: string): boolean {
  return (OIDC_SCOPES as readonly string[]).includes(text);
}

/** Formats a parsed scope back to its string form. */
export function formatScope(scope: Scope): string {
  const base = `${scope.resource}:${scope.action}`;
  return scope.qualifier ? `${base}:${scope.qualifier.key}=${scope.qualifier.value}` : base;
}

/** Whether holding `held` grants `wanted`. Both must be parsed scopes. */
export function scopeImplies(held: Scope, wanted: Scope): boolean {
  if (held.resource === '*') {
    if (wanted.resource === PLATFORM_RESOURCE) return false;
  } else if (held.resource !== wanted.resource) {
    return false;
  }
  if (held.action !== '*' && held.action !== wanted.action) return false;
  if (!held.qualifier) return true;
  return (
    wanted.qualifier !== undefined &&
    wanted.qualifier.key === held.qualifier.key &&
    wanted.qualifier.value === held.qualifier.value
  );
}

/**
 * Whether any of the held scopes grants `wanted`. Malformed strings on either side
 * grant nothing (deny when unsure).
 */
export function scopesGrant(held: readonly string[], wanted: string): boolean {
  const want = parseScope(wanted);
  if (!want) return false;
  for (const h of held) {
    const parsed = parseScope(h);
    if (parsed && scopeImplies(parsed, want)) return true;
  }
  return false;
}

/** The scopes in `wanted` that `held` does not grant. */
export function missingScopes(held: readonly string[], wanted: readonly string[]): string[] {
  return wanted.filter((w) => !scopesGrant(held, w));
}

/** Splits an OAuth `scope` parameter (RFC 6749 §3.3: space-delimited) into its items. */
export function splitScopeParam(param: string | undefined): string[] {
  if (!param) return [];
  return [...new Set(param.split(' ').filter((s) => s.length > 0))];
}

/** Tenant roles, from the most to the least powerful. */
export const ROLES = ['owner', 'admin', 'member', 'viewer'] as const;
/** A tenant role. */
export type Role = (typeof ROLES)[number];

/**
 * The scopes each role grants. Owner and admin both hold every tenant scope; they
 * differ only in member management: nobody may grant a role above their own, so
 * only an owner can make or unmake owners.
 */
export const ROLE_SCOPES: Readonly<Record<Role, readonly string[]>> = {
  owner: ['*:*'],
  admin: ['*:*'],
  member: ['*:read', 'flows:write', 'flows:run', 'events:publish', 'data:write'],
  viewer: ['*:read'],
};

/** Whether a string is a role. */
export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/** The rank of a role: 0 for owner, larger for weaker roles. */
export function roleRank(role: Role): number {
  return ROLES.indexOf(role);
}

/**
 * The scopes the Flowgate admin API itself checks. Gateway routes may require any
 * other scope that follows the grammar (`forms:read`).
 */
export const API_SCOPES = {
  tenantsRead: 'tenants:read',
  usersRead: 'users:read',
  usersWrite: 'users:write',
  membersRead: 'members:read',
  membersWrite: 'members:write',
  accountsRead: 'accounts:read',
  accountsWrite: 'accounts:write',
  tokenExchange: 'tokens:exchange',
  platformAdmin: 'platform:admin',
} as const;
