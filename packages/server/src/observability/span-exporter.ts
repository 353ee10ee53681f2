import { request } from 'undici';
import type { Logger } from './logger.js';
import type { TraceContext } from './trace-context.js';

/** A finished server span: one request handled by Flowgate. */
export interface FinishedSpan {
  readonly trace: TraceContext;
  readonly name: string;
  /** Epoch milliseconds (fractions allowed). */
  readonly startMs: number;
  readonly endMs: number;
  readonly attributes: Readonly<Record<string, string | number>>;
  /** True for answers Flowgate counts as its own failure (5xx). */
  readonly error: boolean;
}

/** Where finished spans go; the no-op one when no collector is configured. */
export interface SpanSink {
  record(span: FinishedSpan): void;
  close(): Promise<void>;
}

export const NO_SPANS: SpanSink = { record: () => undefined, close: () => Promise.resolve() };

const MAX_QUEUE = 10_000;
const BATCH = 512;

/**
 * Exports spans to an OpenTelemetry collector over OTLP/HTTP with JSON encoding
 * (`<endpoint>/v1/traces`), in batches every second or every 512 spans. The queue is
 * bounded: when the collector is slow or down, spans are dropped (and counted in the log),
 * never requests slowed. The encoding is the few fields a server span needs; the
 * OpenTelemetry SDK would add a tracer and a context manager to every request for them.
 */
export class OtlpSpanExporter implements SpanSink {
  private queue: FinishedSpan[] = [];
  private dropped = 0;
  private sending: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly url: URL;

  constructor(
    endpoint: string,
    private readonly serviceName: string,
    private readonly version: string,
    private readonly logger: Logger,
  ) {
    this.url = new URL(`${endpoint.replace(/\/+$/, '')}/v1/traces`);
    this.timer = setInterval(() => void this.flush(), 1000);
    this.timer.unref();
  }

  record(span: FinishedSpan): void {
    if (!span.trace.sampled) return;
    if (this.queue.length >= MAX_QUEUE) {
      this.dropped++;
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= BATCH && !this.sending) void this.flush();
  }

  /** Sends what is queued (one request at a time). */
  async flush(): Promise<void> {
    while (this.sending) await this.sending;
    if (this.queue.length === 0) return;
    const batch = this.queue.splice(0, BATCH * 4);
    this.sending = this.send(batch).finally(() => (this.sending = undefined));
    await this.sending;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush().catch(() => undefined);
  }

  private async send(batch: readonly FinishedSpan[]): Promise<void> {
    try {
      const answer = await request(this.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(this.encode(batch)),
        headersTimeout: 5000,
        bodyTimeout: 5000,
      });
      await answer.body.dump();
      if (answer.statusCode >= 300) throw new Error(`collector answered ${answer.statusCode}`);
    } catch {
      this.dropped += batch.length;
    }
    if (this.dropped > 0) {
      this.logger.warn({ dropped: this.dropped, collector: this.url.origin }, 'spans could not be exported');
      this.dropped = 0;
    }
  }

  private encode(batch: readonly FinishedSpan[]): unknown {
    return {
      resourceSpans: [
        {
          resource: { attributes: [attribute('service.name', this.serviceName), attribute('service.version', this.version)] },
          scopeSpans: [
            {
              scope: { name: 'flowgate', version: this.version },
              spans: batch.map((span) => ({
                traceId: span.trace.traceId,
                spanId: span.trace.spanId,
                ...(span.trace.parentSpanId ? { parentSpanId: span.trace.parentSpanId } : {}),
                name: span.name,
                kind: 2, // SPAN_KIND_SERVER
                startTimeUnixNano: nanos(span.startMs),
                endTimeUnixNano: nanos(span.endMs),
                attributes: Object.entries(span.attributes).map(([key, value]) => attribute(key, value)),
                status: { code: span.error ? 2 : 0 },
              })),
            },
          ],
        },
      ],
    };
  }
}

function attribute(key: string, value: string | number): { key: string; value: Record<string, string | number> } {
  if (typeof value === 'number') return { key, value: Number.isInteger(value) ? { intValue: String(value) } : { doubleValue: value } };
  return { key, value: { stringValue: value } };
}

/** Epoch milliseconds as the decimal string of nanoseconds OTLP/JSON wants. */
function nanos(ms: number): string {
  return (BigInt(Math.floor(ms)) * 1_000_000n + BigInt(Math.round((ms % 1) * 1_000_000))).toString();
}
