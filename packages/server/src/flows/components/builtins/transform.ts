import { defineComponent } from '../component.js';
import { evaluateOrFail, EXPRESSION_SCHEMA, SCHEMA_DIALECT } from './support.js';

export type TransformConfig = { expression: string };

/** `transform`: the step's output is a JSONata expression's value over its input. */
export const transformComponent = defineComponent<TransformConfig>({
  name: 'transform',
  description: 'Reshapes the message with a JSONata expression.',
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'transform',
    type: 'object',
    additionalProperties: false,
    required: ['expression'],
    properties: {
      expression: { ...EXPRESSION_SCHEMA, description: "A JSONata expression over the input; $execution ({id, flowId}) is bound, and JSONata's $now() gives the time." },
    },
  },
  expressionsIn: (config) => (typeof config.expression === 'string' ? [{ path: 'expression', text: config.expression }] : []),
  async run({ input, config, context }) {
    const output = await evaluateOrFail(config.expression, input, context, 'transform expression');
    // An expression that matches nothing yields undefined, which JSON cannot carry.
    return output === undefined ? null : output;
  },
});
