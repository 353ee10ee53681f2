/** The commands that call the admin API with a bearer token: whoami, token, tenants, accounts and their API keys, keys. */
import type { ApiKey, ApiKeyCreated, ServiceAccount, ServiceAccountCreated, SigningKey, Tenant, TenantCreated, WhoAmI } from '@flowgate/contracts';
import { bearerToken, type ClientContext } from './auth.js';
import { printFields, printJson, printTable } from './output.js';

interface Page<T> {
  readonly items: T[];
  readonly next_cursor: string | null;
}

/** `--limit`/`--cursor` ask for one page; without them every page is fetched. */
export interface PageOptions {
  readonly limit?: number;
  readonly cursor?: string;
}

const SECRET_NOTE = 'The client secret is shown once and cannot be read again; store it now.\n';
const API_KEY_NOTE = 'The API key is shown once and cannot be read again; store it now.\n';

/** What `accounts api-keys create` asks for besides the name. */
export interface ApiKeyOptions {
  /** Default: every scope the account holds. */
  readonly scopes?: readonly string[];
  readonly expiresInDays?: number;
}

export async function token(ctx: ClientContext): Promise<void> {
  const accessToken = await bearerToken(ctx);
  if (ctx.options.json) printJson(ctx.io.stdout, { access_token: accessToken, token_type: 'Bearer' });
  else ctx.io.stdout.write(`${accessToken}\n`);
}

export async function whoami(ctx: ClientContext): Promise<void> {
  const me = await ctx.http.request<WhoAmI>('GET', '/api/v1/me', { token: await bearerToken(ctx) });
  if (ctx.options.json) return printJson(ctx.io.stdout, me);
  printFields(ctx.io.stdout, [
    ['name', me.name],
    ['type', me.principal_type.replace('_', ' ')],
    ['tenant', me.tenant],
    ['subject', me.sub],
    ['client', me.client_id ?? '-'],
    ['scopes', me.scopes.join(' ') || '-'],
    ['issuer', me.issuer],
    ['expires', me.expires_at],
  ]);
}

export async function createTenant(ctx: ClientContext, id: string): Promise<void> {
  const created = await ctx.http.request<TenantCreated>('POST', '/api/v1/tenants', { token: await bearerToken(ctx), json: { id } });
  if (ctx.options.json) return printJson(ctx.io.stdout, created);
  const out = ctx.io.stdout;
  out.write(`Created tenant ${created.tenant.id} with its owner service account ${created.owner.name}.\n`);
  printFields(out, [
    ['client_id', created.owner.client_id],
    ['client_secret', created.owner.client_secret],
  ]);
  ctx.io.stderr.write(SECRET_NOTE);
}

export async function listTenants(ctx: ClientContext, paging: PageOptions): Promise<void> {
  const page = await fetchPages<Tenant>(ctx, '/api/v1/tenants', paging);
  if (ctx.options.json) return printJson(ctx.io.stdout, page);
  printTable(ctx.io.stdout, ['ID', 'CREATED'], page.items.map((t) => [t.id, t.created_at]));
  moreNote(ctx, page);
}

export async function createAccount(ctx: ClientContext, name: string, scopes: readonly string[]): Promise<void> {
  const created = await ctx.http.request<ServiceAccountCreated>('POST', '/api/v1/service-accounts', {
    token: await bearerToken(ctx),
    json: { name, scopes },
  });
  if (ctx.options.json) return printJson(ctx.io.stdout, created);
  const out = ctx.io.stdout;
  out.write(`Created service account ${created.name}.\n`);
  printFields(out, [
    ['id', created.id],
    ['client_id', created.client_id],
    ['client_secret', created.client_secret],
    ['scopes', created.scopes.join(' ') || '-'],
  ]);
  ctx.io.stderr.write(SECRET_NOTE);
}

export async function listAccounts(ctx: ClientContext, paging: PageOptions): Promise<void> {
  const page = await fetchPages<ServiceAccount>(ctx, '/api/v1/service-accounts', paging);
  if (ctx.options.json) return printJson(ctx.io.stdout, page);
  printTable(
    ctx.io.stdout,
    ['NAME', 'CLIENT ID', 'ROLE', 'CREATED', 'SCOPES'],
    page.items.map((a) => [a.name, a.client_id, a.role ?? '-', a.created_at, a.scopes.join(' ') || '-']),
  );
  moreNote(ctx, page);
}

export async function createApiKey(ctx: ClientContext, accountId: string, name: string, options: ApiKeyOptions): Promise<void> {
  const created = await ctx.http.request<ApiKeyCreated>('POST', apiKeysPath(accountId), {
    token: await bearerToken(ctx),
    json: { name, ...(options.scopes?.length ? { scopes: options.scopes } : {}), ...(options.expiresInDays ? { expires_in_days: options.expiresInDays } : {}) },
  });
  if (ctx.options.json) return printJson(ctx.io.stdout, created);
  const out = ctx.io.stdout;
  out.write(`Created API key ${created.name} for service account ${created.service_account_id}.\n`);
  printFields(out, [
    ['id', created.id],
    ['key', created.key],
    ['scopes', created.scopes.join(' ') || '-'],
    ['expires', created.expires_at ?? 'never'],
  ]);
  ctx.io.stderr.write(API_KEY_NOTE);
}

export async function listApiKeys(ctx: ClientContext, accountId: string, paging: PageOptions): Promise<void> {
  const page = await fetchPages<ApiKey>(ctx, apiKeysPath(accountId), paging);
  if (ctx.options.json) return printJson(ctx.io.stdout, page);
  const now = ctx.io.now();
  const status = (k: ApiKey) => (k.revoked_at !== null ? 'revoked' : k.expires_at !== null && Date.parse(k.expires_at) <= now ? 'expired' : 'active');
  printTable(
    ctx.io.stdout,
    ['ID', 'NAME', 'LAST4', 'STATUS', 'CREATED', 'EXPIRES', 'SCOPES'],
    page.items.map((k) => [k.id, k.name, k.last4, status(k), k.created_at, k.expires_at ?? 'never', k.scopes.join(' ') || '-']),
  );
  moreNote(ctx, page);
}

export async function revokeApiKey(ctx: ClientContext, accountId: string, keyId: string): Promise<void> {
  await ctx.http.request<undefined>('DELETE', `${apiKeysPath(accountId)}/${encodeURIComponent(keyId)}`, { token: await bearerToken(ctx) });
  if (ctx.options.json) return printJson(ctx.io.stdout, { id: keyId, revoked: true });
  ctx.io.stdout.write(`Revoked API key ${keyId}.\n`);
}

function apiKeysPath(accountId: string): string {
  return `/api/v1/service-accounts/${encodeURIComponent(accountId)}/api-keys`;
}

export async function rotateKeys(ctx: ClientContext): Promise<void> {
  const answer = await ctx.http.request<{ items: SigningKey[] }>('POST', '/api/v1/keys/rotate', { token: await bearerToken(ctx) });
  if (ctx.options.json) return printJson(ctx.io.stdout, answer);
  const active = answer.items.filter((k) => k.status === 'active').sort((a, b) => b.created_at.localeCompare(a.created_at))[0];
  if (active) ctx.io.stdout.write(`Rotated the signing key; new tokens are signed with ${active.kid}.\n`);
  printTable(
    ctx.io.stdout,
    ['KID', 'ALG', 'STATUS', 'CREATED', 'RETIRED', 'PUBLISHED UNTIL'],
    answer.items.map((k) => [k.kid, k.alg, k.status, k.created_at, k.retired_at ?? '-', k.published_until ?? '-']),
  );
}

async function fetchPages<T>(ctx: ClientContext, path: string, paging: PageOptions): Promise<Page<T>> {
  const accessToken = await bearerToken(ctx);
  const get = (limit: number | undefined, cursor: string | undefined) =>
    ctx.http.request<Page<T>>('GET', path, { token: accessToken, query: { limit: limit?.toString(), cursor } });
  if (paging.limit !== undefined || paging.cursor !== undefined) return get(paging.limit, paging.cursor);
  const items: T[] = [];
  let cursor: string | undefined;
  do {
    const page = await get(200, cursor);
    items.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  return { items, next_cursor: null };
}

function moreNote(ctx: ClientContext, page: Page<unknown>): void {
  if (page.next_cursor !== null) ctx.io.stderr.write(`More results: add --cursor ${page.next_cursor}\n`);
}
