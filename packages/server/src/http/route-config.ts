/**
 * What a route declares about itself, read by the hooks that guard it.
 *
 * `scope` is the scope a caller's token must grant: a string like `users:read`,
 * `null` for "any authenticated caller", and `'public'` for routes that take no token
 * (health, discovery, the OAuth endpoints that authenticate clients themselves). Every
 * route under `/api/` must say which; the server refuses to start otherwise.
 */
declare module 'fastify' {
  interface FastifyContextConfig {
    scope?: string | null;
  }
}

export {};
