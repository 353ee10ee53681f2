import { evaluate, holds } from '../../expressions.js';
import { NonRetryableError, type ComponentContext } from '../component.js';

/** The JSON Schema dialect of every built-in config schema. */
export const SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema';

/**
 * A string holding a `{{…}}` template. Config schemas are checked against the definition
 * as written, so a field that takes a number or a URL once resolved must also accept this.
 */
export const TEMPLATE_PATTERN = '\\{\\{[\\s\\S]*\\}\\}';

/** A JSONata expression as written in a config (checked for syntax elsewhere, when saved). */
export const EXPRESSION_SCHEMA = { type: 'string', minLength: 1, maxLength: 10_000 } as const;

/** Header names are RFC 9110 tokens; values are strings (templates included) without line breaks. */
export const HEADERS_SCHEMA = {
  type: 'object',
  description: 'Header names and values; values may hold {{…}} templates and {{secrets.name}}.',
  propertyNames: { pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$" },
  additionalProperties: { type: 'string', maxLength: 8000, pattern: '^[^\\r\\n\\u0000]*$' },
} as const;

/** The variables every built-in expression sees besides the input: `$execution` (JSONata's own `$now()` and `$millis()` stay available). */
export function expressionBindings(context: ComponentContext): Record<string, unknown> {
  return { execution: { id: context.executionId, flowId: context.flowId } };
}

/** Evaluates a config expression; a failure is the definition's fault, so no retry mends it. */
export async function evaluateOrFail(expression: string, input: unknown, context: ComponentContext, what: string): Promise<unknown> {
  try {
    return await evaluate(expression, input, expressionBindings(context));
  } catch (error) {
    throw expressionFailed(error, what);
  }
}

/** Whether a config condition holds; a failure is final, like {@link evaluateOrFail}'s. */
export async function holdsOrFail(condition: string, input: unknown, context: ComponentContext, what: string): Promise<boolean> {
  try {
    return await holds(condition, input, expressionBindings(context));
  } catch (error) {
    throw expressionFailed(error, what);
  }
}

function expressionFailed(error: unknown, what: string): NonRetryableError {
  const message = (error as { message?: unknown }).message;
  return new NonRetryableError(`The ${what} failed: ${typeof message === 'string' ? message : String(error)}`, 'EXPRESSION_FAILED', { cause: error });
}

/** A config value that must be a whole number once its templates are resolved. */
export function wholeNumber(value: unknown, field: string, min: number, max: number): number {
  const number = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    throw new NonRetryableError(`${field} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}.`, 'CONFIG_INVALID');
  }
  return number;
}

/** Header values once resolved: a template may have yielded a number, so they are stringified. */
export function stringRecord(value: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, item] of Object.entries(value ?? {})) {
    if (item !== undefined && item !== null) out[name.toLowerCase()] = typeof item === 'string' ? item : JSON.stringify(item);
  }
  return out;
}
