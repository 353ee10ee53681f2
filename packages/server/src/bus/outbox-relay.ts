import type { EventEnvelope } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import { CoalescingRunner } from '../kernel/index.js';
import type { Logger } from '../observability/index.js';
import type { Store } from '../storage/index.js';
import type { BusBackend, NewEvent } from './bus-backend.js';
import type { BusTables } from './bus.migrations.js';

const RELAY_BATCH = 500;
const RELAY_POLL_MS = 500;

/**
 * The transactional outbox, for backends that cannot join a state transaction (NATS).
 * The event is written to `bus_outbox` in the caller's transaction, so it exists exactly
 * when the state change does; the relay then appends it to the backend and deletes the
 * row. A crash between the two appends it again, and the backend drops the copy by event
 * id (JetStream de-duplication), so nothing is lost or invented.
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | undefined;
  private readonly relay: CoalescingRunner;

  constructor(
    private readonly store: Store,
    private readonly backend: BusBackend,
    private readonly logger: Logger,
  ) {
    this.relay = new CoalescingRunner(async () => (await this.relayBatch()) === RELAY_BATCH, {
      onError: (error) => {
        this.logger.warn({ err: error }, 'bus outbox relay failed; retrying');
        return false;
      },
      // The poll catches rows whose nudge came before their transaction committed.
      onIdle: () => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.nudge(), RELAY_POLL_MS);
        this.timer.unref();
      },
    });
  }

  /** Writes events into the outbox inside `trx`. */
  async write(trx: Kysely<unknown>, events: readonly NewEvent[], now: number): Promise<void> {
    const db = trx as unknown as Kysely<BusTables>;
    await db
      .insertInto('bus_outbox')
      .values(events.map((e) => ({ tenant_id: e.tenant, topic: e.topic, body: JSON.stringify(e.envelope), created_at: now })))
      .execute();
    // The transaction has not committed yet; give it a moment, then relay.
    setTimeout(() => this.nudge(), 10).unref();
  }

  start(): void {
    this.nudge();
  }

  async stop(): Promise<void> {
    await this.relay.stop();
    clearTimeout(this.timer);
  }

  /** Relays now (or right after the relay in progress). */
  nudge(): void {
    this.relay.trigger();
  }

  private async relayBatch(): Promise<number> {
    const db = this.store.db<BusTables>();
    const rows = await db.selectFrom('bus_outbox').selectAll().orderBy('id').limit(RELAY_BATCH).execute();
    if (rows.length === 0) return 0;
    await this.backend.append(rows.map((r) => ({ tenant: r.tenant_id, topic: r.topic, envelope: JSON.parse(r.body) as EventEnvelope })));
    await db
      .deleteFrom('bus_outbox')
      .where(
        'id',
        'in',
        rows.map((r) => Number(r.id)),
      )
      .execute();
    return rows.length;
  }
}
