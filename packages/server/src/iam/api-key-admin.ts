import { missingScopes, type ApiKey, type ApiKeyCreated, type Role } from '@flowgate/contracts';
import { FlowgateError } from '../errors/index.js';
import { isoTime, type AuditRecorder, type Clock } from '../kernel/index.js';
import type { Page } from '../storage/index.js';
import { accountHeldScopes, newApiKey, storedScopes, type ApiKeyRepository, type ApiKeyRow } from './api-keys.js';
import type { MemberRepository } from './member.repository.js';
import type { Principal } from './principal.js';
import { accountScopes, type ServiceAccountRepository, type ServiceAccountRow } from './service-account.repository.js';

export interface ApiKeyAdminDeps {
  readonly keys: ApiKeyRepository;
  readonly accounts: ServiceAccountRepository;
  readonly members: MemberRepository;
  readonly clock: Clock;
  readonly audit: AuditRecorder;
  /** Called once a key is revoked, so this instance stops accepting it at once. */
  readonly onRevoked: (keyId: string) => void;
}

export interface ApiKeyInput {
  readonly name: string;
  readonly scopes?: readonly string[] | undefined;
  readonly expires_in_days?: number | undefined;
}

const DAY_MS = 86_400_000;
const notFound = (what: string) => new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `No ${what} with that id in this tenant.`);

/**
 * Creating, listing and revoking the API keys of a service account. Every method acts
 * inside `caller.tenant`: another tenant's account or key is a 404.
 */
export class ApiKeyAdmin {
  constructor(private readonly deps: ApiKeyAdminDeps) {}

  /** Makes a key holding `scopes` (default: all the account holds); the key is in this answer only. */
  async create(caller: Principal, accountId: string, input: ApiKeyInput, traceId: string): Promise<ApiKeyCreated> {
    const { account, role } = await this.manageable(caller, accountId);
    const held = accountHeldScopes(accountScopes(account), role);
    const scopes = input.scopes ? [...input.scopes] : held;
    const missing = missingScopes(held, scopes);
    if (missing.length > 0) {
      throw new FlowgateError('FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE', `The service account does not hold these scopes: ${missing.join(' ')}.`, {
        extensions: { scopes: missing },
      });
    }
    const now = this.deps.clock.now();
    const made = newApiKey();
    const row = await this.deps.keys.create({
      id: made.id,
      tenant_id: caller.tenant,
      service_account_id: account.id,
      name: input.name,
      scopes: JSON.stringify(scopes),
      secret_hash: made.secretHash,
      last4: made.last4,
      created_by: caller.sub,
      created_at: now,
      expires_at: input.expires_in_days === undefined ? null : now + input.expires_in_days * DAY_MS,
      revoked_at: null,
    });
    this.deps.audit.record({
      action: 'iam.api_key.created',
      tenant: caller.tenant,
      actor: caller.sub,
      outcome: 'success',
      target: `api_key:${row.id}`,
      traceId,
      details: { service_account: account.id, scopes: scopes.join(' '), expires_at: row.expires_at === null ? null : isoTime(row.expires_at) },
    });
    return { ...apiKeyView(row), key: made.key };
  }

  /** The account's keys, revoked ones included; metadata only. */
  async list(caller: Principal, accountId: string, limit?: number, cursor?: string): Promise<Page<ApiKey>> {
    const account = await this.deps.accounts.get(caller.tenant, accountId);
    if (!account) throw notFound('service account');
    const page = await this.deps.keys.list(caller.tenant, account.id, limit, cursor);
    return { items: page.items.map(apiKeyView), next_cursor: page.next_cursor };
  }

  /** Revokes a key at once (on other instances within their cache time). Revoking twice is a no-op. */
  async revoke(caller: Principal, accountId: string, keyId: string, traceId: string): Promise<void> {
    const { account } = await this.manageable(caller, accountId);
    const key = await this.deps.keys.get(caller.tenant, account.id, keyId);
    if (!key) throw notFound('API key');
    const revoked = await this.deps.keys.revoke(caller.tenant, account.id, keyId, this.deps.clock.now());
    this.deps.onRevoked(keyId);
    if (!revoked) return;
    this.deps.audit.record({
      action: 'iam.api_key.revoked',
      tenant: caller.tenant,
      actor: caller.sub,
      outcome: 'success',
      target: `api_key:${keyId}`,
      traceId,
      details: { service_account: account.id },
    });
  }

  /**
   * The account, if the caller may hand out or take back its credentials: the rule of
   * rotating its secret (IamAdmin), since a key acts as the account. The caller holds
   * everything the account holds, and may grant the account's role.
   */
  private async manageable(caller: Principal, accountId: string): Promise<{ account: ServiceAccountRow; role: Role | null }> {
    const account = await this.deps.accounts.get(caller.tenant, accountId);
    if (!account) throw notFound('service account');
    const role = (await this.deps.members.roleOf(caller.tenant, account.id)) ?? null;
    const missing = missingScopes(caller.scopes, accountHeldScopes(accountScopes(account), role));
    if (missing.length > 0) {
      throw new FlowgateError('FLOWGATE_ERR_IAM_SCOPE_NOT_GRANTABLE', `This account holds scopes you do not: ${missing.join(' ')}.`, {
        extensions: { scopes: missing },
      });
    }
    if (role) {
      if (!(await this.deps.members.ranksAtLeast(caller, role))) throw new FlowgateError('FLOWGATE_ERR_IAM_ROLE_NOT_GRANTABLE', `This account's role "${role}" is above your own.`);
    }
    return { account, role };
  }
}

function apiKeyView(row: ApiKeyRow): ApiKey {
  return {
    id: row.id,
    service_account_id: row.service_account_id,
    name: row.name,
    scopes: storedScopes(row.scopes),
    last4: row.last4,
    created_at: isoTime(row.created_at),
    expires_at: row.expires_at === null ? null : isoTime(row.expires_at),
    revoked_at: row.revoked_at === null ? null : isoTime(row.revoked_at),
  };
}
