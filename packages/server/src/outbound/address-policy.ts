import { BlockList, isIP } from 'node:net';
import { FlowgateError } from '../errors/index.js';
import { addNetwork, listsAddress, parseNetwork } from '../kernel/index.js';

/**
 * Networks an outbound request from Flowgate may not reach unless allowed by config:
 * loopback, private, link-local (cloud metadata at 169.254.169.254), carrier-grade NAT,
 * unspecified, multicast and reserved ranges (RFC 6890), in both families.
 */
const DENIED: ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6']> = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['224.0.0.0', 4, 'ipv4'],
  ['240.0.0.0', 4, 'ipv4'],
  // IPv4-compatible (deprecated) and IPv4-translated addresses: IPv4 spelled as IPv6,
  // with :: and ::1 among them.
  ['::', 96, 'ipv6'],
  ['::ffff:0:0:0', 96, 'ipv6'],
  // NAT64 (well-known and local-use prefixes), 6to4 and Teredo carry an IPv4 address that
  // a gateway on the path may turn into a private one.
  ['64:ff9b::', 96, 'ipv6'],
  ['64:ff9b:1::', 48, 'ipv6'],
  ['2002::', 16, 'ipv6'],
  ['2001::', 32, 'ipv6'],
  // Discard-only and documentation.
  ['100::', 64, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

/** Which addresses outbound requests may connect to. */
export class AddressPolicy {
  private readonly denied = new BlockList();
  private readonly allowed = new BlockList();

  /** `allow`: CIDRs (`127.0.0.1/32`, `10.0.0.0/8`, `fd00::/8`) let through despite the deny list. */
  constructor(allow: readonly string[] = []) {
    for (const [address, prefix, family] of DENIED) this.denied.addSubnet(address, prefix, family);
    for (const cidr of allow) {
      const network = parseNetwork(cidr);
      if (!network) throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `FLOWGATE_OUTBOUND_ALLOW: "${cidr}" is not an address or CIDR such as 10.0.0.0/8.`);
      addNetwork(this.allowed, network);
    }
  }

  /** Whether Flowgate may connect to this IP address. */
  permits(address: string): boolean {
    // Not an address: nowhere to connect to. An IPv4-mapped IPv6 address (::ffff:10.0.0.1)
    // is judged as the IPv4 address it carries.
    if (isIP(address) === 0) return false;
    if (listsAddress(this.allowed, address)) return true;
    return !listsAddress(this.denied, address);
  }
}
