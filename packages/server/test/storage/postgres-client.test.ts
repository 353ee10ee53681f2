/**
 * On PostgreSQL the store's client keeps statements prepared per connection, by SQL text,
 * and sends a transaction's BEGIN in one write with its first statement (postgres-client.ts).
 * What a user of the store must not notice: a prepared text answers each call with that
 * call's values, more texts than a connection keeps still run, a statement that failed runs
 * again afterwards, and transactions stay all or nothing, whichever statement fails.
 */
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestStore, type TestStore } from '../support/stores.js';

describe('the PostgreSQL store client', () => {
  let opened: TestStore;

  beforeEach(async () => {
    opened = await openTestStore('postgres', { migrate: false });
    await sql`create table prepared_probe (id integer primary key, label text not null)`.execute(opened.store.db());
  });
  afterEach(async () => {
    await opened.cleanup();
  });
  const insert = (id: number) => sql`insert into prepared_probe (id, label) values (${id}, ${'x'})`;

  it('answers the same text with each call\'s own values', async () => {
    const db = opened.store.db();
    for (let i = 0; i < 20; i += 1) await sql`insert into prepared_probe (id, label) values (${i}, ${`row ${i}`})`.execute(db);
    const labels = await Promise.all([3, 17, 8].map(async (id) => (await sql<{ label: string }>`select label from prepared_probe where id = ${id}`.execute(db)).rows[0]?.label));
    expect(labels).toEqual(['row 3', 'row 17', 'row 8']);
  });

  it('runs more distinct texts than a connection keeps prepared', async () => {
    const db = opened.store.db();
    await sql`insert into prepared_probe (id, label) values (${1}, ${'one'})`.execute(db);
    // 400 texts (over the 300 a connection keeps), each with a parameter: all answer right.
    const answers: number[] = [];
    for (let i = 0; i < 400; i += 1) answers.push((await sql<{ n: number }>`select cast(${i} as integer) + ${sql.lit(i)} as n from prepared_probe where id = ${1}`.execute(db)).rows[0]!.n);
    expect(answers).toEqual(Array.from({ length: 400 }, (_, i) => 2 * i));
  });

  it('runs a statement again after it failed in a transaction that rolled back', async () => {
    const db = opened.store.db();
    await insert(1).execute(db);
    await expect(
      db.transaction().execute(async (trx) => {
        await insert(2).execute(trx);
        await insert(1).execute(trx); // a duplicate key: the transaction rolls back
      }),
    ).rejects.toThrow(/duplicate key/);
    await insert(2).execute(db);
    await insert(3).execute(db);
    const ids = (await sql<{ id: number }>`select id from prepared_probe where id > ${0} order by id`.execute(db)).rows.map((r) => r.id);
    expect(ids).toEqual([1, 2, 3]);
  });

  it('keeps a transaction all or nothing when its first statement fails, and after', async () => {
    const db = opened.store.db();
    await insert(1).execute(db);
    // The first statement (sent with BEGIN) fails: nothing of the transaction is kept.
    await expect(
      db.transaction().execute(async (trx) => {
        await insert(1).execute(trx);
      }),
    ).rejects.toThrow(/duplicate key/);
    // Twenty transactions at once over the pool, every third failing at its second statement.
    const outcomes = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) =>
        db.transaction().execute(async (trx) => {
          await insert(100 + i).execute(trx);
          await insert(i % 3 === 0 ? 1 : 200 + i).execute(trx);
        }),
      ),
    );
    expect(outcomes.filter((o) => o.status === 'rejected')).toHaveLength(7);
    // A transaction without statements commits too.
    await db.transaction().execute(() => Promise.resolve());
    const ids = (await sql<{ id: number }>`select id from prepared_probe where id > ${0} order by id`.execute(db)).rows.map((r) => r.id);
    const kept = Array.from({ length: 20 }, (_, i) => i).filter((i) => i % 3 !== 0);
    expect(ids).toEqual([1, ...kept.map((i) => 100 + i), ...kept.map((i) => 200 + i)]);
  });
});
