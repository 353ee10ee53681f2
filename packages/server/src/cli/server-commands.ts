/**
 * `flowgate start` and `flowgate migrate`: the server side. The server's modules are
 * loaded only when one of these runs, so the client commands start fast.
 */
import { CliError, type CliIo } from './io.js';
import { printJson } from './output.js';

export async function start(io: CliIo): Promise<void> {
  const { runServer } = await import('../run-server.js');
  await runServer(io.env, io.cwd);
}

export async function migrate(io: CliIo, options: { json?: boolean }): Promise<void> {
  const { loadConfig, ConfigError } = await import('../config/index.js');
  let config;
  try {
    config = loadConfig({ env: io.env, cwd: io.cwd });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
  const [{ openStore, redactUrl }, { ALL_MIGRATIONS }] = await Promise.all([import('../storage/index.js'), import('../migrations.js')]);
  const where = config.database.url ? redactUrl(config.database.url) : `SQLite in ${config.dataDir}`;
  let store;
  try {
    store = await openStore({ url: config.database.url, schema: config.database.schema, dataDir: config.dataDir, poolSize: config.database.poolSize });
  } catch (err) {
    throw new CliError(`cannot open the database (${where}): ${describe(err)}`);
  }
  let applied: string[];
  try {
    applied = await store.migrate(ALL_MIGRATIONS);
  } catch (err) {
    throw new CliError(`${describe(err)} (${where})`);
  } finally {
    await store.close();
  }
  if (options.json) {
    printJson(io.stdout, { database: where, applied });
  } else if (applied.length === 0) {
    io.stdout.write(`database is up to date (${where})\n`);
  } else {
    for (const name of applied) io.stdout.write(`applied ${name}\n`);
    io.stdout.write(`${applied.length} migration${applied.length === 1 ? '' : 's'} applied (${where})\n`);
  }
}

function describe(err: unknown): string {
  const error = err as Error;
  return error.cause ? `${error.message}: ${String((error.cause as Error).message ?? error.cause)}` : error.message;
}
