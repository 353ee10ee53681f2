import type { Kysely, Selectable } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { isUniqueViolation, pageSize, toPage, type Page } from '../storage/index.js';
import type { IamTables, ServiceAccountsTable } from './iam.tables.js';

export type ServiceAccountRow = Selectable<ServiceAccountsTable>;

/** Service accounts (OAuth confidential clients) of a tenant. */
export class ServiceAccountRepository {
  constructor(private readonly db: Kysely<IamTables>) {}

  async create(row: Omit<ServiceAccountRow, 'disabled'>, trx: Kysely<IamTables> = this.db): Promise<ServiceAccountRow> {
    try {
      await trx.insertInto('service_accounts').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', 'This client id is already taken.');
      throw err;
    }
    return { ...row, disabled: 0 };
  }

  async get(tenantId: string, id: string): Promise<ServiceAccountRow | undefined> {
    return this.db
      .selectFrom('service_accounts')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
  }

  /**
   * Looks an account up by its client id, across tenants: client ids are global, and
   * client authentication happens before the tenant is known.
   */
  async findByClientId(clientId: string): Promise<ServiceAccountRow | undefined> {
    return this.db.selectFrom('service_accounts').selectAll().where('client_id', '=', clientId).executeTakeFirst();
  }

  async list(tenantId: string, limit?: number, cursor?: string): Promise<Page<ServiceAccountRow>> {
    const n = pageSize(limit);
    let q = this.db.selectFrom('service_accounts').selectAll().where('tenant_id', '=', tenantId).orderBy('id').limit(n + 1);
    if (cursor) q = q.where('id', '>', cursor);
    return toPage(await q.execute(), n, (r) => r.id, (r) => r);
  }

  async setSecretHash(tenantId: string, id: string, secretHash: string): Promise<boolean> {
    const result = await this.db
      .updateTable('service_accounts')
      .set({ secret_hash: secretHash })
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async delete(tenantId: string, id: string, trx: Kysely<IamTables> = this.db): Promise<boolean> {
    const result = await trx
      .deleteFrom('service_accounts')
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}

/** Reads the JSON scope list stored with an account. */
export function accountScopes(row: Pick<ServiceAccountRow, 'scopes'>): string[] {
  const parsed: unknown = JSON.parse(row.scopes);
  return Array.isArray(parsed) ? parsed.filter((s): s is string => typeof s === 'string') : [];
}
