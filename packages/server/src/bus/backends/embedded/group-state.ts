import { sql, type CompiledQuery, type Kysely } from 'kysely';
import { rebind, type Store } from '../../../storage/index.js';
import type { BusTables } from '../../bus.migrations.js';

type Db = Kysely<BusTables>;

/** A claimed event's row in `bus_pending`. */
export interface PendingRow {
  readonly group_id: number;
  readonly seq: number;
  readonly tenant_id: string;
  readonly event_key: string | null;
  readonly deliveries: number;
  readonly visible_at: number;
  readonly delivery_id: number;
  readonly last_error: string | null;
}

/** A claimed event that is due again, with its body (null once retention removed it). */
export interface DueRow {
  readonly seq: number;
  readonly deliveries: number;
  readonly lastError: string | null;
  readonly topicId: number | null;
  readonly body: string | null;
}

/** A new event of the log, as a claim reads it. */
export interface LogRow {
  readonly seq: number;
  readonly topicId: number;
  readonly key: string | null;
  readonly body: string;
}

/** An ack: the delivery it settles. */
export interface AckRef {
  readonly seq: number;
  readonly deliveryId: number;
}

/** Another process sharing the store claimed first; the pass starts over. */
export class CursorMoved extends Error {}

/**
 * `visible_at` of an event that waits behind an earlier event of its key. Below every due
 * time, so the due read's index range (`visible_at` from 0 to now) never visits it: a key
 * with a backlog of thousands costs that read nothing. Settling a key's head makes its next
 * event due (`visible_at` 0).
 */
export const WAITING = -1;

/** A selective group reads each of its topics' next events; one matching more walks the tenant's log. */
const MAX_TOPICS_READ_APART = 32;

/** How often waiting events are checked for a head that vanished without releasing them. */
const WAITING_SWEEP_MS = 2000;

/** Whether the pending row `row` (a table name or alias) has no earlier event of its key in its group. */
function headOfItsKey(row: string) {
  const column = (name: string) => sql.ref(`${row}.${name}`);
  return sql<boolean>`not exists (select 1 from bus_pending q where q.group_id = ${column('group_id')} and q.event_key = ${column('event_key')} and q.seq < ${column('seq')})`;
}

/** Stands for the key in the compiled release statement. */
const KEY = '\u0000key';

/** Rows per INSERT or DELETE statement where the query builder is used. */
const CHUNK = 200;
const INSERT_PENDING = 'insert into bus_pending (group_id, seq, tenant_id, event_key, deliveries, visible_at, delivery_id) values (?, ?, ?, ?, ?, ?, ?)';
const DELETE_ACKED = 'delete from bus_pending where group_id = ? and seq = ? and delivery_id = ? returning event_key';

/**
 * One consumer group's rows in the store: `bus_cursors` (per tenant, the last seq claimed
 * from the log) and `bus_pending` (every claimed event not yet acked). The dispatcher
 * decides; this only reads and writes. On SQLite, the statements run per event are
 * prepared once on the raw connection, because building them cost more than running them.
 */
export class GroupState {
  constructor(
    private readonly store: Store,
    private readonly groupId: number,
  ) {}

  /** The claim or ack under way in this process; the next one waits for it. */
  private turns: Promise<unknown> = Promise.resolve();
  private lastSweepAt = 0;
  private released: CompiledQuery | undefined;

  private get db(): Db {
    return this.store.db<BusTables>();
  }

  /**
   * Claims and acks of this process take turns. An ack that released its key's next event
   * while a claim was adding more events of that key, uncommitted, would miss them and leave
   * them waiting (on PostgreSQL; SQLite's one connection serialises them anyway). Other
   * processes sharing the store are caught by {@link sweepWaiting}.
   */
  private inTurn<T>(work: () => Promise<T>): Promise<T> {
    const run = this.turns.then(work);
    this.turns = run.catch(() => undefined);
    return run;
  }

  /**
   * Runs one claim pass's reads and writes together. Relaxed: a claim lost to a power cut
   * only makes its events due again.
   */
  claimTransaction<T>(work: (trx: Db) => Promise<T>): Promise<T> {
    return this.inTurn(() => this.store.relaxedTransaction((trx) => work(trx as unknown as Db)));
  }

  /** Claimed events due by `now`, none of them behind an earlier event of its key. */
  async due(trx: Db, now: number, limit: number): Promise<DueRow[]> {
    const rows = await trx
      .selectFrom('bus_pending as p')
      .leftJoin('bus_log_events as e', 'e.seq', 'p.seq')
      .select(['p.seq', 'p.deliveries', 'p.last_error', 'e.topic_id', 'e.body'])
      .where('p.group_id', '=', this.groupId)
      .where('p.visible_at', '>=', 0)
      .where('p.visible_at', '<=', now)
      // Events waiting behind their key are WAITING, outside this range; rows written before
      // WAITING existed wait with visible_at 0, and this keeps them waiting.
      .where(headOfItsKey('p'))
      .orderBy('p.seq')
      .limit(limit)
      .execute();
    return rows.map((r) => ({ seq: Number(r.seq), deliveries: Number(r.deliveries), lastError: r.last_error, topicId: r.topic_id === null ? null : Number(r.topic_id), body: r.body }));
  }

  /** Forgets a claimed event that retention removed from the log. */
  async drop(trx: Db, seq: number): Promise<void> {
    const gone = await trx.deleteFrom('bus_pending').where('group_id', '=', this.groupId).where('seq', '=', seq).returning('event_key').execute();
    await this.releaseNext(trx, gone.map((g) => g.event_key));
  }

  /** Makes the next waiting event of each key due: its head was settled. */
  private async releaseNext(trx: Db, keys: Iterable<string | null>): Promise<void> {
    for (const key of new Set(keys)) if (key !== null) await trx.executeQuery(rebind(this.releaseCompiled(), KEY, key));
  }

  /** "Make the key's next waiting event due", compiled once with {@link KEY} for the key: acks run it often. */
  private releaseCompiled(): CompiledQuery {
    return (this.released ??= sql`update bus_pending set visible_at = 0 where group_id = ${this.groupId} and visible_at = ${WAITING}
      and seq = (select min(seq) from bus_pending where group_id = ${this.groupId} and event_key = ${KEY})`.compile(this.db));
  }

  /**
   * Makes due every waiting event that no longer has an earlier event of its key, at most
   * every {@link WAITING_SWEEP_MS}. Settling a head releases the next one; this catches the
   * one case that misses it, on PostgreSQL: an ack by another process sharing the store,
   * committing between a claim's read of the busy keys and its commit (within one process,
   * claims and acks take turns: {@link inTurn}).
   */
  async sweepWaiting(trx: Db, now: number): Promise<void> {
    if (now - this.lastSweepAt < WAITING_SWEEP_MS) return;
    this.lastSweepAt = now;
    await sql`update bus_pending set visible_at = 0 where group_id = ${this.groupId} and visible_at = ${WAITING}
      and ${headOfItsKey('bus_pending')}`.execute(trx);
  }

  /** Hands a claimed event out again under a new delivery id. */
  async redeliver(trx: Db, seq: number, deliveries: number, deadline: number, deliveryId: number): Promise<void> {
    await trx.updateTable('bus_pending').set({ visible_at: deadline, deliveries, delivery_id: deliveryId }).where('group_id', '=', this.groupId).where('seq', '=', seq).execute();
  }

  /** The tenant's cursor, or undefined when the group has not claimed from it yet. */
  async cursor(trx: Db, tenant: string): Promise<number | undefined> {
    const row = await trx.selectFrom('bus_cursors').select('position').where('group_id', '=', this.groupId).where('tenant_id', '=', tenant).executeTakeFirst();
    return row ? Number(row.position) : undefined;
  }

  /** The tenant's next events on these topics after `cursor`. */
  async newEvents(trx: Db, tenant: string, topicIds: readonly number[], cursor: number, limit: number): Promise<LogRow[]> {
    if (topicIds.length === 0) return [];
    type Row = { seq: number | string; topic_id: number | string; event_key: string | null; body: string };
    let rows: readonly Row[];
    if (topicIds.length <= MAX_TOPICS_READ_APART) {
      // Each topic's next events through (topic_id, seq), merged: the group's events cost
      // the same however many other events the tenant's log holds between them. (By the
      // tenant's log, a group of a few audit topics walked ~350 000 execution events a read.)
      const next = (id: number) => sql`select seq, topic_id, event_key, body from bus_log_events where topic_id = ${id} and seq > ${cursor} order by seq limit ${limit}`;
      const query =
        topicIds.length === 1
          ? next(topicIds[0]!)
          : sql`${sql.join(topicIds.map((id, i) => sql`select * from (${next(id)}) as ${sql.ref(`t${i}`)}`), sql` union all `)} order by seq limit ${limit}`;
      rows = (await query.execute(trx)).rows as Row[];
    } else {
      rows = await trx
        .selectFrom('bus_log_events')
        .select(['seq', 'topic_id', 'event_key', 'body'])
        .where('tenant_id', '=', tenant)
        .where('seq', '>', cursor)
        .where('topic_id', 'in', topicIds)
        .orderBy('seq')
        .limit(limit)
        .execute();
    }
    return rows.map((r) => ({ seq: Number(r.seq), topicId: Number(r.topic_id), key: r.event_key, body: r.body }));
  }

  /** Which of `keys` have an event claimed and not yet acked. */
  async busyKeys(trx: Db, keys: readonly string[]): Promise<Set<string>> {
    const busy = new Set<string>();
    if (keys.length === 0) return busy;
    const held = await trx.selectFrom('bus_pending').select('event_key').distinct().where('group_id', '=', this.groupId).where('event_key', 'in', keys).execute();
    for (const h of held) if (h.event_key !== null) busy.add(h.event_key);
    return busy;
  }

  async insert(trx: Db, rows: readonly PendingRow[]): Promise<void> {
    const native = this.store.native;
    if (native) {
      const insert = native.within(trx as unknown as Kysely<unknown>).prepare(INSERT_PENDING);
      for (const p of rows) insert.run(p.group_id, p.seq, p.tenant_id, p.event_key, p.deliveries, p.visible_at, p.delivery_id);
      return;
    }
    for (let i = 0; i < rows.length; i += CHUNK) await trx.insertInto('bus_pending').values(rows.slice(i, i + CHUNK)).execute();
  }

  /**
   * Moves the tenant's cursor from `from` (undefined: none yet) to `to` by compare-and-set;
   * throws {@link CursorMoved} when another process sharing the store moved it first.
   */
  async moveCursor(trx: Db, tenant: string, from: number | undefined, to: number): Promise<void> {
    if (from !== undefined) {
      const moved = await trx
        .updateTable('bus_cursors')
        .set({ position: to })
        .where('group_id', '=', this.groupId)
        .where('tenant_id', '=', tenant)
        .where('position', '=', from)
        .executeTakeFirst();
      if (Number(moved.numUpdatedRows) !== 1) throw new CursorMoved();
      return;
    }
    const inserted = await trx
      .insertInto('bus_cursors')
      .values({ group_id: this.groupId, tenant_id: tenant, position: to })
      .onConflict((oc) => oc.columns(['group_id', 'tenant_id']).doNothing())
      .executeTakeFirst();
    if (Number(inserted.numInsertedOrUpdatedRows ?? 0) !== 1) throw new CursorMoved();
  }

  /** Settles acked deliveries. Relaxed: an ack lost to a power cut means one more delivery. */
  deleteAcked(acks: readonly AckRef[]): Promise<void> {
    return this.inTurn(() => this.deleteAckedNow(acks));
  }

  private async deleteAckedNow(acks: readonly AckRef[]): Promise<void> {
    const native = this.store.native;
    if (native) {
      await native.exclusive((c) => {
        const remove = c.prepare(DELETE_ACKED);
        c.transaction(
          () => {
            const keys = new Set<string>();
            for (const a of acks) {
              const gone = remove.get(this.groupId, a.seq, a.deliveryId) as { event_key: string | null } | undefined;
              if (gone !== undefined && gone.event_key !== null) keys.add(gone.event_key);
            }
            if (keys.size === 0) return;
            const release = this.releaseCompiled();
            const statement = c.prepare(release.sql);
            for (const key of keys) statement.run(...rebind(release, KEY, key).parameters);
          },
          { relaxed: true },
        );
      });
      return;
    }
    await this.store.relaxedTransaction(async (kysely) => {
      const trx = kysely as unknown as Db;
      const keys: (string | null)[] = [];
      for (let i = 0; i < acks.length; i += CHUNK) {
        const chunk = acks.slice(i, i + CHUNK);
        const gone = await trx
          .deleteFrom('bus_pending')
          .where('group_id', '=', this.groupId)
          // A row-value IN finds each row by the primary key (an OR of pairs does not);
          // PostgreSQL types a VALUES list's parameters as text unless told.
          .where(sql<boolean>`(seq, delivery_id) in (values ${sql.join(chunk.map((a) => sql`(cast(${a.seq} as bigint), cast(${a.deliveryId} as bigint))`))})`)
          .returning('event_key')
          .execute();
        for (const g of gone) keys.push(g.event_key);
      }
      await this.releaseNext(trx, keys);
    });
  }

  /** A nacked delivery waits until `visibleAt`; delivery_id 0: none is out until the retry. */
  async nack(ack: AckRef, visibleAt: number, reason: string): Promise<void> {
    await this.db
      .updateTable('bus_pending')
      .set({ visible_at: visibleAt, last_error: reason.slice(0, 2000), delivery_id: 0 })
      .where('group_id', '=', this.groupId)
      .where('seq', '=', ack.seq)
      .where('delivery_id', '=', ack.deliveryId)
      .execute();
  }

  /** Makes a delivery due at once (its member left without settling it). */
  async release(ack: AckRef): Promise<void> {
    await this.db.updateTable('bus_pending').set({ visible_at: 0 }).where('group_id', '=', this.groupId).where('seq', '=', ack.seq).where('delivery_id', '=', ack.deliveryId).execute();
  }

  /** When the next delivery after `now` falls due (a deadline or a retry), if any. */
  async nextVisibleAt(now: number): Promise<number | undefined> {
    const next = await this.db
      .selectFrom('bus_pending')
      .select((eb) => eb.fn.min('visible_at').as('next'))
      .where('group_id', '=', this.groupId)
      .where('visible_at', '>', now)
      .executeTakeFirst();
    return next?.next === null || next?.next === undefined ? undefined : Number(next.next);
  }
}
