// Flowgate as a real process for the benches: `node packages/server/dist/main.js`, configured
// only by the FLOWGATE_* variables given (inherited ones are dropped), and set up the way an
// operator does it, over HTTP: a platform-admin token from the bootstrap client, a tenant,
// its owner's token.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export const ROOT = join(import.meta.dirname, '../..');
export const MAIN = join(ROOT, 'packages/server/dist/main.js');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The environment without FLOWGATE_* and BENCH_* variables: they would change what is measured. */
export function cleanEnv() {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLOWGATE_') && !k.startsWith('BENCH_')));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer().once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export function tail(file, chars = 3000) {
  try {
    return readFileSync(file, 'utf8').slice(-chars);
  } catch {
    return '';
  }
}

/**
 * Starts `dist/main.js` (or `script`, which runs it) and resolves once `GET /health/ready` answers 200. `execArgv` are
 * Node options (e.g. --cpu-prof). Output goes to `log`. `stop()` sends SIGTERM (the server
 * shuts down cleanly, which also writes a --cpu-prof profile) and SIGKILLs after `killAfterMs`.
 */
export async function startFlowgate({ env, log, execArgv = [], script = MAIN, readyTimeoutMs = 60_000 }) {
  const port = Number(env.FLOWGATE_PORT);
  const base = `http://127.0.0.1:${port}`;
  const fd = openSync(log, 'a');
  const child = spawn(process.execPath, [...execArgv, script], { env: { ...cleanEnv(), ...env }, stdio: ['ignore', fd, fd] });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  const until = performance.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`flowgate exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${tail(log)}`);
    const ok = await fetch(`${base}/health/ready`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (performance.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`flowgate was not ready within ${readyTimeoutMs} ms:\n${tail(log)}`);
    }
    await sleep(50);
  }
  return {
    base,
    port,
    pid: child.pid,
    child,
    async stop(killAfterMs = 20_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      await exited;
      clearTimeout(killer);
    },
  };
}

export async function request(url, options = {}) {
  const res = await fetch(url, { ...options, redirect: 'manual' });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, headers: res.headers, text, body };
}

const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

export async function clientToken(base, id, secret) {
  const res = await request(`${base}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(id, secret) },
    body: 'grant_type=client_credentials',
  });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.text}`);
  return res.body.access_token;
}

/** Calls the JSON API; throws on any answer of 300 or more. */
export async function api(base, method, path, token, body) {
  const res = await request(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text.slice(0, 500)}`);
  return res.body;
}

/** A bootstrap platform-admin client for a fresh data dir or schema: its FLOWGATE_* variables and credentials. */
export function bootstrapAdmin() {
  const admin = { id: 'bench-platform-admin', secret: randomBytes(24).toString('hex') };
  return { admin, env: { FLOWGATE_BOOTSTRAP_CLIENT_ID: admin.id, FLOWGATE_BOOTSTRAP_CLIENT_SECRET: admin.secret } };
}

/** Creates a tenant as the platform admin and answers its owner's token (which may write and run flows). */
export async function createTenant(base, admin, id) {
  const adminToken = await clientToken(base, admin.id, admin.secret);
  const tenant = await api(base, 'POST', '/api/v1/tenants', adminToken, { id });
  const owner = { id: tenant.owner.client_id, secret: tenant.owner.client_secret };
  return { owner, token: await clientToken(base, owner.id, owner.secret) };
}

/** Creates a flow, starts it and waits until it is active; answers its id. */
export async function createActiveFlow(base, token, definition, timeoutMs = 30_000) {
  const flow = await api(base, 'POST', '/api/v1/flows', token, definition);
  await api(base, 'POST', `/api/v1/flows/${flow.id}/start`, token);
  const until = performance.now() + timeoutMs;
  for (;;) {
    const { status, status_reason: reason } = await api(base, 'GET', `/api/v1/flows/${flow.id}`, token);
    if (status === 'active') return flow.id;
    if (status === 'failed') throw new Error(`flow ${definition.name} failed to start: ${reason}`);
    if (performance.now() > until) throw new Error(`flow ${definition.name} still ${status} after ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** Reads Prometheus text from /metrics into {name{labels}: value}. */
export async function scrapeMetrics(base, prefix = 'flowgate_') {
  const res = await request(`${base}/metrics`);
  const out = {};
  for (const line of res.text.split('\n')) {
    if (!line.startsWith(prefix)) continue;
    const at = line.lastIndexOf(' ');
    out[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return out;
}
