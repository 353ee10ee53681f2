import { sha256Hex } from '../../../kernel/index.js';
import { defineComponent, directive, type Component } from '../component.js';
import { EXPRESSION_SCHEMA, SCHEMA_DIALECT, TEMPLATE_PATTERN, wholeNumber } from './support.js';

export type WaitForEventConfig = {
  topic: string;
  match?: { event: string; value: unknown };
  timeoutMs?: number | string;
  onTimeout?: 'fail' | 'continue';
};

const DAY = 86_400_000;

/**
 * The key a `wait-for-event` step waits on, and that a matching event resolves: the flow,
 * the node and the correlation value. Values of different types or different lengths never
 * share a key: a string up to 200 characters is itself (unless it starts with `~`); any
 * other value is marked with its kind (`~j:` JSON, `~s:` a string starting with `~`, `~u`
 * nothing), and a longer one is its SHA-256.
 */
export function eventWaitKey(flowId: string, node: string, value: unknown): string {
  return `event:${flowId}:${node}:${correlation(value)}`;
}

function correlation(value: unknown): string {
  const text = typeof value === 'string' ? (value.startsWith('~') ? `~s:${value}` : value) : value === undefined ? '~u' : `~j:${JSON.stringify(value)}`;
  return text.length <= 200 ? text : `~h:${sha256Hex(text)}`;
}

/**
 * `wait-for-event`: the step waits, durably, for an event on `topic` whose `match.event`
 * expression (over the event) equals `match.value` (over this step's input, a template);
 * it passes the event on, or on timeout fails (or passes its input on). The flow must be
 * active: its subscription is what delivers the events, and only events that arrive while
 * the step waits count.
 */
export const waitForEventComponent: Component<WaitForEventConfig> = defineComponent<WaitForEventConfig>({
  name: 'wait-for-event',
  description: 'Waits for a matching event on a topic, then passes the event on.',
  configSchema: {
    $schema: SCHEMA_DIALECT,
    title: 'wait-for-event',
    type: 'object',
    additionalProperties: false,
    required: ['topic'],
    properties: {
      topic: { type: 'string', minLength: 1, maxLength: 400, description: 'The topic, or a glob of topics (orders.*), to listen on.' },
      match: {
        type: 'object',
        additionalProperties: false,
        required: ['event', 'value'],
        description: 'Which event: the one whose `event` expression equals `value`. Without it, the first event on the topic.',
        properties: {
          event: { ...EXPRESSION_SCHEMA, description: 'A JSONata expression over the event (payload.order_id).' },
          value: { description: 'What it must equal: a {{…}} template over the input ({{ order.id }}).' },
        },
      },
      timeoutMs: { type: ['integer', 'string'], minimum: 1, maximum: 30 * DAY, pattern: TEMPLATE_PATTERN, description: 'How long to wait (default: one day).' },
      onTimeout: { enum: ['fail', 'continue'], description: 'fail (default) with WAIT_TIMEOUT, or pass the input on.' },
    },
  },
  expressionsIn(config) {
    const match = config.match as { event?: unknown } | undefined;
    return typeof match?.event === 'string' ? [{ path: 'match.event', text: match.event }] : [];
  },
  run({ config, context }) {
    const timeoutMs = config.timeoutMs === undefined ? DAY : wholeNumber(config.timeoutMs, 'timeoutMs', 1, 30 * DAY);
    return directive({ directive: 'wait', key: eventWaitKey(context.flowId, context.node, config.match?.value), until: context.now() + timeoutMs, onTimeout: config.onTimeout ?? 'fail' });
  },
});
