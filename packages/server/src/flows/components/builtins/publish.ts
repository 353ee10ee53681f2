import { isReservedTopic, isTopicName } from '@flowgate/contracts';
import { isFlowgateError } from '../../../errors/index.js';
import { defineComponent, NonRetryableError } from '../component.js';
import { SCHEMA_DIALECT } from './support.js';

export type PublishConfig = { topic: string; payload?: unknown; key?: string | number };

/** `publish`: one event on the flow tenant's bus; the output is its id. */
export const publishComponent = defineComponent<PublishConfig>({
  name: 'publish',
  description: "Publishes an event on the tenant's bus.",
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'publish',
    type: 'object',
    additionalProperties: false,
    required: ['topic'],
    properties: {
      topic: { type: 'string', minLength: 1, maxLength: 400, description: 'The topic (orders.created), or a {{…}} template yielding it.' },
      payload: { description: 'The event payload (default: the input).' },
      key: { type: 'string', maxLength: 400, description: 'The partition key: events with the same key keep their order.' },
    },
  },
  async run({ input, config, context }) {
    const topic = config.topic;
    if (!isTopicName(topic)) throw new NonRetryableError(`"${topic}" is not a topic name.`, 'CONFIG_INVALID');
    // The bus refuses these too; saying so here names the step's config as the cause.
    if (isReservedTopic(topic)) throw new NonRetryableError(`Topic "${topic}" is written by Flowgate only.`, 'CONFIG_INVALID');
    const payload = config.payload === undefined ? input : config.payload;
    const options = config.key === undefined ? {} : { key: String(config.key) };
    try {
      const event = await context.bus.publish(topic, payload, options);
      return { event_id: event.id };
    } catch (error) {
      // The bus says which failures are the publisher's (a payload its schema refuses): those
      // are final, except a used-up quota (429), which a later retry may get past.
      if (isFlowgateError(error) && error.family === 'user' && error.status !== 429) throw new NonRetryableError(error.message, error.code, { cause: error });
      throw error;
    }
  },
});
