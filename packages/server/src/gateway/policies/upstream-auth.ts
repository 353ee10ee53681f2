import type { UpstreamAuthPolicy } from '@flowgate/contracts';
import { FlowgateError } from '../../errors/index.js';
import { PolicyOptionError, type PolicyFactory } from './policy.js';

/**
 * `upstream-auth`: the credentials the upstream receives, because the caller's are not
 * meant for it. `mint-jwt` sends a short-lived token for the upstream's audience with
 * the caller's subject, tenant and scopes (signed by this server, verifiable at its
 * JWKS); `secret-header` sends a secret from the secrets store; `forward` passes the
 * caller's own Authorization header, only because the configuration says so. Without
 * this policy (or with `none`) the upstream receives no credentials at all.
 */
export const upstreamAuthPolicy: PolicyFactory<UpstreamAuthPolicy> = {
  name: 'upstream-auth',
  order: 80,
  create(options, _site, deps) {
    switch (options.mode) {
      case 'none':
        return () => undefined;
      case 'forward':
        return (exchange) => {
          const authorization = exchange.req.headers.authorization;
          if (authorization !== undefined) exchange.upstreamHeaders.authorization = authorization;
        };
      case 'mint-jwt': {
        if (options.audience === deps.upstreamTokens.ownAudience) {
          throw new PolicyOptionError("The audience is Flowgate's own: such a token would be accepted by Flowgate itself. Name the upstream's audience.", 'audience');
        }
        const ttl = options.ttlSeconds ?? 300;
        return (exchange) => {
          const token = deps.upstreamTokens.tokenFor(exchange.principal, options.audience, ttl);
          if (typeof token === 'string') {
            exchange.upstreamHeaders.authorization = `Bearer ${token}`;
            return undefined;
          }
          return token.then((t) => {
            exchange.upstreamHeaders.authorization = `Bearer ${t}`;
          });
        };
      }
      case 'secret-header': {
        const header = options.header.toLowerCase();
        const prefix = options.prefix ?? '';
        return async (exchange) => {
          // A tenant's credential is that tenant's callers' to use, unless the operator
          // declared it a platform-wide one.
          if (options.tenant !== undefined && !options.shared && exchange.principal?.tenant !== options.tenant) {
            throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', "This route's upstream credentials belong to another tenant.");
          }
          const tenant = options.tenant ?? exchange.principal?.tenant;
          if (tenant === undefined) {
            throw new FlowgateError('FLOWGATE_ERR_GATEWAY_UPSTREAM_CREDENTIALS', 'The route names no tenant whose secret to send, and the caller has none.');
          }
          let value: string;
          try {
            value = await deps.secrets.value(tenant, options.secret);
          } catch (cause) {
            // The reason (not found, unreadable) goes to the log through `cause`; the caller
            // learns only that the upstream's credentials are missing.
            throw new FlowgateError('FLOWGATE_ERR_GATEWAY_UPSTREAM_CREDENTIALS', `The secret "${options.secret}" for the upstream could not be read.`, { cause });
          }
          exchange.upstreamHeaders[header] = prefix + value;
        };
      }
    }
  },
};
