/**
 * The shapes of the engine's durable state: execution and step rows, what starts an
 * execution, what a step's run decided, and what recording a batch of outcomes changed.
 */
import type { ExecutionStatus } from '@flowgate/contracts';
import type { Transaction } from 'kysely';
import type { FlowsTables, WaitState } from '../flows.tables.js';
import type { StepPlan } from './orchestrator.js';

export type ExecutionRow = FlowsTables['flow_executions'];
export type StepRow = FlowsTables['flow_steps'];
type Trx = Transaction<FlowsTables>;

/** A new execution and its first steps. */
export interface NewExecution {
  readonly tenant: string;
  readonly flowId: string;
  readonly flowVersion: number;
  readonly trigger: string;
  readonly input: unknown;
  readonly idempotencyKey?: string | undefined;
  readonly traceparent: string;
  readonly deadlineAt?: number | undefined;
  readonly parentExecutionId?: string | undefined;
  /** With a concurrency limit: the key its peers share, and how many may run at once. */
  readonly concurrency?: { readonly key: string; readonly limit: number } | undefined;
  readonly first: readonly StepPlan[];
  /**
   * Lease the first steps to this engine at once (when the execution is not queued), as
   * a claim would: they start when the start commits, without a claim's wait.
   */
  readonly lease?: { readonly owner: string; readonly leaseMs: number } | undefined;
}

/** A created (or, with a used idempotency key, an earlier) execution, and its first steps leased to the starter. */
export interface CreatedExecution {
  readonly row: ExecutionRow;
  readonly created: boolean;
  readonly leased: readonly StepRow[];
}

/**
 * What else happens, in the same transaction, when an execution finishes: the engine
 * resolves a parent's wait, lets a queued peer run, starts the error flow.
 */
export type FinishHook = (trx: Trx, execution: ExecutionRow) => Promise<void>;

/** A number the flow version of an execution sets (its concurrency limit, its timeout); undefined when it sets none. */
export type LimitLookup = (trx: Trx, execution: ExecutionRow) => Promise<number | undefined>;

/** The result a wait key already has (a subflow that ended before its parent began waiting), if any. */
export type WaitProbe = (trx: Trx, tenant: string, key: string) => Promise<WaitState['result'] | undefined>;

/** What a finished run of a step decided; applied in one transaction with others (group commit). */
export type StepOutcome =
  | { readonly kind: 'succeeded'; readonly step: StepRow; readonly output: unknown; readonly next: readonly StepPlan[]; readonly response?: unknown; readonly leaf: boolean }
  | { readonly kind: 'sleep'; readonly step: StepRow; readonly until: number; readonly output: unknown; readonly response?: unknown }
  | { readonly kind: 'wait'; readonly step: StepRow; readonly key: string; readonly until: number; readonly onTimeout: WaitState['onTimeout'] }
  | { readonly kind: 'retry'; readonly step: StepRow; readonly at: number; readonly error: { code: string; message: string } }
  | { readonly kind: 'failed'; readonly step: StepRow; readonly error: { code: string; message: string } };

/** How many of the steps that follow recorded successes this process may lease at once, and for how long. */
export interface EagerLease {
  readonly room: number;
  readonly leaseMs: number;
}

/** What a batch of outcomes changed: the outcomes that counted, the executions they ended, the steps leased eagerly. */
export interface AppliedOutcomes {
  readonly applied: Set<string>;
  readonly finished: Map<string, ExecutionStatus>;
  readonly leased: StepRow[];
  /**
   * Whether steps may have become due that were not leased here: next steps beyond the
   * room, retries, waits, and what an ending execution lets go on (a parent's wait, a
   * queued peer, an error flow). When false, a claim now would find nothing new.
   */
  readonly readied: boolean;
}

/** Steps that still have work ahead; an execution with none left is finished. */
export const OPEN_STEPS = ['ready', 'running', 'waiting', 'held'];

/** The statuses of an execution that has ended. */
export const FINISHED: ExecutionStatus[] = ['succeeded', 'failed', 'cancelled'];

/** Whether an execution's status is one it has ended with. */
export function isFinished(status: string): boolean {
  return (FINISHED as string[]).includes(status);
}
