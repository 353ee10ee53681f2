/** The HTTP server shell: Fastify, problem+json errors, trace ids, metrics, OpenAPI, health. */
export { createHttpApp, acceptFormBodies, sendProblem, type HttpApp, type HttpAppOptions } from './create-http-app.js';
export { registerHealthRoutes, type HealthDeps } from './health.routes.js';
export { problemResponses, bearerSecured } from './route-schema.js';
export { queryTime } from './query-time.js';
export { HOP_BY_HOP, isHopByHop } from './hop-by-hop.js';
