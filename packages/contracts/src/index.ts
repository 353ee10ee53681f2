/**
 * @flowgate/contracts: what the Flowgate server, its CLI and its web UI agree on.
 * Browser-safe: no Node built-ins.
 */
export * from './errors.js';
export * from './scopes.js';
export * from './api.schemas.js';
export * from './events.js';
export * from './bus.schemas.js';
export * from './secrets.schemas.js';
export * from './audit.schemas.js';
export * from './gateway.schemas.js';
export * from './flows.schemas.js';
