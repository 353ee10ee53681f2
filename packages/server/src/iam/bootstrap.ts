import type { Kysely } from 'kysely';
import { FlowgateError, isFlowgateError } from '../errors/index.js';
import type { Logger } from '../observability/index.js';
import type { Clock } from '../kernel/index.js';
import type { IamTables } from './iam.tables.js';
import { newClientId, newClientSecret, type IamAdmin } from './iam-admin.js';
import type { SecretHasher } from './secret-hasher.js';
import type { ServiceAccountRepository } from './service-account.repository.js';
import type { TenantRepository } from './tenant.repository.js';

/** The tenant a fresh server creates, holding the platform administrator. */
export const DEFAULT_TENANT = 'default';
/** What the platform administrator holds: everything in its tenant, and the platform. */
export const PLATFORM_ADMIN_SCOPES = ['*:*', 'platform:admin'];

export interface BootstrapDeps {
  readonly db: Kysely<IamTables>;
  readonly tenants: TenantRepository;
  readonly accounts: ServiceAccountRepository;
  readonly admin: IamAdmin;
  readonly hasher: SecretHasher;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Shows generated credentials to the operator once (the terminal, never the log). */
  readonly announce: (text: string) => void;
}

/**
 * Makes sure a fresh server can be administered. The first start creates the `default`
 * tenant and a platform-admin service account: with the credentials of
 * FLOWGATE_BOOTSTRAP_CLIENT_ID / FLOWGATE_BOOTSTRAP_CLIENT_SECRET when set (and they stay
 * authoritative: a changed secret replaces the stored one), otherwise with generated
 * ones, shown once.
 */
export async function bootstrapIam(deps: BootstrapDeps, configured: { clientId?: string | undefined; clientSecret?: string | undefined }): Promise<void> {
  const { clientId, clientSecret } = configured;
  if ((clientId === undefined) !== (clientSecret === undefined)) {
    throw new FlowgateError(
      'FLOWGATE_ERR_CONFIG_INVALID',
      'FLOWGATE_BOOTSTRAP_CLIENT_ID and FLOWGATE_BOOTSTRAP_CLIENT_SECRET must be set together.',
    );
  }
  const fresh = (await deps.tenants.count()) === 0;
  if (clientId !== undefined && clientSecret !== undefined) {
    const existing = await deps.accounts.findByClientId(clientId);
    if (existing) {
      if (!(await deps.hasher.verify(clientSecret, existing.secret_hash))) {
        await deps.accounts.setSecretHash(existing.tenant_id, existing.id, await deps.hasher.hash(clientSecret));
        deps.logger.warn({ clientId }, 'bootstrap client secret changed; the stored secret was replaced');
      }
      return;
    }
    await createAdmin(deps, clientId, await deps.hasher.hash(clientSecret), fresh);
    deps.logger.info({ clientId, tenant: DEFAULT_TENANT }, 'bootstrap platform administrator created from configuration');
    return;
  }
  if (!fresh) return;
  const secret = newClientSecret();
  const generatedId = newClientId();
  const created = await createAdmin(deps, generatedId, await deps.hasher.hash(secret), true);
  if (!created) return;
  deps.announce(
    [
      '',
      'Flowgate created the tenant "default" and a platform administrator.',
      'These credentials are shown once; store them now:',
      '',
      `  FLOWGATE_CLIENT_ID=${generatedId}`,
      `  FLOWGATE_CLIENT_SECRET=${secret}`,
      '',
      'Set FLOWGATE_BOOTSTRAP_CLIENT_ID / FLOWGATE_BOOTSTRAP_CLIENT_SECRET to choose them yourself.',
      '',
    ].join('\n'),
  );
}

/** Creates the default tenant (when `fresh`) and the admin account; false if another instance won the race. */
async function createAdmin(deps: BootstrapDeps, clientId: string, secretHash: string, fresh: boolean): Promise<boolean> {
  const now = deps.clock.now();
  // Read before the transaction: on SQLite a query outside it would wait for it forever.
  const needTenant = fresh || !(await deps.tenants.get(DEFAULT_TENANT));
  try {
    await deps.db.transaction().execute(async (trx) => {
      if (needTenant) await deps.tenants.create(DEFAULT_TENANT, now, trx);
      await deps.admin.insertAccount(trx, DEFAULT_TENANT, 'platform-admin', PLATFORM_ADMIN_SCOPES, secretHash, null, 'owner', now, clientId);
    });
    return true;
  } catch (err) {
    // Several instances starting together on one PostgreSQL: one creates, the rest find it.
    if (isFlowgateError(err, 'FLOWGATE_ERR_RESOURCE_CONFLICT')) return false;
    throw err;
  }
}
