import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the checkpointer copies committed WAL frames into the database file. */
const CHECKPOINT_INTERVAL_MS = 100;
/**
 * The main connection's own checkpoint threshold, in pages, kept as a backstop should the
 * checkpointer fall behind: far above what it lets the WAL reach.
 */
export const BACKSTOP_AUTOCHECKPOINT_PAGES = 16_384;

// Runs in the worker, as CommonJS; better-sqlite3 comes by the path the server resolved.
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
let reportedAt = 0;
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (error) {
    // A lasting failure is told once a minute, not at every try.
    if (Date.now() - reportedAt >= 60000) { reportedAt = Date.now(); parentPort.postMessage({ error: String(error) }); }
  }
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints a SQLite database in WAL mode from a worker thread with its own connection.
 *
 * SQLite otherwise checkpoints inside the commit that crosses the threshold, on the
 * thread that commits: with better-sqlite3 that is the event loop, which then stalls for
 * the time it takes to copy and fsync megabytes (profiled: the largest part of the bus's
 * p99 latency). A PASSIVE checkpoint on another connection never blocks the writer.
 */
export class SqliteCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;

  constructor(file: string, onError: (message: string) => void) {
    const require = createRequire(import.meta.url);
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, module: require.resolve('better-sqlite3'), intervalMs: CHECKPOINT_INTERVAL_MS } });
    this.worker.on('message', (m: { error?: string }) => {
      if (m.error) onError(m.error);
    });
    this.worker.on('error', (error) => onError(String(error)));
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    // Never the reason the process stays up.
    this.worker.unref();
  }

  /** Stops the worker after its current checkpoint; the main connection's close does the last. */
  async close(): Promise<void> {
    this.worker.postMessage('close');
    const timeout = setTimeout(() => void this.worker.terminate(), 2000);
    await this.exited;
    clearTimeout(timeout);
  }
}
