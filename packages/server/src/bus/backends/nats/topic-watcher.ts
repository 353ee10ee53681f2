import type { EventEnvelope } from '@flowgate/contracts';
import { DeliverPolicy, type ConsumerMessages, type JetStreamClient, type OrderedConsumerOptions } from '@nats-io/jetstream';
import type { Logger } from '../../../observability/index.js';
import type { Position, StoredEvent, WatchSpec } from '../../bus-backend.js';
import type { TopicStream } from './subjects.js';
import type { TopicStreams } from './topic-streams.js';

/** The server removes a watcher's consumer this long after its process went away (ms). */
const IDLE_MS = 30_000;

/**
 * Follows matching streams with ordered consumers: ephemeral, no acks, recreated by the
 * client at the right sequence after any gap, and removed by the server once idle.
 * Streams that appear after the watch began are read from their start (every event on
 * them is newer than the watch), or from the watch's seq or time when it has one.
 */
export class TopicWatcher {
  private readonly followed = new Map<string, ConsumerMessages | undefined>();
  private unlisten: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly js: JetStreamClient,
    private readonly streams: TopicStreams,
    private readonly spec: WatchSpec,
    private readonly onEvent: (event: StoredEvent) => void,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    // Streams announced while the first listing runs are sorted out once it is done:
    // anything not in that listing was created after it.
    const announced: TopicStream[] = [];
    let listed = false;
    this.unlisten = this.streams.onStream((ts) => {
      if (listed) void this.follow(ts, false);
      else announced.push(ts);
    });
    const existing = await this.streams.list(this.spec.tenant);
    // 'latest' means after watch() resolves: the consumers exist by then.
    await Promise.all(existing.map((ts) => this.follow(ts, true)));
    listed = true;
    for (const ts of announced) void this.follow(ts, false);
  }

  private covers(ts: TopicStream): boolean {
    return (this.spec.tenant === null || this.spec.tenant === ts.tenant) && this.spec.filter.matches(ts.topic);
  }

  /** Starts following a stream; resolves once its consumer exists. */
  private async follow(ts: TopicStream, existed: boolean): Promise<void> {
    if (this.closed || this.followed.has(ts.stream) || !this.covers(ts)) return;
    this.followed.set(ts.stream, undefined);
    let messages: ConsumerMessages;
    try {
      const consumer = await this.js.consumers.get(ts.stream, { ...orderedStart(this.spec.from, existed), inactive_threshold: IDLE_MS });
      messages = await consumer.consume({ max_messages: 256 });
    } catch (error) {
      this.followed.delete(ts.stream);
      if (!this.closed) this.logger.warn({ err: error, stream: ts.stream }, 'bus watch of a stream could not start');
      return;
    }
    this.followed.set(ts.stream, messages);
    if (this.closed) await messages.close();
    void this.drain(ts, messages);
  }

  private async drain(ts: TopicStream, messages: ConsumerMessages): Promise<void> {
    try {
      for await (const msg of messages) {
        if (this.closed) break;
        try {
          this.onEvent({ seq: msg.seq, tenant: ts.tenant, topic: ts.topic, envelope: msg.json<EventEnvelope>() });
        } catch (error) {
          this.logger.error({ err: error, stream: ts.stream }, 'bus watcher threw');
        }
      }
    } catch (error) {
      if (!this.closed) this.logger.warn({ err: error, stream: ts.stream }, 'bus watch of a stream stopped');
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unlisten?.();
    await Promise.all([...this.followed.values()].flatMap((m) => (m ? [m.close().catch(() => undefined)] : [])));
  }
}

/**
 * Where an ordered consumer starts. 'latest' is DeliverPolicy.New on a stream that
 * existed when the watch began and the whole stream on one created after.
 */
export function orderedStart(from: Position, existed: boolean): Partial<OrderedConsumerOptions> {
  switch (from.kind) {
    case 'earliest':
      return { deliver_policy: DeliverPolicy.All };
    case 'latest':
      return { deliver_policy: existed ? DeliverPolicy.New : DeliverPolicy.All };
    case 'seq':
      return { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, Math.floor(from.seq)) };
    case 'time':
      return { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(from.time).toISOString() };
  }
}
