import type { Logger } from '../../observability/index.js';

/**
 * What a component's `run` may return besides a plain output: a directive to the engine.
 * The engine maps each to the step's next state in one place (engine/orchestrator.ts).
 */
export type StepDirective =
  /** The message goes on along the edges leaving from `port` only (a branch). */
  | { readonly directive: 'route'; readonly port: string; readonly output: unknown }
  /** This path ends here: no successor runs (a filter that did not match). */
  | { readonly directive: 'drop' }
  /** The step completes with `output` at `until` (epoch ms), durably: a restart keeps the wait. */
  | { readonly directive: 'sleep'; readonly until: number; readonly output: unknown }
  /** The execution's answer to a caller waiting on it (a synchronous webhook); the message goes on as `output`. */
  | { readonly directive: 'respond'; readonly response: ExecutionResponse; readonly output: unknown }
  /**
   * The step waits, durably and without holding a worker, until the engine resolves `key`
   * (a subflow's end, a matching event) or `until` (epoch ms) passes. Resolved, the step
   * completes with the result's output (or fails with its error); timed out, it fails with
   * WAIT_TIMEOUT, or with `onTimeout: 'continue'` passes its input on.
   */
  | { readonly directive: 'wait'; readonly key: string; readonly until: number; readonly onTimeout: 'fail' | 'continue' };

/** What a synchronous webhook answers. */
export interface ExecutionResponse {
  readonly status: number;
  readonly headers?: Record<string, string>;
  readonly body: unknown;
}

const DIRECTIVE = Symbol.for('flowgate.step-directive');

/** Marks a directive so a component output that happens to look like one is not mistaken for it. */
export function directive<D extends StepDirective>(value: D): D {
  return Object.defineProperty<D>({ ...value }, DIRECTIVE, { value: true, enumerable: false });
}

/** Whether a component's result is a {@link StepDirective}. */
export function isDirective(value: unknown): value is StepDirective {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DIRECTIVE] === true;
}

/** A failure that no retry can mend (bad config, a 4xx answer): the step fails at once. */
export class NonRetryableError extends Error {
  readonly retryable = false;
  constructor(
    message: string,
    readonly code = 'COMPONENT_FAILED',
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'NonRetryableError';
  }
}

/** A transient failure that says when to try again (a 429 with Retry-After). */
export class RetryLaterError extends Error {
  readonly retryable = true;
  constructor(
    message: string,
    readonly delayMs: number,
    readonly code = 'COMPONENT_RETRY_LATER',
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'RetryLaterError';
  }
}

/** Publishing on the bus for the flow's tenant, as components may. */
export interface ComponentBus {
  publish(topic: string, payload: unknown, options?: { key?: string }): Promise<{ id: string }>;
}

/** An HTTP answer, read whole (up to the client's size limit). */
export interface ComponentHttpResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export interface ComponentHttpRequest {
  readonly method: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly signal?: AbortSignal;
}

/** HTTP for components. */
export interface ComponentHttp {
  /** A request to an external URL, through the outbound guard: private, loopback and link-local addresses are refused unless the server's config allows them. */
  request(url: string, init: ComponentHttpRequest): Promise<ComponentHttpResponse>;
  /** A request to a route of this Flowgate's own API gateway (`/flow/forms/42`), which applies the route's policies. */
  gateway(path: string, init: ComponentHttpRequest): Promise<ComponentHttpResponse>;
}

/** What a component gets besides its input and config. */
export interface ComponentContext {
  readonly tenant: string;
  readonly flowId: string;
  readonly executionId: string;
  readonly node: string;
  /** The step's id: stable across its attempts and re-runs, so a side effect can be keyed on it. */
  readonly stepId: string;
  /** 1 on the first attempt. */
  readonly attempt: number;
  /** Aborted when the step times out or the execution is cancelled. */
  readonly signal: AbortSignal;
  /** The execution's W3C trace context, for outgoing calls. */
  readonly traceparent: string;
  /** Epoch ms, from the engine's clock. */
  now(): number;
  readonly logger: Logger;
  readonly bus: ComponentBus;
  readonly http: ComponentHttp;
}

/** What `run` receives. `config` has its `{{…}}` templates resolved (secrets included). */
export interface ComponentCall<Config> {
  readonly input: unknown;
  readonly config: Config;
  readonly context: ComponentContext;
}

/**
 * A step's work. `configSchema` (a JSON Schema) is checked when a flow is saved, against
 * the config as written (templates unresolved). `run` may be called more than once for one
 * step (at-least-once: after a crash, a timeout or a retry), so its side effects should
 * tolerate repeats; the engine records its completion exactly once.
 */
export interface Component<Config = Record<string, unknown>> {
  readonly name: string;
  readonly description?: string;
  readonly configSchema: Record<string, unknown>;
  /**
   * The JSONata expressions a config holds outside `{{…}}` templates (a transform's
   * `expression`), with their place under the config, so a flow that does not parse is
   * refused when it is saved rather than when it runs.
   */
  expressionsIn?(config: Record<string, unknown>): Array<{ path: string; text: string }>;
  run(call: ComponentCall<Config>): unknown;
}

/** The API custom components use: `export default defineComponent({ name, configSchema, run })`. */
export function defineComponent<Config = Record<string, unknown>>(component: Component<Config>): Component<Config> {
  if (!/^[a-z][a-z0-9_-]{0,62}$/.test(component.name)) throw new Error(`A component name must be lower-case letters, digits, - and _: "${component.name}".`);
  if (typeof component.run !== 'function') throw new Error(`Component "${component.name}" has no run function.`);
  return component;
}
