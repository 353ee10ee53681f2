/**
 * Finding a bearer token for a client command, in this order: `--token` or
 * `FLOWGATE_TOKEN`; client credentials (`--client-id`/`--client-secret` or
 * `FLOWGATE_CLIENT_ID`/`FLOWGATE_CLIENT_SECRET`); the sign-in saved by `flowgate login`,
 * refreshed when its access token has expired or is about to.
 */
import { CredentialStore, credentialsPath, type StoredCredentials } from './credentials.js';
import { FlowgateHttp, HttpError, normaliseUrl } from './http.js';
import { CliError, type CliIo } from './io.js';

export const CLI_CLIENT_ID = 'flowgate-cli';
export const DEFAULT_URL = 'http://127.0.0.1:8080';
/** An access token this close to its expiry is refreshed before use. */
const EXPIRY_MARGIN_S = 30;

/** Options every client command accepts. */
export interface ClientOptions {
  readonly url?: string;
  readonly token?: string;
  readonly clientId?: string;
  readonly clientSecret?: string;
  readonly json?: boolean;
}

/** Everything a client command needs to talk to one server. */
export interface ClientContext {
  readonly io: CliIo;
  readonly options: ClientOptions;
  readonly baseUrl: string;
  readonly http: FlowgateHttp;
  readonly store: CredentialStore;
}

/** The OAuth token endpoint's answer. */
export interface TokenAnswer {
  readonly access_token: string;
  readonly token_type: string;
  readonly expires_in: number;
  readonly scope?: string;
  readonly refresh_token?: string;
  readonly id_token?: string;
}

export function clientContext(io: CliIo, options: ClientOptions): ClientContext {
  const baseUrl = normaliseUrl(options.url ?? (io.env.FLOWGATE_URL || DEFAULT_URL));
  return { io, options, baseUrl, http: new FlowgateHttp(baseUrl), store: new CredentialStore(credentialsPath(io.env)) };
}

/** Client credentials from the flags or the environment; undefined when neither is set. */
export function clientCredentials(ctx: Pick<ClientContext, 'io' | 'options'>): { id: string; secret: string } | undefined {
  const id = ctx.options.clientId ?? (ctx.io.env.FLOWGATE_CLIENT_ID || undefined);
  const secret = ctx.options.clientSecret ?? (ctx.io.env.FLOWGATE_CLIENT_SECRET || undefined);
  if (id === undefined && secret === undefined) return undefined;
  if (id === undefined || secret === undefined) {
    throw new CliError('give both a client id and a client secret (--client-id/--client-secret or FLOWGATE_CLIENT_ID/FLOWGATE_CLIENT_SECRET)', 2);
  }
  return { id, secret };
}

/** The client_credentials grant. */
export function clientCredentialsGrant(http: FlowgateHttp, id: string, secret: string): Promise<TokenAnswer> {
  return http.request<TokenAnswer>('POST', '/oauth/token', { form: { grant_type: 'client_credentials' }, basic: [id, secret] });
}

/** What to save for a token answer. */
export function entryFor(kind: StoredCredentials['kind'], answer: TokenAnswer, nowMs: number, extra: Partial<StoredCredentials> = {}): StoredCredentials {
  return {
    kind,
    access_token: answer.access_token,
    ...(answer.refresh_token !== undefined ? { refresh_token: answer.refresh_token } : {}),
    expires_at: Math.floor(nowMs / 1000) + answer.expires_in,
    ...extra,
  };
}

/** A valid access token for the context's server, or a {@link CliError} saying how to get one. */
export async function bearerToken(ctx: ClientContext): Promise<string> {
  const explicit = ctx.options.token ?? (ctx.io.env.FLOWGATE_TOKEN || undefined);
  if (explicit !== undefined) return explicit;
  const client = clientCredentials(ctx);
  if (client) return (await clientCredentialsGrant(ctx.http, client.id, client.secret)).access_token;

  const saved = ctx.store.get(ctx.baseUrl);
  if (!saved) throw notSignedIn(ctx);
  if (fresh(saved, ctx.io.now())) return saved.access_token;
  return ctx.store.withLock(async () => {
    // Another process may have refreshed it while this one waited for the lock.
    const current = ctx.store.get(ctx.baseUrl);
    if (!current) throw notSignedIn(ctx);
    if (fresh(current, ctx.io.now())) return current.access_token;
    const renewed = await renew(ctx, current);
    ctx.store.set(ctx.baseUrl, renewed);
    return renewed.access_token;
  });
}

function fresh(entry: StoredCredentials, nowMs: number): boolean {
  return entry.expires_at - EXPIRY_MARGIN_S > nowMs / 1000;
}

async function renew(ctx: ClientContext, entry: StoredCredentials): Promise<StoredCredentials> {
  if (entry.kind === 'client') {
    if (!entry.client_id || !entry.client_secret) throw expired(ctx);
    const answer = await clientCredentialsGrant(ctx.http, entry.client_id, entry.client_secret);
    return entryFor('client', answer, ctx.io.now(), { client_id: entry.client_id, client_secret: entry.client_secret });
  }
  if (!entry.refresh_token) throw expired(ctx);
  let answer: TokenAnswer;
  try {
    answer = await ctx.http.request<TokenAnswer>('POST', '/oauth/token', {
      form: { grant_type: 'refresh_token', refresh_token: entry.refresh_token, client_id: CLI_CLIENT_ID },
    });
  } catch (err) {
    if (err instanceof HttpError && (err.status === 400 || err.status === 401)) throw expired(ctx, err.message);
    throw err;
  }
  // The server rotates the refresh token at each use; keep the old one only if it sent none.
  return entryFor('user', answer, ctx.io.now(), answer.refresh_token === undefined ? { refresh_token: entry.refresh_token } : {});
}

function notSignedIn(ctx: ClientContext): CliError {
  return new CliError(
    `not signed in to ${ctx.baseUrl}; run "flowgate login --url ${ctx.baseUrl}", or set FLOWGATE_TOKEN or FLOWGATE_CLIENT_ID and FLOWGATE_CLIENT_SECRET`,
  );
}

function expired(ctx: ClientContext, detail?: string): CliError {
  return new CliError(`your sign-in at ${ctx.baseUrl} has expired or was revoked${detail ? ` (${detail})` : ''}; run "flowgate login --url ${ctx.baseUrl}" again`);
}
