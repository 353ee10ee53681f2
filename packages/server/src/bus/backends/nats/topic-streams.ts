import { DiscardPolicy, JetStreamApiError, JetStreamApiCodes, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from '../../../observability/index.js';
import type { BusNames, TopicStream } from './subjects.js';

/** How often streams created by other processes are looked for while anyone listens. */
const DISCOVERY_MS = 1000;

/**
 * The topic streams of one installation: creates them on first publish and tells
 * listeners (group members, watchers) about streams they have not seen yet, whether this
 * process created them (at once) or another one did (by polling the stream list).
 */
export class TopicStreams {
  private readonly known = new Map<string, TopicStream>();
  /** Streams known to exist, by tenant and topic: the publish path's lookup, without hashing. */
  private readonly ready = new Map<string, TopicStream>();
  private readonly creating = new Map<string, Promise<void>>();
  private readonly listeners = new Set<(stream: TopicStream) => void>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly jsm: JetStreamManager,
    private readonly names: BusNames,
    private readonly logger: Logger,
  ) {}

  /** The topic's stream when this process knows it exists; synchronous, for the publish path. */
  existing(tenant: string, topic: string): TopicStream | undefined {
    return this.ready.get(readyKey(tenant, topic));
  }

  /** Makes sure the topic's stream exists; see {@link existing} for the cached case. */
  ensure(tenant: string, topic: string): Promise<TopicStream> {
    const cached = this.existing(tenant, topic);
    if (cached) return Promise.resolve(cached);
    const ts = this.names.topicStream(tenant, topic);
    let pending = this.creating.get(ts.stream);
    if (!pending) {
      pending = this.create(ts).finally(() => this.creating.delete(ts.stream));
      this.creating.set(ts.stream, pending);
    }
    return pending.then(() => ts);
  }

  /** Forgets a stream, so the next {@link ensure} checks the server again. */
  forget(ts: TopicStream): void {
    this.known.delete(ts.stream);
    this.ready.delete(readyKey(ts.tenant, ts.topic));
  }

  private async create(ts: TopicStream): Promise<void> {
    try {
      await this.jsm.streams.info(ts.stream);
    } catch (error) {
      if (!isCode(error, JetStreamApiCodes.StreamNotFound)) throw error;
      try {
        await this.jsm.streams.add({
          name: ts.stream,
          subjects: [ts.subject],
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          num_replicas: 1,
          description: `Flowgate topic ${ts.topic} of tenant ${ts.tenant}`,
        });
      } catch (addError) {
        // Another process created it meanwhile (perhaps with other limits after a trim).
        const exists = await this.jsm.streams.info(ts.stream).then(
          () => true,
          () => false,
        );
        if (!exists) throw addError;
      }
    }
    this.learn(ts);
  }

  /** The topic streams of a tenant (or of all tenants), read from the server now. */
  async list(tenant: string | null): Promise<TopicStream[]> {
    const found: TopicStream[] = [];
    for await (const info of this.jsm.streams.list(this.names.eventWildcard(tenant))) {
      const subject = info.config.subjects?.[0];
      const ts = subject === undefined ? undefined : this.names.parseEventSubject(info.config.name, subject);
      if (!ts || (tenant !== null && ts.tenant !== tenant)) continue;
      found.push(ts);
      this.learn(ts);
    }
    return found;
  }

  /** Calls `listener` for each stream this process learns of; returns the unsubscribe. */
  onStream(listener: (stream: TopicStream) => void): () => void {
    this.listeners.add(listener);
    this.arm();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.listeners.clear();
  }

  private learn(ts: TopicStream): void {
    this.ready.set(readyKey(ts.tenant, ts.topic), ts);
    if (this.known.has(ts.stream)) return;
    this.known.set(ts.stream, ts);
    for (const listener of [...this.listeners]) {
      try {
        listener(ts);
      } catch (error) {
        this.logger.error({ err: error }, 'bus stream listener threw');
      }
    }
  }

  private arm(): void {
    if (this.closed || this.timer !== undefined || this.listeners.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closed || this.listeners.size === 0) return;
      void this.list(null)
        .catch((error: unknown) => this.logger.warn({ err: error }, 'bus stream discovery failed; retrying'))
        .finally(() => this.arm());
    }, DISCOVERY_MS);
    this.timer.unref();
  }
}

function readyKey(tenant: string, topic: string): string {
  return `${tenant} ${topic}`;
}

/** Whether `error` is a JetStream API error with this error code. */
export function isCode(error: unknown, code: number): boolean {
  return error instanceof JetStreamApiError && error.code === code;
}
