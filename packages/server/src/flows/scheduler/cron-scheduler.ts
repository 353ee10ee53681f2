import type { Kysely, Transaction } from 'kysely';
import { Counter, Histogram, type Registry } from 'prom-client';
import { isoTime, newId, setBounded, type Clock } from '../../kernel/index.js';
import type { Logger } from '../../observability/index.js';
import type { Store } from '../../storage/index.js';
import { nextFiring } from '../cron.js';
import type { FlowEngine } from '../engine/flow-engine.js';
import { toRecord, type FlowRecord } from '../flow.repository.js';
import type { FlowsTables } from '../flows.tables.js';
import type { LifecyclePart } from '../lifecycle.js';
import { advance, cronTriggers, dueRows, idempotencyKey, rowKey, wasMissed, type Due } from './schedule-rows.js';

/** What the scheduler needs of the engine: starting an execution in its transaction, and waking the engine after commit. */
export interface CronEngine {
  readonly start: FlowEngine['start'];
  readonly wake?: () => void;
}

export interface CronSchedulerOptions {
  /** Longest sleep between looks at the store (250 ms by default); `activate` wakes the loop sooner. */
  readonly pollMs?: number;
  /** Where `flowgate_flow_cron_delay_seconds` and `flowgate_flow_cron_missed_total` go; no metrics without one. */
  readonly registry?: Registry;
}

/** The Open Integration Hub scheduler's message: what a cron-triggered execution receives as input. */
export interface CronMessage {
  readonly id: string;
  readonly attachments: Record<string, never>;
  readonly body: Record<string, never>;
  readonly headers: Record<string, never>;
  readonly metadata: { readonly scheduled_at: string; readonly fired_at: string };
}

type Trx = Transaction<FlowsTables>;

/** The shortest sleep of the loop, so a burst of due rows cannot spin it. */
const MIN_SLEEP_MS = 5;
/** Due rows read per look; more wait for the next look, which comes at once. */
const LOOK_LIMIT = 500;
/** Due rows fired per transaction (one commit for all of them). */
const CHUNK = 32;
/** A row whose firing failed on its own is left alone this long by this process (less than the missed-tick tolerance, so a retried tick is still on time). */
const FAILURE_BACKOFF_MS = 1_000;
/** Rows kept out of claims after failing; past this, the oldest is forgotten. */
const MAX_BACKED_OFF = 100;

/**
 * The scheduler (issue 5): fires the cron triggers of active flows.
 *
 * Every cron trigger of a started flow has a row in `flow_schedules` with its next due
 * time. A due row is fired in a transaction that (1) advances `next_due_at` with a
 * compare-and-set on the old value and (2) inserts the execution through
 * {@link FlowEngine.start} with that same transaction. Both commit or neither does, so a
 * tick is never lost (a failed firing leaves the row due) and fires at most once: of
 * several processes (or schedulers) claiming the same row, only the one whose update
 * changes the row fires; on PostgreSQL the others skip rows locked by it (`for update
 * skip locked`) or, failing that, wait for its commit and find `next_due_at` moved. On
 * SQLite, transactions of a store run one at a time.
 *
 * After downtime, a row due more than a tolerance ago (1 s + the poll interval) was
 * missed: `skip` moves it to the next future time without firing; `run-once` fires once
 * for the first missed time, then moves it on likewise. While this process works through
 * a backlog (more due rows than one look takes), the tolerance grows by the time spent on
 * it: ticks that fall due meanwhile are late, not missed. So are ticks that fell due while
 * this process ran but was held up (a long pause of its event loop, a slow store), up to
 * a minute late ({@link wasMissed}): Flowgate was not down, and each fires, late.
 */
export class CronScheduler implements LifecyclePart {
  readonly name = 'scheduler';
  private readonly db: Kysely<FlowsTables>;
  private readonly pollMs: number;
  /** A row due longer ago than this was missed (downtime), not just late. */
  private readonly toleranceMs: number;
  /**
   * When the current run of full looks (a backlog: more due rows than one look takes)
   * began. Rows that fell due while this process was working through it are late, not
   * missed, so the tolerance grows by the time spent on it.
   */
  private drainingSince: number | undefined;
  /** When this scheduler began: a tick due since then fell due while it ran. */
  private readonly startedAt: number;
  private readonly delay: Histogram | undefined;
  private readonly missedTotal: Counter<'policy'> | undefined;
  /** `flowId:triggerIndex` → until when this process leaves the row alone after it failed. */
  private readonly backedOff = new Map<string, number>();
  /** Next firings computed during the current look. */
  private readonly nextCache = new Map<string, number | null>();
  private loop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private closed = false;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly engine: CronEngine,
    options: CronSchedulerOptions = {},
  ) {
    this.db = store.db<FlowsTables>();
    this.pollMs = Math.max(MIN_SLEEP_MS, options.pollMs ?? 250);
    this.toleranceMs = 1000 + this.pollMs;
    this.startedAt = clock.now();
    if (options.registry) {
      this.delay = new Histogram({
        name: 'flowgate_flow_cron_delay_seconds',
        help: 'Time from a cron tick being due to its execution being started (ticks missed during downtime excluded)',
        buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [options.registry],
      });
      this.missedTotal = new Counter({
        name: 'flowgate_flow_cron_missed_total',
        help: 'Cron ticks found missed after downtime, by the policy applied (skip, run-once)',
        labelNames: ['policy'],
        registers: [options.registry],
      });
    }
  }

  // --- Lifecycle -------------------------------------------------------------------------

  /** Records the flow's cron triggers, not yet firing (active = 0); replaces rows of an earlier start. */
  async prepare(flow: FlowRecord, trx: Trx): Promise<void> {
    const triggers = cronTriggers(flow);
    await trx.deleteFrom('flow_schedules').where('flow_id', '=', flow.id).execute();
    if (triggers.length === 0) return;
    const now = this.clock.now();
    await trx
      .insertInto('flow_schedules')
      .values(
        triggers.map(({ index, trigger }) => {
          const timezone = trigger.timezone ?? 'UTC';
          return {
            flow_id: flow.id,
            trigger_index: index,
            tenant: flow.tenant,
            generation: flow.generation,
            expression: trigger.expression,
            timezone,
            missed: trigger.missed ?? 'skip',
            active: 0,
            next_due_at: nextFiring(trigger.expression, timezone, now),
            created_at: now,
          };
        }),
      )
      .execute();
  }

  /**
   * Starts firing the flow's rows of this start attempt. Their due time is counted from
   * now: ticks that passed while the other parts were getting ready are not missed ticks.
   * Only rows still inactive change, so a repeated `flow.started` changes nothing.
   */
  async activate(flow: FlowRecord): Promise<void> {
    const rows = await this.db.selectFrom('flow_schedules').selectAll().where('flow_id', '=', flow.id).where('generation', '=', flow.generation).where('active', '=', 0).execute();
    if (rows.length === 0) return;
    const now = this.clock.now();
    for (const row of rows) {
      await this.db
        .updateTable('flow_schedules')
        .set({ active: 1, next_due_at: nextFiring(row.expression, row.timezone, now) })
        .where('flow_id', '=', row.flow_id)
        .where('trigger_index', '=', row.trigger_index)
        .where('generation', '=', flow.generation)
        .where('active', '=', 0)
        .execute();
    }
    this.wake();
  }

  /** Forgets the flow: its rows go, so nothing of it fires any more. */
  async release(flow: FlowRecord, trx: Trx): Promise<void> {
    await trx.deleteFrom('flow_schedules').where('flow_id', '=', flow.id).execute();
  }

  // --- The loop ---------------------------------------------------------------------------

  /** Starts the loop: it sleeps until the earliest due time (at most `pollMs`) and fires what is due. */
  start(): void {
    if (this.loop || this.closed) return;
    this.loop = this.run();
  }

  /** Stops the loop after the look in progress. */
  async close(): Promise<void> {
    this.closed = true;
    this.wake();
    await this.loop;
  }

  /** Makes the loop look at the store now. */
  wake(): void {
    this.woken = true;
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      let sleep = this.pollMs;
      try {
        sleep = await this.cycle();
      } catch (error) {
        this.logger.warn({ err: error }, 'cron scheduler could not look for due ticks');
      }
      if (this.closed) break;
      await this.sleep(sleep);
    }
  }

  /** One look; answers how long to sleep before the next. */
  private async cycle(): Promise<number> {
    const { claimed, now } = await this.look();
    if (claimed >= LOOK_LIMIT) return 0;
    const next = await this.db
      .selectFrom('flow_schedules')
      .select((eb) => eb.fn.min('next_due_at').as('next'))
      .where('active', '=', 1)
      .where('next_due_at', '>', now)
      .executeTakeFirst();
    const nextDue = next?.next === null || next?.next === undefined ? undefined : Number(next.next);
    if (nextDue === undefined) return this.pollMs;
    return Math.min(this.pollMs, Math.max(MIN_SLEEP_MS, nextDue - this.clock.now()));
  }

  private sleep(ms: number): Promise<void> {
    if (this.woken || ms <= 0) {
      this.woken = false;
      return ms <= 0 ? new Promise((resolve) => setImmediate(resolve)) : Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(this.timer);
        this.timer = undefined;
        this.wakeUp = undefined;
        this.woken = false;
        resolve();
      };
      this.timer = setTimeout(done, ms);
      this.wakeUp = done;
    });
  }

  /**
   * Fires every row due now (up to 500 per call) and answers how many were claimed. The
   * loop calls it; tests call it directly.
   */
  async tick(): Promise<number> {
    return (await this.look()).claimed;
  }

  private async look(): Promise<{ claimed: number; now: number }> {
    const now = this.clock.now();
    this.forgetBackoffs(now);
    this.nextCache.clear();
    const tolerance = this.toleranceMs + (this.drainingSince === undefined ? 0 : now - this.drainingSince);
    let claimed = 0;
    while (claimed < LOOK_LIMIT && !this.closed) {
      let chunk: Due[];
      try {
        chunk = await this.claimChunk(now, tolerance, Math.min(CHUNK, LOOK_LIMIT - claimed));
      } catch (error) {
        if (claimed === 0) throw error;
        this.logger.warn({ err: error }, 'cron scheduler could not fire due ticks');
        break;
      }
      claimed += chunk.length;
      if (chunk.length < CHUNK) break;
    }
    this.drainingSince = claimed >= LOOK_LIMIT ? (this.drainingSince ?? now) : undefined;
    return { claimed, now };
  }

  /**
   * Claims and fires up to `limit` due rows in one transaction. When that fails, each of
   * them is tried alone, so one row that cannot fire does not hold back the others.
   */
  private async claimChunk(now: number, tolerance: number, limit: number): Promise<Due[]> {
    let candidates: Due[] = [];
    let fired = 0;
    try {
      await this.db.transaction().execute(async (trx) => {
        candidates = await dueRows(trx, this.store.dialect, now, limit, this.backedOff.keys());
        fired = await this.fireAll(trx, candidates, now, tolerance);
      });
    } catch (error) {
      if (candidates.length === 0) throw error;
      this.logger.warn({ err: error, rows: candidates.length }, 'cron scheduler batch failed; firing its ticks one by one');
      for (const due of candidates) await this.fireAlone(due, now, tolerance);
      return candidates;
    }
    if (fired > 0) this.engine.wake?.();
    return candidates;
  }

  private async fireAlone(due: Due, now: number, tolerance: number): Promise<void> {
    try {
      const fired = await this.db.transaction().execute((trx) => this.fireAll(trx, [due], now, tolerance));
      if (fired > 0) this.engine.wake?.();
    } catch (error) {
      const key = rowKey(due);
      setBounded(this.backedOff, key, now + FAILURE_BACKOFF_MS, MAX_BACKED_OFF);
      this.logger.warn({ err: error, flow: due.flowId, trigger: due.triggerIndex, due_at: isoTime(due.dueAt) }, 'cron tick could not be fired; it stays due');
    }
  }

  /**
   * Advances `rows` and fires those due, in `trx`; answers how many executions were
   * started. One statement advances every row with a compare-and-set on its old due
   * time, and only the rows it changed fire: a row another process advanced meanwhile
   * is left to that process.
   */
  private async fireAll(trx: Trx, rows: readonly Due[], now: number, tolerance: number): Promise<number> {
    if (rows.length === 0) return 0;
    const plans = rows.map((due) => {
      const missed = wasMissed(due, now, tolerance, this.startedAt);
      // On time: the firing after this one. Missed: the first one still ahead.
      return { due, missed, next: this.nextFiring(due.expression, due.timezone, missed ? now : due.dueAt) };
    });
    const advanced = await advance(trx, plans);
    const missedRows = new Set(plans.filter((plan) => plan.missed).map((plan) => rowKey(plan.due)));
    const toFire: Due[] = [];
    let skipped = 0;
    let ranOnce = 0;
    for (const plan of plans) {
      if (!advanced.has(rowKey(plan.due))) continue;
      if (plan.missed) {
        this.missedTotal?.inc({ policy: plan.due.missed });
        if (plan.due.missed === 'skip') {
          skipped += 1;
          continue;
        }
        ranOnce += 1;
      }
      toFire.push(plan.due);
    }
    if (skipped + ranOnce > 0) this.logger.info({ skipped, ran_once: ranOnce }, 'cron ticks missed while Flowgate was down');
    if (toFire.length === 0) return 0;

    const ids = [...new Set(toFire.map((d) => d.flowId))];
    const flows = new Map((await trx.selectFrom('flows').selectAll().where('id', 'in', ids).execute()).map((row) => [row.id, row]));
    // Ticks started already (a clock set back between processes, a flow restarted within
    // the same instant) are not started again. Checked first: on PostgreSQL a unique
    // violation inside the transaction would abort all of it.
    const keys = toFire.map(idempotencyKey);
    const used = new Set(
      (
        await trx
          .selectFrom('flow_executions')
          .select(['flow_id', 'idempotency_key'])
          .where('tenant', 'in', [...new Set(toFire.map((d) => flows.get(d.flowId)?.tenant ?? ''))])
          .where('flow_id', 'in', ids)
          .where('idempotency_key', 'in', [...new Set(keys)])
          .execute()
      ).map((r) => `${r.flow_id} ${r.idempotency_key}`),
    );
    let fired = 0;
    for (const due of toFire) {
      const row = flows.get(due.flowId);
      if (!row) continue;
      const flow = toRecord(row);
      if (flow.status !== 'active' || flow.generation !== due.generation) continue;
      const key = idempotencyKey(due);
      if (used.has(`${flow.id} ${key}`)) continue;
      const firedAt = this.clock.now();
      const message: CronMessage = {
        id: newId(),
        attachments: {},
        body: {},
        headers: {},
        metadata: { scheduled_at: isoTime(due.dueAt), fired_at: isoTime(firedAt) },
      };
      const { created } = await this.engine.start(flow, { input: message, trigger: 'cron', idempotencyKey: key }, trx);
      if (!created) continue;
      fired += 1;
      if (!missedRows.has(rowKey(due))) this.delay?.observe(Math.max(0, firedAt - due.dueAt) / 1000);
    }
    return fired;
  }

  /** {@link nextFiring}, remembered for the current look: many rows share an expression and a due time. */
  private nextFiring(expression: string, timezone: string, after: number): number | null {
    const key = `${after} ${timezone} ${expression}`;
    let next = this.nextCache.get(key);
    if (next === undefined) {
      next = nextFiring(expression, timezone, after);
      if (this.nextCache.size >= 10_000) this.nextCache.clear();
      this.nextCache.set(key, next);
    }
    return next;
  }

  private forgetBackoffs(now: number): void {
    for (const [key, until] of this.backedOff) if (until <= now) this.backedOff.delete(key);
  }
}

