import type { GatewayRoute, GatewayService, PolicyName } from '@flowgate/contracts';
import type { Principal } from '../../iam/index.js';
import type { Clock } from '../../kernel/index.js';
import type { GatewayExchange } from '../exchange.js';
import type { RateLimitStore } from '../rate-limit/index.js';

/**
 * What a policy does to one request: nothing (it passes), throw a FlowgateError (it
 * refuses), or `'answered'` when it wrote the whole answer itself (a CORS preflight).
 * Most policies are synchronous: the hot path only awaits those that must.
 */
export type PolicyStep = (exchange: GatewayExchange) => void | 'answered' | Promise<void | 'answered'>;

/** Options a policy refuses when the configuration is applied, with the option's place. */
export class PolicyOptionError extends Error {
  constructor(
    message: string,
    /** Under the policy, e.g. `required[1]`; '' for the policy as a whole. */
    readonly at = '',
  ) {
    super(message);
  }
}

/** Verifies callers' credentials; answers from a cache on the hot path when it can. */
export interface CredentialVerifier {
  verifyToken(token: string): Principal | Promise<Principal>;
  verifyApiKey(key: string): Promise<Principal>;
  /** Issuer names `auth.issuers` may list: 'flowgate' and the trusted external issuers. */
  readonly knownIssuers: ReadonlySet<string>;
  /** The `iss` of this server's own tokens. */
  ownIssuer(): string;
}

/** Mints the short-lived tokens `upstream-auth: mint-jwt` sends upstream. */
export interface UpstreamTokenMinter {
  /** This server's own audience: a token minted for it would be accepted by Flowgate itself. */
  readonly ownAudience: string;
  tokenFor(principal: Principal | null, audience: string, ttlSeconds: number): string | Promise<string>;
}

/** Reads secret values for `upstream-auth: secret-header`. */
export interface SecretValues {
  value(tenant: string, name: string): string | Promise<string>;
}

/** What policies may use; built once by the gateway. */
export interface PolicyDeps {
  readonly credentials: CredentialVerifier;
  readonly rateLimits: RateLimitStore;
  readonly upstreamTokens: UpstreamTokenMinter;
  readonly secrets: SecretValues;
  readonly clock: Clock;
}

/** Where a policy is attached, for options that depend on it (path parameters...). */
export interface PolicySite {
  readonly route: GatewayRoute;
  readonly service: GatewayService;
  /** Names of the route's path parameters (`*` for a final wildcard). */
  readonly params: ReadonlySet<string>;
}

/**
 * A policy type: validates its options when the configuration is applied (throwing a
 * {@link PolicyOptionError}) and returns the step that runs on each request.
 */
export interface PolicyFactory<Options> {
  readonly name: PolicyName;
  /** Steps run in ascending order, whatever order the configuration lists them in. */
  readonly order: number;
  create(options: Options, site: PolicySite, deps: PolicyDeps): PolicyStep;
}
