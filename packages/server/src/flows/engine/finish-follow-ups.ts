import type { FlowDefinition } from '@flowgate/contracts';
import type { Logger } from '../../observability/index.js';
import type { Transaction } from 'kysely';
import { toRecord, type FlowRecord } from '../flow.repository.js';
import type { FlowsTables, WaitState } from '../flows.tables.js';
import { isFinished, type ExecutionRow } from './execution-model.js';
import type { ExecutionStore } from './execution.store.js';

type Trx = Transaction<FlowsTables>;

export interface FinishFollowUpsOptions {
  readonly executions: ExecutionStore;
  /** The definition an execution ran, from the engine's cache when it has it. */
  readonly definitionOf: (trx: Trx, execution: ExecutionRow) => Promise<FlowDefinition>;
  /** Starts an execution in the caller's transaction. */
  readonly start: (trx: Trx, flow: FlowRecord, input: unknown, trigger: string, traceparent: string) => Promise<void>;
  readonly logger: Logger;
}

/**
 * What follows an execution's end, in the transaction that records it, so a crash cannot
 * keep one without the other: the parent step waiting on a subflow is resolved, a queued
 * execution under the same concurrency key may run, and a failed execution starts its
 * flow's error flow. The common case (no parent, no limit, succeeded) reads nothing.
 */
export class FinishFollowUps {
  constructor(private readonly options: FinishFollowUpsOptions) {}

  readonly run = async (trx: Trx, execution: ExecutionRow): Promise<void> => {
    if (execution.parent_execution_id !== null) await this.resolveParent(trx, execution);
    if (execution.concurrency_key !== null) {
      const limit = await this.limitOf(trx, execution);
      if (limit !== undefined) await this.options.executions.gates.admitQueued(trx, execution.flow_id, execution.concurrency_key, limit);
    }
    // An error flow's own failure starts no error flow, so two flows naming each other cannot
    // loop; nor does a subflow's, which its parent reports (once) if the parent fails too.
    if (execution.status === 'failed' && execution.trigger !== 'error' && execution.parent_execution_id === null) await this.startErrorFlow(trx, execution);
  };

  /** The concurrency limit of the flow version an execution runs, when it has a concurrency key. */
  readonly limitOf = async (trx: Trx, execution: ExecutionRow): Promise<number | undefined> => {
    if (execution.concurrency_key === null) return undefined;
    return (await this.options.definitionOf(trx, execution)).settings?.concurrency?.limit;
  };

  /** The flow timeout of the flow version an execution runs, if it has one. */
  readonly timeoutOf = async (trx: Trx, execution: ExecutionRow): Promise<number | undefined> => (await this.options.definitionOf(trx, execution)).settings?.timeoutMs;

  /** A subflow that ended before its parent's step began waiting on it resolves the wait at once. */
  readonly probe = async (trx: Trx, tenant: string, key: string): Promise<WaitState['result'] | undefined> => {
    if (!key.startsWith(EXECUTION_KEY)) return undefined;
    const child = await trx.selectFrom('flow_executions').selectAll().where('tenant', '=', tenant).where('id', '=', key.slice(EXECUTION_KEY.length)).executeTakeFirst();
    return child && isFinished(child.status) ? resultOf(child) : undefined;
  };

  private async resolveParent(trx: Trx, execution: ExecutionRow): Promise<void> {
    await this.options.executions.gates.resolveWaits(trx, execution.tenant, `${EXECUTION_KEY}${execution.id}`, resultOf(execution));
  }

  private async startErrorFlow(trx: Trx, execution: ExecutionRow): Promise<void> {
    const definition = await this.options.definitionOf(trx, execution);
    const name = definition.settings?.errorFlow;
    if (!name) return;
    const row = await trx.selectFrom('flows').selectAll().where('tenant', '=', execution.tenant).where('name', '=', name).executeTakeFirst();
    // A missing error flow cannot stop the failure from being recorded; the failure's event says what happened.
    if (!row || row.id === execution.flow_id) return;
    const input = {
      execution: {
        id: execution.id,
        flow_id: execution.flow_id,
        flow_name: definition.name,
        flow_version: Number(execution.flow_version),
        trigger: execution.trigger,
        error: execution.error === null ? null : (JSON.parse(execution.error) as unknown),
        input: JSON.parse(execution.input) as unknown,
        finished_at: execution.finished_at === null ? null : new Date(Number(execution.finished_at)).toISOString(),
      },
    };
    // No idempotency key: finish() records each failure once, and a re-run that fails again reports again.
    try {
      await this.options.start(trx, toRecord(row), input, 'error', execution.traceparent);
    } catch (error) {
      // The error flow's own key expressions failing must not keep the failure from being
      // recorded. (A store error is not caught: it aborts the transaction anyway.)
      if (!isExpressionError(error)) throw error;
      this.options.logger.warn({ err: error, execution: execution.id, errorFlow: name }, 'the error flow could not start');
    }
  }
}

/** JSONata's own errors carry codes like T2001 or D3001. */
function isExpressionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z]\d{4}$/.test(code);
}

/** The wait key of a step waiting for an execution (a subflow) to end. */
export const EXECUTION_KEY = 'execution:';

function resultOf(execution: ExecutionRow): NonNullable<WaitState['result']> {
  if (execution.status === 'succeeded') return { output: execution.output === null ? null : JSON.parse(execution.output) };
  return { error: { code: execution.status === 'cancelled' ? 'SUBFLOW_CANCELLED' : 'SUBFLOW_FAILED', message: subflowMessage(execution) } };
}

function subflowMessage(execution: ExecutionRow): string {
  if (execution.status === 'cancelled') return `The subflow execution ${execution.id} was cancelled.`;
  const error = execution.error === null ? undefined : (JSON.parse(execution.error) as { message?: string; node?: string });
  return `The subflow execution ${execution.id} failed${error?.node ? ` at node ${error.node}` : ''}: ${error?.message ?? 'no reason given'}`;
}
