import pg from 'pg';

/** Distinct SQL texts one PostgreSQL connection keeps prepared; past that, texts run unnamed. */
const PREPARED_PER_CONNECTION = 300;

type QueryResult = pg.QueryResult<Record<string, unknown>>;
type SendQuery = (...args: unknown[]) => Promise<QueryResult>;

/**
 * The pg client of the store's pools. Kysely awaits every statement, each a write to the
 * socket and a round trip; on this kind of machine a socket write is the largest single
 * cost of the flows engine's process (a quarter of its CPU time in the flows bench), so
 * this client spends fewer of them:
 *
 * - **Prepared statements.** It names each parameterised SQL text once per connection, so
 *   PostgreSQL parses and plans it once instead of at every call (pg_stat_statements over
 *   the flows bench: 4.5 s of planning next to 10 s of execution before, 0.97 s after).
 * - **BEGIN rides with the first statement.** A transaction's `begin` is answered at once
 *   and sent in the same write as the statement that follows it; the connection runs in
 *   pg's pipeline mode so the two can be on the wire together. The statement's own result
 *   (and error) is what the caller sees: a BEGIN that fails leaves the connection unusable,
 *   and so fails the statement too.
 */
export class PostgresClient extends pg.Client {
  private readonly names = new Map<string, string>();
  private beginPending = false;

  override query(...args: unknown[]): never {
    const send: SendQuery = super.query.bind(this);
    const [text, values] = args;
    const plain = args.length === 2 && typeof text === 'string' && Array.isArray(values);
    if (!plain) return send(...args) as never;
    if (text === 'begin' && values.length === 0 && !this.beginPending) {
      this.beginPending = true;
      return Promise.resolve({ command: 'BEGIN', rowCount: null, rows: [], fields: [], oid: 0 }) as never;
    }
    const statement = (): Promise<QueryResult> => (values.length > 0 ? send(this.named(text, values)) : send(text, values));
    if (!this.beginPending) return statement() as never;
    this.beginPending = false;
    const stream = (this as unknown as { connection: { stream: { cork(): void; uncork(): void } } }).connection.stream;
    stream.cork();
    try {
      // Its failure reaches the caller through the statement's.
      send('begin').catch(() => undefined);
      return statement() as never;
    } finally {
      stream.uncork();
    }
  }

  private named(text: string, values: unknown[]): { name?: string; text: string; values: unknown[] } {
    let name = this.names.get(text);
    if (name === undefined && this.names.size < PREPARED_PER_CONNECTION) {
      name = `flowgate_${this.names.size}`;
      this.names.set(text, name);
    }
    return name === undefined ? { text, values } : { name, text, values };
  }
}
