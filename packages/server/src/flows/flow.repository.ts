import type { FlowDefinition, FlowStatus, FlowView } from '@flowgate/contracts';
import type { Kysely, Transaction } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { isoTime, newId, type Clock } from '../kernel/index.js';
import { isUniqueViolation, pageSize, toPage, type Page, type Store } from '../storage/index.js';
import type { ComponentRegistry } from './components/registry.js';
import { checkDefinition } from './definition.js';
import type { FlowsTables } from './flows.tables.js';

/** A stored flow, as the other flow parts read it. */
export interface FlowRecord {
  readonly id: string;
  readonly tenant: string;
  readonly name: string;
  readonly version: number;
  readonly status: FlowStatus;
  readonly statusReason: string | null;
  readonly generation: number;
  readonly statusChangedAt: number;
  readonly definition: FlowDefinition;
  readonly createdAt: number;
  readonly updatedAt: number;
}

type FlowRow = FlowsTables['flows'];
type Db = Kysely<FlowsTables>;

/** Flows that are running (or on their way) cannot be edited or deleted: stop them first. */
const EDITABLE: readonly FlowStatus[] = ['inactive', 'failed'];

/**
 * Flow definitions and their versions, per tenant (another tenant's flow is not found).
 * Every save validates the whole definition first and keeps the previous versions, so an
 * execution can always read the version it started with.
 */
export class FlowRepository {
  private readonly db: Db;

  constructor(
    store: Store,
    private readonly clock: Clock,
    private readonly components: ComponentRegistry,
  ) {
    this.db = store.db<FlowsTables>();
  }

  /** Throws FLOWGATE_ERR_FLOW_INVALID with every problem when `input` is not a valid definition. */
  check(input: unknown): FlowDefinition {
    const problems = checkDefinition(input, this.components);
    if (problems.length > 0) {
      const first = problems[0]!;
      throw new FlowgateError('FLOWGATE_ERR_FLOW_INVALID', `${first.path}: ${first.message}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`, {
        errors: problems.map((p) => ({ path: p.path, message: p.message })),
      });
    }
    return input as FlowDefinition;
  }

  async create(tenant: string, input: unknown): Promise<FlowRecord> {
    const definition = this.check(input);
    const now = this.clock.now();
    const row: FlowRow = {
      id: newId(),
      tenant,
      name: definition.name,
      version: 1,
      status: 'inactive',
      status_reason: null,
      generation: 0,
      status_changed_at: now,
      definition: JSON.stringify(definition),
      created_at: now,
      updated_at: now,
    };
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx.insertInto('flows').values(row).execute();
        await trx.insertInto('flow_versions').values({ flow_id: row.id, version: 1, definition: row.definition, created_at: now }).execute();
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', `A flow called "${definition.name}" exists already.`);
      throw error;
    }
    return toRecord(row);
  }

  /** Saves a new version of a stopped flow. */
  async update(tenant: string, id: string, input: unknown): Promise<FlowRecord> {
    const definition = this.check(input);
    const now = this.clock.now();
    try {
      return await this.db.transaction().execute(async (trx) => {
        const current = await this.row(tenant, id, trx);
        const text = JSON.stringify(definition);
        // The same definition again (`flowgate flows apply` of an unchanged file) changes
        // nothing: no new version, and no need to stop the flow first.
        if (text === current.definition) return toRecord(current);
        assertEditable(current);
        const version = current.version + 1;
        const changed = await trx
          .updateTable('flows')
          .set({ name: definition.name, version, definition: text, updated_at: now })
          .where('id', '=', id)
          .where('version', '=', current.version)
          .where('status', 'in', EDITABLE as FlowStatus[])
          .executeTakeFirst();
        if (Number(changed.numUpdatedRows) !== 1) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', 'The flow changed meanwhile; read it again and retry.');
        await trx.insertInto('flow_versions').values({ flow_id: id, version, definition: text, created_at: now }).execute();
        return toRecord({ ...current, name: definition.name, version, definition: text, updated_at: now });
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', `A flow called "${definition.name}" exists already.`);
      throw error;
    }
  }

  async delete(tenant: string, id: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const current = await this.row(tenant, id, trx);
      assertEditable(current);
      await trx.deleteFrom('flows').where('id', '=', id).where('status', 'in', EDITABLE as FlowStatus[]).execute();
      // Versions stay: executions of the flow still refer to them.
    });
  }

  async get(tenant: string, id: string): Promise<FlowRecord> {
    return toRecord(await this.row(tenant, id, this.db));
  }

  /** A flow by id or by name, within the tenant. */
  async find(tenant: string, idOrName: string): Promise<FlowRecord> {
    const row = await this.db.selectFrom('flows').selectAll().where('tenant', '=', tenant).where((eb) => eb.or([eb('id', '=', idOrName), eb('name', '=', idOrName)])).executeTakeFirst();
    if (!row) throw notFound();
    return toRecord(row);
  }

  /** Any tenant's flow, for parts that serve by flow id (webhooks). */
  async byId(id: string, db: Kysely<FlowsTables> = this.db): Promise<FlowRecord | undefined> {
    const row = await db.selectFrom('flows').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toRecord(row) : undefined;
  }

  async list(tenant: string, options: { cursor?: string | undefined; limit?: number | undefined; status?: FlowStatus | undefined } = {}): Promise<Page<FlowRecord>> {
    const limit = pageSize(options.limit);
    let query = this.db.selectFrom('flows').selectAll().where('tenant', '=', tenant);
    if (options.status) query = query.where('status', '=', options.status);
    if (options.cursor) query = query.where('id', '>', options.cursor);
    const rows = await query.orderBy('id').limit(limit + 1).execute();
    return toPage(rows, limit, (r) => r.id, toRecord);
  }

  /** The definition an execution runs: the version it started with. */
  async version(flowId: string, version: number): Promise<FlowDefinition> {
    const row = await this.db.selectFrom('flow_versions').select('definition').where('flow_id', '=', flowId).where('version', '=', version).executeTakeFirst();
    if (!row) throw notFound();
    return JSON.parse(row.definition) as FlowDefinition;
  }

  private async row(tenant: string, id: string, db: Db | Transaction<FlowsTables>): Promise<FlowRow> {
    const row = await db.selectFrom('flows').selectAll().where('id', '=', id).where('tenant', '=', tenant).executeTakeFirst();
    if (!row) throw notFound();
    return row;
  }
}

function assertEditable(row: FlowRow): void {
  if (!EDITABLE.includes(row.status as FlowStatus)) {
    throw new FlowgateError('FLOWGATE_ERR_FLOW_STATUS_CONFLICT', `The flow is ${row.status}; stop it before changing or deleting it.`, { extensions: { status: row.status } });
  }
}

function notFound(): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', 'No such flow.');
}

export function toRecord(row: FlowRow): FlowRecord {
  return {
    id: row.id,
    tenant: row.tenant,
    name: row.name,
    version: Number(row.version),
    status: row.status as FlowStatus,
    statusReason: row.status_reason,
    generation: Number(row.generation),
    statusChangedAt: Number(row.status_changed_at),
    definition: JSON.parse(row.definition) as FlowDefinition,
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
  };
}

/** A flow as the API shows it. */
export function flowView(flow: FlowRecord): FlowView {
  return {
    id: flow.id,
    version: flow.version,
    status: flow.status,
    status_reason: flow.statusReason,
    definition: flow.definition,
    created_at: isoTime(flow.createdAt),
    updated_at: isoTime(flow.updatedAt),
  };
}
