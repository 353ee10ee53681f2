import { evaluate } from '../expressions.js';

/** How an execution is started. */
export interface StartRequest {
  readonly input: unknown;
  /** webhook, cron, event, manual, subflow, error. */
  readonly trigger: string;
  /** A key of Flowgate's own (`cron:`, `event:`, `subflow:`): one execution per tick, event or step. */
  readonly idempotencyKey?: string | undefined;
  /**
   * A key the caller chose (an `Idempotency-Key` header). It and the flow's key expression
   * are kept apart from Flowgate's own keys, so a caller cannot claim a cron tick or an event.
   */
  readonly callerKey?: string | undefined;
  readonly traceparent?: string | undefined;
  /** The execution whose `subflow` step started this one. */
  readonly parentExecutionId?: string | undefined;
}

/** The prefix of keys from callers and key expressions: none of Flowgate's own keys has it. */
const CALLER_KEY = 'key:';

/**
 * The idempotency key an execution is started with: Flowgate's own, else the caller's or
 * the flow's key expression's value, prefixed and cut to the column's 256 characters.
 */
export async function startKey(request: StartRequest, expression: string | undefined): Promise<string | undefined> {
  if (request.idempotencyKey !== undefined) return request.idempotencyKey;
  const key = request.callerKey ?? (expression ? keyOf(await evaluate(expression, request.input)) : '');
  return key ? `${CALLER_KEY}${key}`.slice(0, 256) : undefined;
}

/** An expression's value as a key: a string as it is, anything else as JSON; '' for nothing. */
export function keyOf(value: unknown): string {
  if (value === undefined || value === null) return '';
  return (typeof value === 'string' ? value : JSON.stringify(value)).slice(0, 256);
}
