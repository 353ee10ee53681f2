import type { Kysely } from 'kysely';
import { FlowgateError } from '../../../errors/index.js';
import { CoalescingRunner, type Clock } from '../../../kernel/index.js';
import type { Logger } from '../../../observability/index.js';
import type { Store } from '../../../storage/index.js';
import type { BusTables } from '../../bus.migrations.js';
import type {
  BusBackend,
  BusCapabilities,
  ConsumerHandle,
  Delivery,
  GroupFilter,
  GroupRef,
  GroupSpec,
  GroupState,
  NewEvent,
  Position,
  ReadQuery,
  Retention,
  StoredEvent,
  TenantLag,
  TopicRef,
  TrimResult,
  WatchSpec,
} from '../../bus-backend.js';
import { formatTopicFilter, parseTopicFilter, type TopicFilter } from '../../topic-filter.js';
import { EventLog, toStored, type LogTopic } from './event-log.js';
import { GroupDispatcher, type GroupRow } from './group-dispatcher.js';

type Db = Kysely<BusTables>;

/** Events per query when following the log. */
const WATCH_PAGE = 500;
const WATCH_POLL_MS = 1000;

export interface EmbeddedBusOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * The embedded bus: an append-only log and consumer groups in the state store (SQLite by
 * default), with in-process wake-ups. Events can be appended inside any state
 * transaction, so a state change and the event announcing it commit together.
 */
export class EmbeddedBusBackend implements BusBackend {
  readonly capabilities: BusCapabilities = {
    transactionalPublish: true,
    // Cursors move by compare-and-set, so processes sharing a PostgreSQL store do not
    // deliver an event twice; but wake-ups are in-process, so others only poll.
    sharedAcrossProcesses: false,
    keyOrderAcrossMembers: true,
    globalSequence: true,
  };
  private readonly log: EventLog;
  private readonly dispatchers = new Map<number, GroupDispatcher>();
  private readonly closers = new Set<() => Promise<void>>();
  private closed = false;

  constructor(private readonly options: EmbeddedBusOptions) {
    this.log = new EventLog(options.store);
    this.log.onAppended((topics) => {
      for (const d of this.dispatchers.values()) d.noticeAppended(topics);
    });
  }

  private get db(): Db {
    return this.options.store.db<BusTables>();
  }

  append(events: readonly NewEvent[], tx?: Kysely<unknown>): Promise<StoredEvent[]> {
    this.assertOpen();
    return tx ? this.log.appendInTransaction(tx, events) : this.log.append(events);
  }

  read(query: ReadQuery): Promise<StoredEvent[]> {
    return this.log.read(query);
  }

  async consume(spec: GroupSpec, deliver: (delivery: Delivery) => void): Promise<ConsumerHandle> {
    this.assertOpen();
    const group = await this.ensureGroup(spec);
    let dispatcher = this.dispatchers.get(group.id);
    if (!dispatcher) {
      // One process owns the embedded groups: a delivery still out when this process
      // first joins was held by a process that died, so it is due again now rather than
      // at its ack deadline. (Nacked events wait for their delay: they have no delivery
      // out, delivery_id 0.)
      await this.db.updateTable('bus_pending').set({ visible_at: 0 }).where('group_id', '=', group.id).where('delivery_id', '<>', 0).execute();
      dispatcher = new GroupDispatcher(this.options.store, this.log, group, spec.ackTimeoutMs, this.options.clock, this.options.logger);
      this.dispatchers.set(group.id, dispatcher);
    }
    const owner = dispatcher;
    const leave = owner.join(deliver, spec.maxInFlight);
    let left = false;
    const close = async () => {
      if (left) return;
      left = true;
      this.closers.delete(close);
      await leave();
      if (owner.memberCount === 0 && this.dispatchers.get(group.id) === owner) {
        owner.stop();
        this.dispatchers.delete(group.id);
      }
    };
    this.closers.add(close);
    return { close };
  }

  async watch(spec: WatchSpec, onEvent: (event: StoredEvent) => void): Promise<ConsumerHandle> {
    this.assertOpen();
    let last = await this.log.seqBefore(spec.from);
    let topics = new Map<number, LogTopic>();
    let stale = true;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const covers = (t: Pick<LogTopic, 'tenant' | 'name'>) => (spec.tenant === null || spec.tenant === t.tenant) && spec.filter.matches(t.name);

    const pass = async () => {
      if (stale) {
        topics = new Map((await this.log.topics(spec.tenant)).filter(covers).map((t) => [t.id, t]));
        stale = false;
      }
      if (topics.size === 0) return;
      for (;;) {
        const rows = await this.db
          .selectFrom('bus_log_events')
          .select(['seq', 'topic_id', 'body'])
          .where('seq', '>', last)
          .where('topic_id', 'in', [...topics.keys()])
          .orderBy('seq')
          .limit(WATCH_PAGE)
          .execute();
        for (const row of rows) {
          if (stopped) return;
          last = Number(row.seq);
          onEvent(toStored(last, topics.get(Number(row.topic_id))!, row.body));
        }
        if (rows.length < WATCH_PAGE) return;
      }
    };
    const runner = new CoalescingRunner(pass, {
      onError: (error) => {
        this.options.logger.warn({ err: error }, 'bus watch failed; retrying');
        return false;
      },
      // The poll re-reads the topic list: topics created by another connection are found.
      onIdle: () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stale = true;
          runner.trigger();
        }, WATCH_POLL_MS);
        timer.unref();
      },
    });
    const unlisten = this.log.onAppended((appended) => {
      const ours = appended.filter(covers);
      if (ours.length === 0) return;
      if (ours.some((t) => !topics.has(t.id))) stale = true;
      runner.trigger();
    });
    runner.trigger();
    const close = async () => {
      stopped = true;
      unlisten();
      this.closers.delete(close);
      await runner.stop();
      clearTimeout(timer);
    };
    this.closers.add(close);
    return { close };
  }

  async seek(ref: GroupRef, to: Position): Promise<void> {
    const group = await this.findGroup(ref);
    if (!group) throw notFound(ref);
    const position = await this.log.seqBefore(to);
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('bus_pending').where('group_id', '=', group.id).execute();
      await trx.updateTable('bus_cursors').set({ position }).where('group_id', '=', group.id).execute();
      await trx.updateTable('bus_groups').set({ start_seq: position }).where('id', '=', group.id).execute();
    });
    const dispatcher = this.dispatchers.get(group.id);
    if (dispatcher) {
      dispatcher.group.startSeq = position;
      dispatcher.reset();
    }
  }

  async groups(filter: GroupFilter): Promise<GroupState[]> {
    let query = this.db.selectFrom('bus_groups').selectAll();
    if (filter.tenant !== undefined) query = query.where('scope', '=', filter.tenant);
    if (filter.name !== undefined) query = query.where('name', '=', filter.name);
    const rows = await query.orderBy('scope').orderBy('name').execute();
    const now = this.options.clock.now();
    const states: GroupState[] = [];
    for (const row of rows) {
      const group = toGroup(row);
      const topics = (await this.log.topics(group.tenant)).filter((t) => (group.tenant === null || t.tenant === group.tenant) && group.filter.matches(t.name));
      const byTenant = new Map<string, number[]>();
      for (const t of topics) byTenant.set(t.tenant, [...(byTenant.get(t.tenant) ?? []), t.id]);
      const cursors = new Map((await this.db.selectFrom('bus_cursors').select(['tenant_id', 'position']).where('group_id', '=', group.id).execute()).map((c) => [c.tenant_id, Number(c.position)]));
      const pendingRows = await this.db
        .selectFrom('bus_pending')
        .select(['tenant_id', (eb) => eb.fn.countAll<number>().as('all'), (eb) =>
            eb.fn
              .sum<number>(
                eb
                  .case()
                  .when(eb.and([eb('visible_at', '>', now), eb('delivery_id', '<>', 0)]))
                  .then(1)
                  .else(0)
                  .end(),
              )
              .as('flying')])
        .where('group_id', '=', group.id)
        .groupBy('tenant_id')
        .execute();
      const pending = new Map(pendingRows.map((p) => [p.tenant_id, { all: Number(p.all), flying: Number(p.flying ?? 0) }]));
      const lag: TenantLag[] = [];
      for (const tenant of new Set([...byTenant.keys(), ...pending.keys()])) {
        const ids = byTenant.get(tenant) ?? [];
        let waiting = 0;
        if (ids.length > 0) {
          // By (topic_id, seq) alone: the topics are this tenant's, and the tenant's index would
          // walk every event it published since the cursor, other topics' too (a selective
          // group's cursor can sit tens of thousands of events back: ~10 ms a count).
          const count = await this.db
            .selectFrom('bus_log_events')
            .select((eb) => eb.fn.countAll<number>().as('n'))
            .where('seq', '>', cursors.get(tenant) ?? group.startSeq)
            .where('topic_id', 'in', ids)
            .executeTakeFirst();
          waiting = Number(count?.n ?? 0);
        }
        const p = pending.get(tenant);
        lag.push({ tenant, pending: waiting + (p?.all ?? 0), inFlight: p?.flying ?? 0 });
      }
      states.push({ tenant: group.tenant, name: group.name, filter: formatTopicFilter(group.filter), createdAt: Number(row.created_at), lag });
    }
    return states;
  }

  async deleteGroup(ref: GroupRef): Promise<boolean> {
    const group = await this.findGroup(ref);
    if (!group) return false;
    const dispatcher = this.dispatchers.get(group.id);
    dispatcher?.stop();
    this.dispatchers.delete(group.id);
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('bus_pending').where('group_id', '=', group.id).execute();
      await trx.deleteFrom('bus_cursors').where('group_id', '=', group.id).execute();
      await trx.deleteFrom('bus_groups').where('id', '=', group.id).execute();
    });
    return true;
  }

  trim(topic: TopicRef, retention: Retention, now: number): Promise<TrimResult> {
    return this.log.trim(topic, retention, now);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.closers].map((c) => c()));
    for (const d of this.dispatchers.values()) d.stop();
    this.dispatchers.clear();
  }

  private assertOpen(): void {
    if (this.closed) throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The event bus is shutting down.');
  }

  private async findGroup(ref: GroupRef): Promise<GroupRow | undefined> {
    const row = await this.db.selectFrom('bus_groups').selectAll().where('scope', '=', scopeOf(ref)).where('name', '=', ref.name).executeTakeFirst();
    return row ? toGroup(row) : undefined;
  }

  private async ensureGroup(spec: GroupSpec): Promise<GroupRow> {
    let group = await this.findGroup(spec);
    if (!group) {
      const startSeq = await this.log.seqBefore(spec.startAt);
      await this.db
        .insertInto('bus_groups')
        .values({ scope: scopeOf(spec), name: spec.name, filter_kind: spec.filter.kind, filter_source: spec.filter.source, start_seq: startSeq, created_at: this.options.clock.now() })
        .onConflict((oc) => oc.columns(['scope', 'name']).doNothing())
        .execute();
      group = await this.findGroup(spec);
      if (!group) throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The consumer group could not be created.');
    }
    if (group.filter.kind !== spec.filter.kind || group.filter.source !== spec.filter.source) {
      throw new FlowgateError(
        'FLOWGATE_ERR_BUS_GROUP_CONFLICT',
        `The group "${spec.name}" reads ${formatTopicFilter(group.filter)}, not ${formatTopicFilter(spec.filter)}.`,
      );
    }
    return group;
  }
}

function scopeOf(ref: GroupRef): string {
  return ref.tenant ?? '*';
}

function toGroup(row: { id: number; scope: string; name: string; filter_kind: string; filter_source: string; start_seq: number }): GroupRow {
  const filter: TopicFilter = parseTopicFilter(row.filter_kind === 'regex' ? `/${row.filter_source}/` : row.filter_source);
  return { id: Number(row.id), tenant: row.scope === '*' ? null : row.scope, name: row.name, filter, startSeq: Number(row.start_seq) };
}

function notFound(ref: GroupRef): FlowgateError {
  return new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `There is no consumer group "${ref.name}".`);
}
