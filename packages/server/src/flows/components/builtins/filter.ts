import { defineComponent, directive } from '../component.js';
import { EXPRESSION_SCHEMA, holdsOrFail, SCHEMA_DIALECT } from './support.js';

export type FilterConfig = { condition: string };

/** `filter`: the message goes on unchanged when the condition holds; otherwise this path ends. */
export const filterComponent = defineComponent<FilterConfig>({
  name: 'filter',
  description: 'Lets the message through only when a JSONata condition holds.',
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'filter',
    type: 'object',
    additionalProperties: false,
    required: ['condition'],
    properties: {
      condition: { ...EXPRESSION_SCHEMA, description: 'A JSONata condition over the input; false, null, empty and no match drop the message.' },
    },
  },
  expressionsIn: (config) => (typeof config.condition === 'string' ? [{ path: 'condition', text: config.condition }] : []),
  async run({ input, config, context }) {
    return (await holdsOrFail(config.condition, input, context, 'filter condition')) ? input : directive({ directive: 'drop' });
  },
});
