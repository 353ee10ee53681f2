import type { AuditRecorder, Clock } from '../../kernel/index.js';
import type { Logger } from '../../observability/index.js';
import { isDirective, NonRetryableError, RetryLaterError, type Component, type ComponentBus, type ComponentHttp, type ComponentRegistry, type StepDirective } from '../components/index.js';
import type { FlowGraph } from '../definition.js';
import { evaluate, holds, resolveTemplates } from '../expressions.js';
import type { WaitState } from '../flows.tables.js';
import type { ExecutionRow, StepOutcome, StepRow } from './execution-model.js';
import { candidateEdges, nextSteps, retryDecision, type Phase, type StepFailure } from './orchestrator.js';

/** Reads a secret's value for a run: a string, or an oauth2 secret's current access token. */
export type SecretReader = (tenant: string, name: string) => Promise<string>;

export interface StepRunnerOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly audit: AuditRecorder;
  readonly components: ComponentRegistry;
  readonly secrets: SecretReader;
  readonly http: ComponentHttp;
  readonly bus: (tenant: string, traceparent: string, flowId: string) => ComponentBus;
  readonly defaultStepTimeoutMs: number;
  readonly random?: () => number;
}

const REDACTED = '[REDACTED]';
/** The largest step output kept (characters of its JSON): 16 Mi, above any built-in component's (an http answer is at most 1 MiB). */
const MAX_OUTPUT_CHARS = 16 * 1024 * 1024;
/** The shortest start of a secret, at the end of a text cut short, taken for the secret. */
const MIN_SECRET_PREFIX = 4;

/**
 * Runs one claimed step and says what it decided (a {@link StepOutcome}); it writes
 * nothing itself. Everything a step may do to the world happens in its component; the
 * decisions about what follows come from orchestrator.ts.
 */
export class StepRunner {
  constructor(private readonly options: StepRunnerOptions) {}

  async run(step: StepRow, execution: ExecutionRow, graph: FlowGraph, signal: AbortSignal): Promise<StepOutcome> {
    const definition = graph.definition;
    const node = graph.node(step.node);
    const phase = step.phase as Phase;
    const input = JSON.parse(step.input) as unknown;
    const bindings = { execution: { id: execution.id, flowId: execution.flow_id, trigger: execution.trigger } };
    // A sleeper that is due: its output was recorded when it went to sleep. A waiter that
    // woke: resolved (a subflow ended, an event came), or its time ran out. Their component
    // ran before: what fails now (an edge condition) fails the step, never runs it again.
    if (step.output !== null || step.wait_state !== null) {
      try {
        return step.output !== null
          ? await this.succeeded(step, graph, phase, JSON.parse(step.output), undefined, bindings)
          : await this.woken(step, graph, phase, input, JSON.parse(step.wait_state!) as WaitState, step.wait_key !== null, bindings);
      } catch (error) {
        const failure = classify(error, new Set());
        return { kind: 'failed', step, error: { code: failure.code, message: failure.message } };
      }
    }
    const revealed = new Set<string>();
    try {
      const timeoutMs = node.timeoutMs ?? definition.settings?.stepTimeoutMs ?? this.options.defaultStepTimeoutMs;
      const result = await this.withTimeout(timeoutMs, signal, async (stepSignal) => {
        const hook = phase === 'main' ? undefined : node[phase];
        if (hook && 'expression' in hook) return evaluate(hook.expression, input, bindings);
        const name = hook && 'component' in hook ? hook.component : node.component;
        const config = hook && 'component' in hook ? (hook.config ?? {}) : (node.config ?? {});
        const component = this.options.components.get(name);
        if (!component) throw new NonRetryableError(`The component "${name}" is not installed.`, 'COMPONENT_MISSING');
        return this.call(component, config, input, step, execution, stepSignal, bindings, revealed);
      });
      assertRecordable(result);
      // Awaited here, so an edge condition that fails at run time fails the step like the
      // component would, instead of leaving the step to run again when its lease lapses.
      if (isDirective(result)) return await this.directed(step, graph, phase, result, input, bindings, revealed);
      return await this.succeeded(step, graph, phase, redact(result, revealed), undefined, bindings);
    } catch (error) {
      const failure = classify(error, revealed);
      const retries = node.retries ?? definition.settings?.retries;
      const decision = retryDecision(step.attempt, retries, failure, this.options.clock.now(), (this.options.random ?? Math.random)());
      const recorded = { code: failure.code, message: failure.message };
      this.options.logger.info({ execution: execution.id, node: step.node, phase, attempt: step.attempt, code: failure.code, retry: decision.retry }, 'flow step failed');
      return decision.retry ? { kind: 'retry', step, at: decision.at, error: recorded } : { kind: 'failed', step, error: recorded };
    }
  }

  private async call(component: Component, config: unknown, input: unknown, step: StepRow, execution: ExecutionRow, signal: AbortSignal, bindings: Record<string, unknown>, revealed: Set<string>): Promise<unknown> {
    const secret = async (name: string) => {
      const value = await this.options.secrets(execution.tenant, name);
      if (value.length >= 4) revealed.add(value);
      this.options.audit.record({
        action: 'secrets.read',
        tenant: execution.tenant,
        actor: `flow:${execution.flow_id}`,
        outcome: 'success',
        target: `secret:${name}`,
        details: { component: component.name, execution: execution.id, node: step.node },
      });
      return value;
    };
    const resolved = await resolveTemplates(config, input, secret, bindings);
    return component.run({
      input,
      config: resolved as Record<string, unknown>,
      context: {
        tenant: execution.tenant,
        flowId: execution.flow_id,
        executionId: execution.id,
        node: step.node,
        stepId: step.id,
        attempt: step.attempt,
        signal,
        traceparent: execution.traceparent,
        now: () => this.options.clock.now(),
        logger: this.options.logger,
        bus: this.options.bus(execution.tenant, execution.traceparent, execution.flow_id),
        http: this.options.http,
      },
    });
  }

  private async directed(step: StepRow, graph: FlowGraph, phase: Phase, result: StepDirective, input: unknown, bindings: Record<string, unknown>, revealed: Set<string>): Promise<StepOutcome> {
    switch (result.directive) {
      case 'drop':
        return { kind: 'succeeded', step, output: input, next: [], leaf: false };
      case 'route':
        return this.succeeded(step, graph, phase, redact(result.output, revealed), undefined, bindings, result.port);
      case 'sleep':
        return { kind: 'sleep', step, until: result.until, output: redact(result.output, revealed) };
      case 'respond':
        return this.succeeded(step, graph, phase, redact(result.output, revealed), redact(result.response, revealed), bindings);
      case 'wait':
        return { kind: 'wait', step, key: result.key, until: result.until, onTimeout: result.onTimeout };
    }
  }

  private async woken(step: StepRow, graph: FlowGraph, phase: Phase, input: unknown, state: WaitState, timedOut: boolean, bindings: Record<string, unknown>): Promise<StepOutcome> {
    const result = state.result;
    if (result && 'output' in result) return this.succeeded(step, graph, phase, result.output, undefined, bindings);
    if (result) return { kind: 'failed', step, error: { code: result.error.code, message: result.error.message } };
    if (timedOut && state.onTimeout === 'continue') return this.succeeded(step, graph, phase, input, undefined, bindings);
    return { kind: 'failed', step, error: { code: 'WAIT_TIMEOUT', message: 'Nothing resolved the wait before its timeout.' } };
  }

  private async succeeded(step: StepRow, graph: FlowGraph, phase: Phase, output: unknown, response: unknown, bindings: Record<string, unknown>, port?: string): Promise<StepOutcome> {
    const finalPhase = phase === 'post' || (phase === 'main' && !graph.node(step.node).post);
    const candidates = finalPhase ? candidateEdges(graph, step.node, port) : [];
    const passing = [];
    for (const edge of candidates) if (!edge.condition || (await holds(edge.condition, output, bindings))) passing.push(edge);
    const next = nextSteps(graph, step.node, phase, output, passing);
    return { kind: 'succeeded', step, output, next, leaf: finalPhase && next.length === 0, ...(response !== undefined ? { response } : {}) };
  }

  private async withTimeout<T>(ms: number, outer: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const abort = () => controller.abort(outer.reason);
    outer.addEventListener('abort', abort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const error = new StepTimeoutError(ms);
        controller.abort(error);
        reject(error);
      }, ms);
    });
    try {
      return await Promise.race([work(controller.signal), timeout]);
    } finally {
      clearTimeout(timer);
      outer.removeEventListener('abort', abort);
    }
  }
}

class StepTimeoutError extends Error {
  constructor(ms: number) {
    super(`The step did not finish within ${ms} ms.`);
    this.name = 'StepTimeoutError';
  }
}

function classify(error: unknown, revealed: Set<string>): StepFailure {
  const message = redactText(error instanceof Error ? error.message : String(error), revealed, true).slice(0, 2000);
  if (error instanceof NonRetryableError) return { code: error.code, message, retryable: false };
  if (error instanceof RetryLaterError) return { code: error.code, message, retryable: true, delayMs: error.delayMs };
  if (error instanceof StepTimeoutError) return { code: 'STEP_TIMEOUT', message, retryable: true };
  const code = (error as { code?: unknown }).code;
  // JSONata's own errors (syntax, type, dynamic): the same input fails the same way again.
  if (typeof code === 'string' && /^[STD]\d{4}$/.test(code)) return { code: 'EXPRESSION_FAILED', message, retryable: false };
  return { code: 'STEP_FAILED', message, retryable: true };
}

/**
 * Refuses what the store could not write as JSON (a BigInt, a cycle: a custom component's
 * output), or should not (over {@link MAX_OUTPUT_CHARS}), which would otherwise fail at
 * commit, or fill the store, and leave the step to run again for ever.
 */
function assertRecordable(value: unknown): void {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new NonRetryableError(`The step's output cannot be stored as JSON: ${error instanceof Error ? error.message : String(error)}`, 'OUTPUT_NOT_JSON');
  }
  if (text !== undefined && text.length > MAX_OUTPUT_CHARS) {
    throw new NonRetryableError(`The step's output is ${text.length} characters of JSON; a step keeps at most ${MAX_OUTPUT_CHARS}.`, 'OUTPUT_TOO_LARGE');
  }
}

/**
 * Removes revealed secret values from what is about to be stored: from every string (and
 * key) of the value, and numbers that spell one. The value is walked, not its JSON text,
 * so a secret that also appears inside a number or a key's escape cannot break the JSON.
 */
function redact<T>(value: T, revealed: Set<string>): T {
  if (revealed.size === 0 || value === undefined) return value;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return redactText(v, revealed);
    if (typeof v === 'number' && revealed.has(String(v))) return REDACTED;
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, item]) => [redactText(k, revealed), walk(item)]));
    return v;
  };
  return walk(JSON.parse(JSON.stringify(value)) as unknown) as T;
}

/**
 * Removes revealed secrets from a text: as they are, and as an upstream may echo them
 * (JSON-escaped, URL-encoded). In an error message (`cutShort`), also the start of one left
 * at its end, or before its closing `…`, where a component cut the text short (an http
 * error quoting a body).
 */
function redactText(text: string, revealed: Set<string>, cutShort = false): string {
  let out = text;
  for (const secret of revealed) {
    for (const form of new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)])) {
      out = out.split(form).join(REDACTED);
      if (cutShort) out = withoutCutStart(out, form);
    }
  }
  return out;
}

/** `text` with the longest start of `secret` (at least {@link MIN_SECRET_PREFIX} long) that ends it, before any closing `…`, redacted. */
function withoutCutStart(text: string, secret: string): string {
  const body = text.endsWith('…') ? text.slice(0, -1) : text;
  for (let k = secret.length - 1; k >= MIN_SECRET_PREFIX; k--) {
    if (body.endsWith(secret.slice(0, k))) return `${body.slice(0, -k)}${REDACTED}${text.slice(body.length)}`;
  }
  return text;
}
