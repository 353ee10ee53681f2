import { isFlowgateError } from '../../../errors/index.js';
import { defineComponent, NonRetryableError, RetryLaterError, type ComponentContext, type ComponentHttpResponse } from '../component.js';
import { HEADERS_SCHEMA, SCHEMA_DIALECT, stringRecord, TEMPLATE_PATTERN } from './support.js';

export type HttpConfig = {
  method?: string;
  url?: string;
  gateway?: { path: string };
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean>;
  body?: unknown;
  expect?: number[];
};

/** The answer headers a step's output keeps: the ones flows act on, not the whole set. */
const KEPT_HEADERS = ['content-type', 'content-length', 'location', 'etag', 'last-modified', 'cache-control', 'retry-after', 'link', 'x-request-id'];
/** How much of an unexpected answer's body an error message quotes. */
const QUOTED_BODY = 300;

const configSchema = {
  $schema: SCHEMA_DIALECT,
  title: 'http',
  description: 'Calls an external URL (through the outbound guard) or a route of this gateway.',
  type: 'object',
  additionalProperties: false,
  properties: {
    method: { type: 'string', description: 'The HTTP method (default GET).', pattern: `^([A-Za-z]{1,20}|[\\s\\S]*${TEMPLATE_PATTERN}[\\s\\S]*)$` },
    url: {
      type: 'string',
      maxLength: 8000,
      description: 'An absolute http or https URL; private, loopback and link-local addresses are refused unless the server allows them.',
      pattern: '^([hH][tT][tT][pP][sS]?://|\\{\\{)',
    },
    gateway: {
      type: 'object',
      description: "A route of this server's API gateway, which applies the route's policies.",
      additionalProperties: false,
      required: ['path'],
      properties: { path: { type: 'string', maxLength: 8000, pattern: '^(/|\\{\\{)', description: 'The request path, starting with "/" (e.g. /flow/forms/42).' } },
    },
    headers: HEADERS_SCHEMA,
    query: {
      type: 'object',
      description: 'Query parameters added to the URL.',
      additionalProperties: { type: ['string', 'number', 'boolean'] },
    },
    body: { description: 'The request body: a string is sent as is, anything else as JSON.' },
    expect: {
      type: 'array',
      description: 'The status codes that count as success (default: any 2xx).',
      minItems: 1,
      items: { type: 'integer', minimum: 100, maximum: 599 },
    },
  },
  oneOf: [{ required: ['url'] }, { required: ['gateway'] }],
};

/**
 * `http`: one request, answered as `{status, headers, body}`. Failures carry their retry
 * semantics: 429/503 with Retry-After wait as told, other 5xx and network errors are
 * retried, and any other unexpected status fails the step for good (a retry would get
 * the same 4xx).
 */
export const httpComponent = defineComponent<HttpConfig>({
  name: 'http',
  description: 'Sends an HTTP request to an external URL or a gateway route.',
  configSchema,
  async run({ config, context }) {
    const method = (config.method ?? 'GET').toUpperCase();
    if (!/^[A-Z]{1,20}$/.test(method)) throw new NonRetryableError(`"${config.method}" is not an HTTP method.`, 'CONFIG_INVALID');
    const headers: Record<string, string> = { ...stringRecord(config.headers), traceparent: context.traceparent };
    // Names are checked at save (HEADERS_SCHEMA); a value a template filled from input may
    // hold a line break, which can never be sent: no retry would help.
    for (const [name, value] of Object.entries(headers)) {
      if (/[\r\n\0]/.test(value)) throw new NonRetryableError(`The header "${name}" has a line break or NUL in its value.`, 'CONFIG_INVALID');
    }
    let body: string | undefined;
    if (config.body !== undefined) {
      body = typeof config.body === 'string' ? config.body : JSON.stringify(config.body);
      headers['content-type'] ??= typeof config.body === 'string' ? 'text/plain; charset=utf-8' : 'application/json';
    }
    const init = { method, headers, body, signal: context.signal };
    const [label, send] = target(config, context);
    let res: ComponentHttpResponse;
    try {
      res = await send(init);
    } catch (error) {
      if (context.signal.aborted || error instanceof NonRetryableError) throw error;
      if (isFlowgateError(error, 'FLOWGATE_ERR_OUTBOUND_REFUSED')) throw new NonRetryableError(error.message, 'OUTBOUND_REFUSED', { cause: error });
      // Anything else (refused connection, reset, timeout) is transient: a plain error is retried.
      throw new Error(`${method} ${label} failed: ${(error as Error).message}`, { cause: error });
    }
    if (config.expect ? !config.expect.includes(res.status) : res.status < 200 || res.status > 299) {
      throw failure(method, label, res, context.now());
    }
    const answered = lowerCased(res.headers);
    return { status: res.status, headers: keptHeaders(answered), body: parseBody(res.text, answered['content-type']) };
  },
});

type Send = (init: { method: string; headers: Record<string, string>; body: string | undefined; signal: AbortSignal }) => Promise<ComponentHttpResponse>;

/** Where the request goes, and a label for messages that leaves out the query (it may hold a key). */
function target(config: HttpConfig, context: ComponentContext): [string, Send] {
  const query = Object.entries(config.query ?? {}).map(([name, value]): [string, string] => [name, String(value)]);
  if (config.gateway) {
    const path = config.gateway.path;
    const joined = query.length === 0 ? path : `${path}${path.includes('?') ? '&' : '?'}${new URLSearchParams(query).toString()}`;
    return [`gateway ${path.split('?')[0]}`, (init) => context.http.gateway(joined, init)];
  }
  let url: URL;
  try {
    url = new URL(config.url ?? '');
  } catch {
    throw new NonRetryableError(`The url "${config.url}" is not an absolute URL.`, 'CONFIG_INVALID');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new NonRetryableError(`The url must be http or https, not ${url.protocol}.`, 'CONFIG_INVALID');
  for (const [name, value] of query) url.searchParams.append(name, value);
  return [`${url.origin}${url.pathname}`, (init) => context.http.request(url.href, init)];
}

function failure(method: string, label: string, res: ComponentHttpResponse, now: number): Error {
  const quoted = res.text.length > QUOTED_BODY ? `${res.text.slice(0, QUOTED_BODY)}…` : res.text;
  const message = `${method} ${label} answered ${res.status}${quoted ? `: ${quoted}` : ''}`;
  if (res.status === 429 || res.status === 503) {
    const delay = retryAfterMs(header(lowerCased(res.headers)['retry-after']), now);
    if (delay !== undefined) return new RetryLaterError(message, delay, 'HTTP_RETRY_AFTER');
  }
  // 408 and 429 are 4xx but say "not now" rather than "never": a retry may succeed.
  if (res.status >= 500 || res.status === 408 || res.status === 429) return new Error(message);
  return new NonRetryableError(message, 'HTTP_STATUS');
}

/** Retry-After is delay-seconds or an HTTP-date (RFC 9110 §10.2.3). */
export function retryAfterMs(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

type Headers = ComponentHttpResponse['headers'];

/** Node and undici give lower-case names already; a custom {@link ComponentHttp} might not. */
function lowerCased(headers: Headers): Headers {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

function header(value: Headers[string]): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function keptHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of KEPT_HEADERS) {
    const value = header(headers[name]);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** JSON (`application/json`, `…+json`) is parsed; a JSON type with a body that does not parse stays text. */
function parseBody(text: string, contentType: Headers[string]): unknown {
  if (!/^[^;]*[/+]json\s*(;|$)/i.test(header(contentType) ?? '')) return text;
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
