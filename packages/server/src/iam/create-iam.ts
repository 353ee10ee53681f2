import type { FlowgateConfig } from '../config/index.js';
import type { AuditRecorder } from '../kernel/index.js';
import type { HttpApp } from '../http/index.js';
import type { Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import { registerAdminRoutes } from './admin.routes.js';
import { ApiKeyAdmin } from './api-key-admin.js';
import { ApiKeyRepository, ApiKeyVerifier } from './api-keys.js';
import { registerApiKeyRoutes } from './api-keys.routes.js';
import { createAuthHook } from './auth-hook.js';
import { AuthCodeStore } from './auth-codes.js';
import { registerAuthorizeRoutes } from './authorize.routes.js';
import { bootstrapIam } from './bootstrap.js';
import { ClientAuthenticator } from './client-auth.js';
import { FailureThrottle } from './failure-throttle.js';
import type { IamTables } from './iam.tables.js';
import { IamAdmin } from './iam-admin.js';
import { MemberRepository } from './member.repository.js';
import { OAuthService } from './oauth-service.js';
import { registerOAuthRoutes } from './oauth.routes.js';
import { PasswordLogin } from './password-login.js';
import { RefreshTokenStore } from './refresh-tokens.js';
import { RevocationList } from './revocation-list.js';
import { createScryptHasher, type SecretHasher } from './secret-hasher.js';
import { ServiceAccountRepository } from './service-account.repository.js';
import { SigningKeyStore, type KeySealer } from './signing-keys.js';
import { TenantRepository } from './tenant.repository.js';
import { TokenService } from './token-service.js';
import { TokenVerifier } from './token-verifier.js';
import { UserRepository } from './user.repository.js';

export interface IamDeps {
  readonly store: Store;
  readonly config: FlowgateConfig;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditRecorder;
  /** The server's issuer URL; known once it listens. */
  readonly issuer: () => string;
  /** Password and secret hashing; scrypt by default. */
  readonly hasher?: SecretHasher | undefined;
  /** Where generated bootstrap credentials are shown. */
  readonly announce: (text: string) => void;
  /** Encrypts the signing keys' private halves at rest (the secrets service). */
  readonly sealer?: KeySealer | undefined;
}

/** The IAM module: what other modules and the composition root use of it. */
export interface Iam {
  readonly verifier: TokenVerifier;
  readonly tokens: TokenService;
  readonly keys: SigningKeyStore;
  readonly admin: IamAdmin;
  readonly oauth: OAuthService;
  /** Verifies service accounts' API keys (the gateway's `auth: api-key`), from a short cache. */
  readonly apiKeys: ApiKeyVerifier;
  /** Creates the first signing key and the bootstrap administrator when missing. */
  start(): Promise<void>;
  /** Adds the auth hook and every IAM route to the server. */
  registerRoutes(app: HttpApp): Promise<void>;
}

/** Builds the IAM over the store. */
export function createIam(deps: IamDeps): Iam {
  const { config, clock } = deps;
  const iam = config.iam;
  const db = deps.store.db<IamTables>();
  const hasher = deps.hasher ?? createScryptHasher();
  const tenants = new TenantRepository(db);
  const users = new UserRepository(db);
  const accounts = new ServiceAccountRepository(db);
  const members = new MemberRepository(db);
  const keys = new SigningKeyStore(db, clock, {
    cacheMs: iam.keyCacheSeconds * 1000,
    // A retired key stays published while tokens it signed may live: the longest token
    // lifetime, the clock tolerance, and the cache time during which another instance
    // may still sign with it.
    publishMs: (iam.accessTokenTtl + iam.clockTolerance + iam.keyCacheSeconds) * 1000,
  }, deps.sealer);
  const revocations = new RevocationList(db, clock);
  const tokens = new TokenService(keys, clock, { issuer: deps.issuer, audience: iam.audience, accessTokenTtl: iam.accessTokenTtl });
  const verifier = new TokenVerifier(keys, revocations, clock, {
    issuer: deps.issuer,
    audience: iam.audience,
    clockToleranceSeconds: iam.clockTolerance,
    maxTokenBytes: iam.maxTokenBytes,
    trustedIssuers: iam.trustedIssuers,
    tenantExists: async (id) => (await tenants.get(id)) !== undefined,
  });
  const throttle = new FailureThrottle(db, clock, iam.throttle);
  const refreshTokens = new RefreshTokenStore(db, clock, iam.refreshTokenTtl * 1000);
  const authCodes = new AuthCodeStore(db, clock, iam.authCodeTtl * 1000);
  const apiKeyStore = new ApiKeyRepository(db);
  const apiKeys = new ApiKeyVerifier(apiKeyStore, clock, { issuer: deps.issuer });
  // A principal losing access (deleted, demoted, secret rotated) loses its sessions, and
  // this instance's cached answers for its API keys, whose scopes are read afresh.
  const revokeSessionsOf = (tenantId: string, principalId: string) => {
    apiKeys.forgetAccount(tenantId, principalId);
    return refreshTokens.revokePrincipal(tenantId, principalId);
  };
  const admin = new IamAdmin({ db, tenants, users, accounts, members, hasher, clock, audit: deps.audit, revokeSessionsOf });
  const oauth = new OAuthService({
    tokens,
    verifier,
    users,
    accounts,
    members,
    refreshTokens,
    authCodes,
    revocations,
    audit: deps.audit,
    clock,
  });
  const passwords = new PasswordLogin(users, members, throttle, hasher, deps.audit);
  const clients = new ClientAuthenticator(accounts, hasher, throttle, deps.audit, clock);
  const apiKeyAdmin = new ApiKeyAdmin({ keys: apiKeyStore, accounts, members, clock, audit: deps.audit, onRevoked: (id) => apiKeys.forget(id) });

  return {
    verifier,
    tokens,
    keys,
    admin,
    oauth,
    apiKeys,
    async start() {
      await keys.init();
      // Keys made before the sealer existed are sealed now.
      await keys.sealStoredKeys();
      await bootstrapIam({ db, tenants, accounts, admin, hasher, clock, logger: deps.logger, announce: deps.announce }, iam.bootstrap);
    },
    async registerRoutes(app) {
      app.addHook('onRequest', createAuthHook(verifier));
      await registerOAuthRoutes(app, { issuer: deps.issuer, oauth, clients, keys });
      await registerAuthorizeRoutes(app, { issuer: deps.issuer, oauth, passwords });
      registerAdminRoutes(app, { admin, keys, audit: deps.audit });
      registerApiKeyRoutes(app, { apiKeys: apiKeyAdmin });
    },
  };
}
