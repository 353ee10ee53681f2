import type { Kysely, Transaction } from 'kysely';
import type { EventBus } from '../../bus/index.js';
import type { FlowsTables } from '../flows.tables.js';
import type { ExecutionRow } from './execution-model.js';

type Trx = Transaction<FlowsTables>;

/**
 * The execution events (`execution.started|succeeded|failed`) on the tenant's bus, each in
 * its execution's trace and in the transaction that changes the execution.
 */
export class ExecutionEvents {
  constructor(private readonly bus: EventBus) {}

  /** Publishes an execution event, in `trx`. */
  async publish(trx: Trx, row: ExecutionRow, topic: string, extra: Record<string, unknown>): Promise<void> {
    const payload = eventPayload(row, extra);
    await this.bus.publish(row.tenant, { topic, payload, key: row.id }, { tx: trx as unknown as Kysely<unknown>, system: true, serviceName: 'flow-engine', traceparent: row.traceparent });
  }

  /** Publishes one event per execution, in one write per tenant. */
  async publishAll(trx: Trx, rows: readonly ExecutionRow[], topic: string, extra: (row: ExecutionRow) => Record<string, unknown>): Promise<void> {
    const byTenant = new Map<string, ExecutionRow[]>();
    for (const row of rows) {
      const list = byTenant.get(row.tenant);
      if (list) list.push(row);
      else byTenant.set(row.tenant, [row]);
    }
    for (const [tenant, ofTenant] of byTenant) {
      const items = ofTenant.map((row) => ({ topic, payload: eventPayload(row, extra(row)), key: row.id, traceparent: row.traceparent }));
      await this.bus.publishBatch(tenant, items, { tx: trx as unknown as Kysely<unknown>, system: true, serviceName: 'flow-engine' });
    }
  }
}

function eventPayload(row: ExecutionRow, extra: Record<string, unknown>): Record<string, unknown> {
  return { execution_id: row.id, flow_id: row.flow_id, flow_version: Number(row.flow_version), trigger: row.trigger, status: row.status, ...extra };
}
