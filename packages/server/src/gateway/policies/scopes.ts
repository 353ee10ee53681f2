import { isScope, type ScopesPolicy } from '@flowgate/contracts';
import { FlowgateError } from '../../errors/index.js';
import { principalHas, type Principal } from '../../iam/index.js';
import { PolicyOptionError, type PolicyFactory } from './policy.js';

const PLACEHOLDER = /\{([A-Za-z0-9_]+)\}/g;

/**
 * What each principal was found to hold, per scope. Principals are cached by the gateway
 * until their token expires, so the scope grammar is parsed once per token and scope,
 * not per request.
 */
const granted = new WeakMap<Principal, Map<string, boolean>>();

function holds(principal: Principal, scope: string): boolean {
  let known = granted.get(principal);
  if (!known) {
    known = new Map();
    granted.set(principal, known);
  }
  let answer = known.get(scope);
  if (answer === undefined) {
    answer = principalHas(principal, scope);
    if (known.size < 1000) known.set(scope, answer);
  }
  return answer;
}
const REALM = 'Bearer realm="flowgate"';

/** One required scope: fixed, or filled in from path parameters per request. */
type Requirement = (params: Readonly<Record<string, string | undefined>>) => string;

/**
 * `scopes`: the caller must hold every listed scope. A scope may take values from the
 * route's path parameters (`data:read:visit={visit}` on `/visits/:visit/data`), checked
 * against the route when the configuration is applied.
 */
export const scopesPolicy: PolicyFactory<ScopesPolicy> = {
  name: 'scopes',
  order: 50,
  create(options, site) {
    const requirements: Requirement[] = options.required.map((template, index) => {
      const names = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]!);
      for (const name of names) {
        if (!site.params.has(name)) {
          throw new PolicyOptionError(`"{${name}}" is not a path parameter of this route (it has ${[...site.params].map((p) => `:${p}`).join(', ') || 'none'}).`, `required[${index}]`);
        }
      }
      if (!isScope(template.replace(PLACEHOLDER, 'x'))) {
        throw new PolicyOptionError(`"${template}" is not a scope (resource:action or resource:action:key=value).`, `required[${index}]`);
      }
      if (names.length === 0) return () => template;
      // A value that a scope cannot hold (a '/' or a space) yields a scope nobody holds.
      return (params) => template.replace(PLACEHOLDER, (_m, name: string) => params[name] ?? '');
    });
    return (exchange) => {
      const principal = exchange.principal;
      if (!principal) {
        throw new FlowgateError('FLOWGATE_ERR_AUTH_TOKEN_MISSING', 'This route needs a bearer token.', { headers: { 'www-authenticate': REALM } });
      }
      for (const requirement of requirements) {
        const scope = requirement(exchange.params);
        if (!holds(principal, scope)) {
          throw new FlowgateError('FLOWGATE_ERR_AUTH_INSUFFICIENT_SCOPE', `This route needs the "${scope}" scope, which your credentials do not carry.`, {
            headers: { 'www-authenticate': `${REALM}, error="insufficient_scope", scope="${scope}"` },
            extensions: { required_scope: scope },
          });
        }
      }
    };
  },
};
