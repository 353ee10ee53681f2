import type { Kysely, Selectable } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import { isUniqueViolation, pageSize, toPage, type Page } from '../storage/index.js';
import type { IamTables, UsersTable } from './iam.tables.js';

export type UserRow = Selectable<UsersTable>;

/** Users of a tenant. Every method takes the tenant first and filters by it. */
export class UserRepository {
  constructor(private readonly db: Kysely<IamTables>) {}

  async create(row: Omit<UserRow, 'disabled'>, trx: Kysely<IamTables> = this.db): Promise<UserRow> {
    try {
      await trx.insertInto('users').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) {
        throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', `A user named "${row.username}" already exists in this tenant.`);
      }
      throw err;
    }
    return { ...row, disabled: 0 };
  }

  async get(tenantId: string, id: string): Promise<UserRow | undefined> {
    return this.db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
  }

  async findByUsername(tenantId: string, username: string): Promise<UserRow | undefined> {
    return this.db
      .selectFrom('users')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('username', '=', username)
      .executeTakeFirst();
  }

  async list(tenantId: string, limit?: number, cursor?: string): Promise<Page<UserRow>> {
    const n = pageSize(limit);
    let q = this.db.selectFrom('users').selectAll().where('tenant_id', '=', tenantId).orderBy('id').limit(n + 1);
    if (cursor) q = q.where('id', '>', cursor);
    return toPage(await q.execute(), n, (r) => r.id, (r) => r);
  }

  async update(
    tenantId: string,
    id: string,
    patch: Partial<Pick<UserRow, 'display_name' | 'password_hash' | 'disabled'>>,
  ): Promise<boolean> {
    const result = await this.db
      .updateTable('users')
      .set(patch)
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async delete(tenantId: string, id: string, trx: Kysely<IamTables> = this.db): Promise<boolean> {
    const result = await trx.deleteFrom('users').where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}
