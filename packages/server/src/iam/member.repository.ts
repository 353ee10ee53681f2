import type { Kysely, Selectable } from 'kysely';
import { roleRank, type Role } from '@flowgate/contracts';
import { pageSize, toPage, type Page } from '../storage/index.js';
import type { IamTables, MembersTable } from './iam.tables.js';
import type { Principal } from './principal.js';

export type MemberRow = Selectable<MembersTable>;

/** A member with the name of the principal behind it. */
export interface MemberView extends MemberRow {
  name: string;
}

/** Members: a principal's role in a tenant. */
export class MemberRepository {
  constructor(private readonly db: Kysely<IamTables>) {}

  async upsert(row: MemberRow, trx: Kysely<IamTables> = this.db): Promise<void> {
    await trx
      .insertInto('members')
      .values(row)
      .onConflict((oc) => oc.columns(['tenant_id', 'principal_id']).doUpdateSet({ role: row.role }))
      .execute();
  }

  async get(tenantId: string, principalId: string): Promise<MemberRow | undefined> {
    return this.db
      .selectFrom('members')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('principal_id', '=', principalId)
      .executeTakeFirst();
  }

  async roleOf(tenantId: string, principalId: string): Promise<Role | undefined> {
    return (await this.get(tenantId, principalId))?.role as Role | undefined;
  }

  /**
   * Whether the caller ranks at least `role` in its tenant: nobody grants or acts for a
   * role above their own. Callers without a role (service accounts with plain scopes,
   * external tokens) may for any role but owner.
   */
  async ranksAtLeast(caller: Principal, role: Role): Promise<boolean> {
    const callerRole = caller.kind === 'external' ? undefined : await this.roleOf(caller.tenant, caller.sub);
    return callerRole ? roleRank(callerRole) <= roleRank(role) : role !== 'owner';
  }

  async list(tenantId: string, limit?: number, cursor?: string): Promise<Page<MemberView>> {
    const n = pageSize(limit);
    let q = this.db
      .selectFrom('members as m')
      .leftJoin('users as u', (j) => j.onRef('u.id', '=', 'm.principal_id').onRef('u.tenant_id', '=', 'm.tenant_id'))
      .leftJoin('service_accounts as s', (j) => j.onRef('s.id', '=', 'm.principal_id').onRef('s.tenant_id', '=', 'm.tenant_id'))
      .select(['m.tenant_id', 'm.principal_id', 'm.principal_type', 'm.role', 'm.created_at', 'u.username', 's.name as account_name'])
      .where('m.tenant_id', '=', tenantId)
      .orderBy('m.principal_id')
      .limit(n + 1);
    if (cursor) q = q.where('m.principal_id', '>', cursor);
    const rows = await q.execute();
    return toPage(rows, n, (r) => r.principal_id, (r) => ({
      tenant_id: r.tenant_id,
      principal_id: r.principal_id,
      principal_type: r.principal_type,
      role: r.role,
      created_at: r.created_at,
      name: r.username ?? r.account_name ?? r.principal_id,
    }));
  }

  async countOwners(tenantId: string, trx: Kysely<IamTables> = this.db): Promise<number> {
    const row = await trx
      .selectFrom('members')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('role', '=', 'owner')
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async delete(tenantId: string, principalId: string, trx: Kysely<IamTables> = this.db): Promise<boolean> {
    const result = await trx
      .deleteFrom('members')
      .where('tenant_id', '=', tenantId)
      .where('principal_id', '=', principalId)
      .executeTakeFirst();
    return Number(result.numDeletedRows) > 0;
  }
}
