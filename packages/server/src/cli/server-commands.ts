/**
 * `flowgate start`, `flowgate migrate` and `flowgate secrets rotate-master`: the server
 * side. The server's modules are loaded only when one of these runs, so the client
 * commands start fast.
 */
import { CliError, type CliIo } from './io.js';
import { printJson } from './output.js';

export async function start(io: CliIo): Promise<void> {
  const { runServer } = await import('../run-server.js');
  await runServer(io.env, io.cwd);
}

/** The server's configuration and its opened store, as the server would have them. */
async function openServerStore(io: CliIo) {
  const { loadConfig, ConfigError } = await import('../config/index.js');
  let config;
  try {
    config = loadConfig({ env: io.env, cwd: io.cwd });
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, 2);
    throw err;
  }
  const { openStore, redactUrl } = await import('../storage/index.js');
  const where = config.database.url ? redactUrl(config.database.url) : `SQLite in ${config.dataDir}`;
  try {
    const store = await openStore({ url: config.database.url, schema: config.database.schema, dataDir: config.dataDir, poolSize: config.database.poolSize });
    return { config, store, where };
  } catch (err) {
    throw new CliError(`cannot open the database (${where}): ${describe(err)}`);
  }
}

export async function migrate(io: CliIo, options: { json?: boolean }): Promise<void> {
  const { store, where } = await openServerStore(io);
  const { ALL_MIGRATIONS } = await import('../migrations.js');
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

/**
 * `flowgate secrets rotate-master`: puts a new master key at the head of the key file and
 * re-wraps every data key with it. Servers keep running: they read the key file again when
 * they meet the new key's id. With FLOWGATE_MASTER_KEY, re-wraps to its first key.
 */
export async function rotateMaster(io: CliIo, options: { json?: boolean; rewrapOnly?: boolean }): Promise<void> {
  const { config, store, where } = await openServerStore(io);
  const [{ ALL_MIGRATIONS }, { MasterKeyRing, DataKeys }, { systemClock }] = await Promise.all([import('../migrations.js'), import('../secrets/index.js'), import('../kernel/index.js')]);
  try {
    await store.migrate(ALL_MIGRATIONS);
    const ring = MasterKeyRing.load({ masterKey: config.secrets.masterKey, masterKeyFile: config.secrets.masterKeyFile, dataDir: config.dataDir }, undefined, {
      mayCreate: !store.capabilities.sharedAcrossProcesses,
    });
    const keys = new DataKeys(store, ring, systemClock);
    // Refuse before touching anything if these keys cannot open what is stored.
    await keys.checkMasterKeys();
    const fromFile = config.secrets.masterKey === undefined;
    const previous = ring.current.id;
    const current = fromFile && !options.rewrapOnly ? ring.addNewKey().id : previous;
    const { rewrapped, total } = await keys.rewrapAll();
    if (options.json) {
      printJson(io.stdout, { database: where, masterKeyId: current, previousMasterKeyId: previous, rewrapped, dataKeys: total });
      return;
    }
    io.stdout.write(current === previous ? `master key ${current} is current\n` : `new master key ${current} is current; ${previous} was\n`);
    io.stdout.write(`re-wrapped ${rewrapped} of ${total} data key${total === 1 ? '' : 's'} (${where})\n`);
    io.stdout.write(
      fromFile
        ? 'Keep the older keys in the key file until every running server has restarted, then run `flowgate secrets rotate-master --rewrap-only` once more; after that they may go.\n'
        : 'Every data key is now under the first key of FLOWGATE_MASTER_KEY; the others may be removed from it.\n',
    );
  } catch (err) {
    throw new CliError(`${describe(err)} (${where})`);
  } finally {
    await store.close();
  }
}

function describe(err: unknown): string {
  const error = err as Error;
  return error.cause ? `${error.message}: ${String((error.cause as Error).message ?? error.cause)}` : error.message;
}
