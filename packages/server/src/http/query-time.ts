import { FlowgateError } from '../errors/index.js';

/**
 * A time given in a query or body (`since`, `from`, …) as epoch ms. The schema's
 * `date-time` format admits spellings `Date.parse` cannot read (`+00` without minutes, a
 * leap second); those are refused here, naming the field, rather than filtering by NaN.
 */
export function queryTime(text: string, field: string): number {
  const time = Date.parse(text);
  if (Number.isNaN(time)) throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', `${field} must be an ISO 8601 time such as 2025-01-31T12:00:00Z.`);
  return time;
}
