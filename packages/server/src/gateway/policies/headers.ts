import type { HeadersPolicy } from '@flowgate/contracts';
import { isHopByHop } from '../../http/index.js';
import type { HeaderMap } from '../exchange.js';
import { PolicyOptionError, type PolicyFactory } from './policy.js';

/** Checks the header names once, when the configuration is applied. */
function compile(options: HeadersPolicy): (headers: HeaderMap) => void {
  const set = Object.entries(options.set ?? {}).map(([name, value]) => [name.toLowerCase(), value] as const);
  const remove = (options.remove ?? []).map((name) => name.toLowerCase());
  for (const [name] of set) {
    if (isHopByHop(name) || name === 'host' || name === 'content-length') throw new PolicyOptionError(`The ${name} header is managed by the gateway and cannot be set.`, `set.${name}`);
  }
  return (headers) => {
    for (const name of remove) delete headers[name];
    for (const [name, value] of set) headers[name] = value;
  };
}

/** `request-headers`: sets or removes headers on the way to the upstream. */
export const requestHeadersPolicy: PolicyFactory<HeadersPolicy> = {
  name: 'request-headers',
  order: 70,
  create(options) {
    const edit = compile(options);
    return (exchange) => edit(exchange.upstreamHeaders);
  },
};

/** `response-headers`: sets or removes headers of the upstream's answer. */
export const responseHeadersPolicy: PolicyFactory<HeadersPolicy> = {
  name: 'response-headers',
  order: 90,
  create(options) {
    const edit = compile(options);
    return (exchange) => {
      exchange.responseHeaderEdits.push(edit);
    };
  },
};
