import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openTestStore, type TestStore } from '../support/stores.js';

interface Tables {
  notes: { id: number; text: string };
}

describe('SQLite store: cached statements and the raw connection', () => {
  let opened: TestStore;

  beforeEach(async () => {
    opened = await openTestStore('sqlite', { migrate: false });
    await sql`create table notes (id integer primary key, text text not null)`.execute(opened.store.db());
  });
  afterEach(() => opened.cleanup());

  it('runs the same query many times with different values and gets each answer right', async () => {
    const db = opened.store.db<Tables>();
    for (let i = 1; i <= 50; i++) await db.insertInto('notes').values({ id: i, text: `note ${i}` }).execute();
    const answers = await Promise.all([7, 21, 42].map((id) => db.selectFrom('notes').select('text').where('id', '=', id).executeTakeFirstOrThrow()));
    expect(answers.map((a) => a.text)).toEqual(['note 7', 'note 21', 'note 42']);
  });

  it('runs a statement again while an earlier run of it is still being iterated', async () => {
    await opened.store.db<Tables>().insertInto('notes').values([{ id: 1, text: 'a' }, { id: 2, text: 'b' }]).execute();
    const pairs = await opened.store.native!.exclusive((c) => {
      const text = 'select text from notes order by id';
      const out: string[] = [];
      for (const row of c.prepare(text).iterate() as Iterable<{ text: string }>) {
        const again = c.prepare(text).all() as { text: string }[];
        out.push(`${row.text}:${again.map((r) => r.text).join('')}`);
      }
      return out;
    });
    expect(pairs).toEqual(['a:ab', 'b:ab']);
  });

  it('commits what an exclusive native transaction writes, and nothing of one that throws', async () => {
    const native = opened.store.native!;
    await native.exclusive((c) => c.transaction(() => c.prepare('insert into notes (id, text) values (?, ?)').run(1, 'kept')));
    await expect(
      native.exclusive((c) =>
        c.transaction(() => {
          c.prepare('insert into notes (id, text) values (?, ?)').run(2, 'lost');
          throw new Error('changed my mind');
        }),
      ),
    ).rejects.toThrow('changed my mind');
    const rows = await opened.store.db<Tables>().selectFrom('notes').select('text').execute();
    expect(rows.map((r) => r.text)).toEqual(['kept']);
  });

  it('writes through the raw connection inside a Kysely transaction, and rolls back with it', async () => {
    const db = opened.store.db<Tables>();
    await expect(
      db.transaction().execute(async (trx) => {
        opened.store.native!.within(trx).prepare('insert into notes (id, text) values (?, ?)').run(1, 'inside');
        expect(await trx.selectFrom('notes').select('text').execute()).toEqual([{ text: 'inside' }]);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await db.selectFrom('notes').select('text').execute()).toEqual([]);
  });

  it('refuses the raw connection outside a transaction', () => {
    expect(() => opened.store.native!.within(opened.store.db())).toThrow(/needs a transaction/);
  });

  it('keeps queries that wait for the connection out while an exclusive block runs', async () => {
    const db = opened.store.db<Tables>();
    const order: string[] = [];
    const exclusive = opened.store.native!.exclusive((c) => {
      c.prepare('insert into notes (id, text) values (?, ?)').run(1, 'first');
      order.push('exclusive');
    });
    const query = db.selectFrom('notes').select('text').execute().then((rows) => order.push(`query saw ${rows.length}`));
    await Promise.all([exclusive, query]);
    expect(order).toEqual(['exclusive', 'query saw 1']);
  });

});

describe('PostgreSQL store', () => {
  it('has no raw SQLite connection', async () => {
    const opened = await openTestStore('postgres', { migrate: false });
    try {
      expect(opened.store.native).toBeUndefined();
    } finally {
      await opened.cleanup();
    }
  });
});
