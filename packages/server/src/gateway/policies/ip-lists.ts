import type { IpListPolicy } from '@flowgate/contracts';
import { BlockList, isIP } from 'node:net';
import { FlowgateError } from '../../errors/index.js';
import { PolicyOptionError, type PolicyFactory } from './policy.js';

/** Builds a list from addresses and CIDRs, naming the first entry that is neither. */
export function ipList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  cidrs.forEach((entry, index) => {
    const [address = '', bits, extra] = entry.split('/');
    const family = isIP(address);
    const prefix = bits === undefined ? undefined : Number(bits);
    const max = family === 6 ? 128 : 32;
    if (family === 0 || extra !== undefined || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > max || bits === ''))) {
      throw new PolicyOptionError(`"${entry}" is not an IP address or network (CIDR).`, `cidrs[${index}]`);
    }
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, prefix, type);
  });
  return list;
}

/** Whether a client address (IPv4-mapped IPv6 included) is on a list. */
export function listed(list: BlockList, address: string): boolean {
  const mapped = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  return list.check(mapped, isIP(mapped) === 6 ? 'ipv6' : 'ipv4');
}

const refuse = () => new FlowgateError('FLOWGATE_ERR_GATEWAY_IP_REFUSED', 'Requests from your address are not allowed on this route.');

/** `ip-allow`: only these addresses and networks may call the route. */
export const ipAllowPolicy: PolicyFactory<IpListPolicy> = {
  name: 'ip-allow',
  order: 10,
  create(options) {
    const list = ipList(options.cidrs);
    return (exchange) => {
      if (!listed(list, exchange.clientIp)) throw refuse();
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
      if (listed(list, exchange.clientIp)) throw refuse();
    };
  },
};
