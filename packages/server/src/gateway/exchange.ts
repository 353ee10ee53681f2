import type { GatewayRoute } from '@flowgate/contracts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../iam/index.js';
import type { TraceContext } from '../observability/index.js';

/** Headers as Node and undici take them: lower-case names. */
export type HeaderMap = Record<string, string | string[] | undefined>;

/**
 * One request passing through the gateway: what the policies read and change on its way
 * to the upstream. Policies never touch the socket except to answer a CORS preflight.
 */
export interface GatewayExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  /** The raw path, without the query. */
  readonly path: string;
  /** The raw query with its `?`, or ''. */
  readonly query: string;
  readonly params: Readonly<Record<string, string | undefined>>;
  /**
   * The client's address: the TCP peer's, or, when the peer is a trusted proxy
   * (FLOWGATE_TRUSTED_PROXIES), the one X-Forwarded-For names. What ip-allow, ip-deny,
   * rate limits by address and the audit use.
   */
  readonly clientIp: string;
  readonly trace: TraceContext;
  readonly route: GatewayRoute;
  /** Who is calling, once an auth policy has run (null for `auth: none`). */
  principal: Principal | null;
  /** What goes upstream: the request's headers minus hop-by-hop ones and credentials. */
  readonly upstreamHeaders: HeaderMap;
  /** Added to the answer, whether it comes from the upstream or from the gateway. */
  readonly responseHeaders: Record<string, string>;
  /** The most body bytes the upstream may receive (request-size-limit). */
  maxBodyBytes: number | undefined;
  /** Changes applied to the upstream's response headers before they are sent. */
  readonly responseHeaderEdits: Array<(headers: HeaderMap) => void>;
}
