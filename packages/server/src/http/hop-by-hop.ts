/** RFC 9110 §7.6.1 connection-specific fields, plus the obsolete ones proxies still see. */
export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'proxy-authenticate', 'proxy-authorization']);

/** Whether a (lower-case) header name belongs to one connection, not to the message. */
export function isHopByHop(name: string): boolean {
  return HOP_BY_HOP.has(name);
}
