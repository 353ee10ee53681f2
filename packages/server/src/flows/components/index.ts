/**
 * Flow components: the interface a step's work implements, the registry flows name them
 * from, the built-in ones, and the loading of custom ones. Custom component modules use
 * {@link defineComponent} from here.
 */
export {
  defineComponent,
  directive,
  isDirective,
  NonRetryableError,
  RetryLaterError,
  type Component,
  type ComponentBus,
  type ComponentCall,
  type ComponentContext,
  type ComponentHttp,
  type ComponentHttpRequest,
  type ComponentHttpResponse,
  type ExecutionResponse,
  type StepDirective,
} from './component.js';
export { ComponentRegistry, type ConfigProblem } from './registry.js';
export * from './builtins/index.js';
export { GuardedComponentHttp, gatewayTarget, type GuardedComponentHttpOptions } from './http-client.js';
export { loadCustomComponents } from './custom-components.js';
