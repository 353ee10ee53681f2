import formbody from '@fastify/formbody';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { ProblemSchema, isErrorCode } from '@flowgate/contracts';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { FlowgateError, PROBLEM_CONTENT_TYPE, toProblem } from '../errors/index.js';
import { formatTraceparent, startSpan, type HttpMetrics, type Logger, type SpanSink, type TraceContext } from '../observability/index.js';
import './route-config.js';

/** The Fastify instance every feature registers its routes on. */
export type HttpApp = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  Logger,
  TypeBoxTypeProvider
>;

export interface HttpAppOptions {
  readonly logger: Logger;
  readonly metrics: HttpMetrics;
  /** Where each request's span goes (an OTLP collector, when configured). */
  readonly spans?: SpanSink | undefined;
  readonly bodyLimitBytes: number;
  readonly version: string;
  /**
   * Sees every request before Fastify and serves it when it returns true (the API
   * gateway's routes); otherwise Fastify does.
   */
  readonly front?: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  /** The same for `Upgrade` requests (WebSocket), before Fastify's own upgrade handling. */
  readonly frontUpgrade?: ((req: IncomingMessage, socket: Duplex, head: Buffer) => boolean) | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The W3C trace context of this request; `request.id` is its trace id. */
    trace: TraceContext;
  }
}

const traces = new WeakMap<IncomingMessage, TraceContext>();

/**
 * Builds the HTTP server: JSON bodies only (form bodies only where a route opts in),
 * every error an RFC 9457 problem document carrying the trace id, trace context from
 * `traceparent`, request metrics, and the OpenAPI document of every route.
 */
export async function createHttpApp(options: HttpAppOptions): Promise<HttpApp> {
  const { front, frontUpgrade } = options;
  const app = Fastify({
    ...(front
      ? {
          serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => {
            const server = createServer((req, res) => {
              if (!front(req, res)) handler(req, res);
            });
            // What Fastify sets on a server it makes itself.
            server.keepAliveTimeout = 72_000;
            if (frontUpgrade) {
              // Upgrade listeners registered later (Fastify's WebSocket plugin) only see the
              // upgrades the front handler did not take.
              const emit = server.emit.bind(server) as (event: string, ...args: unknown[]) => boolean;
              server.emit = ((event: string, ...args: unknown[]) => {
                if (event === 'upgrade' && frontUpgrade(args[0] as IncomingMessage, args[1] as Duplex, args[2] as Buffer)) return true;
                return emit(event, ...args);
              }) as typeof server.emit;
            }
            return server;
          },
        }
      : {}),
    loggerInstance: options.logger,
    bodyLimit: options.bodyLimitBytes,
    // The request id is the W3C trace id: one id ties logs, problem documents and
    // downstream calls together.
    genReqId: (req) => {
      const header = req.headers.traceparent;
      const trace = startSpan(Array.isArray(header) ? header[0] : header);
      traces.set(req, trace);
      return trace.traceId;
    },
    // Fastify's two lines per request are replaced by one, written in onResponse below.
    logController: new LogController({ requestIdLogLabel: 'traceId', disableRequestLogging: true }),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Fastify's 10 s default fails a start on a machine busy enough; a plugin that truly
    // hangs still fails it, later.
    pluginTimeout: 60_000,
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as HttpApp;

  app.decorateRequest('trace', null as unknown as TraceContext);
  app.addHook('onRequest', (request, reply, done) => {
    request.trace = traces.get(request.raw) ?? startSpan(undefined);
    void reply.header('x-trace-id', request.id);
    void reply.header('traceresponse', formatTraceparent(request.trace));
    done();
  });

  // JSON only, by default. Fastify's text/plain parser is dropped: an API that quietly
  // accepts text where it documents JSON hides client bugs.
  app.removeAllContentTypeParsers();
  const parseJson = (_req: unknown, body: string | Buffer, done: (err: Error | null, value?: unknown) => void) => {
    const text = String(body);
    if (text.trim() === '') {
      done(new FlowgateError('FLOWGATE_ERR_REQUEST_MALFORMED_BODY', 'The request body is empty; send a JSON document.'), undefined);
      return;
    }
    try {
      done(null, JSON.parse(text) as unknown);
    } catch (err) {
      // The parser's message quotes the body, which may hold a password: keep it in `cause` only.
      done(new FlowgateError('FLOWGATE_ERR_REQUEST_MALFORMED_BODY', 'The request body is not valid JSON.', { cause: err }), undefined);
    }
  };
  app.addContentTypeParser('application/json', { parseAs: 'string' }, parseJson);
  app.addContentTypeParser(/^application\/[a-z0-9.-]+\+json$/, { parseAs: 'string' }, parseJson);

  registerErrorHandling(app);
  registerMetrics(app, options.metrics, options.spans);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Flowgate API',
        version: options.version,
        description: 'Admin API, OAuth 2 / OpenID Connect endpoints and health of a Flowgate server. Errors are RFC 9457 problem documents.',
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          clientSecretBasic: { type: 'http', scheme: 'basic' },
        },
      },
    },
  });
  app.addSchema(ProblemSchema);
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  app.get('/api/openapi.json', { schema: { hide: true }, config: { scope: 'public' } }, () => app.swagger());
  return app;
}

/** Registers the form body parser (`application/x-www-form-urlencoded`) on one scope. */
export async function acceptFormBodies(scope: HttpApp): Promise<void> {
  await scope.register(formbody);
}

function registerErrorHandling(app: HttpApp): void {
  const routes: Array<{ method: string; pattern: RegExp }> = [];
  app.addHook('onRoute', (route) => {
    // Deny when unsure: an API route that does not say who may call it is a bug, caught at start.
    if (route.url.startsWith('/api/') && route.url !== '/api/openapi.json' && route.config?.scope === undefined) {
      throw new Error(`Route ${String(route.method)} ${route.url} declares no config.scope.`);
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const pattern = new RegExp(`^${route.url.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z0-9_]+/g, '[^/]+').replace(/\*/g, '.*')}$`);
    for (const method of methods) routes.push({ method, pattern });
  });

  // An unmatched path is answered before its body is read: nobody can make the server
  // parse a body (or hit the size limit) on a path that takes none.
  app.addHook('onRequest', async (request, reply) => {
    if (request.is404) return notFound(request, reply);
    return undefined;
  });
  const notFound = (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '/';
    const allowed = [...new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method))].filter((m) => m !== 'HEAD');
    if (allowed.length > 0) {
      return sendProblem(
        request,
        reply,
        new FlowgateError('FLOWGATE_ERR_REQUEST_METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}; use ${allowed.join(', ')}.`, {
          headers: { allow: allowed.join(', ') },
        }),
      );
    }
    return sendProblem(request, reply, new FlowgateError('FLOWGATE_ERR_REQUEST_ROUTE_NOT_FOUND', `Nothing is served at ${request.method} ${path}.`));
  };
  app.setNotFoundHandler(notFound);

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const problem = asFlowgateError(error);
    if (problem.family === 'unexpected') request.log.error({ err: error }, 'request failed');
    else if (problem.status >= 500) request.log.warn({ err: error, code: problem.code }, 'request failed');
    return sendProblem(request, reply, problem);
  });
}

/** Sends an error as `application/problem+json`. */
export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: FlowgateError): FastifyReply {
  for (const [name, value] of Object.entries(error.headers)) void reply.header(name, value);
  const path = request.url.split('?')[0];
  return reply.code(error.status).type(PROBLEM_CONTENT_TYPE).send(toProblem(error, request.id, path));
}

/** Turns any error reaching the handler into a catalogue error. */
function asFlowgateError(error: FastifyError): FlowgateError {
  if (error instanceof FlowgateError) return error;
  if (error.validation) {
    const errors = error.validation.map((v) => {
      // Ajv reports an unexpected field at its parent; name the field itself.
      const extra = (v.params as { additionalProperty?: unknown }).additionalProperty;
      const field = typeof extra === 'string' ? `/${extra}` : '';
      const message = typeof extra === 'string' ? 'is not a known property' : (v.message ?? 'is invalid');
      return { path: `${error.validationContext ?? 'body'}${(v.instancePath + field).replaceAll('/', '.')}`, message };
    });
    const first = errors[0];
    return new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', first ? `${first.path} ${first.message}.` : 'The request is invalid.', { errors });
  }
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new FlowgateError('FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE', 'This endpoint does not accept that Content-Type; see the API documentation.');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new FlowgateError('FLOWGATE_ERR_REQUEST_TOO_LARGE', 'The request body is larger than this server accepts.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new FlowgateError('FLOWGATE_ERR_REQUEST_MALFORMED_BODY', 'The request body is empty; send a JSON document.');
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new FlowgateError('FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE', 'The Content-Type header is not valid.');
    default:
      break;
  }
  if (error.statusCode === 400 && error instanceof SyntaxError) {
    return new FlowgateError('FLOWGATE_ERR_REQUEST_MALFORMED_BODY', 'The request body could not be parsed.');
  }
  if (typeof error.code === 'string' && isErrorCode(error.code)) return new FlowgateError(error.code, error.message);
  if (error.statusCode === 415) return new FlowgateError('FLOWGATE_ERR_REQUEST_UNSUPPORTED_MEDIA_TYPE', 'This endpoint does not accept that Content-Type.');
  if (error.statusCode === 413) return new FlowgateError('FLOWGATE_ERR_REQUEST_TOO_LARGE', 'The request body is too large.');
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'The request could not be understood.', { cause: error });
  }
  return new FlowgateError('FLOWGATE_ERR_SERVER_INTERNAL', undefined, { cause: error });
}

function registerMetrics(app: HttpApp, metrics: HttpMetrics, spans: SpanSink | undefined): void {
  app.addHook('onResponse', (request, reply, done) => {
    // The route template, never the raw URL: label values must stay few.
    const route = request.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) });
    metrics.duration.observe({ method: request.method, route }, reply.elapsedTime / 1000);
    if (spans) {
      const end = Date.now();
      spans.record({
        trace: request.trace,
        name: `${request.method} ${route}`,
        startMs: end - reply.elapsedTime,
        endMs: end,
        attributes: { 'http.request.method': request.method, 'http.route': route, 'http.response.status_code': reply.statusCode },
        error: reply.statusCode >= 500,
      });
    }
    if (!route.startsWith('/health/') && route !== '/metrics') {
      request.log.info({ method: request.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
    }
    done();
  });
}
