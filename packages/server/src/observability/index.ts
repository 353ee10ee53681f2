/** Observability: JSON logs (pino), Prometheus metrics (prom-client), W3C trace context. */
export { createLogger, REDACTED_PATHS, type Logger, type LoggerOptions } from './logger.js';
export { createMetricsRegistry, createHttpMetrics, type HttpMetrics } from './metrics.js';
export { startSpan, parseTraceparent, formatTraceparent, type TraceContext } from './trace-context.js';
export { OtlpSpanExporter, NO_SPANS, type SpanSink, type FinishedSpan } from './span-exporter.js';
