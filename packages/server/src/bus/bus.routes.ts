import type { HttpApp } from '../http/index.js';
import type { EventBus } from './event-bus.js';

export interface BusRoutesOptions {
  readonly bus: EventBus;
}

/** The bus's HTTP API under /api/v1 (topics, events, streams, consumer groups). Coming next. */
export async function registerBusRoutes(app: HttpApp, options: BusRoutesOptions): Promise<void> {
  void app;
  void options;
  return Promise.resolve();
}
