/**
 * Starts a real Flowgate server on a real port for a test, through the same composition
 * root as `npm start`, and gives the test what it needs to talk to it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createFlowgate, type Flowgate } from '../../src/create-flowgate.js';
import { defaultConfig, type DeepPartial, type FlowgateConfig } from '../../src/config/index.js';
import { MemoryAuditRecorder } from '../../src/kernel/index.js';
import { createScryptHasher } from '../../src/iam/index.js';
import type { Clock } from '../../src/kernel/index.js';

export const ADMIN_CLIENT_ID = 'test-platform-admin';
export const ADMIN_CLIENT_SECRET = 'test-platform-admin-secret-0123456789';
export const PG_URL = process.env.FLOWGATE_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** scrypt at a low cost: the same code path, a fraction of the CPU. */
export const testHasher = createScryptHasher({ log2N: 10, r: 8, p: 1 });

export interface TestServer {
  readonly flowgate: Flowgate;
  readonly url: string;
  /** Every JSON log line written so far, raw. */
  readonly logs: string[];
  readonly audit: MemoryAuditRecorder;
  /** What the server showed the operator (generated credentials). */
  readonly announced: string[];
  close(): Promise<void>;
}

export interface TestServerOptions {
  readonly store?: 'sqlite' | 'postgres';
  readonly config?: DeepPartial<FlowgateConfig>;
  readonly clock?: Clock;
  /** Leave out the bootstrap credentials, to see what a fresh server does without them. */
  readonly noBootstrap?: boolean;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'flowgate-test-'));
  const schema = options.store === 'postgres' ? `t_${randomBytes(6).toString('hex')}` : undefined;
  const overrides = options.config ?? {};
  const config = defaultConfig({
    ...overrides,
    server: { port: 0, host: '127.0.0.1', ...overrides.server },
    dataDir,
    log: { level: 'info', ...overrides.log },
    database: options.store === 'postgres' ? { url: PG_URL, schema, ...overrides.database } : { ...overrides.database },
    // Instances on PostgreSQL must be given their master key; the embedded default makes one.
    secrets: options.store === 'postgres' ? { masterKey: randomBytes(32).toString('base64'), ...overrides.secrets } : { ...overrides.secrets },
    iam: {
      ...overrides.iam,
      bootstrap: options.noBootstrap ? {} : { clientId: ADMIN_CLIENT_ID, clientSecret: ADMIN_CLIENT_SECRET },
    },
  });
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
      cb();
    },
  });
  const audit = new MemoryAuditRecorder();
  const announced: string[] = [];
  const flowgate = await createFlowgate(config, {
    hasher: testHasher,
    logDestination: destination,
    audit,
    announce: (text) => announced.push(text),
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const url = await flowgate.listen();
  return {
    flowgate,
    url,
    logs,
    audit,
    announced,
    async close() {
      await flowgate.close();
      // Dropped once the server is closed: dropped under a running engine, the drop could lose
      // a deadlock to the engine's own transactions and leave the schema behind.
      if (schema) await dropSchema(schema);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Drops a test schema over a connection of its own. */
async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`drop schema if exists ${client.escapeIdentifier(schema)} cascade`);
  } finally {
    await client.end();
  }
}
