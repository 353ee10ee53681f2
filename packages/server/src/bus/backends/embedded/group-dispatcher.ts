import { randomInt } from 'node:crypto';
import type { Kysely } from 'kysely';
import { CoalescingRunner, type Clock } from '../../../kernel/index.js';
import type { Logger } from '../../../observability/index.js';
import type { Store } from '../../../storage/index.js';
import type { BusTables } from '../../bus.migrations.js';
import type { Delivery } from '../../bus-backend.js';
import type { TopicFilter } from '../../topic-filter.js';
import { toStored, type EventLog, type LogTopic } from './event-log.js';
import { CursorMoved, GroupState, WAITING, type PendingRow } from './group-state.js';

type Db = Kysely<BusTables>;

/** A group as stored. */
export interface GroupRow {
  readonly id: number;
  /** A tenant, or null for a platform group over every tenant. */
  readonly tenant: string | null;
  readonly name: string;
  readonly filter: TopicFilter;
  startSeq: number;
}

interface Member {
  readonly deliver: (delivery: Delivery) => void;
  readonly maxInFlight: number;
  /** seq → delivery id of what this member holds. */
  readonly inFlight: Map<number, number>;
}

interface QueuedAck {
  readonly seq: number;
  readonly deliveryId: number;
  resolve(): void;
  reject(error: unknown): void;
}

/** Events a tenant may claim per round before the next tenant's turn. */
const TENANT_QUANTUM = 64;
/** Longest sleep between passes: catches events committed by other connections. */
const POLL_MS = 1000;
/** How long a pass may wait for more room before claiming a small batch. */
const BATCH_WAIT_MS = 20;

/**
 * Hands one consumer group's events to the members of the group in this process.
 *
 * The group's state is all in the store ({@link GroupState}), so a restart resumes where
 * it was: cursors per tenant, and every claimed event not yet acked, whether delivered
 * (deadline in `visible_at`), waiting after a nack, or waiting behind an earlier event of
 * its key.
 *
 * A pass claims new events tenant by tenant in rotation (so one tenant's burst does not
 * starve another), and in one transaction records them as pending and moves the
 * cursors. Only then are they delivered: an event is never delivered without a record
 * that it was, so a crash causes redelivery, never loss.
 */
export class GroupDispatcher {
  private readonly members: Member[] = [];
  private memberTurn = 0;
  private tenantTurn = 0;
  private topicsByTenant: Map<string, number[]> | undefined;
  private readonly topicNames = new Map<number, LogTopic>();
  private readonly passes: CoalescingRunner;
  private timer: NodeJS.Timeout | undefined;
  private readonly acks: QueuedAck[] = [];
  /** The ack flush under way, if any. */
  private ackFlush: Promise<void> | undefined;
  private closed = false;
  private lastPassAt = 0;
  private readonly state: GroupState;

  constructor(
    store: Store,
    private readonly log: EventLog,
    readonly group: GroupRow,
    private readonly ackTimeoutMs: number,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.state = new GroupState(store, group.id);
    this.passes = new CoalescingRunner(() => this.pass(), {
      defer: true,
      onError: async (error) => {
        // Another process claimed first: simply look again.
        if (!(error instanceof CursorMoved)) {
          this.logger.warn({ err: error, group: this.group.name }, 'bus dispatch failed; retrying');
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        return true;
      },
      onIdle: () => this.armTimer(),
    });
  }



  get memberCount(): number {
    return this.members.length;
  }

  /** Adds a member; returns the function that removes it. */
  join(deliver: (delivery: Delivery) => void, maxInFlight: number): () => Promise<void> {
    const member: Member = { deliver, maxInFlight, inFlight: new Map() };
    this.members.push(member);
    this.schedule();
    return () => this.leave(member);
  }

  /** The log got events on these topics: wake up when one of them is ours. */
  noticeAppended(topics: readonly LogTopic[]): void {
    let ours = false;
    for (const t of topics) {
      if (!this.covers(t)) continue;
      ours = true;
      if (t.id < 0 || !this.topicsByTenant?.get(t.tenant)?.includes(t.id)) this.topicsByTenant = undefined;
    }
    if (ours) this.schedule();
  }

  /** Forgets cursors and deliveries after a seek; the next pass starts from the store. */
  reset(): void {
    for (const m of this.members) m.inFlight.clear();
    this.schedule();
  }

  /** Stops the dispatcher; members' deliveries are released by the store's deadlines. */
  stop(): void {
    this.closed = true;
    void this.passes.stop();
    clearTimeout(this.timer);
    this.members.length = 0;
  }

  private covers(topic: Pick<LogTopic, 'tenant' | 'name'>): boolean {
    return (this.group.tenant === null || this.group.tenant === topic.tenant) && this.group.filter.matches(topic.name);
  }

  private async leave(member: Member): Promise<void> {
    const index = this.members.indexOf(member);
    if (index < 0) return;
    this.members.splice(index, 1);
    // Acks already given must reach the store before the caller closes it.
    while (this.ackFlush) await this.ackFlush;
    // What this member held goes back to the group now, not at its ack deadline.
    const held = [...member.inFlight];
    member.inFlight.clear();
    for (const [seq, deliveryId] of held) await this.state.release({ seq, deliveryId });
    this.schedule();
  }

  /** Runs a pass soon; passes never overlap. */
  schedule(): void {
    this.passes.trigger();
  }

  private async armTimer(): Promise<void> {
    clearTimeout(this.timer);
    let wait = POLL_MS;
    if (this.members.length > 0) {
      const now = this.clock.now();
      const next = await this.state.nextVisibleAt(now).catch(() => undefined);
      if (next !== undefined) wait = Math.min(wait, Math.max(5, next - now));
    }
    if (this.closed) return;
    this.timer = setTimeout(() => {
      // Topics created in another connection's transaction announce themselves before
      // they commit; the poll re-reads the topic list so they are found once they do.
      if (wait === POLL_MS) this.topicsByTenant = undefined;
      this.schedule();
    }, wait);
    this.timer.unref();
  }

  private freeCapacity(): number {
    return this.members.reduce((sum, m) => sum + Math.max(0, m.maxInFlight - m.inFlight.size), 0);
  }

  /** Claims and hands out what members have room for; true when it handed out any. */
  private async pass(): Promise<boolean> {
    const capacity = this.freeCapacity();
    if (capacity === 0) return false;
    // Each pass is one commit. While deliveries are still out, wait (briefly)
    // until an eighth of the room is free, so a busy group claims in batches rather than
    // one event per commit; the acks in flight call the next pass, the timer the one after.
    const room = this.members.reduce((sum, m) => sum + m.maxInFlight, 0);
    const held = this.members.reduce((sum, m) => sum + m.inFlight.size, 0);
    const now0 = this.clock.now();
    if (held > 0 && capacity < Math.ceil(room / 8) && now0 - this.lastPassAt < BATCH_WAIT_MS) return false;
    this.lastPassAt = now0;
    const topics = await this.matchingTopics();
    const now = this.clock.now();
    const deadline = now + this.ackTimeoutMs;
    const out: Delivery[] = [];
    const outMeta: { seq: number; deliveryId: number }[] = [];

    await this.state.claimTransaction(async (trx) => {
      await this.state.sweepWaiting(trx, now);
      // 1. Claimed events that are due: redeliveries, retries, and events whose key's
      //    earlier event is done.
      for (const row of await this.state.due(trx, now, capacity)) {
        if (row.body === null || row.topicId === null) {
          // Retention removed the event before the group got to it.
          await this.state.drop(trx, row.seq);
          continue;
        }
        const deliveryId = newDeliveryId();
        await this.state.redeliver(trx, row.seq, row.deliveries + 1, deadline, deliveryId);
        const topic = await this.topicName(row.topicId);
        if (!topic) continue;
        this.forgetElsewhere(row.seq);
        outMeta.push({ seq: row.seq, deliveryId });
        out.push(this.delivery(toStored(row.seq, topic, row.body), row.deliveries + 1, row.lastError ?? undefined, deliveryId));
      }

      // 2. New events from the log, tenant by tenant in rotation.
      let left = capacity - out.length;
      const tenants = [...topics.keys()];
      const quantum = Math.max(TENANT_QUANTUM, Math.ceil(left / Math.max(1, tenants.length)));
      let progressed = true;
      while (left > 0 && progressed && tenants.length > 0) {
        progressed = false;
        for (let i = 0; i < tenants.length && left > 0; i++) {
          const tenant = tenants[(this.tenantTurn + i) % tenants.length]!;
          const claimed = await this.claim(trx, tenant, topics.get(tenant)!, Math.min(left, quantum), deadline, out, outMeta);
          if (claimed > 0) progressed = true;
          left -= claimed;
        }
        this.tenantTurn = (this.tenantTurn + 1) % Math.max(1, tenants.length);
      }
    });

    // Committed: now hand them out.
    out.forEach((delivery, i) => {
      const member = this.pickMember();
      if (!member) return; // every member left meanwhile: the deadline brings it back
      member.inFlight.set(outMeta[i]!.seq, outMeta[i]!.deliveryId);
      try {
        member.deliver(delivery);
      } catch (error) {
        this.logger.error({ err: error, group: this.group.name }, 'bus consumer threw synchronously');
      }
    });
    return out.length > 0;
  }

  private async claim(
    trx: Db,
    tenant: string,
    topicIds: readonly number[],
    limit: number,
    deadline: number,
    out: Delivery[],
    outMeta: { seq: number; deliveryId: number }[],
  ): Promise<number> {
    const cursor = await this.state.cursor(trx, tenant);
    const rows = await this.state.newEvents(trx, tenant, topicIds, cursor ?? this.group.startSeq, limit);
    if (rows.length === 0) return 0;

    const busy = await this.state.busyKeys(trx, [...new Set(rows.map((r) => r.key).filter((k): k is string => k !== null))]);
    const pending: PendingRow[] = [];
    let delivered = 0;
    const groupId = this.group.id;
    for (const row of rows) {
      if (row.key !== null && busy.has(row.key)) {
        // Waits behind the earlier event of its key; a later pass hands it out.
        pending.push({ group_id: groupId, seq: row.seq, tenant_id: tenant, event_key: row.key, deliveries: 0, visible_at: WAITING, delivery_id: 0, last_error: null });
        continue;
      }
      if (row.key !== null) busy.add(row.key);
      const deliveryId = newDeliveryId();
      pending.push({ group_id: groupId, seq: row.seq, tenant_id: tenant, event_key: row.key, deliveries: 1, visible_at: deadline, delivery_id: deliveryId, last_error: null });
      const topic = this.topicNames.get(row.topicId) ?? (await this.topicName(row.topicId));
      if (topic) {
        outMeta.push({ seq: row.seq, deliveryId });
        out.push(this.delivery(toStored(row.seq, topic, row.body), 1, undefined, deliveryId));
        delivered++;
      }
    }
    await this.state.insert(trx, pending);
    await this.state.moveCursor(trx, tenant, cursor, rows[rows.length - 1]!.seq);
    // Rows that wait behind their key count as handled for this round too.
    return Math.max(delivered, 1);
  }

  private pickMember(): Member | undefined {
    for (let i = 0; i < this.members.length; i++) {
      const member = this.members[(this.memberTurn + i) % this.members.length]!;
      if (member.inFlight.size < member.maxInFlight) {
        this.memberTurn = (this.memberTurn + i + 1) % this.members.length;
        return member;
      }
    }
    return this.members[0];
  }

  /** A redelivered event no longer belongs to the member that timed out on it. */
  private forgetElsewhere(seq: number): void {
    for (const m of this.members) m.inFlight.delete(seq);
  }

  private delivery(event: ReturnType<typeof toStored>, deliveries: number, lastError: string | undefined, deliveryId: number): Delivery {
    let settled = false;
    return {
      event,
      deliveries,
      lastError,
      ack: () => {
        if (settled) return Promise.resolve();
        settled = true;
        this.release(event.seq, deliveryId);
        return this.queueAck(event.seq, deliveryId);
      },
      nack: (delayMs: number, reason: string) => {
        if (settled) return Promise.resolve();
        settled = true;
        this.release(event.seq, deliveryId);
        return this.state
          .nack({ seq: event.seq, deliveryId }, this.clock.now() + Math.max(0, delayMs), reason)
          .then(() => this.schedule());
      },
    };
  }

  private release(seq: number, deliveryId: number): void {
    for (const m of this.members) if (m.inFlight.get(seq) === deliveryId) m.inFlight.delete(seq);
  }

  private queueAck(seq: number, deliveryId: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.acks.push({ seq, deliveryId, resolve, reject });
      this.ackFlush ??= new Promise<void>((done) => setImmediate(() => void this.flushAcks().finally(done)));
    });
  }

  /** Acks share transactions like appends do: one commit for every ack queued meanwhile. */
  private async flushAcks(): Promise<void> {
    while (this.acks.length > 0) {
      const batch = this.acks.splice(0, this.acks.length);
      try {
        await this.state.deleteAcked(batch);
        for (const a of batch) a.resolve();
      } catch (error) {
        for (const a of batch) a.reject(error);
      }
      this.schedule();
    }
    this.ackFlush = undefined;
  }

  private async matchingTopics(): Promise<Map<string, number[]>> {
    if (this.topicsByTenant) return this.topicsByTenant;
    const all = await this.log.topics(this.group.tenant);
    const byTenant = new Map<string, number[]>();
    for (const t of all) {
      if (!this.covers(t)) continue;
      this.topicNames.set(t.id, t);
      const list = byTenant.get(t.tenant) ?? [];
      list.push(t.id);
      byTenant.set(t.tenant, list);
    }
    this.topicsByTenant = byTenant;
    return byTenant;
  }

  private async topicName(id: number): Promise<LogTopic | undefined> {
    return this.topicNames.get(id) ?? (await this.log.topicById(id));
  }
}

/**
 * Delivery ids tell a delivery from a later one of the same event (an ack of a timed-out
 * delivery must not settle its redelivery). A counter from a random start per process:
 * as unlikely to repeat an earlier delivery's id of the same event as a random id each
 * time, without drawing randomness per event.
 */
let nextDeliveryId = randomInt(1, 2 ** 46);

function newDeliveryId(): number {
  nextDeliveryId = nextDeliveryId >= 2 ** 47 ? 1 : nextDeliveryId + 1;
  return nextDeliveryId;
}
