/**
 * Opens an event bus on each backend the conformance suite runs against: the embedded
 * log on SQLite and on PostgreSQL, and NATS JetStream.
 */
import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { expect } from 'vitest';
import { busMigrations, connectNatsBusBackend, EmbeddedBusBackend, EventBus, type BusBackend, type EventBusOptions, type NatsBusBackend } from '../../src/bus/index.js';
import { FlowgateError } from '../../src/errors/index.js';
import { systemClock, type Clock } from '../../src/kernel/index.js';
import type { NamedMigration, Store } from '../../src/storage/index.js';
import { openTestStore, type StoreKind } from './stores.js';

/** The bus backends every conformance test runs against. */
export const BUS_KINDS = ['embedded-sqlite', 'embedded-postgres', 'nats'] as const;
export type BusKind = (typeof BUS_KINDS)[number];

export interface TestBus {
  readonly bus: EventBus;
  readonly backend: BusBackend;
  readonly store: Store;
  close(): Promise<void>;
}

export interface OpenTestBusOptions extends Partial<Pick<EventBusOptions, 'quotas' | 'lagIntervalMs' | 'retentionIntervalMs'>> {
  readonly clock?: Clock;
  /** The store's migrations (default: the bus's); `ALL_MIGRATIONS` for a feature on the bus. */
  readonly migrations?: readonly NamedMigration[];
}

const silent = pino({ level: 'silent' });

/** Where the NATS tests connect. */
export const TEST_NATS_URL = process.env.FLOWGATE_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** A fresh bus of `kind` over a fresh store; `close` removes both. */
export async function openTestBus(kind: BusKind, options: OpenTestBusOptions = {}): Promise<TestBus> {
  const storeKind: StoreKind = kind === 'embedded-postgres' ? 'postgres' : 'sqlite';
  const { migrations = busMigrations, ...busOptions } = options;
  const opened = await openTestStore(storeKind, { migrations });
  const store = opened.store;
  const clock = busOptions.clock ?? systemClock;
  let nats: NatsBusBackend | undefined;
  const backend: BusBackend =
    kind === 'nats'
      ? (nats = await connectNatsBusBackend({ url: TEST_NATS_URL, clock, logger: silent, prefix: `t${randomBytes(4).toString('hex')}` }))
      : new EmbeddedBusBackend({ store, clock, logger: silent });
  const bus = new EventBus({ backend, store, clock, logger: silent, ...busOptions });
  bus.start();
  return {
    bus,
    backend,
    store,
    async close() {
      try {
        await nats?.destroyAll();
      } finally {
        await bus.close();
        await opened.cleanup();
      }
    },
  };
}

/** A tenant id no other test uses. */
export function uniqueTenant(): string {
  return `t-${randomBytes(5).toString('hex')}`;
}

/** Waits until `check` returns true, polling; fails after `timeoutMs` with `what`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Awaits a promise that must reject with a {@link FlowgateError}, and returns the error. */
export async function rejection(promise: Promise<unknown>): Promise<FlowgateError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(FlowgateError);
  return error as FlowgateError;
}
