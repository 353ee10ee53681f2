import { ConfigError, loadConfig } from './config/index.js';
import { createFlowgate } from './create-flowgate.js';

/**
 * Runs the server as a process: reads the configuration from the environment (a bad
 * value stops here, naming the key), listens, and shuts down cleanly on SIGTERM/SIGINT.
 * Returns the exit code when it fails to start.
 */
export async function runServer(env: NodeJS.ProcessEnv, cwd: string): Promise<void> {
  let config;
  try {
    config = loadConfig({ env, cwd });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`flowgate: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let flowgate;
  try {
    flowgate = await createFlowgate(config);
    await flowgate.listen();
  } catch (err) {
    process.stderr.write(`flowgate: could not start: ${(err as Error).message}\n`);
    if ((err as Error).cause) process.stderr.write(`  cause: ${String((err as Error).cause)}\n`);
    await flowgate?.close().catch(() => undefined);
    process.exit(1);
  }
  const stop = (signal: string) => {
    flowgate.logger.info({ signal }, 'signal received');
    flowgate
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        process.stderr.write(`flowgate: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
