import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { HeaderMap } from './exchange.js';

/** RFC 9110 §7.6.1 connection-specific fields, plus the obsolete ones proxies still see. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate', 'proxy-authorization']);

export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}

/**
 * Headers the gateway replaces, that carry the caller's credentials (the bearer token,
 * Flowgate API keys), or that the HTTP client cannot forward (`expect`: the gateway has
 * answered 100-continue itself).
 */
const NOT_FORWARDED = new Set(['host', 'authorization', 'x-api-key', 'expect', 'forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'traceparent', 'x-request-id']);

/** Names listed in a Connection header: also connection-specific (RFC 9110 §7.6.1). */
function connectionTokens(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value.join(',') : value)
    .split(',')
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token !== '' && token !== 'close' && token !== 'keep-alive');
}

export interface ForwardedFacts {
  readonly clientIp: string;
  readonly proto: 'http' | 'https';
  readonly host: string | undefined;
  readonly traceparent: string;
  readonly requestId: string;
}

/**
 * The headers sent upstream: the caller's, minus hop-by-hop fields, minus its
 * credentials (upstream-auth decides what the upstream receives), plus `Forwarded` /
 * `X-Forwarded-*` (appended to what earlier proxies set), `traceparent` for this span and
 * `x-request-id`.
 */
export function upstreamHeaders(incoming: IncomingHttpHeaders, facts: ForwardedFacts): HeaderMap {
  const dropped = connectionTokens(incoming.connection);
  const out: HeaderMap = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name) || NOT_FORWARDED.has(name)) continue;
    out[name] = incoming[name];
  }
  for (const name of dropped) delete out[name];
  const forFor = facts.clientIp.includes(':') ? `"[${facts.clientIp}]"` : facts.clientIp;
  const forwarded = `for=${forFor};proto=${facts.proto}${facts.host ? `;host="${facts.host.replaceAll('"', '')}"` : ''}`;
  out.forwarded = incoming.forwarded ? `${incoming.forwarded}, ${forwarded}` : forwarded;
  const xff = incoming['x-forwarded-for'];
  out['x-forwarded-for'] = xff ? `${Array.isArray(xff) ? xff.join(', ') : xff}, ${facts.clientIp}` : facts.clientIp;
  out['x-forwarded-proto'] = facts.proto;
  if (facts.host !== undefined) out['x-forwarded-host'] = facts.host;
  out.traceparent = facts.traceparent;
  out['x-request-id'] = facts.requestId;
  return out;
}

/** The upstream's answer headers minus hop-by-hop fields, ready for the client. */
export function downstreamHeaders(incoming: Record<string, string | string[] | undefined>): OutgoingHttpHeaders {
  const dropped = connectionTokens(incoming.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in incoming) {
    if (HOP_BY_HOP.has(name)) continue;
    const value = incoming[name];
    if (value !== undefined) out[name] = value;
  }
  for (const name of dropped) delete out[name];
  return out;
}
