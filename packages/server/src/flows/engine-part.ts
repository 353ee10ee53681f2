import { FlowgateError } from '../errors/index.js';
import type { ComponentRegistry } from './components/registry.js';
import type { FlowRecord } from './flow.repository.js';
import type { LifecyclePart } from './lifecycle.js';

/**
 * The engine's part of the lifecycle (Open Integration Hub's component orchestrator): a
 * flow may start only when every component its nodes and hooks name is installed here.
 * A missing one fails the start at once, naming it, instead of failing executions later.
 */
export class EnginePart implements LifecyclePart {
  readonly name = 'engine';

  constructor(private readonly components: ComponentRegistry) {}

  prepare(flow: FlowRecord): Promise<void> {
    const names = flow.definition.nodes.flatMap((node) => [node.component, ...[node.pre, node.post].flatMap((hook) => (hook && 'component' in hook ? [hook.component] : []))]);
    const missing = [...new Set(names.filter((name) => !this.components.get(name)))];
    if (missing.length > 0) {
      return Promise.reject(new FlowgateError('FLOWGATE_ERR_FLOW_INVALID', `The component${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} not installed.`));
    }
    return Promise.resolve();
  }

  async activate(): Promise<void> {}

  async release(): Promise<void> {}
}
