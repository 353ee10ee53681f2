/** The gateway's tables: its configuration, kept as documents, and a revision counter. */
export interface GatewayTables {
  gateway_services: { name: string; spec: string; updated_at: number };
  gateway_routes: { name: string; spec: string; updated_at: number };
  /** One row (id 1): bumped by every change, so each instance sees when to reload. */
  gateway_state: { id: number; revision: number; updated_at: number };
}
