import type { RateLimitPolicy } from '@flowgate/contracts';
import { FlowgateError } from '../../errors/index.js';
import { clientNetwork } from '../../kernel/index.js';
import type { GatewayExchange } from '../exchange.js';
import type { RateDecision, RateLimit } from '../rate-limit/index.js';
import type { PolicyFactory } from './policy.js';

/**
 * `rate-limit`: a token bucket per route and consumer (the authenticated subject, or the
 * client address for anonymous callers or with `by: ip`). Buckets live in this process,
 * or in Redis when FLOWGATE_REDIS_URL is set so that every instance shares one budget.
 * Answers carry the RateLimit-* headers; a refusal is a 429 with Retry-After.
 */
export const rateLimitPolicy: PolicyFactory<RateLimitPolicy> = {
  name: 'rate-limit',
  order: 60,
  create(options, site, deps) {
    const windowSeconds = options.windowSeconds ?? 60;
    const limit: RateLimit = { capacity: options.burst ?? options.limit, refillPerSecond: options.limit / windowSeconds };
    const byIp = options.by === 'ip';
    const prefix = `${site.route.name}:`;
    const policyHeader = `${options.limit};w=${windowSeconds}`;
    const apply = (exchange: GatewayExchange, decision: RateDecision) => {
      const headers = {
        // The most a consumer may send at once: the bucket's size.
        'ratelimit-limit': String(limit.capacity),
        'ratelimit-remaining': String(decision.remaining),
        'ratelimit-reset': String(decision.resetSeconds),
        'ratelimit-policy': policyHeader,
      };
      if (!decision.allowed) {
        throw new FlowgateError('FLOWGATE_ERR_GATEWAY_RATE_LIMITED', `This route allows ${options.limit} requests per ${windowSeconds} s; retry in ${decision.retryAfterSeconds} s.`, {
          headers: { ...headers, 'retry-after': String(decision.retryAfterSeconds) },
        });
      }
      Object.assign(exchange.responseHeaders, headers);
    };
    return (exchange) => {
      const principal = exchange.principal;
      // Anonymous callers by address: an IPv6 one by its /64, which it could otherwise roam.
      const consumer = !byIp && principal ? `sub:${principal.tenant}/${principal.sub}` : `ip:${clientNetwork(exchange.clientIp)}`;
      const decision = deps.rateLimits.take(prefix + consumer, limit);
      if (decision instanceof Promise) return decision.then((d) => apply(exchange, d));
      apply(exchange, decision);
      return undefined;
    };
  },
};
