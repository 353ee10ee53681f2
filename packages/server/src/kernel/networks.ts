import { BlockList, isIP } from 'node:net';

/** An IP network: an address and how many of its leading bits are the network's. */
export interface Network {
  readonly address: string;
  readonly prefix: number;
  readonly type: 'ipv4' | 'ipv6';
}

/**
 * Reads `10.0.0.0/8`, `fd00::/8` or a bare address (its own /32 or /128); `undefined`
 * when the entry is neither. One rule for every list of networks Flowgate reads (trusted
 * proxies, ip-allow and ip-deny, the outbound allow list): the prefix is 1 to 3 decimal
 * digits, at most the family's width, so `/0x8`, `/ 8` or `/8.0` are refused, not taken as 8.
 */
export function parseNetwork(entry: string): Network | undefined {
  const [address = '', bits, extra] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return undefined;
  const type = family === 6 ? 'ipv6' : 'ipv4';
  const width = family === 6 ? 128 : 32;
  if (bits === undefined) return { address, prefix: width, type };
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > width) return undefined;
  return { address, prefix: Number(bits), type };
}

const IPV4_MAPPED = /^::ffff:/i;

/** Adds a network to a Node `BlockList`. */
export function addNetwork(list: BlockList, network: Network): void {
  list.addSubnet(network.address, network.prefix, network.type);
}

/**
 * Whether an address is on a list. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as a
 * dual-stack socket reports IPv4 peers) is the IPv4 address it carries; anything that is
 * not an address is on no list.
 */
export function listsAddress(list: BlockList, address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  if (family === 6 && IPV4_MAPPED.test(address)) {
    const carried = address.slice(7);
    if (isIP(carried) === 4) return list.check(carried, 'ipv4');
  }
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** A `BlockList` of networks, for callers that have parsed them already. */
export function networkList(networks: readonly Network[]): BlockList {
  const list = new BlockList();
  for (const network of networks) addNetwork(list, network);
  return list;
}

/**
 * What a client is counted as where it could otherwise change addresses at will (a rate
 * limit): an IPv4 address (also one mapped into IPv6, in any spelling), or the /64 of an
 * IPv6 address, as `2001:db8:0:1::/64`: one subscriber usually gets a whole /64, and
 * could take a new address from it for every request. Anything else is returned as it is.
 */
export function clientNetwork(address: string): string {
  const family = isIP(address);
  if (family !== 6) return address;
  const groups = ipv6Groups(address.split('%')[0]!);
  // ::ffff:a.b.c.d, in any spelling: the IPv4 address it carries.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) return `${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (an IPv4 tail gives the last two). */
function ipv6Groups(address: string): number[] {
  const parts = (text: string): number[] =>
    text === ''
      ? []
      : text.split(':').flatMap((part) => {
          if (!part.includes('.')) return [Number.parseInt(part, 16)];
          const [a = 0, b = 0, c = 0, d = 0] = part.split('.').map(Number);
          return [(a << 8) | b, (c << 8) | d];
        });
  const [head = '', tail] = address.split('::');
  const left = parts(head);
  if (tail === undefined) return left;
  const right = parts(tail);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}
