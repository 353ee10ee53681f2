import jsonata from 'jsonata';
import { setBounded } from '../kernel/index.js';

/** A compiled JSONata expression. */
export type Expression = ReturnType<typeof jsonata>;

/** Where an expression does not parse: JSONata's message and the character position. */
export interface ExpressionProblem {
  readonly message: string;
  readonly position: number | undefined;
}

const compiled = new Map<string, Expression>();
const MAX_CACHED = 5000;

/**
 * JSONata's own guardrails, for every expression a flow runs. An evaluation holds the
 * event loop until it ends (it awaits only microtasks), so no step timeout can stop it:
 * without these, one tenant's runaway recursion or loop would stop the whole server, and
 * a huge sequence would fill its memory. Each ends the evaluation with a JSONata error
 * (D1012 timeout, D1011 depth, D2015 sequence length), which fails the step.
 */
export const EXPRESSION_LIMITS = { timeout: 1000, stack: 1000, sequence: 1_000_000 } as const;

/** Compiles `text` once (kept in a bounded cache: flows reuse the same few expressions). */
export function compileExpression(text: string): Expression {
  let expression = compiled.get(text);
  if (!expression) {
    expression = jsonata(text, EXPRESSION_LIMITS);
    setBounded(compiled, text, expression, MAX_CACHED);
  }
  return expression;
}

/** The parse problem of `text`, or undefined when it is a valid JSONata expression. */
export function expressionProblem(text: string): ExpressionProblem | undefined {
  try {
    compileExpression(text);
    return undefined;
  } catch (error) {
    const e = error as { message?: string; position?: number };
    return { message: e.message ?? String(error), position: e.position };
  }
}

/** Evaluates an expression over `input`; `bindings` become `$name` variables. */
export async function evaluate(text: string, input: unknown, bindings?: Record<string, unknown>): Promise<unknown> {
  return compileExpression(text).evaluate(input, bindings);
}

/** JSONata conditions are truthy or not; an expression that yields nothing is false. */
export async function holds(text: string, input: unknown, bindings?: Record<string, unknown>): Promise<boolean> {
  const value = await evaluate(text, input, bindings);
  return Boolean(value) && !(Array.isArray(value) && value.length === 0);
}

const TEMPLATE = /\{\{([\s\S]*?)\}\}/g;
const WHOLE_TEMPLATE = /^\{\{([\s\S]*?)\}\}$/;
const SECRET_REFERENCE = /^\s*secrets\.([A-Za-z0-9_.-]{1,100})\s*$/;

/** Every `{{…}}` expression of a config that is not a secret reference, with its place. */
export function templateExpressions(config: unknown, path = 'config'): Array<{ path: string; text: string }> {
  const found: Array<{ path: string; text: string }> = [];
  visitStrings(config, (text, at) => {
    for (const match of text.matchAll(TEMPLATE)) {
      if (!SECRET_REFERENCE.test(match[1]!)) found.push({ path: at, text: match[1]!.trim() });
    }
  }, path);
  return found;
}

/** Where a config references a secret (`{{secrets.name}}`): the paths of the strings that do. */
export function secretReferencesIn(config: unknown, path: string): string[] {
  const found: string[] = [];
  visitStrings(config, (text, at) => {
    for (const match of text.matchAll(TEMPLATE)) if (SECRET_REFERENCE.test(match[1]!)) found.push(at);
  }, path);
  return [...new Set(found)];
}

/**
 * Resolves a config's templates for one run: `{{secrets.name}}` becomes the secret's value
 * (from `secret`), any other `{{expr}}` the JSONata value of `expr` over `input`. A string
 * that is one template keeps the value's type; templates inside text are interpolated.
 * The resolved config lives only for the run: it is never stored.
 */
export async function resolveTemplates(config: unknown, input: unknown, secret: (name: string) => Promise<string>, bindings?: Record<string, unknown>): Promise<unknown> {
  const one = async (inner: string): Promise<unknown> => {
    const reference = SECRET_REFERENCE.exec(inner);
    return reference ? secret(reference[1]!) : evaluate(inner.trim(), input, bindings);
  };
  const walk = async (value: unknown): Promise<unknown> => {
    if (typeof value === 'string') {
      if (!value.includes('{{')) return value;
      const whole = WHOLE_TEMPLATE.exec(value);
      if (whole) return one(whole[1]!);
      let out = '';
      let last = 0;
      for (const match of value.matchAll(TEMPLATE)) {
        out += value.slice(last, match.index) + stringify(await one(match[1]!));
        last = match.index + match[0].length;
      }
      return out + value.slice(last);
    }
    if (Array.isArray(value)) return Promise.all(value.map(walk));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [key, item] of Object.entries(value)) out[key] = await walk(item);
      return out;
    }
    return value;
  };
  return walk(config);
}

function stringify(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function visitStrings(value: unknown, visit: (text: string, path: string) => void, path = ''): void {
  if (typeof value === 'string') visit(value, path);
  else if (Array.isArray(value)) value.forEach((item, i) => visitStrings(item, visit, `${path}[${i}]`));
  else if (value && typeof value === 'object') for (const [key, item] of Object.entries(value)) visitStrings(item, visit, path ? `${path}.${key}` : key);
}
