import { Ajv2020 } from 'ajv/dist/2020.js';
import avro from 'avsc';
import { FlowgateError, type FieldProblem } from '../errors/index.js';

/** A topic's payload schema: JSON Schema (2020-12) or an Avro schema (avsc). */
export interface PayloadSchema {
  readonly kind: 'json' | 'avro';
  readonly definition: unknown;
}

/** Checks a payload; an empty list means it matches. Paths start at `/payload`. */
export type PayloadValidator = (payload: unknown) => FieldProblem[];

const MAX_PROBLEMS = 20;

/**
 * Compiles a schema once, when the topic is configured, so a bad schema is refused then
 * (naming what is wrong) and publishing only runs the compiled check.
 */
export function compilePayloadSchema(schema: PayloadSchema): PayloadValidator {
  return schema.kind === 'json' ? compileJsonSchema(schema.definition) : compileAvroSchema(schema.definition);
}

function compileJsonSchema(definition: unknown): PayloadValidator {
  const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false });
  let validate: ReturnType<typeof ajv.compile>;
  try {
    validate = ajv.compile(definition as object);
  } catch (cause) {
    throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', `The JSON Schema is not valid: ${(cause as Error).message}`, {
      errors: [{ path: '/schema/definition', message: (cause as Error).message }],
    });
  }
  return (payload) => {
    if (validate(payload)) return [];
    return (validate.errors ?? []).slice(0, MAX_PROBLEMS).map((e) => ({
      path: `/payload${e.instancePath}`,
      message: e.keyword === 'required' ? `must have property ${String((e.params as { missingProperty?: string }).missingProperty)}` : (e.message ?? 'is not valid'),
    }));
  };
}

function compileAvroSchema(definition: unknown): PayloadValidator {
  let type: avro.Type;
  try {
    type = avro.Type.forSchema(definition as avro.Schema);
  } catch (cause) {
    throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', `The Avro schema is not valid: ${(cause as Error).message}`, {
      errors: [{ path: '/schema/definition', message: (cause as Error).message }],
    });
  }
  return (payload) => {
    const problems: FieldProblem[] = [];
    type.isValid(payload, {
      errorHook: (path: string[], value: unknown, expected: avro.Type) => {
        if (problems.length >= MAX_PROBLEMS) return;
        const name = expected.typeName ?? 'the schema';
        problems.push({ path: ['/payload', ...path].join('/').replace('//', '/'), message: `${describe(value)} does not match ${name}` });
      },
    });
    return problems;
  };
}

function describe(value: unknown): string {
  if (value === undefined) return 'a missing value';
  if (value === null) return 'null';
  return `a ${Array.isArray(value) ? 'list' : typeof value}`;
}
