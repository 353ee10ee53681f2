import type { AuditRecorder } from '../kernel/index.js';
import { FlowgateError } from '../errors/index.js';
import type { FailureThrottle } from './failure-throttle.js';
import type { MemberRepository } from './member.repository.js';
import { createConstantWorkVerifier, type SecretHasher } from './secret-hasher.js';
import type { UserRepository, UserRow } from './user.repository.js';

/** A user's password check, behind the login page. */
export class PasswordLogin {
  private readonly verify: (secret: string, stored: string | undefined) => Promise<boolean>;

  constructor(
    private readonly users: UserRepository,
    private readonly members: MemberRepository,
    private readonly throttle: FailureThrottle,
    hasher: SecretHasher,
    private readonly audit: AuditRecorder,
  ) {
    this.verify = createConstantWorkVerifier(hasher);
  }

  /**
   * Checks a user's password, throttled per tenant and username. The same scrypt work
   * is done for unknown users, and every failure gives the same answer.
   */
  async login(tenant: string, username: string, password: string, traceId: string): Promise<UserRow> {
    const key = `user:${tenant}/${username.toLowerCase()}`;
    const wait = await this.throttle.retryAfter(key);
    if (wait > 0) {
      this.audit.record({ action: 'iam.login.throttled', tenant, actor: username, outcome: 'failure', traceId });
      throw new FlowgateError('FLOWGATE_ERR_AUTH_THROTTLED', `Too many failed logins; retry in ${wait} s.`, { headers: { 'retry-after': String(wait) } });
    }
    const user = await this.users.findByUsername(tenant, username);
    const ok = await this.verify(password, user?.password_hash);
    const role = user && ok ? await this.members.roleOf(tenant, user.id) : undefined;
    if (!user || !ok || user.disabled || !role) {
      await this.throttle.recordFailure(key);
      this.audit.record({
        action: 'iam.login.failed',
        tenant,
        actor: username,
        outcome: 'failure',
        traceId,
        details: { reason: !user ? 'unknown_user' : !ok ? 'wrong_password' : user.disabled ? 'disabled' : 'no_role' },
      });
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_LOGIN_FAILED', 'The tenant, username or password is wrong.');
    }
    await this.throttle.reset(key);
    this.audit.record({ action: 'iam.login.succeeded', tenant, actor: user.id, outcome: 'success', traceId });
    return user;
  }
}
