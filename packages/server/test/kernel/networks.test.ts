/**
 * One rule for every list of networks Flowgate reads: the trusted proxies at start, the
 * ip-allow and ip-deny policies when a config is applied, and the outbound allow list.
 * Each used to parse entries itself, and `/0x8` passed as /8 in two of them.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { ipList } from '../../src/gateway/policies/index.js';
import { clientNetwork, networkList, listsAddress, parseNetwork } from '../../src/kernel/index.js';
import { AddressPolicy } from '../../src/outbound/index.js';

const notNetworks = ['10.0.0.0/0x8', '10.0.0.0/ 8', '10.0.0.0/8.0', '10.0.0.0/1e1', '10.0.0.0/', '10.0.0.0/33', 'fd00::/129', '10.0.0.0/-1', '10.0.0.0/8/8', '300.1.1.1', 'proxy.internal', ''];

describe('parseNetwork', () => {
  it('reads networks of both families, and a bare address as its own network', () => {
    expect(parseNetwork('10.0.0.0/8')).toEqual({ address: '10.0.0.0', prefix: 8, type: 'ipv4' });
    expect(parseNetwork('fd00::/8')).toEqual({ address: 'fd00::', prefix: 8, type: 'ipv6' });
    expect(parseNetwork('192.0.2.1')).toEqual({ address: '192.0.2.1', prefix: 32, type: 'ipv4' });
    expect(parseNetwork('::1')).toEqual({ address: '::1', prefix: 128, type: 'ipv6' });
    expect(parseNetwork('0.0.0.0/0')).toEqual({ address: '0.0.0.0', prefix: 0, type: 'ipv4' });
  });

  it.each(notNetworks)('refuses %j', (entry) => {
    expect(parseNetwork(entry)).toBeUndefined();
  });

  it.each(notNetworks.filter((entry) => entry !== ''))('refuses %j in the trusted proxies, ip-allow / ip-deny and the outbound allow list alike', (entry) => {
    expect(() => loadConfig({ env: { FLOWGATE_TRUSTED_PROXIES: entry }, cwd: '/nonexistent' })).toThrow(`FLOWGATE_TRUSTED_PROXIES: ${JSON.stringify(entry)} is not an IP address or network`);
    expect(() => ipList(['127.0.0.1', entry])).toThrow(`"${entry}" is not an IP address or network (CIDR).`);
    expect(() => new AddressPolicy([entry])).toThrow(`FLOWGATE_OUTBOUND_ALLOW: "${entry}" is not an address or CIDR`);
  });
});

describe('listsAddress', () => {
  const list = networkList([parseNetwork('10.0.0.0/8')!, parseNetwork('fd00::/8')!]);

  it('finds addresses of either family, and an IPv4-mapped IPv6 address as the IPv4 address it carries', () => {
    expect(listsAddress(list, '10.1.2.3')).toBe(true);
    expect(listsAddress(list, 'fd00::1')).toBe(true);
    expect(listsAddress(list, '::ffff:10.1.2.3')).toBe(true);
    expect(listsAddress(list, '::FFFF:10.1.2.3')).toBe(true);
    expect(listsAddress(list, '11.0.0.1')).toBe(false);
    expect(listsAddress(list, '::ffff:11.0.0.1')).toBe(false);
  });

  it('lists nothing that is not an address', () => {
    expect(listsAddress(list, '')).toBe(false);
    expect(listsAddress(list, 'localhost')).toBe(false);
  });
});

describe('clientNetwork', () => {
  // An IPv6 client counts by its /64, whatever the spelling; an IPv4 one (mapped too) by its address.
  it.each([
    ['2001:db8:0:1::17', '2001:db8:0:1::/64'],
    ['2001:0DB8:0000:0001:aaaa:bbbb:cccc:dddd', '2001:db8:0:1::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b:1:2:3:4:192.0.2.1', '64:ff9b:1:2::/64'],
    ['192.0.2.7', '192.0.2.7'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['0:0:0:0:0:ffff:192.0.2.7', '192.0.2.7'],
    ['::ffff:c000:207', '192.0.2.7'],
    ['::FFFF:C000:0207', '192.0.2.7'],
    ['not an address', 'not an address'],
  ])('counts %s as %s', (address, network) => {
    expect(clientNetwork(address)).toBe(network);
  });
});
