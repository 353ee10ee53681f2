import { setBounded } from '../../kernel/index.js';
import { FlowGraph } from '../definition.js';
import type { FlowRecord, FlowRepository } from '../flow.repository.js';
import type { ExecutionRow } from './execution-model.js';

/** Compiled graphs kept; past this many the oldest compiled goes first. */
const GRAPHS_KEPT = 1000;

/**
 * Compiled flow graphs by flow version, for the steps of their executions. A stored
 * version never changes, so a graph compiled once serves every execution of it.
 */
export class FlowGraphs {
  private readonly graphs = new Map<string, FlowGraph>();

  constructor(private readonly flows: Pick<FlowRepository, 'version'>) {}

  /** The graph of a flow version, compiled on first use. */
  of(flowId: string, version: number, definition: FlowRecord['definition']): FlowGraph {
    const key = versionKey(flowId, version);
    let graph = this.graphs.get(key);
    if (!graph) {
      graph = FlowGraph.of(definition);
      setBounded(this.graphs, key, graph, GRAPHS_KEPT);
    }
    return graph;
  }

  /** The graph an execution runs, when it is compiled already. */
  cached(execution: ExecutionRow): FlowGraph | undefined {
    return this.graphs.get(versionKey(execution.flow_id, Number(execution.flow_version)));
  }

  /** The graph an execution runs: its flow version's, read from the store when not compiled yet. */
  async forExecution(execution: ExecutionRow): Promise<FlowGraph> {
    const version = Number(execution.flow_version);
    return this.cached(execution) ?? this.of(execution.flow_id, version, await this.flows.version(execution.flow_id, version));
  }
}

function versionKey(flowId: string, version: number): string {
  return `${flowId}@${version}`;
}
