import type { CorsPolicy } from '@flowgate/contracts';
import type { IncomingHttpHeaders } from 'node:http';
import { FlowgateError } from '../../errors/index.js';
import { PolicyOptionError, type PolicyFactory } from './policy.js';

const DEFAULT_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'];
const ORIGIN = /^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/;

/**
 * `cors`: answers preflight requests itself (they never reach the upstream) and adds the
 * Access-Control-* headers to answers for allowed origins. A preflight from an origin,
 * or asking for a method or header, that is not allowed is refused with a 403; a plain
 * request from such an origin is forwarded without CORS headers, so the browser hides
 * the answer from the page.
 */
export const corsPolicy: PolicyFactory<CorsPolicy> = {
  name: 'cors',
  order: 20,
  create(options) {
    const any = options.origins.includes('*');
    options.origins.forEach((origin, index) => {
      if (origin !== '*' && !ORIGIN.test(origin)) throw new PolicyOptionError(`"${origin}" is not an origin (scheme://host[:port]) or '*'.`, `origins[${index}]`);
    });
    if (any && options.credentials) throw new PolicyOptionError("Browsers refuse credentials with the origin '*'; list the origins instead.", 'credentials');
    const origins = new Set(options.origins.map((o) => o.toLowerCase()));
    const methods = options.methods ?? DEFAULT_METHODS;
    const allowedHeaders = new Set((options.headers ?? []).map((h) => h.toLowerCase()));
    const methodList = methods.join(', ');
    const headerList = options.headers?.join(', ');
    const exposed = options.exposeHeaders?.join(', ');
    const maxAge = String(options.maxAgeSeconds ?? 600);

    return (exchange) => {
      const origin = exchange.req.headers.origin;
      if (origin === undefined) return undefined;
      const allowed = any || origins.has(origin.toLowerCase());
      if (!isPreflight(exchange.method, exchange.req.headers)) {
        if (allowed) {
          Object.assign(exchange.responseHeaders, originHeaders(any ? '*' : origin, options.credentials));
          if (exposed) exchange.responseHeaders['access-control-expose-headers'] = exposed;
        }
        return undefined;
      }
      const method = String(exchange.req.headers['access-control-request-method']).toUpperCase();
      const asked = String(exchange.req.headers['access-control-request-headers'] ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h !== '');
      const refusedHeader = asked.find((h) => !allowedHeaders.has(h));
      if (!allowed || !methods.includes(method) || refusedHeader !== undefined) {
        const why = !allowed ? `the origin ${origin} is not allowed` : refusedHeader !== undefined ? `the header ${refusedHeader} is not allowed` : `the method ${method} is not allowed`;
        throw new FlowgateError('FLOWGATE_ERR_GATEWAY_CORS_REFUSED', `CORS preflight refused: ${why}.`);
      }
      const headers: Record<string, string> = {
        ...exchange.responseHeaders,
        ...originHeaders(any ? '*' : origin, options.credentials),
        'access-control-allow-methods': methodList,
        'access-control-max-age': maxAge,
      };
      if (headerList) headers['access-control-allow-headers'] = headerList;
      exchange.res.writeHead(204, headers).end();
      return 'answered';
    };
  },
};

function originHeaders(origin: string, credentials: boolean | undefined): Record<string, string> {
  const headers: Record<string, string> = { 'access-control-allow-origin': origin };
  if (origin !== '*') headers.vary = 'Origin';
  if (credentials) headers['access-control-allow-credentials'] = 'true';
  return headers;
}

/** A CORS preflight (Fetch standard): OPTIONS with Origin and Access-Control-Request-Method. */
export function isPreflight(method: string | undefined, headers: IncomingHttpHeaders): boolean {
  return method === 'OPTIONS' && headers.origin !== undefined && headers['access-control-request-method'] !== undefined;
}
