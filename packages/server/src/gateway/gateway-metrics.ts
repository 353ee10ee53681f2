import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** One route's children, found by method then status: no label string is built per request. */
interface RouteChildren {
  readonly timer: Histogram.Internal<'route'>;
  readonly counters: Map<string, Map<number, Counter.Internal>>;
}

/**
 * Per-route gateway metrics. Children are cached per label set: the hot path does Map
 * lookups on strings it already has instead of prom-client's label hashing.
 */
export class GatewayMetrics {
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly duration: Histogram<'route'>;
  private readonly health: Gauge<'service' | 'target'>;
  private readonly routes = new Map<string, RouteChildren>();

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'flowgate_gateway_requests_total',
      help: 'Requests answered by gateway routes, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'flowgate_gateway_request_duration_seconds',
      help: 'Time from a request arriving at the gateway to the end of its answer, by route',
      labelNames: ['route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.health = new Gauge({
      name: 'flowgate_gateway_upstream_healthy',
      help: 'Whether a target of a gateway service passes its health checks (1) or not (0)',
      labelNames: ['service', 'target'],
      registers: [registry],
    });
  }

  observe(route: string, method: string, status: number, seconds: number): void {
    let children = this.routes.get(route);
    if (!children) {
      children = { timer: this.duration.labels(route), counters: new Map() };
      this.routes.set(route, children);
    }
    let byStatus = children.counters.get(method);
    if (!byStatus) {
      byStatus = new Map();
      children.counters.set(method, byStatus);
    }
    let counter = byStatus.get(status);
    if (!counter) {
      counter = this.requests.labels(route, method, String(status));
      byStatus.set(status, counter);
    }
    counter.inc();
    children.timer.observe(seconds);
  }

  upstreamHealth(service: string, target: string, healthy: boolean): void {
    this.health.labels(service, target).set(healthy ? 1 : 0);
  }

  /** Forgets the health of a service's targets when they (or it) go away. */
  forgetService(service: string, targets: readonly string[]): void {
    for (const target of targets) this.health.remove(service, target);
  }
}
