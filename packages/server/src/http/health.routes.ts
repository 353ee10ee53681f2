import Type from 'typebox';
import type { Registry } from 'prom-client';
import { FlowgateError } from '../errors/index.js';
import type { HttpApp } from './create-http-app.js';

export interface HealthDeps {
  /** Whether the server can do its work now (store answering, not draining). */
  readonly readiness: () => Promise<{ ready: boolean; checks: Record<string, 'ok' | 'failing' | 'draining'> }>;
  readonly registry: Registry;
}

const HealthSchema = Type.Object({ status: Type.String(), checks: Type.Optional(Type.Record(Type.String(), Type.String())) });

/** Liveness, readiness and Prometheus metrics. */
export function registerHealthRoutes(app: HttpApp, deps: HealthDeps): void {
  app.get(
    '/health/live',
    { config: { scope: 'public' }, schema: { tags: ['health'], summary: 'The process is up', response: { 200: HealthSchema } } },
    () => ({ status: 'ok' }),
  );
  app.get(
    '/health/ready',
    {
      config: { scope: 'public' },
      schema: { tags: ['health'], summary: 'The server can serve requests (its store is usable)', response: { 200: HealthSchema } },
    },
    async () => {
      const { ready, checks } = await deps.readiness();
      if (!ready) {
        const failing = Object.entries(checks).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k}: ${v}`);
        throw new FlowgateError('FLOWGATE_ERR_SERVER_NOT_READY', `Not ready (${failing.join(', ')}).`, { extensions: { checks } });
      }
      return { status: 'ready', checks };
    },
  );
  app.get('/metrics', { config: { scope: 'public' }, schema: { hide: true } }, async (_request, reply) => {
    return reply.type(deps.registry.contentType).send(await deps.registry.metrics());
  });
}
