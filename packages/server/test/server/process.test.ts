/**
 * The server as an operator runs it: `node dist/main.js` with FLOWGATE_* variables.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import { DataKeys, MasterKeyRing, SecretStore } from '../../src/secrets/index.js';
import { openStore } from '../../src/storage/index.js';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const dirs: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  // A test that failed before stopping its server must not leave it running.
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('FLOWGATE_')) env[k] = v;
  return { ...env, ...extra };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function newDataDir(): string {
  const dataDir = mkdtempSync(join(tmpdir(), 'flowgate-proc-'));
  dirs.push(dataDir);
  return dataDir;
}

function run(env: Record<string, string>, dataDir = newDataDir()) {
  const child = spawn(process.execPath, [MAIN], { cwd: dataDir, env: cleanEnv({ FLOWGATE_DATA_DIR: dataDir, ...env }) });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => ({ stdout, stderr }) };
}

async function waitReady(url: string): Promise<void> {
  // Generous: a busy machine starts slowly, and this waits for readiness, it does not time it.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(`${url}/health/ready`)).status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('server never became ready');
}

describe('the server process', () => {
  it('refuses to start on a bad setting, naming the variable', async () => {
    const proc = run({ FLOWGATE_PORT: 'eighty' });
    expect(await proc.exited).toBe(2);
    expect(proc.output().stderr).toContain('FLOWGATE_PORT: must be an integer');
  });

  it('refuses an unknown FLOWGATE_ variable, so typos do not go unnoticed', async () => {
    const proc = run({ FLOWGATE_PROT: '9000' });
    expect(await proc.exited).toBe(2);
    expect(proc.output().stderr).toContain('FLOWGATE_PROT: unknown setting');
  });

  it('starts, serves, prints generated admin credentials once, and stops cleanly on SIGTERM', { timeout: 90_000 }, async () => {
    const port = await freePort();
    const proc = run({ FLOWGATE_PORT: String(port), FLOWGATE_LOG_LEVEL: 'info' });
    await waitReady(`http://127.0.0.1:${port}`);
    const { stdout } = proc.output();
    expect(stdout).toContain('FLOWGATE_CLIENT_SECRET=fgs_');
    const secret = /FLOWGATE_CLIENT_SECRET=(\S+)/.exec(stdout)![1]!;
    // The secret is on the terminal once, in the announcement, and in no log line.
    expect(stdout.split('\n').filter((l) => l.includes(secret))).toHaveLength(1);
    expect(stdout.split('\n').filter((l) => l.startsWith('{') && l.includes(secret))).toHaveLength(0);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.output().stdout).toContain('"msg":"flowgate stopped"');
  });

  it('creates a master key file on first start and says so; a wrong master key later stops the start', { timeout: 90_000 }, async () => {
    const dataDir = newDataDir();
    const port = await freePort();
    const first = run({ FLOWGATE_PORT: String(port) }, dataDir);
    await waitReady(`http://127.0.0.1:${port}`);
    expect(first.output().stdout).toContain('generated a new master key file');
    expect(statSync(join(dataDir, 'master.key')).mode & 0o777).toBe(0o600);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);

    // A secret sealed under that key, then a start with another key.
    const store = await openStore({ dataDir });
    await store.migrate(ALL_MIGRATIONS);
    const ring = MasterKeyRing.load({ dataDir });
    await new SecretStore(store, new DataKeys(store, ring, systemClock), systemClock).create('acme', { name: 'token', kind: 'generic', value: 'v' });
    await store.close();
    const wrongKey = randomBytes(32).toString('base64');
    const second = run({ FLOWGATE_PORT: String(port), FLOWGATE_MASTER_KEY: wrongKey }, dataDir);
    expect(await second.exited).toBe(1);
    const { stderr, stdout } = second.output();
    expect(stderr).toContain('The master key does not match this database');
    expect(stderr).toContain(ring.current.id);
    expect(stderr + stdout).not.toContain(wrongKey);
  });

  it('fails to start with a clear message when PostgreSQL cannot be reached', async () => {
    const port = await freePort();
    const proc = run({ FLOWGATE_DATABASE_URL: `postgres://nobody:secretpw@127.0.0.1:${port}/none` });
    expect(await proc.exited).toBe(1);
    const { stderr } = proc.output();
    expect(stderr).toContain('Cannot connect to PostgreSQL');
    expect(stderr).not.toContain('secretpw');
  });
});
