import {
  ROLE_SCOPES,
  missingScopes,
  roleRank,
  type Role,
  type ServiceAccount,
  type ServiceAccountCreated,
  type Tenant,
  type User,
  type Member,
} from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import type { AuditRecorder } from '../kernel/index.js';
import { FlowgateError } from '../errors/index.js';
import { isoTime, newId, randomToken, type Clock } from '../kernel/index.js';
import type { Page } from '../storage/index.js';
import type { IamTables, TenantsTable } from './iam.tables.js';
import type { MemberRepository } from './member.repository.js';
import { principalHas, type Principal } from './principal.js';
import type { SecretHasher } from './secret-hasher.js';
import { accountScopes, type ServiceAccountRepository, type ServiceAccountRow } from './service-account.repository.js';
import type { TenantRepository } from './tenant.repository.js';
import type { UserRepository, UserRow } from './user.repository.js';

export interface IamAdminDeps {
  readonly db: Kysely<IamTables>;
  readonly tenants: TenantRepository;
  readonly users: UserRepository;
  readonly accounts: ServiceAccountRepository;
  readonly members: MemberRepository;
  readonly hasher: SecretHasher;
  readonly clock: Clock;
  readonly audit: AuditRecorder;
  /** Called when a principal loses access, so its refresh tokens die with it. */
  readonly revokeSessionsOf: (tenantId: string, principalId: string) => Promise<void>;
}

const notFound = (what: string) => new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `No ${what} with that id in this tenant.`);

/** What callers of the admin API may do, and doing it. Every method acts inside `caller.tenant`. */
export class IamAdmin {
  constructor(private readonly deps: IamAdminDeps) {}

  // --- Tenants ---------------------------------------------------------------------------

  /** Creates a tenant and its first owner, a service account whose secret is shown once. */
  async createTenant(caller: Principal, id: string, traceId: string): Promise<{ tenant: Tenant; owner: ServiceAccountCreated }> {
    const now = this.deps.clock.now();
    const secret = newClientSecret();
    const secretHash = await this.deps.hasher.hash(secret);
    const { tenant, account } = await this.deps.db.transaction().execute(async (trx) => {
      const tenant = await this.deps.tenants.create(id, now, trx);
      const account = await this.insertAccount(trx, id, 'owner', ['*:*'], secretHash, caller.sub, 'owner', now);
      return { tenant, account };
    });
    this.deps.audit.record({ action: 'iam.tenant.created', tenant: id, actor: caller.sub, outcome: 'success', target: `tenant:${id}`, traceId });
    return { tenant: tenantView(tenant), owner: { ...accountView(account, 'owner'), client_secret: secret } };
  }

  /** Platform administrators see every tenant; anyone else sees their own. */
  async listTenants(caller: Principal, limit?: number, cursor?: string): Promise<Page<Tenant>> {
    if (principalHas(caller, 'platform:admin')) {
      const page = await this.deps.tenants.list(limit, cursor);
      return { items: page.items.map(tenantView), next_cursor: page.next_cursor };
    }
    const own = await this.deps.tenants.get(caller.tenant);
    return { items: own && (cursor === undefined || own.id > cursor) ? [tenantView(own)] : [], next_cursor: null };
  }

  async getTenant(caller: Principal, id: string): Promise<Tenant> {
    // Another tenant is a 404, exactly like a tenant that does not exist.
    if (id !== caller.tenant && !principalHas(caller, 'platform:admin')) throw notFound('tenant');
    const row = await this.deps.tenants.get(id);
    if (!row) throw notFound('tenant');
    return tenantView(row);
  }

  // --- Service accounts ------------------------------------------------------------------

  /** Creates a service account holding `scopes`, each of which the caller must hold itself. */
  async createServiceAccount(caller: Principal, name: string, scopes: readonly string[], traceId: string): Promise<ServiceAccountCreated> {
    const missing = missingScopes(caller.scopes, scopes);
    if (missing.length > 0) {
      throw new FlowgateError('FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE', `You cannot grant scopes you do not hold: ${missing.join(' ')}.`, {
        extensions: { scopes: missing },
      });
    }
    const secret = newClientSecret();
    const secretHash = await this.deps.hasher.hash(secret);
    const account = await this.insertAccount(this.deps.db, caller.tenant, name, [...scopes], secretHash, caller.sub, null, this.deps.clock.now());
    this.deps.audit.record({
      action: 'iam.service_account.created',
      tenant: caller.tenant,
      actor: caller.sub,
      outcome: 'success',
      target: `service_account:${account.id}`,
      traceId,
      details: { scopes: scopes.join(' ') },
    });
    return { ...accountView(account, null), client_secret: secret };
  }

  async listServiceAccounts(caller: Principal, limit?: number, cursor?: string): Promise<Page<ServiceAccount>> {
    const page = await this.deps.accounts.list(caller.tenant, limit, cursor);
    const roles = await this.rolesOf(caller.tenant, page.items.map((a) => a.id));
    return { items: page.items.map((a) => accountView(a, roles.get(a.id) ?? null)), next_cursor: page.next_cursor };
  }

  async getServiceAccount(caller: Principal, id: string): Promise<ServiceAccount> {
    const account = await this.deps.accounts.get(caller.tenant, id);
    if (!account) throw notFound('service account');
    return accountView(account, (await this.deps.members.roleOf(caller.tenant, id)) ?? null);
  }

  /** Replaces an account's secret; the old one stops working at once. */
  async rotateServiceAccountSecret(caller: Principal, id: string, traceId: string): Promise<ServiceAccountCreated> {
    const account = await this.deps.accounts.get(caller.tenant, id);
    if (!account) throw notFound('service account');
    // Its new secret is its power: the caller must hold its scopes and be able to grant its role.
    this.assertCanManage(caller, accountScopes(account));
    const currentRole = await this.deps.members.roleOf(caller.tenant, id);
    if (currentRole) await this.assertRoleGrantable(caller, currentRole);
    const secret = newClientSecret();
    await this.deps.accounts.setSecretHash(caller.tenant, id, await this.deps.hasher.hash(secret));
    await this.deps.revokeSessionsOf(caller.tenant, id);
    this.deps.audit.record({ action: 'iam.service_account.secret_rotated', tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: `service_account:${id}`, traceId });
    const role = (await this.deps.members.roleOf(caller.tenant, id)) ?? null;
    return { ...accountView(account, role), client_secret: secret };
  }

  async deleteServiceAccount(caller: Principal, id: string, traceId: string): Promise<void> {
    const account = await this.deps.accounts.get(caller.tenant, id);
    if (!account) throw notFound('service account');
    this.assertCanManage(caller, accountScopes(account));
    await this.removePrincipal(caller, id, async (trx) => {
      await this.deps.accounts.delete(caller.tenant, id, trx);
    });
    this.deps.audit.record({ action: 'iam.service_account.deleted', tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: `service_account:${id}`, traceId });
  }

  // --- Users -------------------------------------------------------------------------------

  async createUser(
    caller: Principal,
    input: { username: string; password: string; role: Role; display_name?: string | undefined },
    traceId: string,
  ): Promise<User> {
    await this.assertRoleGrantable(caller, input.role);
    const now = this.deps.clock.now();
    const passwordHash = await this.deps.hasher.hash(input.password);
    const row = await this.deps.db.transaction().execute(async (trx) => {
      const user = await this.deps.users.create(
        { id: newId(), tenant_id: caller.tenant, username: input.username, password_hash: passwordHash, display_name: input.display_name ?? null, created_at: now },
        trx,
      );
      await this.deps.members.upsert({ tenant_id: caller.tenant, principal_id: user.id, principal_type: 'user', role: input.role, created_at: now }, trx);
      return user;
    });
    this.deps.audit.record({ action: 'iam.user.created', tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: `user:${row.id}`, traceId, details: { role: input.role } });
    return userView(row, input.role);
  }

  async listUsers(caller: Principal, limit?: number, cursor?: string): Promise<Page<User>> {
    const page = await this.deps.users.list(caller.tenant, limit, cursor);
    const roles = await this.rolesOf(caller.tenant, page.items.map((u) => u.id));
    return { items: page.items.map((u) => userView(u, roles.get(u.id) ?? null)), next_cursor: page.next_cursor };
  }

  async getUser(caller: Principal, id: string): Promise<User> {
    const user = await this.deps.users.get(caller.tenant, id);
    if (!user) throw notFound('user');
    return userView(user, (await this.deps.members.roleOf(caller.tenant, id)) ?? null);
  }

  async updateUser(
    caller: Principal,
    id: string,
    patch: { display_name?: string | undefined; password?: string | undefined; disabled?: boolean | undefined },
    traceId: string,
  ): Promise<User> {
    const user = await this.deps.users.get(caller.tenant, id);
    if (!user) throw notFound('user');
    const role = (await this.deps.members.roleOf(caller.tenant, id)) ?? null;
    // Changing someone's password or locking them out is power over their role.
    if ((patch.password !== undefined || patch.disabled !== undefined) && role) await this.assertRoleGrantable(caller, role);
    const change: Partial<Pick<UserRow, 'display_name' | 'password_hash' | 'disabled'>> = {};
    if (patch.display_name !== undefined) change.display_name = patch.display_name;
    if (patch.password !== undefined) change.password_hash = await this.deps.hasher.hash(patch.password);
    if (patch.disabled !== undefined) change.disabled = patch.disabled ? 1 : 0;
    await this.deps.users.update(caller.tenant, id, change);
    if (patch.password !== undefined || patch.disabled === true) await this.deps.revokeSessionsOf(caller.tenant, id);
    this.deps.audit.record({
      action: 'iam.user.updated',
      tenant: caller.tenant,
      actor: caller.sub,
      outcome: 'success',
      target: `user:${id}`,
      traceId,
      details: { fields: Object.keys(patch).join(',') },
    });
    return this.getUser(caller, id);
  }

  async deleteUser(caller: Principal, id: string, traceId: string): Promise<void> {
    const user = await this.deps.users.get(caller.tenant, id);
    if (!user) throw notFound('user');
    await this.removePrincipal(caller, id, async (trx) => {
      await this.deps.users.delete(caller.tenant, id, trx);
    });
    this.deps.audit.record({ action: 'iam.user.deleted', tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: `user:${id}`, traceId });
  }

  // --- Members -----------------------------------------------------------------------------

  async listMembers(caller: Principal, limit?: number, cursor?: string): Promise<Page<Member>> {
    const page = await this.deps.members.list(caller.tenant, limit, cursor);
    return {
      items: page.items.map((m) => ({
        principal_id: m.principal_id,
        principal_type: m.principal_type,
        name: m.name,
        role: m.role as Role,
        created_at: isoTime(m.created_at),
      })),
      next_cursor: page.next_cursor,
    };
  }

  /** Gives a user or service account of this tenant a role (or changes it). */
  async setRole(caller: Principal, principalId: string, role: Role, traceId: string): Promise<Member> {
    const user = await this.deps.users.get(caller.tenant, principalId);
    const account = user ? undefined : await this.deps.accounts.get(caller.tenant, principalId);
    if (!user && !account) throw notFound('user or service account');
    await this.assertRoleGrantable(caller, role);
    const current = await this.deps.members.roleOf(caller.tenant, principalId);
    if (current) await this.assertRoleGrantable(caller, current);
    const now = this.deps.clock.now();
    await this.deps.db.transaction().execute(async (trx) => {
      if (current === 'owner' && role !== 'owner') await this.assertNotLastOwner(caller.tenant, trx);
      await this.deps.members.upsert(
        { tenant_id: caller.tenant, principal_id: principalId, principal_type: user ? 'user' : 'service_account', role, created_at: now },
        trx,
      );
    });
    if (current && roleRank(role) > roleRank(current)) await this.deps.revokeSessionsOf(caller.tenant, principalId);
    this.deps.audit.record({
      action: 'iam.member.role_set',
      tenant: caller.tenant,
      actor: caller.sub,
      outcome: 'success',
      target: `${user ? 'user' : 'service_account'}:${principalId}`,
      traceId,
      details: { role, previous: current ?? null },
    });
    const page = await this.deps.members.get(caller.tenant, principalId);
    return {
      principal_id: principalId,
      principal_type: user ? 'user' : 'service_account',
      name: user ? user.username : account!.name,
      role,
      created_at: isoTime(page?.created_at ?? now),
    };
  }

  async removeMember(caller: Principal, principalId: string, traceId: string): Promise<void> {
    const current = await this.deps.members.roleOf(caller.tenant, principalId);
    if (!current) throw notFound('member');
    await this.removePrincipal(caller, principalId, () => Promise.resolve());
    this.deps.audit.record({ action: 'iam.member.removed', tenant: caller.tenant, actor: caller.sub, outcome: 'success', target: principalId, traceId });
  }

  // --- Rules ---------------------------------------------------------------------------------

  /**
   * Nobody grants a role above their own, and a token can only grant what it carries:
   * an owner's token narrowed by exchange to `users:write` cannot make new owners.
   * Callers without a role (service accounts with plain scopes) may grant any role
   * except owner whose scopes they hold.
   */
  private async assertRoleGrantable(caller: Principal, role: Role): Promise<void> {
    const rankOk = await this.deps.members.ranksAtLeast(caller, role);
    const missing = missingScopes(caller.scopes, ROLE_SCOPES[role]);
    if (!rankOk || missing.length > 0) {
      throw new FlowgateError('FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE', `You cannot grant or change the role "${role}": it is above your own.`);
    }
  }

  /** Managing an account means holding everything it holds. */
  private assertCanManage(caller: Principal, scopes: readonly string[]): void {
    const missing = missingScopes(caller.scopes, scopes);
    if (missing.length > 0) {
      throw new FlowgateError('FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE', `This account holds scopes you do not: ${missing.join(' ')}.`);
    }
  }

  private async assertNotLastOwner(tenantId: string, trx: Kysely<IamTables>): Promise<void> {
    if ((await this.deps.members.countOwners(tenantId, trx)) <= 1) {
      throw new FlowgateError('FLOWGATE_ERR_IAM_LAST_OWNER', 'This is the last owner of the tenant; make someone else owner first.');
    }
  }

  /** Removes a principal's membership (and, through `also`, the principal), keeping an owner. */
  private async removePrincipal(caller: Principal, principalId: string, also: (trx: Kysely<IamTables>) => Promise<void>): Promise<void> {
    const role = await this.deps.members.roleOf(caller.tenant, principalId);
    if (role) await this.assertRoleGrantable(caller, role);
    await this.deps.db.transaction().execute(async (trx) => {
      if (role === 'owner') await this.assertNotLastOwner(caller.tenant, trx);
      await this.deps.members.delete(caller.tenant, principalId, trx);
      await also(trx);
    });
    await this.deps.revokeSessionsOf(caller.tenant, principalId);
  }

  private async rolesOf(tenantId: string, ids: string[]): Promise<Map<string, Role>> {
    if (ids.length === 0) return new Map();
    const rows = await this.deps.db
      .selectFrom('members')
      .select(['principal_id', 'role'])
      .where('tenant_id', '=', tenantId)
      .where('principal_id', 'in', ids)
      .execute();
    return new Map(rows.map((r) => [r.principal_id, r.role as Role]));
  }

  /** Inserts an account (and its membership when it has a role). */
  async insertAccount(
    db: Kysely<IamTables>,
    tenantId: string,
    name: string,
    scopes: string[],
    secretHash: string,
    createdBy: string | null,
    role: Role | null,
    now: number,
    clientId: string = newClientId(),
  ): Promise<ServiceAccountRow> {
    const account = await this.deps.accounts.create(
      { id: newId(), tenant_id: tenantId, name, client_id: clientId, secret_hash: secretHash, scopes: JSON.stringify(scopes), created_by: createdBy, created_at: now },
      db,
    );
    if (role) await this.deps.members.upsert({ tenant_id: tenantId, principal_id: account.id, principal_type: 'service_account', role, created_at: now }, db);
    return account;
  }
}

/** A new client id: not secret, but unguessable enough not to enumerate. */
export function newClientId(): string {
  return randomToken(12, 'fgc_');
}

/** A new client secret: 256 bits from the CSPRNG. */
export function newClientSecret(): string {
  return randomToken(32, 'fgs_');
}

function tenantView(row: TenantsTable): Tenant {
  return { id: row.id, created_at: isoTime(row.created_at) };
}

function accountView(row: ServiceAccountRow, role: Role | null): ServiceAccount {
  return { id: row.id, name: row.name, client_id: row.client_id, scopes: accountScopes(row), role, created_at: isoTime(row.created_at) };
}

function userView(row: UserRow, role: Role | null): User {
  return { id: row.id, username: row.username, display_name: row.display_name, role, disabled: row.disabled === 1, created_at: isoTime(row.created_at) };
}
