import { defineComponent, directive, NonRetryableError } from '../component.js';
import { SCHEMA_DIALECT, TEMPLATE_PATTERN, wholeNumber } from './support.js';

export type DelayConfig = { ms?: number | string; until?: string | number };

/** `delay` / wait until: the step completes later, durably (the engine keeps the wait across restarts). */
export const delayComponent = defineComponent<DelayConfig>({
  name: 'delay',
  description: 'Holds the message for a while (ms) or until a moment (until), then passes it on unchanged.',
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'delay',
    type: 'object',
    additionalProperties: false,
    properties: {
      ms: {
        type: ['integer', 'string'],
        minimum: 0,
        pattern: TEMPLATE_PATTERN,
        description: 'How long to wait, in milliseconds (or a {{…}} template yielding it).',
      },
      until: {
        type: 'string',
        minLength: 1,
        description: 'When to go on: an ISO 8601 date-time, or a {{…}} template yielding one (or epoch ms).',
      },
    },
    oneOf: [{ required: ['ms'] }, { required: ['until'] }],
  },
  run({ input, config, context }) {
    if (config.until !== undefined) {
      // Epoch ms may come as a number, or as digits (a query parameter, a template's text).
      const at = typeof config.until === 'number' ? config.until : /^\d{1,16}$/.test(config.until.trim()) ? Number(config.until.trim()) : Date.parse(config.until);
      if (!Number.isFinite(at)) throw new NonRetryableError(`until is not a date-time: ${JSON.stringify(config.until)}.`, 'CONFIG_INVALID');
      return directive({ directive: 'sleep', until: at, output: input });
    }
    const ms = wholeNumber(config.ms, 'ms', 0, Number.MAX_SAFE_INTEGER);
    return directive({ directive: 'sleep', until: context.now() + ms, output: input });
  },
});
