import type { EventEnvelope } from '@flowgate/contracts';
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { FlowgateError } from '../../../errors/index.js';
import type { Logger } from '../../../observability/index.js';
import type { Delivery, StoredEvent } from '../../bus-backend.js';
import type { GroupConsumers } from './group-consumers.js';
import type { TopicStream } from './subjects.js';
import type { TopicStreams } from './topic-streams.js';

/**
 * A pull request's lifetime when every stream of the member has one open. Short, because
 * a closing member waits for its open pulls to end (see {@link GroupMember.close}).
 */
const LONG_PULL_MS = 2000;
/** ...and when streams take turns for scarce capacity (the client's minimum). */
const SHORT_PULL_MS = 1000;
/** Wait before pulling again from a stream whose consumer failed. */
const RETRY_MS = 1000;

/** One stream this member pulls from. */
interface Slot {
  readonly ts: TopicStream;
  consumer: Consumer | undefined;
  preparing: boolean;
  /** The open pull request; at most one per stream. */
  pull: ConsumerMessages | undefined;
  /** Settles when the open pull request has ended. */
  pulling: Promise<void> | undefined;
  /** Messages asked for by the open pull and not yet arrived. */
  reserved: number;
  retryAt: number;
}

/** A message this member holds: handed out, or held back behind its key. */
interface Held {
  readonly id: string;
  readonly msg: JsMsg;
  readonly key: string | undefined;
  readonly event: StoredEvent;
  readonly generation: number;
  timer?: NodeJS.Timeout;
}

export interface MemberOptions {
  readonly maxInFlight: number;
  readonly ackTimeoutMs: number;
  /** Resolves once everything published so far reached the server (naks have no reply). */
  readonly flush: () => Promise<void>;
  readonly logger: Logger;
}

/**
 * One member of a consumer group: pulls from the group's durable consumer on every
 * matching stream, never holding more than `maxInFlight` messages, counting the ones
 * a pull has asked for and not yet received. Streams take turns for free capacity so a
 * busy topic does not starve the others. Within the member, events that share a key are
 * handed out one at a time, in stream order; one held back is kept alive with
 * `working()` so its ack deadline does not pass while it waits.
 */
export class GroupMember {
  private slots = new Map<string, Slot>();
  private readonly held = new Map<string, Held>();
  private readonly waiting: Held[] = [];
  private readonly busyKeys = new Map<string, number>();
  /** Messages that arrived after close began; handed back with the rest. */
  private readonly returning: JsMsg[] = [];
  private generation = 0;
  private turn = 0;
  private closed = false;
  private unlisten: (() => void) | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly group: GroupConsumers,
    private readonly streams: TopicStreams,
    private readonly deliver: (delivery: Delivery) => void,
    private readonly options: MemberOptions,
  ) {}

  /** Attaches to the group's streams, now and as they appear. */
  async start(): Promise<void> {
    this.unlisten = this.streams.onStream((ts) => this.attach(ts));
    for (const ts of await this.streams.list(this.group.record.tenant)) this.attach(ts);
    this.keepAlive = setInterval(() => {
      for (const w of this.waiting) w.msg.working();
    }, Math.max(100, Math.floor(this.options.ackTimeoutMs / 3)));
    this.keepAlive.unref();
  }

  private attach(ts: TopicStream): void {
    if (this.closed || this.slots.has(ts.stream) || !this.group.covers(ts)) return;
    this.slots.set(ts.stream, { ts, consumer: undefined, preparing: false, pull: undefined, pulling: undefined, reserved: 0, retryAt: 0 });
    this.pump();
  }

  /** After a seek: what was held is forgotten (the consumers are new), pulls start over. */
  reset(): void {
    this.generation++;
    for (const slot of this.slots.values()) void slot.pull?.close();
    this.slots = new Map([...this.slots.values()].map((s) => [s.ts.stream, { ...s, consumer: undefined, preparing: false, pull: undefined, pulling: undefined, reserved: 0, retryAt: 0 }]));
    for (const h of [...this.held.values(), ...this.waiting]) clearTimeout(h.timer);
    this.held.clear();
    this.waiting.length = 0;
    this.busyKeys.clear();
    this.pump();
  }

  /** The group was deleted: stop, handing nothing back. */
  stop(): void {
    this.generation++;
    this.shutDown();
    for (const slot of this.slots.values()) void slot.pull?.close();
    this.held.clear();
    this.waiting.length = 0;
  }

  /**
   * Leaves the group: what this member holds goes back to it. Open pull requests are
   * left to run out first (at most {@link LONG_PULL_MS}), and what they still bring is
   * handed back too: nats-server 2.9 keeps serving a pull request whose inbox is gone, so
   * a message nacked while one is open can vanish into it until its ack timeout.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.shutDown();
    await Promise.all([...this.slots.values()].flatMap((slot) => (slot.pulling ? [slot.pulling] : [])));
    const held = [...[...this.held.values(), ...this.waiting].map((h) => h.msg), ...this.returning];
    this.held.clear();
    this.waiting.length = 0;
    this.returning.length = 0;
    for (const msg of held) msg.nak();
    await this.options.flush().catch((error: unknown) => this.options.logger.warn({ err: error }, 'bus member could not hand back its deliveries'));
  }

  private shutDown(): void {
    this.closed = true;
    this.unlisten?.();
    clearInterval(this.keepAlive);
    clearTimeout(this.retryTimer);
    for (const h of [...this.held.values(), ...this.waiting]) clearTimeout(h.timer);
  }

  /** Hands free capacity to streams in turn; called whenever something changes. */
  private pump(): void {
    if (this.closed) return;
    const slots = [...this.slots.values()];
    if (slots.length === 0) return;
    const now = Date.now();
    let reserved = 0;
    for (const s of slots) reserved += s.reserved;
    let free = this.options.maxInFlight - this.held.size - this.waiting.length - reserved;
    const idle: Slot[] = [];
    let retrying = false;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[(this.turn + i) % slots.length]!;
      if (slot.pulling !== undefined || slot.preparing) continue;
      if (slot.retryAt > now) {
        retrying = true;
        continue;
      }
      if (!slot.consumer) void this.prepare(slot);
      else idle.push(slot);
    }
    this.turn = (this.turn + 1) % slots.length;
    if (retrying && this.retryTimer === undefined) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.pump();
      }, RETRY_MS);
      this.retryTimer.unref();
    }
    if (free <= 0 || idle.length === 0) return;
    const expires = free >= idle.length ? LONG_PULL_MS : SHORT_PULL_MS;
    const share = Math.max(1, Math.floor(free / idle.length));
    for (const slot of idle) {
      if (free <= 0) break;
      const batch = Math.min(share, free);
      free -= batch;
      this.pull(slot, batch, expires);
    }
  }

  private async prepare(slot: Slot): Promise<void> {
    slot.preparing = true;
    try {
      slot.consumer = await this.group.consumer(slot.ts);
    } catch (error) {
      if (!this.closed) this.options.logger.warn({ err: error, stream: slot.ts.stream }, 'bus group consumer unavailable; retrying');
      slot.retryAt = Date.now() + RETRY_MS;
    } finally {
      slot.preparing = false;
    }
    this.pump();
  }

  private pull(slot: Slot, batch: number, expires: number): void {
    const consumer = slot.consumer!;
    const generation = this.generation;
    slot.reserved = batch;
    const current = () => !this.closed && generation === this.generation;
    slot.pulling = (async () => {
      try {
        const messages = await consumer.fetch({ max_messages: batch, expires });
        slot.pull = messages;
        if (generation !== this.generation) await messages.close();
        for await (const msg of messages) {
          slot.reserved = Math.max(0, slot.reserved - 1);
          if (current()) this.receive(slot.ts, msg);
          // Closing (see close); after a seek or a deleted group the consumer is gone.
          else if (generation === this.generation) this.returning.push(msg);
        }
      } catch (error) {
        if (current()) {
          this.options.logger.warn({ err: error, stream: slot.ts.stream }, 'bus pull failed; retrying');
          this.group.invalidate(slot.ts.stream);
          slot.consumer = undefined;
          slot.retryAt = Date.now() + RETRY_MS;
        }
      } finally {
        slot.pull = undefined;
        slot.pulling = undefined;
        slot.reserved = 0;
        this.pump();
      }
    })();
  }

  private receive(ts: TopicStream, msg: JsMsg): void {
    const id = `${ts.stream}#${msg.seq}`;
    // The server sends a message again when its ack deadline passed: a copy still held
    // here is stale.
    this.drop(id);
    let envelope: EventEnvelope;
    try {
      envelope = msg.json<EventEnvelope>();
    } catch (error) {
      this.options.logger.error({ err: error, stream: ts.stream, seq: msg.seq }, 'bus message is not an event envelope; dropping it');
      msg.term();
      return;
    }
    const held: Held = { id, msg, key: envelope.headers.key, event: { seq: msg.seq, tenant: ts.tenant, topic: ts.topic, envelope }, generation: this.generation };
    if (held.key !== undefined && this.busyKeys.has(held.key)) this.waiting.push(held);
    else this.handOut(held);
  }

  private handOut(held: Held): void {
    this.held.set(held.id, held);
    if (held.key !== undefined) this.busyKeys.set(held.key, (this.busyKeys.get(held.key) ?? 0) + 1);
    // Past the ack timeout the server redelivers it, maybe elsewhere: stop counting it.
    held.timer = setTimeout(() => this.release(held), this.options.ackTimeoutMs);
    held.timer.unref();
    let settled = false;
    const { msg } = held;
    const delivery: Delivery = {
      event: held.event,
      deliveries: msg.info.deliveryCount,
      lastError: undefined,
      ack: async () => {
        if (settled) return;
        settled = true;
        this.release(held);
        // A seek forgets deliveries in flight: their ack must not touch the new consumer.
        if (held.generation !== this.generation) return;
        try {
          await msg.ackAck();
        } catch (error) {
          throw new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The ack could not be recorded.', { cause: error });
        }
      },
      nack: async (delayMs: number) => {
        if (settled) return;
        settled = true;
        this.release(held);
        if (held.generation !== this.generation) return;
        msg.nak(Math.max(0, Math.round(delayMs)));
        await this.options.flush();
      },
    };
    try {
      this.deliver(delivery);
    } catch (error) {
      this.options.logger.error({ err: error, group: this.group.record.name }, 'bus consumer threw synchronously');
    }
  }

  /** The member no longer holds `held`; a message waiting for its key may go out. */
  private release(held: Held): void {
    if (this.held.get(held.id) !== held) return;
    this.forget(held);
    this.promote();
    this.pump();
  }

  private forget(held: Held): void {
    this.held.delete(held.id);
    clearTimeout(held.timer);
    if (held.key === undefined) return;
    const n = (this.busyKeys.get(held.key) ?? 1) - 1;
    if (n > 0) this.busyKeys.set(held.key, n);
    else this.busyKeys.delete(held.key);
  }

  /** Drops any copy of message `id` this member holds, without telling the server. */
  private drop(id: string): void {
    const held = this.held.get(id);
    if (held) this.forget(held);
    const index = this.waiting.findIndex((w) => w.id === id);
    if (index >= 0) this.waiting.splice(index, 1);
    if (held || index >= 0) this.promote();
  }

  /** Hands out, in arrival order, waiting messages whose key is free again. */
  private promote(): void {
    // Re-scans after each hand-out: a synchronous ack inside `deliver` may free more keys.
    for (;;) {
      const index = this.waiting.findIndex((w) => w.key === undefined || !this.busyKeys.has(w.key));
      if (index < 0) return;
      const [next] = this.waiting.splice(index, 1);
      this.handOut(next!);
    }
  }
}
