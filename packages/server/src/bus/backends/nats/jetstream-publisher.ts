import { JetStreamApiError, type ApiError } from '@nats-io/jetstream';
import { createInbox, headers, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';

/** How long a publish waits for JetStream's answer (nats.js's own default). */
const ACK_TIMEOUT_MS = 5000;
/** How often unanswered publishes are looked for; a timeout may be late by this much. */
const SWEEP_MS = 500;

export interface PublishAck {
  readonly stream: string;
  readonly seq: number;
}

interface Waiting {
  readonly resolve: (ack: PublishAck) => void;
  readonly reject: (error: Error) => void;
  readonly deadline: number;
}

/**
 * JetStream publishes with their answers on one shared subscription. `js.publish` gives
 * each publish its own request: a timer, a few promises and two or three `Error`s with
 * captured stacks, which cost about as much CPU as the publish itself. Here an answer is
 * matched by the counter at the end of its reply subject, and one timer fails the publishes
 * left unanswered. What a publish promises is unchanged: it resolves with the server's ack
 * (the message is stored, or was a duplicate of one stored within the window).
 */
export class JetStreamPublisher {
  private readonly inbox = `${createInbox()}.`;
  private readonly sub: Subscription;
  private readonly waiting = new Map<number, Waiting>();
  private next = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly nc: NatsConnection) {
    this.sub = nc.subscribe(`${this.inbox}*`, { callback: (error, msg) => (error ? this.failAll(error) : this.answer(msg)) });
  }

  /** Publishes `data` with `msgId` as its de-duplication id; resolves with the ack. */
  publish(subject: string, data: Uint8Array, msgId: string): Promise<PublishAck> {
    const id = ++this.next;
    const h = headers();
    h.set('Nats-Msg-Id', msgId);
    return new Promise<PublishAck>((resolve, reject) => {
      try {
        this.nc.publish(subject, data, { reply: `${this.inbox}${id}`, headers: h });
      } catch (error) {
        reject(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      this.waiting.set(id, { resolve, reject, deadline: Date.now() + ACK_TIMEOUT_MS });
      this.arm();
    });
  }

  /** Fails what still waits; later answers are ignored. */
  close(): void {
    this.failAll(new Error('the publisher is closed'));
    this.sub.unsubscribe();
  }

  private answer(msg: Msg): void {
    const id = Number(msg.subject.slice(this.inbox.length));
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (msg.data.length === 0) {
      // 503: no stream listens on the subject (deleted behind our back).
      w.reject(new Error(`no JetStream stream answered (status ${msg.headers?.code ?? 'none'})`));
      return;
    }
    try {
      const answer = msg.json<Partial<PublishAck> & { error?: ApiError }>();
      if (answer.error) w.reject(new JetStreamApiError(answer.error));
      else if (typeof answer.seq !== 'number' || !answer.stream) w.reject(new Error('invalid JetStream publish ack'));
      else w.resolve({ stream: answer.stream, seq: answer.seq });
    } catch (error) {
      w.reject(error as Error);
    }
  }

  private arm(): void {
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = Date.now();
      // Insertion order is deadline order: stop at the first one still in time.
      for (const [id, w] of this.waiting) {
        if (w.deadline > now) break;
        this.waiting.delete(id);
        w.reject(new Error(`JetStream did not answer a publish within ${ACK_TIMEOUT_MS} ms`));
      }
      if (this.waiting.size > 0) this.arm();
    }, SWEEP_MS);
    this.timer.unref();
  }

  private failAll(error: Error): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const all = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of all) w.reject(error);
  }
}
