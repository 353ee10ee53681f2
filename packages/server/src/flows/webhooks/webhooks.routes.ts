import type { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FlowgateError } from '../../errors/index.js';
import { isHopByHop, sendProblem, type HttpApp } from '../../http/index.js';
import type { AuditRecorder, Clock } from '../../kernel/index.js';
import { formatTraceparent } from '../../observability/index.js';
import type { FlowEngine } from '../engine/flow-engine.js';
import type { SecretReader } from '../engine/step-runner.js';
import { SIGNATURE_HEADER, SIGNATURE_WINDOW_MS, verifySignature } from './signature.js';
import type { ServedWebhook, WebhookPart } from './webhook-part.js';

export interface WebhookRoutesOptions {
  readonly webhooks: WebhookPart;
  readonly engine: FlowEngine;
  readonly secrets: SecretReader;
  readonly clock: Clock;
  readonly audit: AuditRecorder;
}

const DEFAULT_MAX_BODY = 1024 * 1024;
const LARGEST_BODY = 10 * 1024 * 1024;
const DEFAULT_SYNC_TIMEOUT_MS = 30_000;
/** Caller credentials never reach the flow's message (and so never its execution records). */
const WITHHELD_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization', SIGNATURE_HEADER]);

/** Headers a flow's `respond` answer cannot set (see {@link accept}), besides the hop-by-hop ones. */
const WITHHELD_ANSWER_HEADERS = new Set(['set-cookie', 'content-security-policy', 'x-content-type-options', 'content-length']);

declare module 'fastify' {
  interface FastifyRequest {
    webhook?: ServedWebhook;
  }
}

/**
 * `POST /hook/{flowId}` and `GET /hook/{flowId}`: the Open Integration Hub webhook
 * ingress. The first node receives `{headers, query, body}` (POST) or `{headers, body:
 * <query>}` (GET), only while the flow is active; anything else is a 404, decided before
 * the body is read. The answer is 202 with the execution id, or with `respond: sync`
 * the flow's `respond` node's answer.
 */
export async function registerWebhookRoutes(app: HttpApp, options: WebhookRoutesOptions): Promise<void> {
  await app.register((instance, _options, done) => {
    const scope = instance as unknown as HttpApp;
    // Any body, kept as bytes: the signature is computed over exactly what was sent. Read
    // here rather than by fastify, whose limit is one per route: a body sent without a
    // Content-Length is refused as soon as it passes its flow's limit, not after 10 MiB.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (request, payload, done) => readBody(payload, bodyLimit(request.webhook), done));

    scope.addHook('onRequest', async (request, reply) => {
      const { flowId } = request.params as { flowId?: string };
      const served = flowId ? await options.webhooks.served(flowId) : undefined;
      if (!served) return sendProblem(request, reply, new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', 'No active flow has a webhook here.'));
      const limit = bodyLimit(served);
      const length = Number(request.headers['content-length'] ?? 0);
      if (length > limit) return sendProblem(request, reply, tooLarge(limit));
      request.webhook = served;
      return undefined;
    });

    const schema = { tags: ['webhooks'], params: { type: 'object', properties: { flowId: { type: 'string', maxLength: 100 } }, required: ['flowId'] } };
    scope.post('/hook/:flowId', { config: { scope: 'public' }, schema: { ...schema, summary: "Starts the flow with {headers, query, body}" } }, (request, reply) =>
      accept(request, reply, options, 'POST'),
    );
    scope.get('/hook/:flowId', { config: { scope: 'public' }, schema: { ...schema, summary: 'Starts the flow with {headers, body: <query parameters>}' } }, (request, reply) =>
      accept(request, reply, options, 'GET'),
    );
    done();
  });
}

async function accept(request: FastifyRequest, reply: FastifyReply, options: WebhookRoutesOptions, method: 'GET' | 'POST'): Promise<unknown> {
  const served = request.webhook!;
  const { flow, trigger } = served;
  const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);

  if (trigger.hmac) {
    const key = await options.secrets(flow.tenant, trigger.hmac.secret).catch(() => undefined);
    if (key === undefined) throw new FlowgateError('FLOWGATE_ERR_WEBHOOK_SIGNATURE', 'The webhook cannot check signatures: its secret is missing.');
    const header = request.headers[SIGNATURE_HEADER];
    const verdict = verifySignature(Array.isArray(header) ? header[0] : header, raw, key, options.clock.now());
    if (!verdict.ok || !(await options.webhooks.useSignature(flow.id, verdict.signature, verdict.timestamp * 1000 + SIGNATURE_WINDOW_MS))) {
      const reason = verdict.ok ? 'This signature was used before: a replay is refused.' : verdict.reason;
      options.audit.record({ action: 'flows.webhook.refused', tenant: flow.tenant, actor: 'anonymous', outcome: 'failure', target: `flow:${flow.id}`, traceId: request.id, details: { reason } });
      throw new FlowgateError('FLOWGATE_ERR_WEBHOOK_SIGNATURE', reason);
    }
  }

  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (!WITHHELD_HEADERS.has(name) && value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const query = { ...(request.query as Record<string, string>) };
  const message = method === 'GET' ? { headers, body: query } : { headers, query, body: parseBody(raw, request.headers['content-type']) };
  const keyHeader = request.headers['idempotency-key'];
  const idempotencyKey = typeof keyHeader === 'string' && keyHeader.length > 0 ? keyHeader.slice(0, 256) : undefined;

  const { execution, created } = await options.engine.start(flow, { input: message, trigger: 'webhook', callerKey: idempotencyKey, traceparent: formatTraceparent(request.trace) });
  void reply.header('location', `/api/v1/executions/${execution.id}`);
  if (!created) void reply.header('idempotent-replayed', 'true');
  if (trigger.respond !== 'sync') return reply.code(202).send({ execution_id: execution.id, status: execution.status });

  const answer = await options.engine.answer(execution.id, trigger.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS);
  // A tenant's flow answers from Flowgate's own origin, where the admin UI and the login
  // form live: what it sends is never run there as a page (sandbox, no sniffing), and it
  // sets no cookie (the login form's CSRF cookie is one) and no framing header.
  void reply.header('content-security-policy', 'sandbox');
  void reply.header('x-content-type-options', 'nosniff');
  if (answer.kind === 'responded') {
    const response = answer.response as { status?: number; headers?: Record<string, string>; body?: unknown };
    for (const [name, value] of Object.entries(response.headers ?? {})) {
      const lower = name.toLowerCase();
      if (!WITHHELD_ANSWER_HEADERS.has(lower) && !isHopByHop(lower)) void reply.header(name, value);
    }
    return reply.code(response.status ?? 200).send(response.body ?? null);
  }
  if (answer.kind === 'finished') {
    const row = answer.execution;
    return reply.code(200).send({ execution_id: row.id, status: row.status, output: row.output ? (JSON.parse(row.output) as unknown) : null, error: row.error ? (JSON.parse(row.error) as unknown) : null });
  }
  throw new FlowgateError('FLOWGATE_ERR_WEBHOOK_TIMEOUT', `The flow did not answer within ${trigger.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS} ms; execution ${execution.id} goes on.`, {
    extensions: { execution_id: execution.id },
  });
}

/** The largest body a served webhook takes (its flow's setting, else 1 MiB; never over 10 MiB). */
function bodyLimit(served: ServedWebhook | undefined): number {
  return Math.min(served?.trigger.maxBodyBytes ?? DEFAULT_MAX_BODY, LARGEST_BODY);
}

function tooLarge(limit: number): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_REQUEST_TOO_LARGE', `This webhook accepts bodies up to ${limit} bytes.`);
}

/** Reads a body up to `limit` bytes; one byte more ends the read with request-too-large, the rest left unread. */
function readBody(payload: Readable, limit: number, done: (error: Error | null, body?: Buffer) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  const finish = (error: Error | null, body?: Buffer) => {
    payload.removeListener('data', onData);
    payload.removeListener('end', onEnd);
    payload.removeListener('error', onError);
    done(error, body);
  };
  const onData = (chunk: Buffer | string) => {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += bytes.length;
    if (size > limit) finish(tooLarge(limit));
    else chunks.push(bytes);
  };
  const onEnd = () => finish(null, Buffer.concat(chunks, size));
  const onError = (error: Error & { statusCode?: number }) => {
    if (!(typeof error.statusCode === 'number' && error.statusCode >= 400)) error.statusCode = 400;
    finish(error);
  };
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.resume();
}

/** JSON and form bodies become objects; anything else is passed on as text. */
function parseBody(raw: Buffer, contentType: string | undefined): unknown {
  if (raw.length === 0) return {};
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const text = raw.toString('utf8');
  if (type === 'application/json' || type.endsWith('+json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new FlowgateError('FLOWGATE_ERR_REQUEST_MALFORMED_BODY', 'The request body is not valid JSON.', { cause: error });
    }
  }
  if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(text));
  return text;
}
