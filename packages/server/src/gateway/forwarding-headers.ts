import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { HOP_BY_HOP } from '../http/index.js';
import type { HeaderMap } from './exchange.js';

/**
 * Headers the gateway replaces, that carry the caller's credentials (the bearer token,
 * Flowgate API keys), or that the HTTP client cannot forward (`expect`: the gateway has
 * answered 100-continue itself).
 */
const NOT_FORWARDED = new Set(['host', 'authorization', 'x-api-key', 'expect', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'traceparent', 'x-request-id']);
/** Both, for one lookup per header on the hot path. */
const NOT_SENT_UPSTREAM = new Set([...HOP_BY_HOP, ...NOT_FORWARDED]);
const NO_TOKENS: readonly string[] = [];

/** Names listed in a Connection header: also connection-specific (RFC 9110 §7.6.1). */
function connectionTokens(value: string | string[] | undefined): readonly string[] {
  if (value === undefined) return NO_TOKENS;
  if (typeof value === 'string' && !value.includes(',')) {
    // One token, nearly always `keep-alive` or `close`: no list to build.
    const token = value.trim().toLowerCase();
    return token === '' || token === 'close' || token === 'keep-alive' ? NO_TOKENS : [token];
  }
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token !== '' && token !== 'close' && token !== 'keep-alive');
}

export interface ForwardedFacts {
  /** The TCP peer: the client, or the last proxy in front of Flowgate. */
  readonly peer: string;
  readonly proto: 'http' | 'https';
  readonly host: string | undefined;
  /**
   * Whether the peer is a trusted proxy (FLOWGATE_TRUSTED_PROXIES): then the protocol and
   * host it says the client used (`X-Forwarded-Proto`, `-Host`) are passed on, not this hop's.
   */
  readonly trustedPeer: boolean;
  readonly traceparent: string;
  readonly requestId: string;
}

/**
 * The headers sent upstream: the caller's, minus hop-by-hop fields, minus its
 * credentials (upstream-auth decides what the upstream receives), plus `Forwarded` /
 * `X-Forwarded-For` (appended to what earlier proxies set), `X-Forwarded-Proto` / `-Host`
 * (a trusted proxy's, else this hop's), `traceparent` for this span and `x-request-id`.
 */
export function upstreamHeaders(incoming: IncomingHttpHeaders, facts: ForwardedFacts): HeaderMap {
  const dropped = connectionTokens(incoming.connection);
  const out: HeaderMap = {};
  for (const name in incoming) {
    // Skipped rather than deleted afterwards: `delete` would turn the object into a slow
    // dictionary, which undici then walks on every request.
    if (NOT_SENT_UPSTREAM.has(name) || (dropped.length > 0 && dropped.includes(name))) continue;
    out[name] = incoming[name];
  }
  const forFor = facts.peer.includes(':') ? `"[${facts.peer}]"` : facts.peer;
  const forwarded = `for=${forFor};proto=${facts.proto}${facts.host ? `;host="${facts.host.replaceAll('"', '')}"` : ''}`;
  out.forwarded = incoming.forwarded ? `${incoming.forwarded}, ${forwarded}` : forwarded;
  const xff = incoming['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${facts.peer}` : facts.peer;
  const proto = facts.trustedPeer ? incoming['x-forwarded-proto'] : undefined;
  out['x-forwarded-proto'] = proto ?? facts.proto;
  const host = facts.trustedPeer ? (incoming['x-forwarded-host'] ?? facts.host) : facts.host;
  if (host !== undefined) out['x-forwarded-host'] = host;
  out.traceparent = facts.traceparent;
  out['x-request-id'] = facts.requestId;
  return out;
}

/**
 * Adds the gateway's own answer headers (`x-request-id`, the trace, a policy's) to the
 * upstream's, replacing same-named ones but `Vary`, which lists what a cache must key on:
 * the upstream's stays, with the gateway's fields added.
 */
export function addGatewayHeaders(headers: OutgoingHttpHeaders, ours: HeaderMap): void {
  const upstreamVary = headers.vary;
  Object.assign(headers, ours);
  if (upstreamVary === undefined || ours.vary === undefined) return;
  const fields = String(upstreamVary).split(',').map((field) => field.trim()).filter((field) => field !== '');
  const known = new Set(fields.map((field) => field.toLowerCase()));
  for (const field of String(ours.vary).split(',').map((f) => f.trim())) if (field !== '' && !known.has(field.toLowerCase()) && !known.has('*')) fields.push(field);
  headers.vary = fields.join(', ');
}

/** The upstream's answer headers minus hop-by-hop fields, ready for the client. */
export function downstreamHeaders(incoming: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const dropped = connectionTokens(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || (dropped.length > 0 && dropped.includes(name))) continue;
    const value = incoming[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/**
 * The same, from the raw header list undici hands its handlers (names and values as
 * bytes, in the order received): what undici's own parsing and then
 * {@link downstreamHeaders} would make, built in one pass.
 */
export function downstreamHeadersFromRaw(raw: ReadonlyArray<Buffer | string>): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  let connection: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const rawName = raw[i]!;
    const name = (typeof rawName === 'string' ? rawName : rawName.toString('latin1')).toLowerCase();
    const rawValue = raw[i + 1]!;
    const value = typeof rawValue === 'string' ? rawValue : rawValue.toString('latin1');
    if (name === 'connection') (connection ??= []).push(value);
    // A header named __proto__ never reached the client before either (the object's setter ate it).
    if (HOP_BY_HOP.has(name) || name === '__proto__') continue;
    let previous = out[name];
    // Names such as `constructor` find Object.prototype's member: not a header seen before.
    if (previous !== undefined && !Object.hasOwn(out, name)) previous = undefined;
    if (previous === undefined) out[name] = value;
    else if (Array.isArray(previous)) previous.push(value);
    else out[name] = [String(previous), value];
  }
  if (connection !== undefined) {
    for (const name of connectionTokens(connection.length === 1 ? connection[0] : connection)) delete out[name];
  }
  return out;
}
