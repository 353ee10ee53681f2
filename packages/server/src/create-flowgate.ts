import type { DestinationStream } from 'pino';
import { AuditService, BusAuditRecorder, createCheckpointSigner, registerAuditRoutes } from './audit/index.js';
import { createEventBus, registerBusRoutes, type EventBus } from './bus/index.js';
import type { FlowgateConfig } from './config/index.js';
import { createFlows, type Flows } from './flows/index.js';
import { Gateway, registerGatewayRoutes } from './gateway/index.js';
import { createHttpApp, registerHealthRoutes, type HttpApp } from './http/index.js';
import { createIam, type Iam, type SecretHasher } from './iam/index.js';
import { systemClock, type AuditRecorder, type Clock } from './kernel/index.js';
import { ALL_MIGRATIONS } from './migrations.js';
import { createHttpMetrics, createLogger, createMetricsRegistry, NO_SPANS, OtlpSpanExporter, type Logger, type SpanSink } from './observability/index.js';
import { AddressPolicy, OutboundClient } from './outbound/index.js';
import { createSecrets, registerSecretRoutes, type OAuth2Tokens, type SecretStore } from './secrets/index.js';
import { openStore, redactUrl, type Store } from './storage/index.js';
import { VERSION } from './version.js';

/** What embedders and tests may replace. Production passes nothing. */
export interface FlowgateOptions {
  readonly clock?: Clock;
  /** Cheaper hashing for tests; scrypt at OWASP cost by default. */
  readonly hasher?: SecretHasher;
  /** Where JSON log lines go; standard output by default. */
  readonly logDestination?: DestinationStream;
  readonly audit?: AuditRecorder;
  /** Where generated bootstrap credentials are shown; standard output by default. */
  readonly announce?: (text: string) => void;
}

/** A built Flowgate server. */
export interface Flowgate {
  readonly config: FlowgateConfig;
  readonly store: Store;
  readonly iam: Iam;
  readonly bus: EventBus;
  readonly secrets: SecretStore;
  /** Valid access tokens of oauth2 secrets, for components calling third-party APIs. */
  readonly oauth2: OAuth2Tokens;
  readonly audit: AuditService;
  readonly gateway: Gateway;
  readonly flows: Flows;
  readonly app: HttpApp;
  readonly logger: Logger;
  /** The base URL it answers on (after {@link Flowgate.listen}). */
  readonly url: string;
  /** Starts listening on the configured host and port. */
  listen(): Promise<string>;
  /** Stops taking requests, finishes those in flight, and closes the store. Idempotent. */
  close(): Promise<void>;
}

/**
 * The composition root: builds every module from the configuration and wires them.
 * `npm start`, the CLI and the tests all go through here.
 */
export async function createFlowgate(config: FlowgateConfig, options: FlowgateOptions = {}): Promise<Flowgate> {
  const clock = options.clock ?? systemClock;
  const logger = createLogger({ level: config.log.level, ...(options.logDestination ? { destination: options.logDestination } : {}) });
  const registry = createMetricsRegistry();
  const spans: SpanSink = config.telemetry.otlpEndpoint ? new OtlpSpanExporter(config.telemetry.otlpEndpoint, config.telemetry.serviceName, VERSION, logger) : NO_SPANS;
  // Audit events go to the audit log through the bus once it is up (below); an embedder's
  // recorder (tests read events back from one) receives them too.
  const recorders: AuditRecorder[] = options.audit ? [options.audit] : [];
  const audit: AuditRecorder = { record: (event) => recorders.forEach((r) => r.record(event)) };

  const store = await openStore({
    url: config.database.url,
    schema: config.database.schema,
    dataDir: config.dataDir,
    poolSize: config.database.poolSize,
    onBackgroundError: (message) => logger.warn({ error: message }, 'SQLite background checkpoint failed; the main connection checkpoints instead'),
  });
  let app: HttpApp | undefined;
  let bus: EventBus | undefined;
  let gatewayRef: Gateway | undefined;
  let flowsRef: Flows | undefined;
  try {
    const applied = await store.migrate(ALL_MIGRATIONS);
    if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');

    const outbound = new OutboundClient(new AddressPolicy(splitList(config.outbound.allow)));
    const secrets = await createSecrets({ config: config.secrets, dataDir: config.dataDir, store, clock, logger, audit, outbound });

    bus = await createEventBus({ config: config.bus, store, clock, logger, registry });
    recorders.push(new BusAuditRecorder(bus, clock, logger));

    let listeningUrl: string | undefined;
    const issuer = () => config.server.publicUrl ?? listeningUrl ?? baseUrl(config.server.host, config.server.port);
    // Flows reach gateway routes on this process's own listener, not through a public URL.
    const issuerOrListener = () => listeningUrl ?? issuer();

    const iam = createIam({
      store,
      config,
      clock,
      logger,
      audit,
      issuer,
      hasher: options.hasher,
      announce: options.announce ?? ((text) => process.stdout.write(`${text}\n`)),
      sealer: secrets.sealer,
    });
    await iam.start();
    bus.start();
    const auditService = new AuditService({ store, bus, clock, logger, signer: createCheckpointSigner(iam.keys), ...config.audit });
    await auditService.start();

    const gateway = new Gateway({
      store,
      clock,
      logger,
      registry,
      spans,
      audit,
      iam,
      secrets: secrets.store,
      oauth2: secrets.oauth2,
      trustedIssuers: config.iam.trustedIssuers.map((i) => i.issuer),
      options: {
        reloadMs: config.gateway.reloadMs,
        accessLog: config.gateway.accessLog,
        redisUrl: config.redis.url,
        trustedProxies: config.gateway.trustedProxies,
        deniedAuditWindowMs: config.gateway.deniedAuditWindowMs,
      },
    });
    gatewayRef = gateway;
    await gateway.start();

    const flows = await createFlows({ config, store, bus, clock, logger, audit, secrets: secrets.store, oauth2: secrets.oauth2, outbound, registry, selfUrl: issuerOrListener });
    flowsRef = flows;
    await flows.start();

    const httpApp = await createHttpApp({
      logger,
      metrics: createHttpMetrics(registry),
      spans,
      bodyLimitBytes: config.server.bodyLimitBytes,
      version: VERSION,
      front: (req, res) => gateway.handle(req, res),
      frontUpgrade: (req, socket, head) => gateway.handleUpgrade(req, socket, head),
    });
    app = httpApp;
    let draining = false;
    registerHealthRoutes(httpApp, {
      registry,
      readiness: async () => {
        const storeOk = await store.ping(1000);
        const checks = { store: storeOk ? ('ok' as const) : ('failing' as const), server: draining ? ('draining' as const) : ('ok' as const) };
        return { ready: storeOk && !draining, checks };
      },
    });
    await iam.registerRoutes(httpApp);
    await registerBusRoutes(httpApp, { bus });
    registerSecretRoutes(httpApp, { secrets: secrets.store, audit });
    registerAuditRoutes(httpApp, { audit: auditService });
    registerGatewayRoutes(httpApp, { gateway, audit });
    await flows.registerRoutes(httpApp);
    await httpApp.ready();

    let closing: Promise<void> | undefined;
    const eventBus = bus;
    const flowgate: Flowgate = {
      config,
      store,
      iam,
      bus: eventBus,
      secrets: secrets.store,
      oauth2: secrets.oauth2,
      audit: auditService,
      gateway,
      flows,
      app: httpApp,
      logger,
      get url() {
        return issuer();
      },
      async listen() {
        await httpApp.listen({ host: config.server.host, port: config.server.port });
        const address = httpApp.server.address();
        const port = typeof address === 'object' && address ? address.port : config.server.port;
        listeningUrl = baseUrl(config.server.host, port);
        logger.info(
          { url: listeningUrl, issuer: issuer(), store: store.dialect, database: config.database.url ? redactUrl(config.database.url) : config.dataDir, version: VERSION },
          'flowgate listening',
        );
        return listeningUrl;
      },
      close() {
        closing ??= (async () => {
          draining = true;
          logger.info('flowgate shutting down');
          const timeout = new Promise<void>((resolve) => setTimeout(resolve, config.server.shutdownTimeoutMs).unref());
          await Promise.race([httpApp.close(), timeout]);
          await gateway.close().catch((error: unknown) => logger.warn({ err: error }, 'gateway did not close cleanly'));
          // Triggers stop first, then running steps finish and are recorded, before the bus and store close.
          await flows.close().catch((error: unknown) => logger.warn({ err: error }, 'flows did not stop cleanly'));
          await spans.close();
          // Consumers stop before the store they record acks in.
          await auditService.stop().catch((error: unknown) => logger.warn({ err: error }, 'audit service did not stop cleanly'));
          await eventBus.close().catch((error: unknown) => logger.warn({ err: error }, 'event bus did not close cleanly'));
          // A request stuck past the timeout may hold a database connection; do not wait on it.
          await Promise.race([store.close(), new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())]);
          logger.info('flowgate stopped');
          logger.flush();
        })();
        return closing;
      },
    };
    return flowgate;
  } catch (err) {
    await app?.close().catch(() => undefined);
    await gatewayRef?.close().catch(() => undefined);
    await flowsRef?.close().catch(() => undefined);
    await spans.close();
    await bus?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw err;
  }
}

function splitList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function baseUrl(host: string, port: number): string {
  const shown = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  return `http://${shown}:${port}`;
}
