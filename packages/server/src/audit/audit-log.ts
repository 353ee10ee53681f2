import { createHash } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { isoTime, type AuditEvent, type Clock } from '../kernel/index.js';
import { isUniqueViolation, type Store } from '../storage/index.js';
import type { AuditTables } from './audit.migrations.js';
import { canonicalJson } from './canonical-json.js';

type Db = Kysely<AuditTables>;

/** Where records that belong to no tenant (platform administration) are chained. */
export const PLATFORM_SCOPE = '_platform';
/** The previous hash of a chain's first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** An audit event as it travels on the bus: the event, its id and when it happened. */
export interface AuditEnvelope extends AuditEvent {
  readonly id: string;
  readonly time: string;
}

/** A stored record: the event, its place in its chain. What the API shows. */
export interface AuditRecord extends AuditEnvelope {
  readonly seq: number;
}

/** What a checkpoint signs. */
export interface CheckpointClaims {
  readonly tenant: string;
  readonly seq: number;
  readonly head: string;
  readonly time: string;
}

/** Signs checkpoints and checks their signatures (the IAM's signing keys). */
export interface CheckpointSigner {
  sign(claims: CheckpointClaims): Promise<string>;
  /** The claims, or undefined when the signature does not verify. */
  verify(signature: string): Promise<CheckpointClaims | undefined>;
}

export interface AuditLogOptions {
  /** A checkpoint after this many records… */
  readonly checkpointEvery: number;
  /** …or this long after the last one, when records came since. */
  readonly checkpointMs: number;
}

export interface AuditQuery {
  readonly from?: number | undefined;
  readonly to?: number | undefined;
  readonly action?: string | undefined;
  readonly actor?: string | undefined;
  readonly outcome?: string | undefined;
  readonly traceId?: string | undefined;
  /** Records before this seq (the previous page's cursor), newest first… */
  readonly before?: number | undefined;
  /** …or, oldest first, records after this seq (an export). */
  readonly after?: number | undefined;
  readonly limit: number;
}

/** The hash a record holds: SHA-256 over the previous hash and the canonical record. */
export function recordHash(prevHash: string, body: string): string {
  return createHash('sha256').update(prevHash).update('\n').update(body).digest('hex');
}

/**
 * The tamper-evident audit log: per tenant, records form a hash chain, and every
 * `checkpointEvery` records or `checkpointMs` a checkpoint signs the head. Appends are
 * idempotent by event id (the bus delivers at least once; each event is stored once).
 */
export class AuditLog {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly signer: CheckpointSigner,
    private readonly options: AuditLogOptions,
  ) {}

  private get db(): Db {
    return this.store.db<AuditTables>();
  }

  /** Chains the event into its tenant's log; false when it was stored already. */
  async append(event: AuditEnvelope): Promise<boolean> {
    const scope = event.tenant ?? PLATFORM_SCOPE;
    // Durable before the bus hears the ack: on NATS the ack is not in this store's log,
    // so a relaxed commit lost to a crash of the database would lose the record for good.
    const appended = await this.db.transaction().execute(async (trx) => {
      // Appends to one chain take turns (an advisory lock on PostgreSQL).
      await this.store.lockTransaction(trx as unknown as Kysely<unknown>, `audit:${scope}`);
      const seen = await trx.selectFrom('audit_records').select('seq').where('event_id', '=', event.id).executeTakeFirst();
      if (seen) return false;
      const head = await trx.selectFrom('audit_heads').selectAll().where('tenant_id', '=', scope).executeTakeFirst();
      const seq = (head ? Number(head.seq) : 0) + 1;
      const prevHash = head?.hash ?? GENESIS_HASH;
      const record: AuditRecord = { ...event, seq };
      const body = canonicalJson(record);
      const hash = recordHash(prevHash, body);
      await trx
        .insertInto('audit_records')
        .values({
          tenant_id: scope,
          seq,
          event_id: event.id,
          occurred_at: Date.parse(event.time),
          action: event.action,
          outcome: event.outcome,
          actor: event.actor,
          trace_id: event.traceId ?? null,
          body,
          prev_hash: prevHash,
          hash,
        })
        .execute();
      if (head) await trx.updateTable('audit_heads').set({ seq, hash }).where('tenant_id', '=', scope).execute();
      else await trx.insertInto('audit_heads').values({ tenant_id: scope, seq, hash, checkpoint_seq: 0, checkpoint_at: this.clock.now() }).execute();
      return { seq, hash, due: seq - Number(head?.checkpoint_seq ?? 0) >= this.options.checkpointEvery };
    });
    if (appended === false) return false;
    if (appended.due) await this.checkpoint(scope, appended.seq, appended.hash);
    return true;
  }

  /** Signs the head of every chain that has records since its last checkpoint and is due by time. */
  async checkpointStale(): Promise<number> {
    const due = await this.db
      .selectFrom('audit_heads')
      .selectAll()
      .whereRef('seq', '>', 'checkpoint_seq')
      .where('checkpoint_at', '<=', this.clock.now() - this.options.checkpointMs)
      .execute();
    for (const head of due) await this.checkpoint(head.tenant_id, Number(head.seq), head.hash);
    return due.length;
  }

  /**
   * Signs record `seq`'s hash as a checkpoint. Signing happens outside any transaction
   * (the key store reads the database too); two instances signing the same record keep
   * the first.
   */
  private async checkpoint(scope: string, seq: number, hash: string): Promise<void> {
    const now = this.clock.now();
    const signature = await this.signer.sign({ tenant: scope, seq, head: hash, time: isoTime(now) });
    try {
      await this.db.transaction().execute(async (trx) => {
        await trx.insertInto('audit_checkpoints').values({ tenant_id: scope, seq, head_hash: hash, created_at: now, signature }).execute();
        await trx.updateTable('audit_heads').set({ checkpoint_seq: seq, checkpoint_at: now }).where('tenant_id', '=', scope).where('checkpoint_seq', '<', seq).execute();
      });
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
  }

  /** A page of a scope's records, newest first (oldest first with `after`), filtered. */
  async query(scope: string, query: AuditQuery): Promise<{ items: AuditRecord[]; next: number | undefined }> {
    let select = this.db.selectFrom('audit_records').select(['seq', 'body']).where('tenant_id', '=', scope);
    if (query.from !== undefined) select = select.where('occurred_at', '>=', query.from);
    if (query.to !== undefined) select = select.where('occurred_at', '<', query.to);
    if (query.action !== undefined) {
      // `iam.*` is a prefix; compared as text, so `_` and `%` in names mean themselves.
      const prefix = query.action.endsWith('*') ? query.action.slice(0, -1) : undefined;
      select = prefix !== undefined ? select.where(sql<boolean>`substr(action, 1, ${prefix.length}) = ${prefix}`) : select.where('action', '=', query.action);
    }
    if (query.actor !== undefined) select = select.where('actor', '=', query.actor);
    if (query.outcome !== undefined) select = select.where('outcome', '=', query.outcome);
    if (query.traceId !== undefined) select = select.where('trace_id', '=', query.traceId);
    if (query.before !== undefined) select = select.where('seq', '<', query.before);
    if (query.after !== undefined) select = select.where('seq', '>', query.after);
    const rows = await select
      .orderBy('seq', query.after !== undefined ? 'asc' : 'desc')
      .limit(query.limit + 1)
      .execute();
    const items = rows.slice(0, query.limit).map((r) => JSON.parse(r.body) as AuditRecord);
    return { items, next: rows.length > query.limit ? items[items.length - 1]!.seq : undefined };
  }

  /**
   * Deletes each chain's records older than `maxAgeMs`, up to its newest signed checkpoint
   * among them: the checkpoint stays, and the records after it still verify from its
   * signed head. Returns how many records went.
   */
  async applyRetention(maxAgeMs: number): Promise<number> {
    const cutoff = this.clock.now() - maxAgeMs;
    let deleted = 0;
    for (const scope of await this.scopes()) {
      // The first record to keep: the oldest one young enough.
      const young = await this.db.selectFrom('audit_records').select((eb) => eb.fn.min('seq').as('seq')).where('tenant_id', '=', scope).where('occurred_at', '>=', cutoff).executeTakeFirst();
      const head = await this.db.selectFrom('audit_heads').select('seq').where('tenant_id', '=', scope).executeTakeFirst();
      const keepFrom = young?.seq !== null && young?.seq !== undefined ? Number(young.seq) : Number(head?.seq ?? 0) + 1;
      const checkpoint = await this.db
        .selectFrom('audit_checkpoints')
        .select((eb) => eb.fn.max('seq').as('seq'))
        .where('tenant_id', '=', scope)
        .where('seq', '<', keepFrom)
        // Verification accepts a cut only at a checkpoint old enough to have been retention's
        // to make: one written late (the chain lagging behind) waits for its own time.
        .where('created_at', '<=', cutoff)
        .executeTakeFirst();
      if (checkpoint?.seq === null || checkpoint?.seq === undefined) continue;
      const result = await this.db.deleteFrom('audit_records').where('tenant_id', '=', scope).where('seq', '<=', Number(checkpoint.seq)).executeTakeFirst();
      deleted += Number(result.numDeletedRows);
    }
    if (deleted > 0) await this.store.reclaimSpace();
    return deleted;
  }

  /** Every scope that has records. */
  async scopes(): Promise<string[]> {
    return (await this.db.selectFrom('audit_heads').select('tenant_id').orderBy('tenant_id').execute()).map((r) => r.tenant_id);
  }
}
