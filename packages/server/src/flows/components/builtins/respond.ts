import { defineComponent, directive } from '../component.js';
import { HEADERS_SCHEMA, SCHEMA_DIALECT, stringRecord, TEMPLATE_PATTERN, wholeNumber } from './support.js';

export type RespondConfig = { status?: number | string; headers?: Record<string, string>; body?: unknown };

/** `respond`: the answer to a caller waiting on this execution (a synchronous webhook); the message goes on unchanged. */
export const respondComponent = defineComponent<RespondConfig>({
  name: 'respond',
  description: 'Answers the synchronous webhook call that started the execution.',
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'respond',
    type: 'object',
    additionalProperties: false,
    properties: {
      status: { type: ['integer', 'string'], minimum: 200, maximum: 599, pattern: TEMPLATE_PATTERN, description: 'The HTTP status, 200 to 599 (default 200): a 1xx is not a final answer.' },
      headers: HEADERS_SCHEMA,
      body: { description: 'The answer body (default: the input).' },
    },
  },
  run({ input, config }) {
    const status = config.status === undefined ? 200 : wholeNumber(config.status, 'status', 200, 599);
    const body = config.body === undefined ? input : config.body;
    const headers = stringRecord(config.headers);
    return directive({ directive: 'respond', response: Object.keys(headers).length > 0 ? { status, headers, body } : { status, body }, output: input });
  },
});
