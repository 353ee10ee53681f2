import { Readable } from 'node:stream';
import { API_SCOPES, AUDIT_SCOPES, AuditPageSchema, AuditQuerySchema, AuditVerifySchema, type AuditQueryParams, type AuditVerify } from '@flowgate/contracts';
import type { FastifyRequest } from 'fastify';
import { FlowgateError } from '../errors/index.js';
import { bearerSecured, problemResponses, queryTime, type HttpApp } from '../http/index.js';
import { callerOf, principalHas } from '../iam/index.js';
import { PLATFORM_SCOPE, type AuditQuery } from './audit-log.js';
import type { AuditService } from './audit-service.js';

export interface AuditRoutesOptions {
  readonly audit: AuditService;
}

const problems = problemResponses;
const secured = bearerSecured;
const tags = ['audit'];
/** Records per page of an export. */
const EXPORT_PAGE = 500;

/**
 * /api/v1/audit: a tenant reads, exports and verifies its own audit log; platform
 * admins do the same for the platform's records with `scope=platform`.
 */
export function registerAuditRoutes(app: HttpApp, { audit }: AuditRoutesOptions): void {
  const log = audit.log;
  app.get(
    '/api/v1/audit',
    {
      config: { scope: AUDIT_SCOPES.read },
      schema: { ...secured, tags, summary: 'Audit records, newest first, filtered; cursor pages', querystring: AuditQuerySchema, response: { 200: AuditPageSchema, ...problems(400, 401, 403) } },
    },
    async (request) => {
      const query = request.query;
      const page = await log.query(scopeOf(request, query), { ...filters(query), before: query.cursor !== undefined ? Number(query.cursor) : undefined, limit: query.limit ?? 100 });
      return { items: page.items, next_cursor: page.next !== undefined ? String(page.next) : null };
    },
  );

  app.get(
    '/api/v1/audit/export',
    {
      config: { scope: AUDIT_SCOPES.read },
      schema: {
        ...secured,
        tags,
        summary: 'Every matching record, oldest first, as JSON Lines (application/x-ndjson)',
        querystring: AuditQuerySchema,
        response: { 200: { description: 'One record per line', content: { 'application/x-ndjson': { schema: { type: 'string' } } } }, ...problems(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const query = request.query;
      const scope = scopeOf(request, query);
      const base = filters(query);
      async function* lines(): AsyncGenerator<string> {
        let after = 0;
        for (;;) {
          const page = await log.query(scope, { ...base, after, limit: EXPORT_PAGE });
          for (const record of page.items) yield `${JSON.stringify(record)}\n`;
          if (page.next === undefined) return;
          after = page.next;
        }
      }
      // Streamed page by page; the schema above documents the lines, Fastify pipes the stream.
      return reply.type('application/x-ndjson').send(Readable.from(lines()) as unknown as string);
    },
  );

  app.get(
    '/api/v1/audit/verify',
    {
      config: { scope: AUDIT_SCOPES.read },
      schema: {
        ...secured,
        tags,
        summary: 'Walks the hash chain and its signed checkpoints; names the first record changed, removed or inserted',
        querystring: AuditQuerySchema,
        response: { 200: AuditVerifySchema, ...problems(400, 401, 403) },
      },
    },
    async (request): Promise<AuditVerify> => {
      const report = await audit.verify(scopeOf(request, request.query));
      return {
        ok: report.ok,
        records: report.records,
        checkpoints: report.checkpoints,
        verified_to: report.verifiedTo,
        ...(report.problem
          ? { problem: { kind: report.problem.kind, seq: report.problem.seq, detail: report.problem.detail, ...(report.problem.eventId ? { event_id: report.problem.eventId } : {}) } }
          : {}),
      };
    },
  );
}

function scopeOf(request: FastifyRequest, query: AuditQueryParams): string {
  const caller = callerOf(request);
  if (query.scope !== 'platform') return caller.tenant;
  if (!principalHas(caller, API_SCOPES.platformAdmin)) {
    throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `The platform's audit records need the "${API_SCOPES.platformAdmin}" scope.`, { extensions: { required_scope: API_SCOPES.platformAdmin } });
  }
  return PLATFORM_SCOPE;
}

function filters(query: AuditQueryParams): Omit<AuditQuery, 'limit'> {
  return {
    from: query.from !== undefined ? queryTime(query.from, 'from') : undefined,
    to: query.to !== undefined ? queryTime(query.to, 'to') : undefined,
    action: query.action,
    actor: query.actor,
    outcome: query.outcome,
    traceId: query.trace_id,
  };
}

