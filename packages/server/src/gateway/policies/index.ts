import type { PolicyName } from '@flowgate/contracts';
import { authPolicy } from './auth.js';
import { corsPolicy } from './cors.js';
import { requestHeadersPolicy, responseHeadersPolicy } from './headers.js';
import { ipAllowPolicy, ipDenyPolicy } from './ip-lists.js';
import type { PolicyFactory } from './policy.js';
import { rateLimitPolicy } from './rate-limit.js';
import { requestSizeLimitPolicy } from './request-size-limit.js';
import { scopesPolicy } from './scopes.js';
import { upstreamAuthPolicy } from './upstream-auth.js';

export * from './policy.js';
export { OWN_ISSUER } from './auth.js';
export { isPreflight } from './cors.js';
export { ipList } from './ip-lists.js';

/** Every policy type, by the name used in the configuration. */
export const POLICY_FACTORIES: Readonly<Record<PolicyName, PolicyFactory<never>>> = {
  auth: authPolicy,
  scopes: scopesPolicy,
  'rate-limit': rateLimitPolicy,
  'upstream-auth': upstreamAuthPolicy,
  cors: corsPolicy,
  'request-size-limit': requestSizeLimitPolicy,
  'request-headers': requestHeadersPolicy,
  'response-headers': responseHeadersPolicy,
  'ip-allow': ipAllowPolicy,
  'ip-deny': ipDenyPolicy,
};
