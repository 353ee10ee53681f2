import { FlowDefinitionSchema, type FlowDefinition, type FlowEdge, type FlowNode } from '@flowgate/contracts';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parseTopicFilter } from '../bus/index.js';
import { shapeProblems } from '../errors/index.js';
import type { ComponentRegistry } from './components/registry.js';
import { cronProblem, isTimeZone } from './cron.js';
import { expressionProblem, secretReferencesIn, templateExpressions } from './expressions.js';

/** A problem in a definition, with its place (`nodes[1].config.url`). */
export interface DefinitionProblem {
  readonly path: string;
  readonly message: string;
}

// Compiled on first use: the definition schema is large, and a server that never saves a
// flow should not pay for it at start.
let shapeValidator: ValidateFunction<FlowDefinition> | undefined;
const validateShape = (input: unknown): input is FlowDefinition => {
  shapeValidator ??= new Ajv({ allErrors: true, strict: false }).compile<FlowDefinition>(FlowDefinitionSchema);
  return shapeValidator(input);
};
// `addUsedSchema: false`: a schema's `$id` is not registered, so two flows (of any tenants)
// may use one `$id`, and a flow may be saved again.
const schemaCompiler = new Ajv2020({ allErrors: true, strict: false, validateFormats: false, addUsedSchema: false });

/**
 * Checks a definition's shape and meaning: JSONata expressions and config templates
 * parse, cron expressions parse and fire in a known time zone, event topics are valid
 * patterns, components exist and accept their config, edges join existing nodes without
 * a cycle. Returns every problem found, or none.
 */
export function checkDefinition(input: unknown, components: ComponentRegistry): DefinitionProblem[] {
  if (!validateShape(input)) {
    return shapeProblems(shapeValidator?.errors);
  }
  const definition = input;
  const problems: DefinitionProblem[] = [];
  const expression = (path: string, text: string) => {
    const problem = expressionProblem(text);
    if (problem) problems.push({ path, message: `is not a valid JSONata expression: ${problem.message}${problem.position !== undefined ? ` (at character ${problem.position})` : ''}` });
  };

  definition.triggers.forEach((trigger, i) => {
    const at = `triggers[${i}]`;
    if (trigger.type === 'cron') {
      const zone = trigger.timezone ?? 'UTC';
      if (!isTimeZone(zone)) problems.push({ path: `${at}.timezone`, message: `"${zone}" is not an IANA time zone` });
      else {
        const problem = cronProblem(trigger.expression, zone);
        if (problem) problems.push({ path: `${at}.expression`, message: `${problem.message} (at character ${problem.position})` });
      }
    } else if (trigger.type === 'event') {
      try {
        parseTopicFilter(trigger.topic);
      } catch (error) {
        problems.push({ path: `${at}.topic`, message: (error as Error).message });
      }
    } else if (trigger.type === 'manual' && trigger.inputSchema) {
      try {
        schemaCompiler.compile(trigger.inputSchema);
        // Only checked here: not kept (each save brings a new object).
        schemaCompiler.removeSchema(trigger.inputSchema);
      } catch (error) {
        problems.push({ path: `${at}.inputSchema`, message: `is not a valid JSON Schema: ${(error as Error).message}` });
      }
    }
  });
  const kinds = definition.triggers.map((t) => t.type);
  for (const kind of ['webhook', 'manual'] as const) {
    if (kinds.filter((k) => k === kind).length > 1) problems.push({ path: 'triggers', message: `a flow has at most one ${kind} trigger` });
  }

  const nodes = new Map<string, FlowNode>();
  definition.nodes.forEach((node, i) => {
    const at = `nodes[${i}]`;
    if (nodes.has(node.id)) problems.push({ path: `${at}.id`, message: `"${node.id}" is used by another node` });
    nodes.set(node.id, node);
    const component = components.get(node.component);
    if (!component) problems.push({ path: `${at}.component`, message: `"${node.component}" is not a known component (${components.names().join(', ')})` });
    else {
      const configProblems = components.checkConfig(component, node.config ?? {}, `${at}.config`);
      problems.push(...configProblems);
      if (configProblems.length === 0) for (const found of component.expressionsIn?.(node.config ?? {}) ?? []) expression(`${at}.config.${found.path}`, found.text);
    }
    for (const found of templateExpressions(node.config ?? {}, `${at}.config`)) expression(found.path, found.text);
    problems.push(...secretsKept(node.component, node.config, `${at}.config`));
    for (const phase of ['pre', 'post'] as const) {
      const hook = node[phase];
      if (!hook) continue;
      if ('expression' in hook) expression(`${at}.${phase}.expression`, hook.expression);
      else {
        const hookComponent = components.get(hook.component);
        if (!hookComponent) problems.push({ path: `${at}.${phase}.component`, message: `"${hook.component}" is not a known component` });
        // A wait is a node of its own: only nodes' waits get a subscription to their events.
        else if (hook.component === 'wait-for-event') problems.push({ path: `${at}.${phase}.component`, message: 'wait-for-event cannot be a hook: make it a node of its own' });
        else problems.push(...components.checkConfig(hookComponent, hook.config ?? {}, `${at}.${phase}.config`), ...secretsKept(hook.component, hook.config, `${at}.${phase}.config`));
      }
    }
  });
  (definition.edges ?? []).forEach((edge, i) => {
    const at = `edges[${i}]`;
    if (!nodes.has(edge.from)) problems.push({ path: `${at}.from`, message: `no node is called "${edge.from}"` });
    if (!nodes.has(edge.to)) problems.push({ path: `${at}.to`, message: `no node is called "${edge.to}"` });
    if (edge.condition) expression(`${at}.condition`, edge.condition);
  });
  const settings = definition.settings ?? {};
  if (settings.idempotencyKey) expression('settings.idempotencyKey', settings.idempotencyKey);
  if (settings.concurrency?.key) expression('settings.concurrency.key', settings.concurrency.key);
  if (settings.errorFlow === definition.name) problems.push({ path: 'settings.errorFlow', message: 'a flow cannot be its own error flow' });
  if (problems.length === 0) {
    const cycle = findCycle(definition);
    if (cycle) problems.push({ path: 'edges', message: `the edges form a cycle: ${cycle.join(' → ')}` });
  }
  return problems;
}

/**
 * Config fields of built-in components whose resolved value is stored where a secret would
 * be kept in clear: a subflow's input becomes the child execution's input, a published
 * event's payload, key and topic are kept in the bus log (and become the input of the
 * executions it triggers), a wait's match value is the key its step waits on. Other fields are resolved for the run only, and what a step
 * gives back has every secret it used redacted.
 */
const STORED_CONFIG: Readonly<Record<string, readonly string[]>> = { subflow: ['input'], publish: ['payload', 'key', 'topic'], 'wait-for-event': ['match'] };
const STORED_AS: Readonly<Record<string, string>> = { subflow: "as the child execution's input", publish: 'in the event', 'wait-for-event': 'as the key the step waits on' };

function secretsKept(component: string, config: Record<string, unknown> | undefined, at: string): DefinitionProblem[] {
  const fields = Object.hasOwn(STORED_CONFIG, component) ? STORED_CONFIG[component]! : [];
  return fields.flatMap((field) =>
    secretReferencesIn(config?.[field], `${at}.${field}`).map((path) => ({
      path,
      message: `may not reference a secret: its value would be stored in clear (${STORED_AS[component]!}); let the flow that needs it reference the secret itself`,
    })),
  );
}

function findCycle(definition: FlowDefinition): string[] | undefined {
  const graph = FlowGraph.of(definition);
  const state = new Map<string, 'open' | 'done'>();
  const trail: string[] = [];
  const visit = (id: string): string[] | undefined => {
    if (state.get(id) === 'done') return undefined;
    if (state.get(id) === 'open') return [...trail.slice(trail.indexOf(id)), id];
    state.set(id, 'open');
    trail.push(id);
    for (const edge of graph.edgesFrom(id)) {
      const found = visit(edge.to);
      if (found) return found;
    }
    trail.pop();
    state.set(id, 'done');
    return undefined;
  };
  for (const node of definition.nodes) {
    const found = visit(node.id);
    if (found) return found;
  }
  return undefined;
}

/** A definition as a graph: its nodes, the edges leaving each, and where executions begin. */
export class FlowGraph {
  private readonly nodes = new Map<string, FlowNode>();
  private readonly outgoing = new Map<string, FlowEdge[]>();
  /** Nodes without an incoming edge: each execution's first steps. */
  readonly entries: readonly string[];

  private constructor(readonly definition: FlowDefinition) {
    const targets = new Set<string>();
    for (const node of definition.nodes) {
      this.nodes.set(node.id, node);
      this.outgoing.set(node.id, []);
    }
    for (const edge of definition.edges ?? []) {
      this.outgoing.get(edge.from)?.push(edge);
      targets.add(edge.to);
    }
    this.entries = definition.nodes.filter((n) => !targets.has(n.id)).map((n) => n.id);
  }

  static of(definition: FlowDefinition): FlowGraph {
    return new FlowGraph(definition);
  }

  node(id: string): FlowNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`The flow has no node "${id}"`);
    return node;
  }

  edgesFrom(id: string): readonly FlowEdge[] {
    return this.outgoing.get(id) ?? [];
  }
}
