import type { GatewayChange, GatewayConfig, GatewayConfigState, GatewayRoute, GatewayService } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import type { Clock } from '../kernel/index.js';
import { isUniqueViolation, type Store } from '../storage/index.js';
import type { GatewayTables } from './gateway.tables.js';

/** A problem found in a configuration, with its place in the document. */
export interface ConfigProblem {
  readonly path: string;
  readonly message: string;
}

/** Checks a whole configuration's meaning; the empty list when it may be served. */
export type ConfigValidator = (config: GatewayConfig) => readonly ConfigProblem[];

export interface ApplyOutcome {
  readonly revision: number;
  readonly changes: readonly GatewayChange[];
}

/**
 * The gateway's configuration in the store. Every write goes through {@link apply}: the
 * whole resulting configuration is validated first (so a single-route change cannot
 * leave a route pointing at nothing), then the differences are written and the revision
 * bumped in one transaction. A configuration that fails validation changes nothing.
 */
export class GatewayConfigStore {
  private readonly db: Kysely<GatewayTables>;

  constructor(
    store: Store,
    private readonly clock: Clock,
    private readonly validate: ConfigValidator,
  ) {
    this.db = store.db<GatewayTables>();
  }

  /** The revision now stored: cheap, polled by every instance. */
  async revision(): Promise<number> {
    const row = await this.db.selectFrom('gateway_state').select('revision').where('id', '=', 1).executeTakeFirstOrThrow();
    return Number(row.revision);
  }

  async load(): Promise<GatewayConfigState> {
    return this.read(this.db);
  }

  /**
   * Makes the stored configuration equal `next` (creates, updates, deletes), or with
   * `dryRun` only reports what that would change. Throws FLOWGATE_ERR_GATEWAY_* when
   * `next` is not valid.
   */
  async apply(next: GatewayConfig, options: { dryRun?: boolean } = {}): Promise<ApplyOutcome> {
    this.check(next);
    return this.change(() => next, options.dryRun ?? false);
  }

  /** Creates or replaces one service or route, keeping everything else. */
  async put(kind: GatewayChange['kind'], item: GatewayService | GatewayRoute): Promise<ApplyOutcome> {
    const list = LISTS[kind];
    return this.change((config) => ({ ...config, [list]: replaceByName<{ name: string }>(config[list], item) }));
  }

  /**
   * Deletes one service or route (a service is refused while a route uses it); no changes
   * when there was none.
   */
  async remove(kind: GatewayChange['kind'], name: string): Promise<ApplyOutcome> {
    const list = LISTS[kind];
    return this.change((config) => ({ ...config, [list]: (config[list] as ReadonlyArray<{ name: string }>).filter((item) => item.name !== name) }));
  }

  /**
   * Reads the stored configuration, derives the next one and writes the difference, in
   * one transaction; the next configuration is validated whole before anything is written.
   */
  private async change(derive: (current: GatewayConfig) => GatewayConfig, dryRun = false): Promise<ApplyOutcome> {
    try {
      return await this.changeOnce(derive, dryRun);
    } catch (err) {
      // Two writers at once on PostgreSQL: the loser's insert meets the winner's row.
      if (isUniqueViolation(err)) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', 'The gateway configuration changed while this change was applied; apply it again.', { cause: err });
      throw err;
    }
  }

  private async changeOnce(derive: (current: GatewayConfig) => GatewayConfig, dryRun: boolean): Promise<ApplyOutcome> {
    return this.db.transaction().execute(async (trx) => {
      const current = await this.read(trx);
      const next = derive({ services: current.services, routes: current.routes });
      this.check(next);
      const changes = diff(current, next);
      if (dryRun || changes.length === 0) return { revision: current.revision, changes };
      const now = this.clock.now();
      const services = new Map(next.services.map((s) => [s.name, s]));
      const routes = new Map(next.routes.map((r) => [r.name, r]));
      for (const change of changes) {
        const table = change.kind === 'service' ? 'gateway_services' : 'gateway_routes';
        if (change.op === 'delete') {
          await trx.deleteFrom(table).where('name', '=', change.name).execute();
          continue;
        }
        const spec = JSON.stringify(change.kind === 'service' ? services.get(change.name) : routes.get(change.name));
        if (change.op === 'create') await trx.insertInto(table).values({ name: change.name, spec, updated_at: now }).execute();
        else await trx.updateTable(table).set({ spec, updated_at: now }).where('name', '=', change.name).execute();
      }
      // The revision only grows: the compare-and-set guards against a concurrent writer on
      // PostgreSQL (read committed), whose transaction then fails and is retried by the caller.
      const revision = current.revision + 1;
      const bumped = await trx.updateTable('gateway_state').set({ revision, updated_at: now }).where('id', '=', 1).where('revision', '=', current.revision).executeTakeFirst();
      if (Number(bumped.numUpdatedRows) !== 1) {
        throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', 'The gateway configuration changed while this change was applied; apply it again.');
      }
      return { revision, changes };
    });
  }

  private check(config: GatewayConfig): void {
    const problems = this.validate(config);
    if (problems.length === 0) return;
    const reserved = problems.find((p) => p.message.includes('reserved'));
    const first = reserved ?? problems[0]!;
    throw new FlowgateError(reserved ? 'FLOWGATE_ERR_GATEWAY_RESERVED_PATH' : 'FLOWGATE_ERR_GATEWAY_CONFIG_INVALID', `${first.path}: ${first.message}`, {
      extensions: { errors: problems },
    });
  }

  private async read(db: Kysely<GatewayTables>): Promise<GatewayConfigState> {
    // One after the other, revision first: outside a transaction each read may see a later
    // commit, and a configuration newer than its label is only reloaded once more, while
    // one older than its label would be served until the next change.
    const state = await db.selectFrom('gateway_state').select('revision').where('id', '=', 1).executeTakeFirstOrThrow();
    const services = await db.selectFrom('gateway_services').select('spec').orderBy('name').execute();
    const routes = await db.selectFrom('gateway_routes').select('spec').orderBy('name').execute();
    return {
      revision: Number(state.revision),
      services: services.map((row) => JSON.parse(row.spec) as GatewayService),
      routes: routes.map((row) => JSON.parse(row.spec) as GatewayRoute),
    };
  }
}

/** Where each kind of item lives in a configuration. */
const LISTS = { service: 'services', route: 'routes' } as const;

function replaceByName<T extends { name: string }>(items: readonly T[], item: T): T[] {
  const index = items.findIndex((i) => i.name === item.name);
  if (index === -1) return [...items, item];
  return items.map((i, n) => (n === index ? item : i));
}

/** What turns `current` into `next`: services first on create, routes first on delete. */
export function diff(current: GatewayConfig, next: GatewayConfig): GatewayChange[] {
  const changes: GatewayChange[] = [];
  const compare = (kind: GatewayChange['kind'], before: readonly { name: string }[], after: readonly { name: string }[]) => {
    const old = new Map(before.map((item) => [item.name, stableJson(item)]));
    const now = new Map(after.map((item) => [item.name, stableJson(item)]));
    for (const [name, spec] of now) {
      const was = old.get(name);
      if (was === undefined) changes.push({ kind, name, op: 'create' });
      else if (was !== spec) changes.push({ kind, name, op: 'update' });
    }
    for (const name of old.keys()) if (!now.has(name)) changes.push({ kind, name, op: 'delete' });
  };
  compare('service', current.services, next.services);
  compare('route', current.routes, next.routes);
  return changes;
}

/** JSON with object keys sorted, so that key order never counts as a change. */
function stableJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}
