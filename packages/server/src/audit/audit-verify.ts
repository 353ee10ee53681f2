import type { Kysely } from 'kysely';
import type { Store } from '../storage/index.js';
import type { AuditTables } from './audit.migrations.js';
import { GENESIS_HASH, recordHash, type AuditRecord, type CheckpointSigner } from './audit-log.js';

type Db = Kysely<AuditTables>;

/** Records read per query while walking a chain. */
const PAGE = 2000;

/** What was found wrong first, and where. */
export interface ChainProblem {
  /** `changed`: the record is not what was chained; `removed`: records are missing from
   *  here; `inserted`: a record that was never chained; `checkpoint`: the chain up to a
   *  signed checkpoint was rewritten (or the signature is bad). */
  readonly kind: 'changed' | 'removed' | 'inserted' | 'checkpoint';
  readonly seq: number;
  readonly eventId?: string;
  readonly detail: string;
}

export interface VerifyReport {
  readonly scope: string;
  readonly ok: boolean;
  /** Records checked. */
  readonly records: number;
  /** Signed checkpoints checked along the way. */
  readonly checkpoints: number;
  /** The newest checkpoint the chain was confirmed to. */
  readonly verifiedTo: { readonly seq: number; readonly time: string } | null;
  readonly problem?: ChainProblem;
}

/**
 * Walks one scope's chain from its oldest kept record and reports the first record that
 * was changed, removed or inserted, or a checkpoint the chain no longer matches. Records
 * after the newest checkpoint are protected by the chain alone.
 */
export interface VerifyOptions {
  /**
   * The retention in force: records missing before a signed checkpoint count as removed
   * by retention only when it is on and the checkpoint is older than it.
   */
  readonly retentionMs?: number | undefined;
  readonly now: number;
}

export async function verifyChain(store: Store, signer: CheckpointSigner, scope: string, options: VerifyOptions): Promise<VerifyReport> {
  const db = store.db<AuditTables>();
  const checkpoints = new Map((await db.selectFrom('audit_checkpoints').selectAll().where('tenant_id', '=', scope).execute()).map((c) => [Number(c.seq), c]));
  const readHead = async () => db.selectFrom('audit_heads').selectAll().where('tenant_id', '=', scope).executeTakeFirst();
  let head = await readHead();
  let records = 0;
  let verified = 0;
  let verifiedTo: VerifyReport['verifiedTo'] = null;
  const report = (problem?: ChainProblem): VerifyReport => ({ scope, ok: problem === undefined, records, checkpoints: verified, verifiedTo, ...(problem ? { problem } : {}) });

  /** Whether `checkpoint` is validly signed for `seq`; counts it when so. */
  const signed = async (checkpoint: AuditTables['audit_checkpoints'], seq: number, hash: string): Promise<boolean> => {
    const claims = await signer.verify(checkpoint.signature);
    if (!claims || claims.tenant !== scope || claims.seq !== seq || claims.head !== checkpoint.head_hash || checkpoint.head_hash !== hash) return false;
    verified++;
    verifiedTo = { seq, time: claims.time };
    return true;
  };
  /** Whether retention could have removed the records up to this checkpoint. */
  const retained = (checkpoint: AuditTables['audit_checkpoints']) => options.retentionMs !== undefined && options.retentionMs > 0 && Number(checkpoint.created_at) <= options.now - options.retentionMs;

  let expectedSeq: number | undefined;
  let prevHash = GENESIS_HASH;
  let after = 0;
  for (;;) {
    const rows = await page(db, scope, after);
    for (const row of rows) {
      const seq = Number(row.seq);
      if (expectedSeq === undefined) {
        // The oldest kept record: the chain starts at 1, or after a signed checkpoint that
        // retention kept when it removed what came before.
        const start = seq === 1 ? undefined : checkpoints.get(seq - 1);
        if (seq !== 1 && (!start || !retained(start))) return report({ kind: 'removed', seq: 1, detail: `records 1 to ${seq - 1} are missing, and retention did not remove them` });
        if (start && !(await signed(start, seq - 1, start.head_hash))) {
          return report({ kind: 'checkpoint', seq: seq - 1, detail: `the checkpoint the kept records start from (record ${seq - 1}) is not validly signed` });
        }
        prevHash = start?.head_hash ?? GENESIS_HASH;
        expectedSeq = seq;
      }
      if (seq > expectedSeq) return report({ kind: 'removed', seq: expectedSeq, detail: `record ${expectedSeq} is missing (the next kept is ${seq})` });
      // Appended while this walk went on: read the head again before calling it inserted.
      if (seq > Number(head?.seq ?? 0)) head = await readHead();
      if (seq > Number(head?.seq ?? 0)) return report({ kind: 'inserted', seq, eventId: row.event_id, detail: `record ${seq} lies beyond the chain's head (${head?.seq ?? 0})` });
      if (row.prev_hash !== prevHash) {
        return report({
          kind: 'inserted',
          seq,
          eventId: row.event_id,
          detail: `record ${seq} does not follow record ${seq - 1}: it was put in, or record ${seq - 1} was changed and its hash computed anew`,
        });
      }
      if (recordHash(row.prev_hash, row.body) !== row.hash || !matchesColumns(row, scope)) {
        return report({ kind: 'changed', seq, eventId: row.event_id, detail: `record ${seq} is not what was written` });
      }
      const checkpoint = checkpoints.get(seq);
      if (checkpoint && !(await signed(checkpoint, seq, row.hash))) {
        return report({ kind: 'checkpoint', seq, detail: `the chain up to record ${seq} does not match its signed checkpoint: records before it were rewritten` });
      }
      prevHash = row.hash;
      expectedSeq = seq + 1;
      records++;
      after = seq;
    }
    if (rows.length < PAGE) break;
  }
  const headSeq = Number(head?.seq ?? 0);
  if (expectedSeq === undefined && headSeq > 0) {
    // No record left: only retention may have taken them all, leaving the head's checkpoint.
    const last = checkpoints.get(headSeq);
    if (!last || !retained(last) || last.head_hash !== head?.hash || !(await signed(last, headSeq, last.head_hash))) {
      return report({ kind: 'removed', seq: 1, detail: `records 1 to ${headSeq} are missing` });
    }
  }
  if (expectedSeq !== undefined && expectedSeq <= headSeq) return report({ kind: 'removed', seq: expectedSeq, detail: `records ${expectedSeq} to ${headSeq} are missing` });
  return report();
}

function page(db: Db, scope: string, after: number) {
  return db.selectFrom('audit_records').selectAll().where('tenant_id', '=', scope).where('seq', '>', after).orderBy('seq').limit(PAGE).execute();
}

/** The queryable columns must say what the hashed body says. */
function matchesColumns(row: AuditTables['audit_records'], scope: string): boolean {
  let record: AuditRecord;
  try {
    record = JSON.parse(row.body) as AuditRecord;
  } catch {
    return false;
  }
  return (
    record.seq === Number(row.seq) &&
    (record.tenant ?? '_platform') === scope &&
    record.id === row.event_id &&
    record.action === row.action &&
    record.outcome === row.outcome &&
    record.actor === row.actor &&
    (record.traceId ?? null) === row.trace_id &&
    Date.parse(record.time) === Number(row.occurred_at)
  );
}
