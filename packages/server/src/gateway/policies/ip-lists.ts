import type { IpListPolicy } from '@flowgate/contracts';
import type { BlockList } from 'node:net';
import { FlowgateError } from '../../errors/index.js';
import { listsAddress, networkList, parseNetwork, type Network } from '../../kernel/index.js';
import { PolicyOptionError, type PolicyFactory } from './policy.js';

/** Builds a list from addresses and CIDRs, naming the first entry that is neither. */
export function ipList(cidrs: readonly string[]): BlockList {
  const networks = cidrs.map((entry, index): Network => {
    const network = parseNetwork(entry);
    if (!network) throw new PolicyOptionError(`"${entry}" is not an IP address or network (CIDR).`, `cidrs[${index}]`);
    return network;
  });
  return networkList(networks);
}

const refuse = () => new FlowgateError('FLOWGATE_ERR_GATEWAY_IP_REFUSED', 'Requests from your address are not allowed on this route.');

/** `ip-allow`: only these addresses and networks may call the route. */
export const ipAllowPolicy: PolicyFactory<IpListPolicy> = {
  name: 'ip-allow',
  order: 10,
  create(options) {
    const list = ipList(options.cidrs);
    return (exchange) => {
      if (!listsAddress(list, exchange.clientIp)) throw refuse();
    };
  },
};

/** `ip-deny`: these addresses and networks may not call the route. */
export const ipDenyPolicy: PolicyFactory<IpListPolicy> = {
  name: 'ip-deny',
  order: 11,
  create(options) {
    const list = ipList(options.cidrs);
    return (exchange) => {
      if (listsAddress(list, exchange.clientIp)) throw refuse();
    };
  },
};
