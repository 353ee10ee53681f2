import type { JsMsg } from '@nats-io/jetstream';
import { FlowgateError } from '../../../errors/index.js';

interface PendingAck {
  readonly msg: JsMsg;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * The acks of one group member, sent once per turn of the event loop and per stream: all
 * but the last as plain acks, the last one with a reply (`ackAck`). The server handles a
 * consumer's acks in the order they arrive on a connection, so that one reply means every
 * ack before it is recorded too. An ack still resolves only once recorded, as with an
 * `ackAck` each, but a batch costs one write and one round trip instead of one per
 * event (and no timer or captured stack per event in nats.js's request path).
 */
export class AckBatcher {
  /** By stream: one group consumer per stream, so one ordered ack queue on the server. */
  private batches = new Map<string, PendingAck[]>();
  private queued = false;

  /** Resolves once the server recorded the ack; rejects when that is not known. */
  add(stream: string, msg: JsMsg): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let batch = this.batches.get(stream);
      if (!batch) {
        batch = [];
        this.batches.set(stream, batch);
      }
      batch.push({ msg, resolve, reject });
      if (!this.queued) {
        this.queued = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /** Sends what is waiting now (also when a member closes, before it hands messages back). */
  flush(): void {
    this.queued = false;
    const batches = this.batches;
    if (batches.size === 0) return;
    this.batches = new Map();
    for (const batch of batches.values()) {
      const last = batch.length - 1;
      for (let i = 0; i < last; i++) batch[i]!.msg.ack();
      batch[last]!.msg.ackAck().then(
        () => {
          for (const a of batch) a.resolve();
        },
        (cause: unknown) => {
          const error = new FlowgateError('FLOWGATE_ERR_BUS_UNAVAILABLE', 'The ack could not be recorded.', { cause });
          for (const a of batch) a.reject(error);
        },
      );
    }
  }

  /**
   * Settles the waiting acks without sending them: after a seek the consumers are new (an
   * old delivery's ack must not touch them), after a group was deleted they are gone.
   */
  discard(): void {
    const batches = this.batches;
    this.batches = new Map();
    for (const batch of batches.values()) for (const a of batch) a.resolve();
  }
}
