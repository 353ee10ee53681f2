import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { FlowgateError } from '../errors/index.js';
import type { AddressPolicy } from './address-policy.js';

export interface OutboundRequest {
  readonly method: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Aborting it destroys the request; the promise rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface OutboundResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

export interface OutboundClientOptions {
  readonly timeoutMs?: number;
  readonly maxBodyBytes?: number;
}

/**
 * HTTP requests Flowgate makes on a tenant's behalf (token endpoints now; components and
 * the gateway later), guarded against server-side request forgery: the host's addresses
 * are resolved and vetted by the {@link AddressPolicy}, and the connection goes to a
 * vetted address, so a name that resolves differently a moment later (DNS rebinding)
 * cannot slip through. Answers are read whole, up to `maxBodyBytes`.
 */
export class OutboundClient {
  private readonly timeoutMs: number;
  private readonly maxBodyBytes: number;

  constructor(
    private readonly policy: AddressPolicy,
    options: OutboundClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  }

  async request(target: string, init: OutboundRequest): Promise<OutboundResponse> {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw refused(target, 'it is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw refused(url.origin, 'only http and https are allowed');
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host) !== 0 && !this.policy.permits(host)) throw refused(url.origin, 'the address is in a private, loopback or reserved network');
    const client = url.protocol === 'https:' ? https : http;
    const { signal } = init;
    signal?.throwIfAborted();
    return new Promise<OutboundResponse>((resolveRequest, rejectRequest) => {
      // Settled once: by the answer, by an error, or by the caller's abort, whichever is first.
      let req: http.ClientRequest | undefined;
      const onAbort = (): void => {
        // The signal's reason: an AbortError, or whatever the caller aborted with.
        reject(signal?.reason instanceof Error ? signal.reason : new DOMException('The request was aborted.', 'AbortError'));
        req?.destroy();
      };
      const resolve = (response: OutboundResponse): void => {
        signal?.removeEventListener('abort', onAbort);
        resolveRequest(response);
      };
      const reject = (error: Error): void => {
        signal?.removeEventListener('abort', onAbort);
        rejectRequest(error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        req = this.send(client, url, init, resolve, reject);
      } catch (error) {
        // Node refuses a header name or value it cannot send before anything is sent.
        reject(new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `The request to ${url.origin} cannot be sent: ${(error as Error).message}`, { cause: error }));
      }
    });
  }

  /** Sends the request; answers with it so an abort can destroy it. Throws what Node refuses to send. */
  private send(client: typeof http | typeof https, url: URL, init: OutboundRequest, resolve: (response: OutboundResponse) => void, reject: (error: Error) => void): http.ClientRequest {
    const req = client.request(url, { method: init.method, headers: init.headers, lookup: this.lookup(url.origin), timeout: this.timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > this.maxBodyBytes) {
          req.destroy(new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `${url.origin} answered with more than ${this.maxBodyBytes} bytes.`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `${url.origin} did not answer within ${this.timeoutMs} ms.`)));
    req.on('error', (error) => reject(error instanceof FlowgateError ? error : new FlowgateError('FLOWGATE_ERR_OUTBOUND_FAILED', `${url.origin} could not be reached.`, { cause: error })));
    req.end(init.body);
    return req;
  }

  /** Resolves like the system does, then refuses the host if any of its addresses is not permitted. */
  private lookup(origin: string): LookupFunction {
    return (hostname, options, callback) => {
      dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (error, addresses: LookupAddress[]) => {
        if (error) return callback(error, '', 0);
        if (addresses.length === 0 || addresses.some((a) => !this.policy.permits(a.address))) {
          return callback(refused(origin, 'its name resolves to a private, loopback or reserved network'), '', 0);
        }
        if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
        return callback(null, addresses[0]!.address, addresses[0]!.family);
      });
    };
  }
}

function refused(origin: string, why: string): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_OUTBOUND_REFUSED', `Flowgate does not connect to ${origin}: ${why}. An operator can allow a network with FLOWGATE_OUTBOUND_ALLOW.`);
}
