import { sql, type Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { openStore } from '../../src/storage/index.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

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

  it('gives the pages of deleted rows back to the file system on reclaimSpace', async () => {
    const db = opened.store.db<Tables>();
    for (let i = 1; i <= 500; i++) await db.insertInto('notes').values({ id: i, text: 'x'.repeat(8000) }).execute();
    const pages = async () => Number((await sql<{ page_count: number }>`pragma page_count`.execute(db)).rows[0]!.page_count);
    const full = await pages();
    await db.deleteFrom('notes').execute();
    expect(await pages()).toBe(full);
    await opened.store.reclaimSpace();
    expect(await pages()).toBeLessThan(full / 100);
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
        opened.store.native!.within(trx as unknown as Kysely<unknown>).prepare('insert into notes (id, text) values (?, ?)').run(1, 'inside');
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

describe.each(STORE_KINDS)('relaxed transactions on %s', (kind) => {
  it('commits what they write and rolls back what throws', async () => {
    const opened = await openTestStore(kind, { migrate: false });
    try {
      const db = opened.store.db<Tables>();
      await sql`create table notes (id integer primary key, text text not null)`.execute(db);
      await opened.store.relaxedTransaction((trx) => sql`insert into notes (id, text) values (1, 'kept')`.execute(trx));
      await expect(
        opened.store.relaxedTransaction(async (trx) => {
          await sql`insert into notes (id, text) values (2, 'lost')`.execute(trx);
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      expect(await db.selectFrom('notes').select('text').execute()).toEqual([{ text: 'kept' }]);
    } finally {
      await opened.cleanup();
    }
  });
});

describe('SQLite background checkpoints', () => {
  it('moves committed writes into the database file without a checkpoint on the main connection', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'flowgate-ckpt-'));
    const store = await openStore({ dataDir });
    try {
      const db = store.db<Tables>();
      await sql`create table notes (id integer primary key, text text not null)`.execute(db);
      for (let i = 1; i <= 20; i++) await db.insertInto('notes').values({ id: i, text: 'x'.repeat(1000) }).execute();
      // The database file alone, without its WAL, holds what the worker copied into it.
      const copy = join(dataDir, 'copy.db');
      let rows = 0;
      for (let attempt = 0; attempt < 100 && rows < 20; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        await copyFile(join(dataDir, 'flowgate.db'), copy);
        rows = countNotes(copy);
      }
      expect(rows).toBe(20);
    } finally {
      await store.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

/** Rows of `notes` in a database file; 0 while the table has not reached it. */
function countNotes(file: string): number {
  const opened = new SQLite(file, { readonly: true });
  try {
    const table = opened.prepare("select 1 from sqlite_master where name = 'notes'").get();
    return table ? (opened.prepare('select count(*) as n from notes').get() as { n: number }).n : 0;
  } finally {
    opened.close();
  }
}

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
