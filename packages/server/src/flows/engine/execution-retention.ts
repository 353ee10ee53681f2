import type { Kysely } from 'kysely';
import type { Clock } from '../../kernel/index.js';
import type { Logger } from '../../observability/index.js';
import type { Store } from '../../storage/index.js';
import type { FlowsTables } from '../flows.tables.js';

const DAY_MS = 86_400_000;
const BATCH = 500;

export interface ExecutionRetentionSettings {
  /** Finished executions older than this many days are deleted; 0 keeps them for ever. */
  readonly days: number;
  readonly intervalMs: number;
}

/**
 * Deletes finished executions (and their steps) once they are older than the retention,
 * in small batches so the engine's own writes are never held up long, then gives the
 * space back to the file system (SQLite's incremental vacuum). Unfinished executions are
 * kept whatever their age.
 */
export class ExecutionRetention {
  private readonly db: Kysely<FlowsTables>;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly settings: ExecutionRetentionSettings,
  ) {
    this.db = store.db<FlowsTables>();
  }

  begin(): void {
    if (this.settings.days === 0) return;
    this.timer = setInterval(() => void this.sweep().catch((error: unknown) => this.logger.warn({ err: error }, 'execution retention failed')), this.settings.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sweeping?.catch(() => undefined);
  }

  /** Deletes what is past the retention now; answers how many executions went. */
  sweep(): Promise<number> {
    this.sweeping ??= this.deleteExpired().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async deleteExpired(): Promise<number> {
    if (this.settings.days === 0) return 0;
    const before = this.clock.now() - this.settings.days * DAY_MS;
    let deleted = 0;
    for (;;) {
      const batch = await this.db.transaction().execute(async (trx) => {
        const rows = await trx.selectFrom('flow_executions').select('id').where('finished_at', '<', before).orderBy('finished_at').limit(BATCH).execute();
        if (rows.length === 0) return { seen: 0, gone: 0 };
        // Checked again: a re-run committed since the select makes an execution unfinished.
        const gone = await trx
          .deleteFrom('flow_executions')
          .where('id', 'in', rows.map((r) => r.id))
          .where('finished_at', '<', before)
          .returning('id')
          .execute();
        if (gone.length > 0) await trx.deleteFrom('flow_steps').where('execution_id', 'in', gone.map((g) => g.id)).execute();
        return { seen: rows.length, gone: gone.length };
      });
      deleted += batch.gone;
      if (batch.seen < BATCH) break;
    }
    if (deleted > 0) {
      await this.store.reclaimSpace();
      this.logger.info({ deleted, days: this.settings.days }, 'flow executions past their retention deleted');
    }
    return deleted;
  }
}
