import type { Kysely } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { isUniqueViolation, pageSize, toPage, type Page } from '../storage/index.js';
import type { IamTables, TenantsTable } from './iam.tables.js';

/** Tenants. The only IAM table not scoped by tenant: it is the list of tenants. */
export class TenantRepository {
  constructor(private readonly db: Kysely<IamTables>) {}

  async create(id: string, now: number, trx: Kysely<IamTables> = this.db): Promise<TenantsTable> {
    const row = { id, created_at: now };
    try {
      await trx.insertInto('tenants').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', `A tenant named "${id}" already exists.`);
      throw err;
    }
    return row;
  }

  async get(id: string): Promise<TenantsTable | undefined> {
    return this.db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async list(limit?: number, cursor?: string): Promise<Page<TenantsTable>> {
    const n = pageSize(limit);
    let q = this.db.selectFrom('tenants').selectAll().orderBy('id').limit(n + 1);
    if (cursor) q = q.where('id', '>', cursor);
    return toPage(await q.execute(), n, (r) => r.id, (r) => r);
  }

  async count(): Promise<number> {
    const row = await this.db.selectFrom('tenants').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
