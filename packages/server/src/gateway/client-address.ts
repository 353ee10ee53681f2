import { isIP, type BlockList } from 'node:net';
import { FlowgateError } from '../errors/index.js';
import { listsAddress } from '../kernel/index.js';
import { ipList, PolicyOptionError } from './policies/index.js';

/**
 * Finds the client's address from the TCP peer's and the `X-Forwarded-For` it sent; and
 * says whether a peer is a trusted proxy, whose `X-Forwarded-Proto` and `-Host` hold.
 */
export type ClientAddress = ((peer: string, forwardedFor: string | string[] | undefined) => string) & {
  readonly trusts: (peer: string) => boolean;
  /** The same for a peer already known to be trusted: the list is not looked up again. */
  readonly behindTrusted: (peer: string, forwardedFor: string | string[] | undefined) => string;
};

/**
 * The client address behind the proxies listed in FLOWGATE_TRUSTED_PROXIES
 * (comma-separated addresses and networks), or `undefined` when none is listed: then the
 * client is the TCP peer and nothing is computed per request. Throws
 * `FLOWGATE_ERR_CONFIG_INVALID` naming the variable for an entry that is neither.
 *
 * Written here rather than taken from proxy-addr (what Fastify's `trustProxy` uses; the
 * gateway serves requests before Fastify sees them): Node's BlockList is the matcher the
 * ip-allow and ip-deny policies already use, and the walk below allocates nothing for a
 * peer that is not trusted.
 */
export function clientAddressBehind(trustedProxies: string): ClientAddress | undefined {
  const entries = trustedProxies
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length === 0) return undefined;
  let trusted: BlockList;
  try {
    trusted = ipList(entries);
  } catch (err) {
    if (!(err instanceof PolicyOptionError)) throw err;
    throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `FLOWGATE_TRUSTED_PROXIES (gateway.trustedProxies): ${err.message}`);
  }
  return Object.assign((peer: string, forwardedFor: string | string[] | undefined) => (listsAddress(trusted, peer) ? clientAddress(trusted, peer, forwardedFor) : peer), {
    trusts: (peer: string) => listsAddress(trusted, peer),
    behindTrusted: (peer: string, forwardedFor: string | string[] | undefined) => clientAddress(trusted, peer, forwardedFor),
  });
}

/**
 * The usual algorithm (as nginx's `real_ip_recursive`, Express's `trust proxy`): each
 * proxy appends the address it received the request from, so the list is walked from the
 * right, past addresses that are themselves trusted proxies; the first untrusted one is
 * the client. Entries left of it were written by the client and are never believed. When
 * every entry is trusted the leftmost is the client. An entry that is not an address ends
 * the walk at the last address a trusted proxy vouched for: a trusted proxy wrote it, and
 * no address can be read from it. `peer` is a trusted proxy (the callers check).
 */
function clientAddress(trusted: BlockList, peer: string, forwardedFor: string | string[] | undefined): string {
  if (forwardedFor === undefined) return peer;
  // Node joins repeated X-Forwarded-For fields with ', '; an array comes only from a caller.
  const header = typeof forwardedFor === 'string' ? forwardedFor : forwardedFor.join(',');
  let client = peer;
  let end = header.length;
  while (end > 0) {
    const comma = header.lastIndexOf(',', end - 1);
    const address = addressOf(header.slice(comma + 1, end).trim());
    if (address === undefined) return client;
    client = address;
    if (!listsAddress(trusted, address)) return address;
    end = comma;
  }
  return client;
}

/** The address in an X-Forwarded-For entry, which some proxies write with a port. */
function addressOf(entry: string): string | undefined {
  if (isIP(entry) !== 0) return entry;
  if (entry.startsWith('[')) {
    // [2001:db8::1]:8080
    const address = entry.slice(1, entry.indexOf(']'));
    return isIP(address) === 6 ? address : undefined;
  }
  const colon = entry.indexOf(':');
  // 192.0.2.1:8080
  if (colon !== -1 && entry.indexOf(':', colon + 1) === -1 && isIP(entry.slice(0, colon)) === 4) return entry.slice(0, colon);
  return undefined;
}
