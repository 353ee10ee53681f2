import { EXECUTION_STEPS_PAGE, type ExecutionStatus, type ExecutionView } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import { FlowgateError } from '../../errors/index.js';
import { isoTime } from '../../kernel/index.js';
import { pageSize, type Page, type Store } from '../../storage/index.js';
import type { FlowsTables } from '../flows.tables.js';
import type { ExecutionRow, StepRow } from './execution-model.js';

/** Inputs and outputs larger than this are shown cut (the engine keeps them whole). */
export const SHOWN_BYTES = 64 * 1024;

export interface ExecutionFilter {
  readonly status?: ExecutionStatus | undefined;
  readonly flow?: string | undefined;
  /** Created at or after this time (epoch ms). */
  readonly since?: number | undefined;
  /** Created before this time (epoch ms). */
  readonly until?: number | undefined;
  readonly cursor?: string | undefined;
  readonly limit?: number | undefined;
}

/** Reading executions for the API: per tenant, newest first, with large documents cut. */
export class ExecutionQueries {
  private readonly db: Kysely<FlowsTables>;

  constructor(store: Store) {
    this.db = store.db<FlowsTables>();
  }

  async list(tenant: string, filter: ExecutionFilter): Promise<Page<ExecutionView>> {
    const limit = pageSize(filter.limit);
    let query = this.db.selectFrom('flow_executions').selectAll().where('tenant', '=', tenant);
    if (filter.status) query = query.where('status', '=', filter.status);
    if (filter.flow) {
      const flow = filter.flow;
      const ids = this.db.selectFrom('flows').select('id').where('tenant', '=', tenant).where((eb) => eb.or([eb('id', '=', flow), eb('name', '=', flow)]));
      query = query.where('flow_id', 'in', ids);
    }
    if (filter.since !== undefined) query = query.where('created_at', '>=', filter.since);
    if (filter.until !== undefined) query = query.where('created_at', '<', filter.until);
    // Ids are UUIDv7: ordering by id is ordering by creation time.
    if (filter.cursor) query = query.where('id', '<', filter.cursor);
    const rows = await query.orderBy('id', 'desc').limit(limit + 1).execute();
    const more = rows.length > limit;
    const kept = more ? rows.slice(0, limit) : rows;
    return { items: kept.map((r) => executionView(r)), next_cursor: more ? kept[kept.length - 1]!.id : null };
  }

  /** An execution with a page of its steps (in the order they were made), from `stepsFrom`. */
  async get(tenant: string, id: string, stepsFrom = 0): Promise<ExecutionView> {
    const row = await this.db.selectFrom('flow_executions').selectAll().where('id', '=', id).where('tenant', '=', tenant).executeTakeFirst();
    if (!row) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', 'No such execution.');
    const steps = await this.db
      .selectFrom('flow_steps')
      .selectAll()
      .where('execution_id', '=', id)
      .orderBy('created_at')
      .orderBy('id')
      .offset(stepsFrom)
      .limit(EXECUTION_STEPS_PAGE + 1)
      .execute();
    const more = steps.length > EXECUTION_STEPS_PAGE;
    return { ...executionView(row, more ? steps.slice(0, EXECUTION_STEPS_PAGE) : steps), steps_next: more ? stepsFrom + EXECUTION_STEPS_PAGE : null };
  }
}

/** An execution as the API shows it. */
export function executionView(row: ExecutionRow, steps?: readonly StepRow[]): ExecutionView {
  return {
    id: row.id,
    flow_id: row.flow_id,
    flow_version: Number(row.flow_version),
    status: row.status as ExecutionStatus,
    trigger: row.trigger,
    input: shown(row.input),
    output: shown(row.output),
    error: row.error ? (JSON.parse(row.error) as ExecutionView['error']) : null,
    parent_execution_id: row.parent_execution_id,
    trace_id: row.traceparent.split('-')[1] ?? '',
    created_at: isoTime(Number(row.created_at)),
    finished_at: row.finished_at === null ? null : isoTime(Number(row.finished_at)),
    ...(steps
      ? {
          steps: steps.map((s) => ({
            id: s.id,
            node: s.node,
            phase: s.phase,
            status: s.status as NonNullable<ExecutionView['steps']>[number]['status'],
            attempt: Number(s.attempt),
            input: shown(s.input),
            output: shown(s.output),
            error: s.error ? (JSON.parse(s.error) as { code: string; message: string }) : null,
            started_at: s.started_at === null ? null : isoTime(Number(s.started_at)),
            finished_at: s.finished_at === null ? null : isoTime(Number(s.finished_at)),
          })),
        }
      : {}),
  };
}

function shown(text: string | null): unknown {
  if (text === null) return null;
  // The cap is in bytes (UTF-8): a character is up to 3 of them, so shorter texts need no count.
  const bytes = text.length * 3 > SHOWN_BYTES ? Buffer.byteLength(text) : text.length;
  if (bytes > SHOWN_BYTES) return { truncated: true, bytes, preview: text.slice(0, 1024) };
  return JSON.parse(text) as unknown;
}
