/**
 * The API gateway: services, routes and policies from a declarative configuration,
 * served on the main port in front of Flowgate's own routes.
 */
export { Gateway, type GatewayDeps, type GatewayOptions } from './gateway.js';
export { gatewayMigrations } from './gateway.migrations.js';
export { registerGatewayRoutes } from './gateway.routes.js';
export { diff as gatewayConfigDiff } from './config-store.js';
