import type { EventEnvelope } from '@flowgate/contracts';
import type { Consumer, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Logger } from '../../../observability/index.js';
import type { Delivery, StoredEvent } from '../../bus-backend.js';
import { AckBatcher } from './ack-batcher.js';
import type { GroupConsumers } from './group-consumers.js';
import { KeyQueue } from './key-queue.js';
import type { TopicStream } from './subjects.js';
import type { TopicStreams } from './topic-streams.js';

/**
 * A pull request's lifetime when every stream of the member has one open. Short, because
 * a closing member waits for its open pulls to end (see {@link GroupMember.close}); long
 * enough that an idle member asks only every couple of seconds. A busy stream never waits
 * for it: its pulls end when their batch is full, and the next one is already queued.
 */
const LONG_PULL_MS = 2000;
/** ...and when streams take turns for scarce capacity (the client's minimum). */
const SHORT_PULL_MS = 1000;
/** Wait before pulling again from a stream whose consumer failed. */
const RETRY_MS = 1000;
/**
 * Pull requests open at once on one stream. While one is being served the next waits in
 * the server, so messages keep coming without a round trip between batches. The server
 * queues at most 512 per consumer (`max_waiting`), across every member.
 */
const MAX_PULLS = 3;

/** One pull request: what it asked for and may still bring. */
interface Pull {
  left: number;
  messages: ConsumerMessages | undefined;
}

/** One stream this member pulls from. */
interface Slot {
  readonly ts: TopicStream;
  consumer: Consumer | undefined;
  preparing: boolean;
  readonly pulls: Set<Pull>;
  /** Settle when their pull request has ended (close waits for them). */
  readonly pulling: Set<Promise<void>>;
  /** The open pulls have brought something: the stream is busy, worth asking ahead. */
  flowing: boolean;
  retryAt: number;
}

/** A message this member holds: handed out, or held back behind its key. */
interface Held {
  readonly id: string;
  readonly msg: JsMsg;
  readonly key: string | undefined;
  readonly event: StoredEvent;
  readonly generation: number;
  readonly stream: string;
  /** When the server redelivers it (performance.now()); set when handed out. */
  deadline: number;
  /** Nacked by close: a later ack must not be sent. */
  returned: boolean;
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
 * its pulls have asked for and not yet received. Streams take turns for free capacity so a
 * busy topic does not starve the others. Within the member, events that share a key are
 * handed out one at a time, in stream order; one held back is kept alive with
 * `working()` so its ack deadline does not pass while it waits.
 */
export class GroupMember {
  private slots = new Map<string, Slot>();
  /** Handed out and not settled; insertion order is deadline order (one ack timeout). */
  private readonly held = new Map<string, Held>();
  /** Held back behind an earlier message of their key. */
  private readonly keys = new KeyQueue<Held>();
  /** Messages that arrived after close began; handed back with the rest. */
  private readonly returning: JsMsg[] = [];
  /** Messages asked for by open pulls and not yet arrived, over every stream. */
  private reserved = 0;
  private generation = 0;
  private turn = 0;
  private closed = false;
  private pumpQueued = false;
  private readonly acks = new AckBatcher();
  private unlisten: (() => void) | undefined;
  private keepAlive: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;

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
      for (const w of this.keys.queued) w.msg.working();
    }, Math.max(100, Math.floor(this.options.ackTimeoutMs / 3)));
    this.keepAlive.unref();
  }

  private attach(ts: TopicStream): void {
    if (this.closed || this.slots.has(ts.stream) || !this.group.covers(ts)) return;
    this.slots.set(ts.stream, newSlot(ts));
    this.pump();
  }

  /** After a seek: what was held is forgotten (the consumers are new), pulls start over. */
  reset(): void {
    this.generation++;
    this.abandon();
    this.slots = new Map([...this.slots.values()].map((s) => [s.ts.stream, newSlot(s.ts)]));
    this.held.clear();
    this.keys.clear(true);
    this.pump();
  }

  /** The group was deleted: stop, handing nothing back. */
  stop(): void {
    this.generation++;
    this.shutDown();
    this.abandon();
    this.held.clear();
    this.keys.clear(false);
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
    this.acks.flush();
    await Promise.all([...this.slots.values()].flatMap((slot) => [...slot.pulling]));
    const held = [...this.held.values(), ...this.keys.clear(false)];
    for (const h of held) h.returned = true;
    const msgs = [...held.map((h) => h.msg), ...this.returning];
    this.held.clear();
    this.returning.length = 0;
    for (const msg of msgs) msg.nak();
    await this.options.flush().catch((error: unknown) => this.options.logger.warn({ err: error }, 'bus member could not hand back its deliveries'));
  }

  private shutDown(): void {
    this.closed = true;
    this.unlisten?.();
    clearInterval(this.keepAlive);
    clearTimeout(this.retryTimer);
    clearTimeout(this.expiryTimer);
  }

  /** The consumers are gone or new: end the pulls, and keep acks for the old ones unsent. */
  private abandon(): void {
    for (const slot of this.slots.values()) {
      for (const pull of slot.pulls) {
        this.reserved -= pull.left;
        pull.left = 0;
        void pull.messages?.close();
      }
    }
    this.acks.discard();
  }

  /** Hands free capacity to streams; many changes in one turn cost one pass. */
  private pump(): void {
    if (this.pumpQueued || this.closed) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.pumpNow();
    });
  }

  private pumpNow(): void {
    if (this.closed || this.slots.size === 0) return;
    const slots = [...this.slots.values()];
    const now = Date.now();
    let free = this.options.maxInFlight - this.held.size - this.keys.queued.length - this.reserved;
    const starving: Slot[] = [];
    const flowing: Slot[] = [];
    let retrying = false;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[(this.turn + i) % slots.length]!;
      if (slot.preparing) continue;
      if (!slot.consumer) {
        if (slot.retryAt > now) retrying = true;
        else void this.prepare(slot);
      } else if (slot.pulls.size === 0) starving.push(slot);
      else if (slot.flowing && slot.pulls.size < MAX_PULLS) flowing.push(slot);
    }
    this.turn = (this.turn + 1) % slots.length;
    if (retrying && this.retryTimer === undefined) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.pump();
      }, RETRY_MS);
      this.retryTimer.unref();
    }
    if (free <= 0) return;
    // A stream without an open pull receives nothing: those come first.
    if (starving.length > 0) {
      const expires = free >= starving.length ? LONG_PULL_MS : SHORT_PULL_MS;
      const share = Math.max(1, Math.floor(free / starving.length));
      for (const slot of starving) {
        if (free <= 0) return;
        const batch = Math.min(share, free);
        free -= batch;
        this.pull(slot, batch, expires);
      }
    }
    // Then ask ahead on busy streams, in batches worth a request.
    const ahead = Math.max(1, Math.floor(this.options.maxInFlight / 4));
    if (free < ahead || flowing.length === 0) return;
    const share = Math.max(ahead, Math.floor(free / flowing.length));
    for (const slot of flowing) {
      if (free < ahead) return;
      const batch = Math.min(share, free);
      free -= batch;
      this.pull(slot, batch, LONG_PULL_MS);
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
    const pull: Pull = { left: batch, messages: undefined };
    slot.pulls.add(pull);
    this.reserved += batch;
    const current = () => !this.closed && generation === this.generation;
    const done = (async () => {
      try {
        const messages = await consumer.fetch({ max_messages: batch, expires });
        pull.messages = messages;
        if (generation !== this.generation) await messages.close();
        for await (const msg of messages) {
          if (pull.left > 0) {
            pull.left--;
            this.reserved--;
          }
          slot.flowing = true;
          if (current()) this.receive(slot, msg);
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
        // Ran out before its batch was full: the stream has gone quiet.
        if (pull.left > 0) slot.flowing = false;
        this.reserved -= pull.left;
        pull.left = 0;
        slot.pulls.delete(pull);
        this.pump();
      }
    })();
    slot.pulling.add(done);
    void done.finally(() => slot.pulling.delete(done));
  }

  private receive(slot: Slot, msg: JsMsg): void {
    const ts = slot.ts;
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
    const key = envelope.headers.key;
    const held: Held = { id, msg, key, event: { seq: msg.seq, tenant: ts.tenant, topic: ts.topic, envelope }, generation: this.generation, stream: ts.stream, deadline: 0, returned: false };
    if (this.keys.mustWait(held)) this.keys.wait(held);
    else this.handOut(held);
  }

  private handOut(held: Held): void {
    this.held.set(held.id, held);
    this.keys.handedOut(held);
    // Past the ack timeout the server redelivers it, maybe elsewhere: stop counting it.
    held.deadline = performance.now() + this.options.ackTimeoutMs;
    if (this.expiryTimer === undefined) this.armExpiry();
    let settled = false;
    const { msg } = held;
    const delivery: Delivery = {
      event: held.event,
      deliveries: msg.info.deliveryCount,
      lastError: undefined,
      ack: () => {
        if (settled) return Promise.resolve();
        settled = true;
        this.release(held);
        // A seek forgets deliveries in flight: their ack must not touch the new consumer.
        // One handed back at close was nacked already.
        if (held.generation !== this.generation || held.returned) return Promise.resolve();
        return this.acks.add(held.stream, msg);
      },
      nack: async (delayMs: number) => {
        if (settled) return;
        settled = true;
        this.release(held);
        if (held.generation !== this.generation || held.returned) return;
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

  /** Releases what outlived its ack timeout; one timer, for the oldest delivery held. */
  private armExpiry(): void {
    const first = this.held.values().next();
    if (first.done === true || this.closed) return;
    this.expiryTimer = setTimeout(
      () => {
        this.expiryTimer = undefined;
        const now = performance.now();
        for (const h of this.held.values()) {
          if (h.deadline > now) break;
          this.release(h);
        }
        if (this.expiryTimer === undefined) this.armExpiry();
      },
      Math.max(0, first.value.deadline - performance.now()),
    );
    this.expiryTimer.unref();
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
    this.keys.settled(held);
  }

  /** Drops any copy of message `id` this member holds, without telling the server. */
  private drop(id: string): void {
    const held = this.held.get(id);
    if (held) this.forget(held);
    const waited = this.keys.remove(id);
    if (held || waited) this.promote();
  }

  /** Hands out, in arrival order, waiting messages whose key is free again. */
  private promote(): void {
    // Closing: what waits is handed back, not out. Re-scans after each hand-out: a
    // synchronous ack inside `deliver` may free more keys.
    while (!this.closed) {
      const next = this.keys.next();
      if (!next) return;
      this.handOut(next);
    }
  }
}

function newSlot(ts: TopicStream): Slot {
  return { ts, consumer: undefined, preparing: false, pulls: new Set(), pulling: new Set(), flowing: false, retryAt: 0 };
}
