/** Outbound HTTP on a tenant's behalf, guarded against server-side request forgery. */
export { AddressPolicy } from './address-policy.js';
export { OutboundClient, type OutboundRequest, type OutboundResponse, type OutboundClientOptions } from './outbound-client.js';
