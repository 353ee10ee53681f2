import { defineComponent, directive } from '../component.js';
import { EXPRESSION_SCHEMA, holdsOrFail, SCHEMA_DIALECT } from './support.js';

export type BranchConfig = { branches: Array<{ port: string; condition: string }>; default?: string };

const PORT = { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,62}$', description: 'An output port: edges leaving this node name it.' } as const;

/** `branch`: the message goes out on the port of the first condition that holds, else on `default`, else nowhere. */
export const branchComponent = defineComponent<BranchConfig>({
  name: 'branch',
  description: 'Routes the message to the port of the first JSONata condition that holds.',
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'branch',
    type: 'object',
    additionalProperties: false,
    required: ['branches'],
    properties: {
      branches: {
        type: 'array',
        description: 'Tried in order; the first whose condition holds wins.',
        minItems: 1,
        maxItems: 100,
        items: {
          type: 'object',
          additionalProperties: false,
          required: ['port', 'condition'],
          properties: { port: PORT, condition: { ...EXPRESSION_SCHEMA, description: 'A JSONata condition over the input.' } },
        },
      },
      default: { ...PORT, description: 'The port when no condition holds; without it, the message is dropped.' },
    },
  },
  expressionsIn: (config) =>
    Array.isArray(config.branches)
      ? (config.branches as Array<{ condition?: unknown }>).flatMap((branch, i) => (typeof branch.condition === 'string' ? [{ path: `branches[${i}].condition`, text: branch.condition }] : []))
      : [],
  async run({ input, config, context }) {
    for (const [i, branch] of config.branches.entries()) {
      if (await holdsOrFail(branch.condition, input, context, `condition of branch ${i} ("${branch.port}")`)) {
        return directive({ directive: 'route', port: branch.port, output: input });
      }
    }
    return config.default === undefined ? directive({ directive: 'drop' }) : directive({ directive: 'route', port: config.default, output: input });
  },
});
