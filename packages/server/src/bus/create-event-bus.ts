import type { Registry } from 'prom-client';
import type { FlowgateConfig } from '../config/index.js';
import type { Clock } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import { EmbeddedBusBackend } from './backends/embedded/embedded-bus-backend.js';
import { connectNatsBusBackend } from './backends/nats/nats-bus-backend.js';
import type { BusBackend } from './bus-backend.js';
import { EventBus } from './event-bus.js';

export interface CreateEventBusOptions {
  readonly config: FlowgateConfig['bus'];
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly registry?: Registry;
}

/** Builds the bus on the backend the configuration names (NATS when `bus.url` is set). */
export async function createEventBus(options: CreateEventBusOptions): Promise<EventBus> {
  const { config, store, clock, logger } = options;
  const backend: BusBackend = await openBackend(options);
  logger.info({ backend: config.url ? 'nats' : 'embedded' }, 'event bus ready');
  return new EventBus({
    backend,
    store,
    clock,
    logger,
    ...(options.registry ? { registry: options.registry } : {}),
    quotas: { publishRate: config.publishRate, maxBacklog: config.maxBacklog },
    lagIntervalMs: config.lagIntervalMs,
    retentionIntervalMs: config.retentionIntervalMs,
  });
}

function openBackend(options: CreateEventBusOptions): Promise<BusBackend> {
  const { config, store, clock, logger } = options;
  if (config.url) return connectNatsBusBackend({ url: config.url, prefix: config.prefix, clock, logger });
  return Promise.resolve(new EmbeddedBusBackend({ store, clock, logger }));
}
