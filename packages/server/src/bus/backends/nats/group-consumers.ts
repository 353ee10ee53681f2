import { AckPolicy, JetStreamApiCodes, type Consumer, type ConsumerInfo, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { millis, nanos } from '@nats-io/transport-node';
import type { GroupRef } from '../../bus-backend.js';
import { startOf, type GroupRecord } from './group-registry.js';
import { consumerName, type TopicStream } from './subjects.js';
import { isCode } from './topic-streams.js';

/**
 * Unacked deliveries a group may have on one stream, across all its members. JetStream's
 * default (1000) would cap a large group below the sum of its members' `maxInFlight`;
 * each member enforces its own limit, this only guards the server.
 */
const MAX_ACK_PENDING = 20_000;
/** The ack timeout of a consumer created before any member said otherwise (the facade's default). */
export const DEFAULT_ACK_WAIT_MS = 30_000;

/** Whether a group reads a topic stream: in its scope, and matching its filter. */
export function covers(group: Pick<GroupRecord, 'tenant' | 'filter'>, ts: TopicStream): boolean {
  return (group.tenant === null || group.tenant === ts.tenant) && group.filter.matches(ts.topic);
}

/**
 * The group's durable pull consumer on a stream, created on first use with the group's
 * start position. `max_deliver: -1`: the facade dead-letters by `Delivery.deliveries`.
 * With `ackWaitMs` (a member joining), an existing consumer takes that ack timeout: a
 * later deployment may have changed it, and the newest member's wins. Without it (lag,
 * seek), an existing consumer is left as it is and a new one gets the default.
 */
export async function ensureConsumer(jsm: JetStreamManager, ts: TopicStream, record: GroupRecord, ackWaitMs?: number): Promise<ConsumerInfo> {
  const name = consumerName(record);
  try {
    const info = await jsm.consumers.info(ts.stream, name);
    if (ackWaitMs !== undefined && Math.round(millis(info.config.ack_wait ?? 0)) !== ackWaitMs) {
      return await jsm.consumers.update(ts.stream, name, { ack_wait: nanos(ackWaitMs) });
    }
    return info;
  } catch (error) {
    if (!isCode(error, JetStreamApiCodes.ConsumerNotFound)) throw error;
  }
  try {
    return await jsm.consumers.add(ts.stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
      max_deliver: -1,
      max_ack_pending: MAX_ACK_PENDING,
      filter_subject: ts.subject,
      description: `Flowgate group ${record.tenant ?? '*'}/${record.name}`,
      ...startOf(record),
    });
  } catch (error) {
    // Another member (or process) created it meanwhile.
    const info = await jsm.consumers.info(ts.stream, name).catch(() => undefined);
    if (info) return info;
    throw error;
  }
}

/** Deletes the group's consumer on a stream; returns its ack timeout, undefined when there was none. */
export async function deleteConsumer(jsm: JetStreamManager, ts: TopicStream, ref: GroupRef): Promise<number | undefined> {
  try {
    const info = await jsm.consumers.info(ts.stream, consumerName(ref));
    await jsm.consumers.delete(ts.stream, consumerName(ref));
    return Math.round(millis(info.config.ack_wait ?? nanos(DEFAULT_ACK_WAIT_MS)));
  } catch (error) {
    if (isCode(error, JetStreamApiCodes.ConsumerNotFound) || isCode(error, JetStreamApiCodes.StreamNotFound)) return undefined;
    throw error;
  }
}

/** What members of one group in this process share: the record and the consumers. */
export class GroupConsumers {
  private readonly ready = new Map<string, Promise<Consumer>>();
  /** Members of this group in this process; they are reset together after a seek. */
  readonly members = new Set<{ reset(): void; stop(): void }>();

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    public record: GroupRecord,
    readonly ackWaitMs: number,
  ) {}

  covers(ts: TopicStream): boolean {
    return covers(this.record, ts);
  }

  /** The group's consumer on a stream, creating it once per process. */
  consumer(ts: TopicStream): Promise<Consumer> {
    let pending = this.ready.get(ts.stream);
    if (!pending) {
      pending = ensureConsumer(this.jsm, ts, this.record, this.ackWaitMs).then((info) => this.js.consumers.getConsumerFromInfo(info));
      pending.catch(() => this.ready.delete(ts.stream));
      this.ready.set(ts.stream, pending);
    }
    return pending;
  }

  /** The consumer failed (perhaps deleted elsewhere): look it up again next time. */
  invalidate(stream: string): void {
    this.ready.delete(stream);
  }

  /**
   * After a seek: members start over on the recreated consumers. The seek sets `record`
   * before it deletes the old consumers, so a member re-attaching meanwhile already
   * creates them at the new start.
   */
  reset(): void {
    this.ready.clear();
    for (const m of this.members) m.reset();
  }

  /** The group was deleted: members stop without handing anything back. */
  stop(): void {
    for (const m of this.members) m.stop();
    this.members.clear();
    this.ready.clear();
  }
}
