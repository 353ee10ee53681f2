/**
 * The engine's decisions, as pure functions of the flow graph and a step's outcome (STYLE.md
 * practice 4): what runs next, whether a failure is retried and when. Time and randomness
 * come in as arguments; the worker applies the decisions and performs the side effects.
 */
import type { FlowEdge, RetrySettings } from '@flowgate/contracts';
import type { FlowGraph } from '../definition.js';

/** A node runs in up to three phases, each its own durable step. */
export type Phase = 'pre' | 'main' | 'post';

/** A step to create. */
export interface StepPlan {
  readonly node: string;
  readonly phase: Phase;
  readonly input: unknown;
}

/** The first steps of an execution: every node without an incoming edge. */
export function firstSteps(graph: FlowGraph, input: unknown): StepPlan[] {
  return graph.entries.map((node) => ({ node, phase: graph.node(node).pre ? 'pre' : 'main', input }));
}

/**
 * The edges a completed node's message may take, before their conditions are evaluated:
 * with a port (a branch's choice), only the edges leaving from that port.
 */
export function candidateEdges(graph: FlowGraph, node: string, port: string | undefined): readonly FlowEdge[] {
  const edges = graph.edgesFrom(node);
  return port === undefined ? edges.filter((e) => e.port === undefined) : edges.filter((e) => e.port === port);
}

/**
 * What follows a succeeded step. `passing` are the candidate edges whose condition held
 * (the worker evaluates the JSONata conditions, which is the only asynchronous part).
 */
export function nextSteps(graph: FlowGraph, node: string, phase: Phase, output: unknown, passing: readonly FlowEdge[]): StepPlan[] {
  const spec = graph.node(node);
  if (phase === 'pre') return [{ node, phase: 'main', input: output }];
  if (phase === 'main' && spec.post) return [{ node, phase: 'post', input: output }];
  return passing.map((edge) => ({ node: edge.to, phase: graph.node(edge.to).pre ? 'pre' : 'main', input: output }));
}

/** How a step failed, as the worker classified it. */
export interface StepFailure {
  readonly code: string;
  readonly message: string;
  /** False for failures no retry can mend (NonRetryableError, bad config). */
  readonly retryable: boolean;
  /** When the failure says when to try again (RetryLaterError). */
  readonly delayMs?: number | undefined;
}

export const DEFAULT_RETRIES: Required<RetrySettings> = { count: 3, backoffMs: 1000, maxBackoffMs: 300_000, jitter: 0.2 };

/** Retry at `at` (epoch ms), or give up. */
export type RetryDecision = { readonly retry: true; readonly at: number } | { readonly retry: false };

/**
 * Whether the `attempt`-th attempt's failure (1 = the first) is retried: exponential
 * backoff (`backoffMs × 2^(attempt-1)`, capped) with the given share of jitter, or the
 * failure's own delay. `random` is in [0, 1).
 */
export function retryDecision(attempt: number, settings: RetrySettings | undefined, failure: StepFailure, now: number, random: number): RetryDecision {
  const s = { ...DEFAULT_RETRIES, ...settings };
  if (!failure.retryable || attempt > s.count) return { retry: false };
  if (failure.delayMs !== undefined) return { retry: true, at: now + Math.min(failure.delayMs, s.maxBackoffMs) };
  const base = Math.min(s.backoffMs * 2 ** (attempt - 1), s.maxBackoffMs);
  const delay = base * (1 - s.jitter) + base * s.jitter * random;
  return { retry: true, at: now + Math.round(delay) };
}
