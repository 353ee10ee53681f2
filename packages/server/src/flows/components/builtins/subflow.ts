import type { ExecutionStatus } from '@flowgate/contracts';
import { defineComponent, directive, type Component } from '../component.js';
import { SCHEMA_DIALECT, TEMPLATE_PATTERN, wholeNumber } from './support.js';

export type SubflowConfig = { flow: string; input?: unknown; wait?: boolean; timeoutMs?: number | string; onTimeout?: 'fail' | 'continue' };

/** A child execution, as the subflow component sees it. */
export interface ChildExecution {
  readonly id: string;
  readonly status: ExecutionStatus;
  readonly output: unknown;
  /** False when the step had started it before (a repeat of the step). */
  readonly created: boolean;
}

/** What the subflow component needs of the engine. */
export interface Subflows {
  /**
   * Starts an execution of the tenant's flow named `flow`, once per parent step: a repeat
   * of the step gets the same child. Throws NonRetryableError when there is no such flow.
   */
  start(request: { tenant: string; flow: string; input: unknown; parentExecutionId: string; stepId: string; traceparent: string }): Promise<ChildExecution>;
}

const DAY = 86_400_000;

/**
 * `subflow`: runs another flow of the tenant with a message and, by default, waits for it
 * durably (no worker is held) and passes its output on; its failure fails this step. A
 * re-run of this execution re-runs a failed child from its failed step (ExecutionStore.rerun).
 */
export function subflowComponent(subflows: Subflows): Component<SubflowConfig> {
  return defineComponent<SubflowConfig>({
    name: 'subflow',
    description: 'Runs another flow (by name) with a message and passes its output on.',
    configSchema: {
      $schema: SCHEMA_DIALECT,
      title: 'subflow',
      type: 'object',
      additionalProperties: false,
      required: ['flow'],
      properties: {
        flow: { type: 'string', minLength: 1, maxLength: 120, description: 'The name of the flow to run (of the same tenant; it need not be active).' },
        input: { description: "The child's input (default: this step's input); may hold {{…}} templates." },
        wait: { type: 'boolean', description: 'Wait for the child to end and pass its output on (default); false passes {execution_id} on at once.' },
        timeoutMs: { type: ['integer', 'string'], minimum: 1, maximum: 30 * DAY, pattern: TEMPLATE_PATTERN, description: 'How long to wait (default: one day).' },
        onTimeout: { enum: ['fail', 'continue'], description: 'fail (default) with WAIT_TIMEOUT, or pass this step’s input on.' },
      },
    },
    async run({ input, config, context }) {
      const child = await subflows.start({
        tenant: context.tenant,
        flow: config.flow,
        input: config.input === undefined ? input : config.input,
        parentExecutionId: context.executionId,
        stepId: context.stepId,
        traceparent: context.traceparent,
      });
      if (config.wait === false) return { execution_id: child.id, status: child.status };
      if (child.status === 'succeeded') return child.output;
      // A child that ended badly (this step ran before a crash) fails the step through the
      // wait, which finds it ended. A re-run of the parent re-runs the child first.
      const timeoutMs = config.timeoutMs === undefined ? DAY : wholeNumber(config.timeoutMs, 'timeoutMs', 1, 30 * DAY);
      return directive({ directive: 'wait', key: `execution:${child.id}`, until: context.now() + timeoutMs, onTimeout: config.onTimeout ?? 'fail' });
    },
  });
}
