import type { GatewayService } from '@flowgate/contracts';
import { reservedPrefixOf } from '@flowgate/contracts';
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import type { Iam } from '../iam/index.js';
import type { AuditRecorder, Clock } from '../kernel/index.js';
import type { Logger, SpanSink } from '../observability/index.js';
import type { OAuth2Tokens, SecretStore } from '../secrets/index.js';
import type { Store } from '../storage/index.js';
import { clientAddressBehind } from './client-address.js';
import { compileConfig, type CompiledConfig, type RouteMatch } from './compile.js';
import { GatewayConfigStore } from './config-store.js';
import { GatewayCredentials, UpstreamTokens } from './credentials.js';
import { DeniedAudit } from './denied-audit.js';
import { GatewayMetrics } from './gateway-metrics.js';
import { isPreflight, type PolicyDeps } from './policies/index.js';
import { serveRoute, type ProxyDeps, type Upgrade } from './proxy.js';
import { createRateLimitStore, type RateLimitStore } from './rate-limit/index.js';
import { GatewaySecretValues } from './secret-values.js';
import { Upstream } from './upstream.js';

export interface GatewayOptions {
  /** How often each instance checks the stored configuration's revision. */
  readonly reloadMs: number;
  /** Shares rate-limit budgets across instances when set. */
  readonly redisUrl: string | undefined;
  readonly accessLog: boolean;
  /**
   * Comma-separated addresses and networks of proxies in front of Flowgate
   * (FLOWGATE_TRUSTED_PROXIES): behind them the client address is read from
   * X-Forwarded-For. Empty: the client is the TCP peer.
   */
  readonly trustedProxies: string;
  /** Repeated refusals are audited once, then summarised per this window; 0: each one. */
  readonly deniedAuditWindowMs: number;
}

export interface GatewayDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly spans: SpanSink;
  readonly audit: AuditRecorder;
  readonly iam: Iam;
  readonly secrets: SecretStore;
  readonly oauth2: OAuth2Tokens;
  /** Issuer URLs of the trusted external issuers (iam.trustedIssuers). */
  readonly trustedIssuers: readonly string[];
  readonly options: GatewayOptions;
}

type Matched = NonNullable<ReturnType<CompiledConfig['router']['find']>>;

/** What is served now: the compiled configuration and its upstreams. */
interface Serving {
  readonly revision: number;
  readonly compiled: CompiledConfig;
  readonly upstreams: ReadonlyMap<string, Upstream>;
}

/**
 * The API gateway: serves the routes of the stored configuration on the main port, in
 * front of Fastify (which keeps every reserved path). Each instance polls the stored
 * revision and swaps in a newly compiled configuration atomically: requests in flight
 * finish on the one they started with, and pools of services that did not change are
 * kept.
 */
export class Gateway {
  readonly config: GatewayConfigStore;
  private readonly policyDeps: PolicyDeps;
  private readonly proxyDeps: ProxyDeps;
  private readonly metrics: GatewayMetrics;
  private readonly rateLimits: RateLimitStore;
  private readonly denials: DeniedAudit;
  private serving: Serving | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Reloads run one after another, never side by side. */
  private reloading: Promise<void> = Promise.resolve();
  private pending = 0;
  private closed = false;
  /** Open WebSocket tunnels and upgrades in progress, ended at shutdown. */
  private readonly tunnels = new Set<Duplex>();
  /** Upstreams replaced by a reload, closing once their requests are done. */
  private readonly retired = new Set<Upstream>();

  constructor(private readonly deps: GatewayDeps) {
    this.metrics = new GatewayMetrics(deps.registry);
    this.rateLimits = createRateLimitStore({
      redisUrl: deps.options.redisUrl,
      onDegraded: (message) => deps.logger.warn({ error: message }, 'Redis unavailable: rate limits are kept per instance until it is back'),
      onRecovered: () => deps.logger.info('Redis available again: rate limits are shared across instances'),
    });
    this.policyDeps = {
      credentials: new GatewayCredentials(deps.iam, deps.clock, deps.trustedIssuers),
      rateLimits: this.rateLimits,
      upstreamTokens: new UpstreamTokens(deps.iam, deps.clock),
      secrets: new GatewaySecretValues(deps.secrets, deps.oauth2, deps.clock, deps.audit),
      clock: deps.clock,
    };
    this.denials = new DeniedAudit(deps.audit, deps.clock, deps.options.deniedAuditWindowMs);
    this.proxyDeps = {
      logger: deps.logger,
      metrics: this.metrics,
      denials: this.denials,
      clientAddress: clientAddressBehind(deps.options.trustedProxies),
      accessLog: deps.options.accessLog,
      spans: deps.spans,
    };
    this.config = new GatewayConfigStore(deps.store, deps.clock, (config) => compileConfig(config, this.policyDeps).problems);
  }

  /** Loads and serves the stored configuration, then follows its changes. */
  async start(): Promise<void> {
    // Budgets shared through Redis from the first request, when Redis answers at all.
    await this.rateLimits.ready?.(2000);
    await this.reloadNow();
    this.timer = setInterval(() => {
      // A poll while a reload is queued adds nothing.
      if (this.pending === 0) void this.reload();
    }, this.deps.options.reloadMs);
    this.timer.unref();
  }

  /** Reloads after any reload under way; failures are logged and the old configuration kept. */
  reload(): Promise<void> {
    this.pending++;
    this.reloading = this.reloading
      .then(() => this.reloadNow())
      .catch((err: unknown) => this.deps.logger.error({ err }, 'gateway configuration could not be reloaded; the previous one is still served'))
      .finally(() => this.pending--);
    return this.reloading;
  }

  /** The revision this instance serves (-1 before the first load). */
  get revision(): number {
    return this.serving?.revision ?? -1;
  }

  /**
   * Serves the request when a gateway route matches it, and says whether it did. Paths
   * under a reserved prefix are always left to Flowgate's own routes.
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const serving = this.serving;
    if (!serving || serving.compiled.routes.size === 0) return false;
    const found = this.match(serving, req);
    if (!found) return false;
    // A plain OPTIONS request to a route that serves OPTIONS for its preflights only is
    // answered as any method the route does not list.
    if ((found.store as RouteMatch).preflightOnly && !isPreflight(req.method, req.headers)) return false;
    this.serve(serving, found, req, res);
    return true;
  }

  /** The same for an `Upgrade` request (WebSocket): proxied when a gateway route matches. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const serving = this.serving;
    if (!serving || serving.compiled.routes.size === 0) return false;
    // Only WebSocket: another protocol (h2c) would tunnel requests past the route's policies.
    if (req.headers.upgrade?.toLowerCase() !== 'websocket' || req.method !== 'GET') return false;
    const found = this.match(serving, req);
    if (!found) return false;
    // Node leaves an upgraded socket without an error listener: a client reset must not
    // become an uncaught exception.
    socket.on('error', () => socket.destroy());
    this.tunnels.add(socket);
    socket.once('close', () => this.tunnels.delete(socket));
    // Refusals and upstream errors are written as ordinary HTTP answers on the socket.
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    // A socket answered over HTTP (a refusal) is done once the answer is out.
    res.once('finish', () => socket.end());
    this.serve(serving, found, req, res, { socket, head });
    return true;
  }

  private serve(serving: Serving, found: Matched, req: IncomingMessage, res: ServerResponse, upgrade?: Upgrade): void {
    const match = found.store as RouteMatch;
    const upstream = serving.upstreams.get(match.route.service);
    // Counted from the first moment: a reload meanwhile must not close its pools under it.
    upstream?.acquire();
    void serveRoute(req, res, match, found.params, upstream, this.proxyDeps, upgrade).finally(() => upstream?.release());
  }

  /**
   * The route for a request, if any. Only origin-form targets (`/path`) are routed: an
   * absolute-form target (`http://host/path`) would reach the upstream with an authority
   * the caller chose. Nor are targets with a `#` (invalid in a request target, RFC 9112):
   * the router stops reading at it and an upstream may not, so a route and its policies
   * would be chosen for a path other than the one forwarded. Reserved paths are checked
   * on the raw and on the decoded path, as the router and Fastify both decode.
   */
  private match(serving: Serving, req: IncomingMessage): Matched | undefined {
    const url = req.url ?? '/';
    if (!url.startsWith('/') || url.includes('#')) return undefined;
    const queryAt = url.indexOf('?');
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    if (reservedPrefixOf(path) || (path.includes('%') && reservedPrefixOf(decodedOrRaw(path)))) return undefined;
    return serving.compiled.router.find(req.method as 'GET', url, { host: hostOf(req.headers.host) }) ?? undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    // Pending refusal counts are recorded now; a refusal from here on is recorded as it comes.
    this.denials.close();
    if (this.timer) clearInterval(this.timer);
    await this.reloading;
    for (const socket of this.tunnels) socket.destroy();
    const upstreams = [...(this.serving?.upstreams.values() ?? []), ...this.retired];
    await Promise.race([Promise.all(upstreams.map((u) => u.close())), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
    await Promise.all(upstreams.map((u) => u.destroy()));
    await this.rateLimits.close();
  }

  private async reloadNow(): Promise<void> {
    if (this.closed) return;
    const revision = await this.config.revision();
    if (this.serving && revision === this.serving.revision) return;
    const state = await this.config.load();
    const { compiled, problems } = compileConfig({ services: state.services, routes: state.routes }, this.policyDeps);
    if (!compiled) {
      this.deps.logger.error({ revision: state.revision, problems }, 'stored gateway configuration is not valid; the previous one is still served');
      return;
    }
    const previous = this.serving;
    const upstreams = new Map<string, Upstream>();
    const kept = new Set<Upstream>();
    for (const service of compiled.services.values()) {
      const old = previous?.upstreams.get(service.name);
      if (old && sameConnection(old.service, service)) {
        upstreams.set(service.name, old);
        kept.add(old);
        continue;
      }
      const upstream = new Upstream(service, {
        logger: this.deps.logger,
        onHealth: (name, target, healthy) => this.metrics.upstreamHealth(name, target, healthy),
      });
      upstream.start();
      upstreams.set(service.name, upstream);
    }
    this.serving = { revision: state.revision, compiled, upstreams };
    this.deps.logger.info({ revision: state.revision, routes: compiled.routes.size, services: compiled.services.size }, 'gateway configuration loaded');
    for (const old of previous?.upstreams.values() ?? []) {
      if (kept.has(old)) continue;
      // The health of targets no longer served goes (a service's other targets keep theirs).
      const now = upstreams.get(old.name)?.service.targets ?? [];
      const gone = old.service.targets.filter((target) => !now.includes(target));
      if (gone.length > 0) this.metrics.forgetService(old.name, gone);
      // Requests in flight on the old pools finish; then the pools close.
      this.retired.add(old);
      void old.retire().then(() => this.retired.delete(old));
    }
  }
}

/** Whether two versions of a service can share pools and health state. */
function sameConnection(a: GatewayService, b: GatewayService): boolean {
  const { policies: _a, ...left } = a;
  const { policies: _b, ...right } = b;
  return JSON.stringify(left) === JSON.stringify(right);
}

function decodedOrRaw(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

function hostOf(header: string | undefined): string {
  if (header === undefined) return '';
  const lower = header.toLowerCase();
  if (lower.startsWith('[')) return lower.slice(0, lower.indexOf(']') + 1);
  const colon = lower.indexOf(':');
  return colon === -1 ? lower : lower.slice(0, colon);
}
