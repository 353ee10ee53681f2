import type { FastifyRequest } from 'fastify';
import { FlowgateError } from '../errors/index.js';
import { sha256Hex, type Clock } from '../kernel/index.js';
import type { AuditRecorder } from '../kernel/index.js';
import type { FailureThrottle } from './failure-throttle.js';
import { findPublicClient, type PublicClient } from './public-clients.js';
import { createConstantWorkVerifier, type SecretHasher } from './secret-hasher.js';
import { type ServiceAccountRepository, type ServiceAccountRow } from './service-account.repository.js';

/** A client that proved who it is (a service account) or named itself (a public client). */
export type AuthenticatedClient =
  | { readonly kind: 'confidential'; readonly clientId: string; readonly account: ServiceAccountRow }
  | { readonly kind: 'public'; readonly clientId: string; readonly client: PublicClient };

/**
 * Authenticates OAuth clients at the token, introspection and revocation endpoints
 * (RFC 6749 §2.3.1): `client_secret_basic` or `client_secret_post`, never both.
 *
 * Guessing is slowed: failures are counted per client id in the store and, past the
 * limit, the client is locked (429 with Retry-After) even for the right secret; every
 * failure is audited. Unknown ids cost the same scrypt work as known ones, so timing
 * does not reveal which client ids exist.
 */
export class ClientAuthenticator {
  /** Recently verified secrets (by hash of the presented secret), to spare a scrypt per call. */
  private readonly verified = new Map<string, { secretSha: string; storedHash: string; until: number }>();
  private readonly verifyConstantWork: (secret: string, stored: string | undefined) => Promise<boolean>;

  constructor(
    private readonly accounts: ServiceAccountRepository,
    private readonly hasher: SecretHasher,
    private readonly throttle: FailureThrottle,
    private readonly audit: AuditRecorder,
    private readonly clock: Clock,
  ) {
    this.verifyConstantWork = createConstantWorkVerifier(hasher);
  }

  /**
   * Authenticates the client of a request. `allowPublic` lets public clients through
   * by id alone (they hold no secret); otherwise a secret is required.
   */
  async authenticate(request: FastifyRequest, allowPublic: boolean): Promise<AuthenticatedClient> {
    const body = (request.body ?? {}) as Record<string, unknown>;
    const basic = parseBasic(request.headers.authorization);
    const postId = typeof body.client_id === 'string' ? body.client_id : undefined;
    const postSecret = typeof body.client_secret === 'string' ? body.client_secret : undefined;
    if (basic && postSecret !== undefined) {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'Send client credentials once: in the Authorization header or in the body, not both.');
    }
    if (basic === null) {
      throw this.invalidClient('The Authorization header is not valid HTTP Basic credentials.');
    }
    const clientId = basic?.id ?? postId;
    const secret = basic?.secret ?? postSecret;
    if (clientId === undefined || clientId === '') {
      throw this.invalidClient('Client authentication is required.');
    }
    if (basic && postId !== undefined && postId !== basic.id) {
      throw new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_REQUEST', 'client_id in the body does not match the Authorization header.');
    }
    if (secret === undefined) {
      const client = findPublicClient(clientId);
      if (client && allowPublic) return { kind: 'public', clientId, client };
      throw this.invalidClient('This client must authenticate with its secret.');
    }
    return this.authenticateSecret(clientId, secret, request.id);
  }

  private async authenticateSecret(clientId: string, secret: string, traceId: string): Promise<AuthenticatedClient> {
    const key = `client:${clientId}`;
    const wait = await this.throttle.retryAfter(key);
    if (wait > 0) {
      this.audit.record({ action: 'iam.client_auth.throttled', tenant: null, actor: clientId, outcome: 'failure', traceId });
      throw new FlowgateError('FLOWGATE_ERR_AUTH_THROTTLED', `Too many failed attempts for this client; retry in ${wait} s.`, {
        headers: { 'retry-after': String(wait) },
      });
    }
    const account = await this.accounts.findByClientId(clientId);
    const ok = account ? await this.verifySecret(account, secret) : await this.verifyConstantWork(secret, undefined);
    if (!account || !ok || account.disabled) {
      const locked = await this.throttle.recordFailure(key);
      this.audit.record({
        action: 'iam.client_auth.failed',
        tenant: account?.tenant_id ?? null,
        actor: clientId,
        outcome: 'failure',
        traceId,
        details: { reason: !account ? 'unknown_client' : account.disabled ? 'disabled' : 'wrong_secret', locked_seconds: locked },
      });
      throw this.invalidClient('Client authentication failed.');
    }
    await this.throttle.reset(key);
    return { kind: 'confidential', clientId, account };
  }

  private async verifySecret(account: ServiceAccountRow, secret: string): Promise<boolean> {
    const secretSha = sha256Hex(secret);
    const cached = this.verified.get(account.client_id);
    const now = this.clock.now();
    if (cached && cached.until > now && cached.storedHash === account.secret_hash && cached.secretSha === secretSha) return true;
    const ok = await this.hasher.verify(secret, account.secret_hash);
    if (ok) {
      if (this.verified.size > 10_000) this.verified.clear();
      this.verified.set(account.client_id, { secretSha, storedHash: account.secret_hash, until: now + 60_000 });
    }
    return ok;
  }

  private invalidClient(detail: string): FlowgateError {
    // RFC 6749 §5.2 and RFC 9110 §15.5.2: a 401 names the scheme the client should use.
    return new FlowgateError('FLOWGATE_ERR_OAUTH_INVALID_CLIENT', detail, {
      headers: { 'www-authenticate': 'Basic realm="flowgate"' },
    });
  }
}

/** Parses HTTP Basic credentials: `undefined` when absent, `null` when malformed. */
function parseBasic(header: string | undefined): { id: string; secret: string } | undefined | null {
  if (header === undefined) return undefined;
  const match = /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header.trim());
  if (!match) return header.toLowerCase().startsWith('basic') ? null : undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  try {
    // RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return {
      id: decodeURIComponent(decoded.slice(0, colon).replaceAll('+', ' ')),
      secret: decodeURIComponent(decoded.slice(colon + 1).replaceAll('+', ' ')),
    };
  } catch {
    return null;
  }
}
