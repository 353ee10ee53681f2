import { posix } from 'node:path';
import { reservedPrefixOf } from '@flowgate/contracts';
import { request as undiciRequest } from 'undici';
import { FlowgateError } from '../../errors/index.js';
import type { OutboundClient } from '../../outbound/index.js';
import { NonRetryableError, type ComponentHttp, type ComponentHttpRequest, type ComponentHttpResponse } from './component.js';

export interface GuardedComponentHttpOptions {
  /** How long a gateway request may take to answer and to send its body (default 10 s, like the outbound client). */
  readonly timeoutMs?: number;
  /** The largest gateway answer read (default 1 MiB, like the outbound client). */
  readonly maxBodyBytes?: number;
}

/**
 * Headers that say who the client is: a flow's call reaches the gateway from loopback, and
 * where loopback is a trusted proxy (`FLOWGATE_TRUSTED_PROXIES`) the gateway would take
 * them as the caller's address, for `ip-allow`, `ip-deny` and rate limits by address.
 */
const FORWARDING_HEADERS = new Set(['forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip', 'true-client-ip', 'cf-connecting-ip']);

function withoutForwarding(headers: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!headers) return headers;
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !FORWARDING_HEADERS.has(name.toLowerCase())));
}

/**
 * Components' HTTP. External URLs go through the {@link OutboundClient}, so its address
 * policy refuses private, loopback and link-local targets (server-side request forgery).
 * Gateway paths go to this server's own listener (`gatewayBase()`) without that check,
 * since the target is us; what keeps a flow out of the admin API there is the path
 * check: only gateway routes, never a reserved prefix (`/api`, `/oauth`, …).
 */
export class GuardedComponentHttp implements ComponentHttp {
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;

  constructor(
    private readonly outbound: OutboundClient,
    private readonly gatewayBase: () => string,
    options: GuardedComponentHttpOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  }

  async request(url: string, init: ComponentHttpRequest): Promise<ComponentHttpResponse> {
    const res = await this.outbound.request(url, { method: init.method, headers: init.headers, body: init.body, signal: init.signal });
    return { status: res.status, headers: res.headers, text: res.text };
  }

  async gateway(path: string, init: ComponentHttpRequest): Promise<ComponentHttpResponse> {
    const target = gatewayTarget(this.gatewayBase(), path);
    init.signal?.throwIfAborted();
    let res: Awaited<ReturnType<typeof undiciRequest>>;
    try {
      res = await undiciRequest(target, {
        method: init.method,
        headers: withoutForwarding(init.headers),
        body: init.body,
        signal: init.signal,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
    } catch (error) {
      throw init.signal?.aborted ? init.signal.reason : new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `The gateway could not be reached for ${target.pathname}.`, { cause: error });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.maxBodyBytes) {
          res.body.destroy();
          throw new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `The gateway answered ${target.pathname} with more than ${this.maxBodyBytes} bytes.`);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      if (init.signal?.aborted) throw init.signal.reason;
      throw error instanceof FlowgateError ? error : new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `The gateway's answer for ${target.pathname} broke off.`, { cause: error });
    }
    return { status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') };
  }
}

/**
 * The URL of a gateway path on our own listener, or a refusal. The path is resolved first
 * and checked after, so neither `//other.host`, `/\other.host` (both change the origin)
 * nor `/x/../api`, `/%61pi` or `/API` (which normalise to a reserved prefix) get through.
 */
export function gatewayTarget(base: string, path: string): URL {
  if (!path.startsWith('/') || path.startsWith('//') || path.includes('\\')) {
    throw new NonRetryableError(`A gateway path must start with a single "/": "${path}".`, 'GATEWAY_PATH_REFUSED');
  }
  const origin = new URL(base);
  const target = new URL(path, origin);
  if (target.origin !== origin.origin) throw new NonRetryableError(`A gateway path must stay on this server: "${path}".`, 'GATEWAY_PATH_REFUSED');
  let decoded: string;
  try {
    decoded = decodeURIComponent(target.pathname);
  } catch {
    throw new NonRetryableError(`A gateway path must be validly percent-encoded: "${path}".`, 'GATEWAY_PATH_REFUSED');
  }
  // Also with `..` segments folded after decoding (`/x/..%2Fapi`), and a `;` parameter cut
  // off, in case a router treats `/api;x` as `/api`.
  const folded = posix.normalize(decoded);
  for (const candidate of [target.pathname, decoded, folded, folded.split(';')[0]!]) {
    const reserved = reservedPrefixOf(candidate);
    if (reserved) {
      throw new NonRetryableError(`A flow may call gateway routes only, not Flowgate's own ${reserved} endpoints: "${path}".`, 'GATEWAY_PATH_REFUSED');
    }
  }
  return target;
}
