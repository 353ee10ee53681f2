/**
 * The `flowgate` CLI as a user runs it: the built `dist/cli/main.js` in its own process,
 * against a real server on a real port, with its own credentials file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/kernel/index.js';
import { ALL_MIGRATIONS } from '../../src/migrations.js';
import { DataKeys, MasterKeyRing, SecretStore, type SecretsTables } from '../../src/secrets/index.js';
import { openStore } from '../../src/storage/index.js';
import { api, clientToken, postForm } from '../support/http.js';
import { createTenant, createUser, submitLoginAt, type TenantOwner } from '../support/iam.js';
import { ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, startTestServer, type TestServer } from '../support/server.js';

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const JWT = /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/;

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface Running {
  readonly child: ChildProcess;
  stderr(): string;
  /** Resolves with the first match of `pattern` in standard error. */
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  readonly exited: Promise<Result>;
}

const children = new Set<ChildProcess>();

/** The environment of a child: this one's, minus every FLOWGATE_* variable, plus `env`. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('FLOWGATE_')) out[key] = value;
  return { ...out, ...env };
}

function startCli(args: string[], env: Record<string, string>, cwd?: string): Running {
  const child = spawn(process.execPath, [MAIN, ...args], { env: childEnv(env), cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<Result>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
  return {
    child,
    stderr: () => stderr,
    exited,
    waitForStderr(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const deadline = Date.now() + timeoutMs;
        const poll = () => {
          const match = pattern.exec(stderr);
          if (match) return resolve(match);
          if (Date.now() > deadline || child.exitCode !== null) return reject(new Error(`no ${String(pattern)} on stderr: ${stderr}`));
          setTimeout(poll, 20);
        };
        poll();
      });
    },
  };
}

function runCli(args: string[], env: Record<string, string>, cwd?: string): Promise<Result> {
  return startCli(args, env, cwd).exited;
}

describe('flowgate CLI', () => {
  let server: TestServer;
  let base: string;
  let acme: TenantOwner;
  let mia: { username: string; password: string };
  let root: string;
  /** Everything a test saw on standard error, checked for secrets at its end. */
  let stderrSeen: string[];
  let secrets: string[];

  const track = (result: Result): Result => {
    stderrSeen.push(result.stderr);
    return result;
  };
  const credentialsFile = (name: string) => join(root, name, 'flowgate', 'credentials.json');
  const readEntry = (file: string) => (JSON.parse(readFileSync(file, 'utf8')) as Record<string, any>)[base];

  beforeAll(async () => {
    server = await startTestServer();
    base = server.url;
    acme = await createTenant(base, 'acme');
    mia = await createUser(base, acme, 'mia', 'member');
    root = mkdtempSync(join(tmpdir(), 'flowgate-cli-'));
    stderrSeen = [];
    secrets = [];
  });
  afterAll(async () => {
    await server.close();
    rmSync(root, { recursive: true, force: true });
  });
  afterEach(() => {
    for (const child of children) child.kill('SIGKILL');
    stderrSeen = [];
  });
  /** No secret and no token ever goes to standard error. */
  const expectNoSecretsOnStderr = () => {
    expect(stderrSeen.length).toBeGreaterThan(0);
    for (const text of stderrSeen) {
      expect(text).not.toMatch(/eyJ[\w-]+\.[\w-]+\./);
      expect(text).not.toMatch(/fg[rs]_/);
      for (const secret of secrets) expect(text).not.toContain(secret);
    }
  };

  it('signs in with client credentials, then manages tenants, accounts and keys', async () => {
    secrets.push(ADMIN_CLIENT_SECRET);
    const file = credentialsFile('admin');
    const env = { FLOWGATE_URL: base, FLOWGATE_CREDENTIALS_FILE: file };

    const login = track(await runCli(['login'], { ...env, FLOWGATE_CLIENT_ID: ADMIN_CLIENT_ID, FLOWGATE_CLIENT_SECRET: ADMIN_CLIENT_SECRET }));
    expect(login).toMatchObject({ code: 0 });
    expect(login.stdout).toMatch(new RegExp(`^Signed in to ${base} as .+ \\(service account, tenant default\\)\\.\\n$`));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(root, 'admin', 'flowgate')).mode & 0o777).toBe(0o700);
    const saved = readEntry(file);
    expect(saved).toMatchObject({ kind: 'client', client_id: ADMIN_CLIENT_ID, client_secret: ADMIN_CLIENT_SECRET });
    expect(saved.access_token).toMatch(JWT);
    expect(saved.expires_at).toBeGreaterThan(Date.now() / 1000 + 60);

    // From here on, only the saved sign-in.
    const created = track(await runCli(['tenants', 'create', 'globex'], env));
    expect(created.code).toBe(0);
    expect(created.stdout).toContain('Created tenant globex');
    const ownerSecret = /client_secret:\s+(\S+)/.exec(created.stdout)![1]!;
    secrets.push(ownerSecret);
    expect(created.stderr).toContain('shown once');

    const [listJson, listTable] = await Promise.all([runCli(['tenants', 'list', '--json'], env), runCli(['tenants', 'list'], env)]);
    track(listJson);
    track(listTable);
    expect(listJson.code).toBe(0);
    const page = JSON.parse(listJson.stdout);
    expect(page.items.map((t: { id: string }) => t.id)).toEqual(expect.arrayContaining(['default', 'acme', 'globex']));
    expect(listTable.stdout).toMatch(/^ID\s+CREATED\n/);
    expect(listTable.stdout).toMatch(/^globex\s+\d{4}-/m);

    const reporter = track(await runCli(['accounts', 'create', 'reporter', '--scope', 'forms:read'], env));
    expect(reporter.code).toBe(0);
    const clientId = /client_id:\s+(\S+)/.exec(reporter.stdout)![1]!;
    const clientSecret = /client_secret:\s+(\S+)/.exec(reporter.stdout)![1]!;
    secrets.push(clientSecret);
    expect(reporter.stderr).toContain('shown once');
    const reporterToken = await clientToken(base, clientId, clientSecret);
    const me = await api(base, 'GET', '/api/v1/me', { token: reporterToken });
    expect(me.status).toBe(200);
    expect(me.body.scopes).toContain('forms:read');

    const writer = track(await runCli(['accounts', 'create', 'writer', '--scope', 'forms:read forms:write', '--scope', 'flows:run', '--json'], env));
    expect(writer.code).toBe(0);
    const writerBody = JSON.parse(writer.stdout);
    secrets.push(writerBody.client_secret);
    expect(writerBody).toMatchObject({ name: 'writer', scopes: ['forms:read', 'forms:write', 'flows:run'] });

    const [accounts, keys, whoami, token] = await Promise.all([
      runCli(['accounts', 'list'], env),
      runCli(['keys', 'rotate'], env),
      runCli(['whoami'], env),
      runCli(['token'], env),
    ]);
    [accounts, keys, whoami, token].forEach(track);
    expect(accounts.code).toBe(0);
    expect(accounts.stdout).toMatch(/^NAME\s+CLIENT ID\s+ROLE\s+CREATED\s+SCOPES\n/);
    expect(accounts.stdout).toMatch(new RegExp(`^reporter\\s+${clientId}\\s+.*forms:read$`, 'm'));
    expect(accounts.stdout).not.toContain(clientSecret);
    expect(keys.code).toBe(0);
    expect(keys.stdout).toMatch(/^Rotated the signing key; new tokens are signed with \S+\.\n/);
    expect(keys.stdout).toMatch(/ES256\s+retired/);
    expect(whoami.code).toBe(0);
    expect(whoami.stdout).toMatch(/^tenant:\s+default$/m);
    expect(whoami.stdout).toMatch(/^type:\s+service account$/m);
    expect(whoami.stdout).toContain('platform:admin');
    expect(token.code).toBe(0);
    expect(token.stdout.endsWith('\n')).toBe(true);
    expect(token.stdout.trimEnd()).toMatch(JWT);
    expect(decodeJwt(token.stdout.trimEnd())).toMatchObject({ iss: base, client_id: ADMIN_CLIENT_ID, tenant: 'default' });

    // Signing out revokes the saved access token and forgets the sign-in.
    const logout = track(await runCli(['logout'], env));
    expect(logout).toMatchObject({ code: 0, stdout: `Signed out of ${base}.\n` });
    expect(readEntry(file)).toBeUndefined();
    expect((await api(base, 'GET', '/api/v1/me', { token: saved.access_token })).status).toBe(401);
    expectNoSecretsOnStderr();
  });

  it('signs a user in through the browser, refreshes an expired token, reports API errors and signs out', async () => {
    secrets.push(mia.password);
    const file = credentialsFile('mia');
    const env = { FLOWGATE_URL: base, FLOWGATE_CREDENTIALS_FILE: file };

    const login = startCli(['login', '--no-browser', '--tenant', 'acme', '--timeout', '20'], env);
    const [, authorizeUrl] = await login.waitForStderr(/Open this URL to sign in: (\S+)\n/);
    expect(authorizeUrl!.startsWith(`${base}/oauth/authorize?`)).toBe(true);
    const form = await submitLoginAt(base, authorizeUrl!, { tenant: 'acme', username: mia.username, password: mia.password });
    expect(form.status).toBe(302);
    expect(form.location).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/callback\?/);
    const callback = await fetch(form.location!);
    expect(callback.status).toBe(200);
    expect(await callback.text()).toContain('Signed in; you can close this tab.');
    const done = track(await login.exited);
    expect(done.code).toBe(0);
    expect(done.stdout).toBe(`Signed in to ${base} as mia (user, tenant acme).\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const first = readEntry(file);
    expect(first).toMatchObject({ kind: 'user' });
    expect(first.refresh_token).toMatch(/^fgr_/);
    secrets.push(first.refresh_token);

    const whoami = track(await runCli(['whoami'], env));
    expect(whoami.code).toBe(0);
    expect(whoami.stdout).toMatch(/^name:\s+mia$/m);
    expect(whoami.stdout).toMatch(/^type:\s+user$/m);
    expect(whoami.stdout).toMatch(/^tenant:\s+acme$/m);

    // An access token past its expiry is refreshed with the refresh token, which rotates.
    writeFileSync(file, JSON.stringify({ [base]: { ...first, access_token: 'expired', expires_at: Math.floor(Date.now() / 1000) - 60 } }), { mode: 0o600 });
    const refreshed = track(await runCli(['whoami', '--json'], env));
    expect(refreshed.code).toBe(0);
    expect(JSON.parse(refreshed.stdout)).toMatchObject({ name: 'mia', tenant: 'acme', principal_type: 'user' });
    const second = readEntry(file);
    secrets.push(second.refresh_token);
    expect(second.refresh_token).toMatch(/^fgr_/);
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(second.access_token).toMatch(JWT);
    expect(second.expires_at).toBeGreaterThan(Date.now() / 1000 + 60);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(existsSync(`${file}.lock`)).toBe(false);

    // A member may not create tenants: the problem's detail, code and trace id, exit 1.
    const denied = track(await runCli(['tenants', 'create', 'initech'], env));
    expect(denied.code).toBe(1);
    expect(denied.stdout).toBe('');
    expect(denied.stderr).toMatch(/^flowgate: .+ \(FLOWGATE_ERR_[A-Z_]+, trace [0-9a-f]{32}\)\n$/);

    const token = track(await runCli(['token'], env));
    expect(decodeJwt(token.stdout.trimEnd())).toMatchObject({ tenant: 'acme', iss: base });

    const logout = track(await runCli(['logout'], env));
    expect(logout).toMatchObject({ code: 0, stdout: `Signed out of ${base}.\n` });
    expect(readEntry(file)).toBeUndefined();
    const reuse = await postForm(base, '/oauth/token', { grant_type: 'refresh_token', refresh_token: second.refresh_token, client_id: 'flowgate-cli' });
    expect(reuse.status).toBe(400);
    const after = track(await runCli(['whoami'], env));
    expect(after.code).toBe(1);
    expect(after.stderr).toContain(`not signed in to ${base}`);
    expectNoSecretsOnStderr();
  });

  it('refuses a sign-in answer from another issuer, and gives up after --timeout', async () => {
    const env = { FLOWGATE_URL: base, FLOWGATE_CREDENTIALS_FILE: credentialsFile('mixup') };
    const login = startCli(['login', '--no-browser', '--timeout', '20'], env);
    const [, authorizeUrl] = await login.waitForStderr(/Open this URL to sign in: (\S+)\n/);
    const params = new URL(authorizeUrl!).searchParams;
    const callback = new URL(params.get('redirect_uri')!);
    callback.search = new URLSearchParams({ code: 'stolen', state: params.get('state')!, iss: 'http://evil.example' }).toString();
    expect((await fetch(callback)).status).toBe(400);
    const refused = track(await login.exited);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('came from issuer http://evil.example');

    const timedOut = track(await runCli(['login', '--no-browser', '--timeout', '1'], env));
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toContain('no sign-in within 1 s');
    expectNoSecretsOnStderr();
  });

  it('names the URL it cannot reach, and exits 2 on usage errors', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    const env = { FLOWGATE_CREDENTIALS_FILE: credentialsFile('nowhere') };
    const [refused, usage] = await Promise.all([
      runCli(['whoami', '--url', `http://127.0.0.1:${port}`, '--token', 'not-a-real-token'], env),
      runCli(['accounts', 'create'], env),
    ]);
    track(refused);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `flowgate: cannot connect to the Flowgate server at http://127.0.0.1:${port} (connection refused); is the server running? Point the CLI elsewhere with --url or FLOWGATE_URL.\n`,
    );
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("missing required argument 'name'");
    expectNoSecretsOnStderr();
  });

  it('migrates a data folder once, then finds it up to date; a bad setting exits 2 naming it', async () => {
    const dataDir = join(root, 'data');
    mkdirSync(dataDir);
    // The client's own variables do not upset the server's configuration.
    const env = { FLOWGATE_DATA_DIR: dataDir, FLOWGATE_CREDENTIALS_FILE: credentialsFile('migrate'), FLOWGATE_URL: base };
    const first = track(await runCli(['migrate'], env, dataDir));
    expect(first.code).toBe(0);
    for (const migration of ALL_MIGRATIONS) expect(first.stdout).toContain(`applied ${migration.name}\n`);
    const second = track(await runCli(['migrate'], env, dataDir));
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/^database is up to date/);

    const bad = track(await runCli(['migrate'], { ...env, FLOWGATE_PORT: 'abc' }, dataDir));
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toContain('FLOWGATE_PORT: must be an integer');
    expectNoSecretsOnStderr();
  });

  it('rotates the master key: a new key heads the key file, every data key moves to it, secrets still open', async () => {
    const dataDir = join(root, 'rotate');
    mkdirSync(dataDir);
    const store = await openStore({ dataDir });
    await store.migrate(ALL_MIGRATIONS);
    const before = MasterKeyRing.load({ dataDir });
    await new SecretStore(store, new DataKeys(store, before, systemClock), systemClock).create('acme', { name: 'token', kind: 'generic', value: 'still-readable' });
    await store.close();

    const env = { FLOWGATE_DATA_DIR: dataDir };
    const rotated = track(await runCli(['secrets', 'rotate-master', '--json'], env, dataDir));
    expect(rotated.code).toBe(0);
    const result = JSON.parse(rotated.stdout) as { masterKeyId: string; previousMasterKeyId: string; rewrapped: number; dataKeys: number };
    expect(result).toMatchObject({ previousMasterKeyId: before.current.id, rewrapped: 1, dataKeys: 1 });
    expect(result.masterKeyId).not.toBe(before.current.id);

    const after = MasterKeyRing.load({ dataDir });
    expect(after.ids).toEqual([result.masterKeyId, before.current.id]);
    const reopened = await openStore({ dataDir });
    try {
      const keys = new DataKeys(reopened, after, systemClock);
      expect(await new SecretStore(reopened, keys, systemClock).reveal('acme', 'token')).toBe('still-readable');
      const wrapped = await reopened.db<SecretsTables>().selectFrom('secret_data_keys').select('master_key_id').execute();
      expect(wrapped).toEqual([{ master_key_id: result.masterKeyId }]);
    } finally {
      await reopened.close();
    }

    const again = track(await runCli(['secrets', 'rotate-master', '--rewrap-only'], env, dataDir));
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`master key ${result.masterKeyId} is current`);
    expect(again.stdout).toContain('re-wrapped 0 of 1 data key');
    expect(again.stdout + again.stderr).not.toContain(after.current.key.toString('base64'));
  });
});
