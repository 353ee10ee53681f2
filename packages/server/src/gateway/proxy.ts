import type { Dispatcher } from 'undici';
import { FlowgateError, PROBLEM_CONTENT_TYPE, toProblem } from '../errors/index.js';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Transform, type Duplex, type Readable } from 'node:stream';
import { formatTraceparent, NO_SPANS, startSpan, type Logger, type SpanSink } from '../observability/index.js';
import type { ClientAddress } from './client-address.js';
import type { RouteMatch } from './compile.js';
import { refusalOf, type DeniedAudit } from './denied-audit.js';
import type { GatewayExchange } from './exchange.js';
import { addGatewayHeaders, downstreamHeaders, downstreamHeadersFromRaw, upstreamHeaders } from './forwarding-headers.js';
import type { GatewayMetrics } from './gateway-metrics.js';
import { pathAmbiguity, stripSegments } from './request-path.js';
import type { Target, Upstream } from './upstream.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
/** Connection failures after which nothing reached the upstream: safe to try another target. */
const NOT_SENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET']);
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const REFUSALS = new Set([401, 403, 429]);

export interface ProxyDeps {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  /** Audits refusals, coalescing repeated ones. */
  readonly denials: DeniedAudit;
  /** The client behind trusted proxies; undefined when none is trusted (the client is the peer). */
  readonly clientAddress: ClientAddress | undefined;
  /** Writes one info line per request, like the admin API does. */
  readonly accessLog: boolean;
  readonly spans: SpanSink;
}

/**
 * Serves one matched request: runs the route's policies, forwards it to a target of the
 * service (trying another on a connection failure when that is safe), and streams the
 * answer back. Bodies are never buffered in either direction. Every error is a problem
 * document with the trace id; refusals (401, 403, 429) are audited.
 */
export async function serveRoute(
  req: IncomingMessage,
  res: ServerResponse,
  match: RouteMatch,
  params: Record<string, string | undefined>,
  upstream: Upstream | undefined,
  deps: ProxyDeps,
  upgrade?: Upgrade,
): Promise<void> {
  const started = performance.now();
  const url = req.url ?? '/';
  const queryAt = url.indexOf('?');
  const path = queryAt === -1 ? url : url.slice(0, queryAt);
  const query = queryAt === -1 ? '' : url.slice(queryAt);
  const trace = startSpan(first(req.headers.traceparent));
  const incomingId = first(req.headers['x-request-id']);
  const requestId = incomingId !== undefined && REQUEST_ID.test(incomingId) ? incomingId : trace.traceId;
  const peer = req.socket.remoteAddress ?? '';
  // Behind trusted proxies, the client is found past them (the peer's trust looked up once).
  const behind = deps.clientAddress;
  const trustedPeer = behind !== undefined && behind.trusts(peer);
  const clientIp = trustedPeer ? behind.behindTrusted(peer, req.headers['x-forwarded-for']) : peer;
  const route = match.route;
  const traceparent = formatTraceparent(trace);
  const exchange: GatewayExchange = {
    req,
    res,
    method: req.method ?? 'GET',
    path,
    query,
    params,
    clientIp,
    trace,
    route: route.spec,
    principal: null,
    upstreamHeaders: upstreamHeaders(req.headers, {
      // Each proxy appends the address it received the request from (RFC 7239 §5.2).
      peer,
      proto: 'encrypted' in req.socket ? 'https' : 'http',
      host: req.headers.host,
      trustedPeer,
      traceparent,
      requestId,
    }),
    responseHeaders: { 'x-request-id': requestId, 'x-trace-id': trace.traceId, traceresponse: traceparent },
    maxBodyBytes: undefined,
    responseHeaderEdits: [],
  };

  try {
    const ambiguity = pathAmbiguity(path, route.spec.allowInPaths);
    // An upstream could resolve such a path past the route's prefix: it is never forwarded.
    if (ambiguity !== undefined) throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', ambiguity);
    for (const step of route.steps) {
      let outcome = step(exchange);
      if (outcome instanceof Promise) outcome = await outcome;
      if (outcome === 'answered') return;
    }
    if (!upstream) throw new FlowgateError('FLOWGATE_ERR_GATEWAY_NO_HEALTHY_UPSTREAM', `The service "${route.service}" is not available.`);
    if (upgrade) await forwardUpgrade(exchange, match, upstream, upgrade);
    else await forward(exchange, match, upstream);
  } catch (err) {
    answerError(exchange, err, deps);
  } finally {
    finish(exchange, started, deps);
  }
}

async function forward(exchange: GatewayExchange, match: RouteMatch, upstream: Upstream): Promise<void> {
  const { req } = exchange;
  const length = req.headers['content-length'];
  const hasBody = length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
  const body: Readable | null = hasBody ? limited(req, exchange.maxBodyBytes) : null;
  const forwardedPath = stripSegments(exchange.path, match.strip) + exchange.query;
  const retryable = !hasBody && IDEMPOTENT.has(exchange.method);
  const tried = new Set<Target>();
  let lastError: unknown;
  for (let attempt = 0; attempt <= upstream.retries; attempt++) {
    const target = upstream.pick(tried);
    if (!target) break;
    tried.add(target);
    try {
      await relay(exchange, target, target.basePath + forwardedPath, body);
      return;
    } catch (err) {
      lastError = err;
      if (retryable && NOT_SENT.has(errorCode(err))) continue;
      throw upstreamError(err, upstream);
    }
  }
  throw upstreamError(lastError, upstream);
}

/**
 * Sends the request to one target and streams its answer straight into the response:
 * undici's dispatch API with a handler, so no intermediate stream, promise or abort
 * controller is made per request. Rejects only when nothing was answered yet (the
 * caller may try another target); a failure mid-answer cuts the response off.
 */
function relay(exchange: GatewayExchange, target: Target, path: string, body: Readable | null): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    target.pool.dispatch({ method: exchange.method, path, headers: exchange.upstreamHeaders as Record<string, string>, body }, new Relay(exchange, resolve, reject));
  });
}

/**
 * The dispatch handler of one request: a class rather than an object literal of closures,
 * so a request allocates one object here plus one listener for the client leaving. It
 * implements undici's original handler interface (onConnect, onHeaders, onData...):
 * undici runs on it internally, and a handler of the newer interface is wrapped per
 * request in an adapter that also parses the answer's headers into an object, which
 * {@link downstreamHeadersFromRaw} does here in the same pass that filters them.
 */
class Relay implements Dispatcher.DispatchHandler {
  private readonly res: ServerResponse;
  private abort: ((err?: Error) => void) | undefined;
  private resume: (() => void) | undefined;
  private answering = false;
  private drained: (() => void) | undefined;
  private readonly clientGone = (): void => {
    if (!this.res.writableFinished) this.abort?.(new Error('the client closed the connection'));
  };

  constructor(
    private readonly exchange: GatewayExchange,
    private readonly resolve: () => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.res = exchange.res;
    this.res.on('close', this.clientGone);
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    if (this.res.destroyed) abort(new Error('the client closed the connection'));
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.answering = true;
    this.resume = resume;
    const exchange = this.exchange;
    const headers = downstreamHeadersFromRaw(rawHeaders);
    const edits = exchange.responseHeaderEdits;
    for (let i = 0; i < edits.length; i++) edits[i]!(headers as Record<string, string>);
    addGatewayHeaders(headers, exchange.responseHeaders);
    this.res.writeHead(statusCode, headers);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    // Made on the first backpressure only: most answers never need it.
    this.drained ??= () => this.resume?.();
    this.res.once('drain', this.drained);
    return false;
  }

  onComplete(): void {
    this.settle();
    this.res.end();
    this.resolve();
  }

  onError(error: Error): void {
    this.settle();
    if (!this.answering) {
      this.reject(error);
      return;
    }
    // The upstream broke mid-answer (or the client left): it cannot be repaired, only
    // cut off; the access log records the status already sent.
    this.res.destroy();
    this.resolve();
  }

  private settle(): void {
    this.res.removeListener('close', this.clientGone);
    if (this.drained) this.res.removeListener('drain', this.drained);
  }
}

/** The client's side of an `Upgrade` request: its socket and what it sent after the head. */
export interface Upgrade {
  readonly socket: Duplex;
  readonly head: Buffer;
}

/**
 * Proxies an `Upgrade` request (WebSocket): the upstream's 101 answer is relayed and the
 * two sockets are joined; any other answer is relayed as an ordinary response.
 */
function forwardUpgrade(exchange: GatewayExchange, match: RouteMatch, upstream: Upstream, upgrade: Upgrade): Promise<void> {
  const { req, res } = exchange;
  const target = upstream.pick();
  if (!target) throw new FlowgateError('FLOWGATE_ERR_GATEWAY_NO_HEALTHY_UPSTREAM', `No target of the service "${upstream.name}" is available.`);
  const send = target.origin.protocol === 'https:' ? httpsRequest : httpRequest;
  const headers = { ...exchange.upstreamHeaders, connection: 'Upgrade', upgrade: req.headers.upgrade ?? 'websocket' };
  return new Promise<void>((resolve, reject) => {
    const outgoing = send({
      // URL keeps an IPv6 literal's brackets; the socket API wants the bare address.
      host: target.origin.hostname.replace(/^\[|\]$/g, ''),
      port: target.origin.port,
      method: exchange.method,
      path: target.basePath + stripSegments(exchange.path, match.strip) + exchange.query,
      headers,
      timeout: upstream.service.connectTimeoutMs ?? 5000,
    });
    outgoing.on('timeout', () => outgoing.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })));
    outgoing.on('error', (err) => reject(upstreamError(err, upstream)));
    outgoing.on('response', (answer) => {
      // The upstream declined the upgrade: relay its answer as it is.
      const relayed = downstreamHeaders(answer.headers);
      addGatewayHeaders(relayed, exchange.responseHeaders);
      res.writeHead(answer.statusCode ?? 502, relayed);
      answer.on('error', () => res.destroy());
      answer.pipe(res).on('finish', () => resolve()).on('close', () => resolve());
    });
    // The client leaving before the upstream answered ends the attempt.
    upgrade.socket.once('close', () => {
      outgoing.destroy();
      resolve();
    });
    outgoing.on('upgrade', (answer, upstreamSocket, upstreamHead) => {
      outgoing.setTimeout(0);
      if (answer.headers.upgrade?.toLowerCase() !== 'websocket') {
        upstreamSocket.destroy();
        reject(new FlowgateError('FLOWGATE_ERR_GATEWAY_UPSTREAM_UNAVAILABLE', `The service "${upstream.name}" switched to a protocol other than WebSocket.`));
        return;
      }
      let head = `HTTP/1.1 ${answer.statusCode ?? 101} ${answer.statusMessage ?? 'Switching Protocols'}\r\n`;
      for (let i = 0; i < answer.rawHeaders.length; i += 2) head += `${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}\r\n`;
      for (const [name, value] of Object.entries(exchange.responseHeaders)) head += `${name}: ${value}\r\n`;
      const client = upgrade.socket;
      res.statusCode = 101;
      res.detachSocket(client as never);
      client.write(`${head}\r\n`);
      if (upstreamHead.length > 0) client.write(upstreamHead);
      if (upgrade.head.length > 0) upstreamSocket.write(upgrade.head);
      const close = () => {
        client.destroy();
        upstreamSocket.destroy();
        resolve();
      };
      client.on('error', close).on('close', close);
      upstreamSocket.on('error', close).on('close', close);
      upstreamSocket.pipe(client).pipe(upstreamSocket);
    });
    outgoing.end();
  });
}

/** The request body, cut off (as a 413) past `max` bytes when a limit applies. */
function limited(req: IncomingMessage, max: number | undefined): Readable {
  if (max === undefined) return req;
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      if (seen > max) callback(new FlowgateError('FLOWGATE_ERR_REQUEST_TOO_LARGE', `This route takes bodies of at most ${max} bytes.`));
      else callback(null, chunk);
    },
  });
  req.on('error', (err) => limiter.destroy(err));
  return req.pipe(limiter);
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  const causeCode = (err as { cause?: { code?: unknown } }).cause?.code;
  return typeof code === 'string' ? code : typeof causeCode === 'string' ? causeCode : '';
}

/** An upstream failure as the problem the caller gets: 502, 503 or 504. */
function upstreamError(err: unknown, upstream: Upstream): FlowgateError {
  if (err instanceof FlowgateError) return err;
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof FlowgateError) return cause;
  const code = errorCode(err);
  const name = upstream.name;
  if (code === 'UND_ERR_CONNECT_TIMEOUT') {
    return new FlowgateError('FLOWGATE_ERR_GATEWAY_UPSTREAM_TIMEOUT', `The service "${name}" did not accept a connection in time.`, { cause: err });
  }
  if (code === 'UND_ERR_HEADERS_TIMEOUT') {
    return new FlowgateError('FLOWGATE_ERR_GATEWAY_UPSTREAM_TIMEOUT', `The service "${name}" did not answer in time.`, { cause: err });
  }
  return new FlowgateError('FLOWGATE_ERR_GATEWAY_UPSTREAM_UNAVAILABLE', `The service "${name}" could not be reached.`, { cause: err });
}

function answerError(exchange: GatewayExchange, err: unknown, deps: ProxyDeps): void {
  const { res } = exchange;
  const error = err instanceof FlowgateError ? err : new FlowgateError('FLOWGATE_ERR_SERVER_INTERNAL', undefined, { cause: err });
  // A client that left (mid-upload, say) broke the exchange itself: no upstream failed.
  // (Node destroys a request once its body is read: only an unfinished one tells.)
  const clientLeft = !res.headersSent && (res.destroyed || (exchange.req.destroyed && !exchange.req.complete));
  if (error.family === 'unexpected') deps.logger.error({ err, traceId: exchange.trace.traceId, route: exchange.route.name }, 'gateway request failed');
  else if (error.status >= 500 && !clientLeft) deps.logger.warn({ err: error.cause ?? error, code: error.code, traceId: exchange.trace.traceId, route: exchange.route.name }, 'gateway request failed');
  if (REFUSALS.has(error.status)) deps.denials.refused(refusalOf(exchange, error));
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(toProblem(error, exchange.trace.traceId, exchange.path));
  res.writeHead(error.status, {
    ...exchange.responseHeaders,
    ...error.headers,
    'content-type': PROBLEM_CONTENT_TYPE,
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

function finish(exchange: GatewayExchange, started: number, deps: ProxyDeps): void {
  const ended = performance.now();
  const seconds = (ended - started) / 1000;
  const status = exchange.res.statusCode;
  deps.metrics.observe(exchange.route.name, exchange.method, status, seconds);
  // Without a collector there is nowhere for a span to go: none is built.
  if (deps.spans !== NO_SPANS) {
    const origin = performance.timeOrigin;
    deps.spans.record({
      trace: exchange.trace,
      name: `gateway ${exchange.route.name}`,
      startMs: origin + started,
      endMs: origin + ended,
      attributes: { 'http.request.method': exchange.method, 'http.route': exchange.route.name, 'url.path': exchange.path, 'http.response.status_code': status },
      error: status >= 500,
    });
  }
  // Checked first: at a level above info the line's fields would be built for nothing.
  if (deps.accessLog && deps.logger.isLevelEnabled('info')) {
    deps.logger.info(
      { traceId: exchange.trace.traceId, method: exchange.method, route: `gateway:${exchange.route.name}`, status, ms: Math.round(seconds * 10_000) / 10 },
      'request',
    );
  }
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
