import type { EventEnvelope } from '@flowgate/contracts';
import { sql, type Kysely } from 'kysely';
import type { NativeConnection, Store } from '../../../storage/index.js';
import type { BusTables } from '../../bus.migrations.js';
import type { NewEvent, Position, ReadQuery, Retention, StoredEvent, TopicRef, TrimResult } from '../../bus-backend.js';

type Db = Kysely<BusTables>;

/** A topic of the log: its numeric id and its name. */
export interface LogTopic {
  readonly id: number;
  readonly tenant: string;
  readonly name: string;
}

/** Rows per INSERT: 7 parameters each stays far below SQLite's and PostgreSQL's limits. */
const INSERT_CHUNK = 500;
/** Events per group-commit transaction; a larger backlog takes several. */
const MAX_BATCH = 4000;
/**
 * How far an event's stamp (`created_at`) may run ahead of a later seq's: stamps are made
 * just before the insert that gives the seq (a group commit's wait), by the publishing
 * process's clock (processes sharing PostgreSQL differ by their clocks' skew). Ten seconds
 * is far more than either; the searches of a time read this much of the log's tail.
 */
const STAMP_DISORDER_MS = 10_000;
/** How close below its answer {@link EventLog.stampedBefore}'s search stops (in seqs). */
const PROBE_SPAN = 256;
/** The advisory-lock key that orders appends on PostgreSQL. */
const APPEND_LOCK = 'flowgate.bus.append';

interface QueuedAppend {
  readonly events: readonly NewEvent[];
  resolve(stored: StoredEvent[]): void;
  reject(error: unknown): void;
}

/**
 * The embedded backend's append-only log.
 *
 * Durability: an append resolves only after its transaction commits, and the SQLite store
 * runs with `synchronous=FULL`, so an acknowledged event survives power loss. Group
 * commit: appends that arrive while a transaction is being written wait and then share
 * the next one, so concurrent publishers pay one fsync per batch, not per event.
 *
 * Order: `seq` grows with commit order. SQLite serialises transactions; on PostgreSQL
 * every append takes one advisory lock until it commits, so a reader that has seen
 * `seq = n` can never later find a smaller seq appear.
 */
export class EventLog {
  private readonly queue: QueuedAppend[] = [];
  private flushing = false;
  private readonly byKey = new Map<string, LogTopic>();
  private readonly byId = new Map<number, LogTopic>();
  private readonly appendedListeners = new Set<(topics: readonly LogTopic[]) => void>();

  constructor(private readonly store: Store) {}

  private get db(): Db {
    return this.store.db<BusTables>();
  }

  /** Calls `listener` after each commit with the topics that received events. */
  onAppended(listener: (topics: readonly LogTopic[]) => void): () => void {
    this.appendedListeners.add(listener);
    return () => this.appendedListeners.delete(listener);
  }

  /** Appends through group commit; resolves once committed. */
  append(events: readonly NewEvent[]): Promise<StoredEvent[]> {
    if (events.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.queue.push({ events, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        // Let every publish issued in this turn of the event loop join the first batch.
        setImmediate(() => void this.flush());
      }
    });
  }

  /**
   * Appends inside the caller's transaction: the events commit, or vanish, with it.
   * Consumers learn of them by their next poll (or at once on SQLite, whose single
   * connection makes them wait for the commit).
   */
  async appendInTransaction(trx: Kysely<unknown>, events: readonly NewEvent[]): Promise<StoredEvent[]> {
    const stored = await this.write(trx as unknown as Db, events, []);
    setImmediate(() => this.announce(stored));
    return stored;
  }

  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch: QueuedAppend[] = [];
      let count = 0;
      while (this.queue.length > 0 && (count === 0 || count + this.queue[0]!.events.length <= MAX_BATCH)) {
        const next = this.queue.shift()!;
        batch.push(next);
        count += next.events.length;
      }
      try {
        const all = batch.flatMap((b) => b.events);
        const native = this.store.native;
        const created: LogTopic[] = [];
        const stored = native
          ? await native.exclusive((connection) => connection.transaction(() => this.writeNative(connection, all, created)))
          : await this.db.transaction().execute((trx) => this.write(trx, all, created));
        // Only ids known to be committed are remembered: a rolled-back topic's id is
        // handed out again.
        for (const topic of created) this.remember(topic);
        let offset = 0;
        for (const b of batch) {
          b.resolve(stored.slice(offset, offset + b.events.length));
          offset += b.events.length;
        }
        this.announce(stored);
      } catch (error) {
        for (const b of batch) b.reject(error);
      }
    }
    this.flushing = false;
  }

  /** Writes `events` in `trx`; topics it creates are added to `created`. */
  private async write(trx: Db, events: readonly NewEvent[], created: LogTopic[]): Promise<StoredEvent[]> {
    await this.store.lockTransaction(trx as unknown as Kysely<unknown>, APPEND_LOCK);
    const topicIds: number[] = [];
    for (const e of events) {
      const known = this.knownTopic(e, created);
      topicIds.push(known ? known.id : (await this.createTopic(trx, e.tenant, e.topic, created)).id);
    }
    const stored: StoredEvent[] = [];
    for (let start = 0; start < events.length; start += INSERT_CHUNK) {
      const chunk = events.slice(start, start + INSERT_CHUNK);
      const rows = chunk.map((e, i) => logRow(topicIds[start + i]!, e));
      const inserted = await trx.insertInto('bus_log_events').values(rows).returning('seq').execute();
      // Identity values are handed out in VALUES order under the append lock.
      const seqs = inserted.map((r) => Number(r.seq)).sort((a, b) => a - b);
      chunk.forEach((e, i) => stored.push({ seq: seqs[i]!, tenant: e.tenant, topic: e.topic, envelope: e.envelope }));
    }
    return stored;
  }

  /**
   * The same as {@link write}, on SQLite's raw connection: one prepared statement per
   * event instead of a built multi-row insert, which was half the cost of a publish.
   */
  private writeNative(connection: NativeConnection, events: readonly NewEvent[], created: LogTopic[]): StoredEvent[] {
    const insert = connection.prepare('insert into bus_log_events (topic_id, tenant_id, event_key, created_at, size, body) values (?, ?, ?, ?, ?, ?)');
    const stored: StoredEvent[] = [];
    for (const e of events) {
      const topic = this.knownTopic(e, created) ?? this.createTopicNative(connection, e.tenant, e.topic, created);
      const row = logRow(topic.id, e);
      const result = insert.run(row.topic_id, row.tenant_id, row.event_key, row.created_at, row.size, row.body);
      stored.push({ seq: Number(result.lastInsertRowid), tenant: e.tenant, topic: e.topic, envelope: e.envelope });
    }
    return stored;
  }

  /** The event's topic if committed before, or created earlier in this write. */
  private knownTopic(e: NewEvent, created: readonly LogTopic[]): LogTopic | undefined {
    return this.byKey.get(topicKey(e.tenant, e.topic)) ?? created.find((t) => t.tenant === e.tenant && t.name === e.topic);
  }

  private createTopicNative(connection: NativeConnection, tenant: string, name: string, created: LogTopic[]): LogTopic {
    connection.prepare('insert into bus_log_topics (tenant_id, name) values (?, ?) on conflict (tenant_id, name) do nothing').run(tenant, name);
    const row = connection.prepare('select id from bus_log_topics where tenant_id = ? and name = ?').get(tenant, name) as { id: number };
    const topic = { id: Number(row.id), tenant, name };
    created.push(topic);
    return topic;
  }

  private announce(stored: readonly StoredEvent[]): void {
    if (stored.length === 0 || this.appendedListeners.size === 0) return;
    const touched = new Map<string, LogTopic>();
    for (const e of stored) {
      const topic = this.byKey.get(topicKey(e.tenant, e.topic));
      if (topic) touched.set(topicKey(e.tenant, e.topic), topic);
      else touched.set(topicKey(e.tenant, e.topic), { id: -1, tenant: e.tenant, name: e.topic });
    }
    const topics = [...touched.values()];
    for (const listener of this.appendedListeners) listener(topics);
  }

  /** Creates the topic in `db` (a transaction) unless it exists; adds it to `created`. */
  private async createTopic(db: Db, tenant: string, name: string, created: LogTopic[]): Promise<LogTopic> {
    await db.insertInto('bus_log_topics').values({ tenant_id: tenant, name }).onConflict((oc) => oc.columns(['tenant_id', 'name']).doNothing()).execute();
    const row = await db.selectFrom('bus_log_topics').select('id').where('tenant_id', '=', tenant).where('name', '=', name).executeTakeFirstOrThrow();
    const topic = { id: Number(row.id), tenant, name };
    created.push(topic);
    return topic;
  }

  private remember(topic: LogTopic): void {
    this.byKey.set(topicKey(topic.tenant, topic.name), topic);
    this.byId.set(topic.id, topic);
  }

  /** Every topic of the log (of one tenant, or of all), read from the store. */
  async topics(tenant: string | null): Promise<LogTopic[]> {
    let query = this.db.selectFrom('bus_log_topics').select(['id', 'tenant_id', 'name']);
    if (tenant !== null) query = query.where('tenant_id', '=', tenant);
    const rows = await query.execute();
    return rows.map((r) => {
      const topic = { id: Number(r.id), tenant: r.tenant_id, name: r.name };
      this.remember(topic);
      return topic;
    });
  }

  /** A topic by id (from the cache, else the store). */
  async topicById(id: number): Promise<LogTopic | undefined> {
    const known = this.byId.get(id);
    if (known) return known;
    const row = await this.db.selectFrom('bus_log_topics').select(['id', 'tenant_id', 'name']).where('id', '=', id).executeTakeFirst();
    if (!row) return undefined;
    const topic = { id: Number(row.id), tenant: row.tenant_id, name: row.name };
    this.remember(topic);
    return topic;
  }

  /** An existing topic, without creating it. */
  async findTopic(tenant: string, name: string): Promise<LogTopic | undefined> {
    const known = this.byKey.get(topicKey(tenant, name));
    if (known) return known;
    const row = await this.db.selectFrom('bus_log_topics').select('id').where('tenant_id', '=', tenant).where('name', '=', name).executeTakeFirst();
    if (!row) return undefined;
    const topic = { id: Number(row.id), tenant, name };
    this.remember(topic);
    return topic;
  }

  /** The last seq of the log (0 when empty). */
  async lastSeq(): Promise<number> {
    const row = await this.db.selectFrom('bus_log_events').select((eb) => eb.fn.max('seq').as('max')).executeTakeFirst();
    return Number(row?.max ?? 0);
  }

  /** The seq just before `position`: a cursor there delivers from `position` on. */
  async seqBefore(position: Position): Promise<number> {
    switch (position.kind) {
      case 'earliest':
        return 0;
      case 'latest':
        return this.lastSeq();
      case 'seq':
        return Math.max(0, position.seq - 1);
      case 'time': {
        const first = await this.db
          .selectFrom('bus_log_events')
          .select('seq')
          .where('seq', '>', await this.stampedBefore(position.time))
          .where('created_at', '>=', position.time)
          .orderBy('seq')
          .limit(1)
          .executeTakeFirst();
        return first ? Number(first.seq) - 1 : this.lastSeq();
      }
    }
  }

  /**
   * A seq up to which every event is stamped before `time`, close below the first event
   * stamped at or after it (0 when no event is stamped long enough before `time`). There
   * is no index on created_at (it would cost every append a write), but seq follows the
   * stamps, out of order by at most {@link STAMP_DISORDER_MS}: so any event stamped that
   * long before `time` is such a seq, and a binary search over seq (a few primary-key
   * lookups) finds one within {@link PROBE_SPAN} seqs of the last.
   */
  private async stampedBefore(time: number): Promise<number> {
    const before = time - STAMP_DISORDER_MS;
    const from = (seq: number) => this.db.selectFrom('bus_log_events').select(['seq', 'created_at']).where('seq', '>=', seq).orderBy('seq').limit(1).executeTakeFirst();
    const oldest = await from(0);
    if (!oldest || Number(oldest.created_at) >= before) return 0;
    let low = Number(oldest.seq);
    let high = (await this.lastSeq()) + 1;
    while (high - low > PROBE_SPAN) {
      const middle = Math.floor((low + high) / 2);
      const row = await from(middle);
      if (row && Number(row.seq) < high && Number(row.created_at) < before) low = Number(row.seq);
      else high = middle;
    }
    return low;
  }

  async read(query: ReadQuery): Promise<StoredEvent[]> {
    const topic = await this.findTopic(query.tenant, query.topic);
    if (!topic) return [];
    let select = this.db.selectFrom('bus_log_events').select(['seq', 'body']).where('topic_id', '=', topic.id);
    if (query.from.kind === 'latest') return [];
    if (query.from.kind === 'seq') select = select.where('seq', '>=', query.from.seq);
    if (query.from.kind === 'time') select = select.where('seq', '>', await this.stampedBefore(query.from.time)).where('created_at', '>=', query.from.time);
    const rows = await select.orderBy('seq').limit(query.limit).execute();
    return rows.map((r) => toStored(Number(r.seq), topic, r.body));
  }

  /** Deletes a topic's events beyond its retention, oldest first, and frees the space. */
  async trim(ref: TopicRef, retention: Retention, now: number): Promise<TrimResult> {
    const topic = await this.findTopic(ref.tenant, ref.topic);
    if (!topic) return { deleted: 0 };
    let deleted = 0;
    if (retention.maxAgeMs !== undefined) {
      const result = await this.db.deleteFrom('bus_log_events').where('topic_id', '=', topic.id).where('created_at', '<', now - retention.maxAgeMs).executeTakeFirst();
      deleted += Number(result.numDeletedRows);
    }
    if (retention.maxBytes !== undefined) {
      // The newest events whose sizes add up to maxBytes stay; everything older goes.
      const cut = await sql<{ seq: number }>`
        select max(seq) as seq from (
          select seq, sum(size) over (order by seq desc) as kept
          from bus_log_events where topic_id = ${topic.id}
        ) sized where kept > ${retention.maxBytes}`.execute(this.db);
      const last = cut.rows[0]?.seq;
      if (last !== null && last !== undefined) {
        const result = await this.db.deleteFrom('bus_log_events').where('topic_id', '=', topic.id).where('seq', '<=', Number(last)).executeTakeFirst();
        deleted += Number(result.numDeletedRows);
      }
    }
    if (deleted > 0) await this.store.reclaimSpace();
    return { deleted };
  }
}

/** An event as a row of `bus_log_events`. */
function logRow(topicId: number, e: NewEvent) {
  const body = JSON.stringify(e.envelope);
  return {
    topic_id: topicId,
    tenant_id: e.tenant,
    event_key: e.envelope.headers.key ?? null,
    created_at: Date.parse(e.envelope.headers.createdAt),
    size: Buffer.byteLength(body),
    body,
  };
}

/** Decodes a stored row. */
export function toStored(seq: number, topic: LogTopic, body: string): StoredEvent {
  return { seq, tenant: topic.tenant, topic: topic.name, envelope: JSON.parse(body) as EventEnvelope };
}

function topicKey(tenant: string, name: string): string {
  return `${tenant}\u0000${name}`;
}
