#!/usr/bin/env node
// Gateway benchmark (issue: gateway performance). In one run, on loopback, with the same
// load for every target (autocannon, 50 connections, a warm-up that is not measured):
//   - direct: a small node:http upstream answering a 100-byte JSON body (the baseline);
//   - nginx as a reverse proxy with keepalive to the upstream (skipped, with a note, when it
//     is missing and cannot be installed);
//   - fastify + @fastify/http-proxy and fast-gateway, no auth;
//   - raw: a plain node:http server forwarding through an undici Pool, no policies (what a
//     Node proxy can do at best on this machine: the ceiling Flowgate is compared with);
//   - Flowgate with a route whose only policy is `auth: {type: none}`, and with a route that
//     takes a JWT (ES256, verified then cached), requires a scope, and propagates traceparent
//     (metrics are always on).
// Every server (upstream, proxies, Flowgate) runs in its own process (this file forks itself
// with a role argument); the load generator runs here, in the orchestrator, which does
// nothing else while a target is measured. Then latency at a fixed, low request rate (open
// loop, so no queueing), and a separate phase sampling the Flowgate process's memory every
// second under load. Results are informational (never a pass/fail on speed), but a run where
// any request failed is invalid: it says so and exits 1. Writes bench/results/gateway.json.
// Env: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 3), BENCH_CONNECTIONS (50),
// BENCH_MEMORY_SECONDS (60, 0 skips), BENCH_RATE (req/s of the fixed-rate phase, 1000; 0 skips),
// BENCH_RATE_SECONDS (5), BENCH_ROUNDS (1: more runs every target again, interleaved, and
// reports medians), BENCH_TARGETS (comma-separated names, default all: a subset writes
// its results to the temp dir instead of bench/results),
// BENCH_LOAD=wrk (the closed loops driven by wrk, one thread in a process of its own, instead
// of autocannon in this one; Debian's package wrk),
// BENCH_EXTRA=0 (skips the two extra Flowgate rows: access log off, and log level info),
// BENCH_PROFILE=1 (a CPU profile of Flowgate's secured measured run, through node:inspector:
// prints where the time goes and keeps the .cpuprofile in the temp dir; or a comma-separated
// list of targets to profile, among raw and the flowgate-* rows),
// BENCH_QUIET_WAIT (s, 120): before each measured run, wait up to this long for the rest of
// the machine to be idle (other sessions' tests); BENCH_RETRIES (2): a run during which the
// rest of the machine kept more than 0.3 cores busy is done again, up to this many times, and
// the least disturbed is kept (how busy it was is reported with each row).
import { fork, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { cleanEnv, freePort, request, sleep } from './support/flowgate-server.mjs';
import { cpuSeconds, findWrk, machineBusySeconds, machineInfo, packageVersion, percentile, round, wrkLoop } from './support/load.mjs';

const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'packages/server/dist');
const SELF = import.meta.filename;
const ROLE = process.argv[2];

// A 100-byte JSON body, what a small API answers.
const BODY = (() => {
  const base = { id: 42, name: 'bench', ok: true, items: [1, 2, 3], note: '' };
  base.note = 'x'.repeat(100 - JSON.stringify(base).length);
  return JSON.stringify(base);
})();

switch (ROLE) {
  case 'upstream':
    await runUpstream();
    break;
  case 'fastify':
    await runFastifyProxy();
    break;
  case 'fast-gateway':
    await runFastGateway();
    break;
  case 'raw':
    await runRawProxy();
    break;
  case 'flowgate':
    await runFlowgate();
    break;
  default:
    await main();
}

// --- Children -------------------------------------------------------------------------
/** Tells the parent the port, and exits when told or when the parent goes away. */
function ready(port, close = async () => undefined) {
  process.send({ type: 'ready', port });
  const stop = () => void close().finally(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
}

async function runUpstream() {
  const counts = { total: 0, traceparent: 0, authorization: 0, forwarded: 0 };
  const length = String(Buffer.byteLength(BODY));
  const server = http.createServer((req, res) => {
    counts.total++;
    if (req.headers.traceparent !== undefined) counts.traceparent++;
    if (req.headers.authorization !== undefined) counts.authorization++;
    if (req.headers['x-forwarded-for'] !== undefined || req.headers.forwarded !== undefined) counts.forwarded++;
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
    res.end(BODY);
  });
  // Longer than any proxy's pool keeps an idle connection, so no proxy loses its pool mid-run.
  server.keepAliveTimeout = 65_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (m) => {
    if (m?.type !== 'counts') return;
    process.send({ type: 'counts', id: m.id, counts: { ...counts } });
    if (m.reset) for (const k of Object.keys(counts)) counts[k] = 0;
  });
  ready(server.address().port);
}

async function runFastifyProxy() {
  const { default: Fastify } = await import('fastify');
  const { default: proxy } = await import('@fastify/http-proxy');
  const app = Fastify({ logger: false });
  await app.register(proxy, { upstream: process.env.BENCH_UPSTREAM, prefix: '/open', rewritePrefix: '' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  ready(app.server.address().port, () => app.close());
}

/**
 * The ceiling for a Node proxy: a plain node:http server forwarding through an undici Pool
 * (its dispatch API, so no stream or promise per request), no policy, no header rewriting
 * beyond dropping hop-by-hop fields. What Flowgate does on top of it is what it costs.
 */
async function runRawProxy() {
  const { Pool } = await import('undici');
  const pool = new Pool(process.env.BENCH_UPSTREAM, { keepAliveTimeout: 30_000 });
  const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host', 'proxy-connection', 'te', 'upgrade', 'trailer']);
  const server = http.createServer((req, res) => {
    const raw = req.rawHeaders;
    const headers = [];
    for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1]);
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.dispatch(
      { method: req.method, path: req.url.startsWith('/open/') ? req.url.slice(5) : req.url, headers, body: hasBody ? req : null },
      {
        onRequestStart() {},
        onResponseStart(_c, status, upstreamHeaders) {
          const out = {};
          for (const name in upstreamHeaders) if (!HOP.has(name)) out[name] = upstreamHeaders[name];
          res.writeHead(status, out);
        },
        onResponseData(_c, chunk) {
          res.write(chunk);
        },
        onResponseEnd() {
          res.end();
        },
        onResponseError(_c, err) {
          if (res.headersSent) res.destroy(err);
          else {
            res.statusCode = 502;
            res.end();
          }
        },
      },
    );
  });
  server.keepAliveTimeout = 72_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  answerProfiling();
  ready(server.address().port, async () => {
    server.close();
    await pool.close();
  });
}

async function runFastGateway() {
  const { default: gateway } = await import('fast-gateway');
  const service = gateway({ routes: [{ prefix: '/open', target: process.env.BENCH_UPSTREAM }] });
  const server = await service.start(0, '127.0.0.1');
  ready(server.address().port, () => service.close());
}

async function runFlowgate() {
  const { loadConfig } = await import(join(DIST, 'config/index.js'));
  const { createFlowgate } = await import(join(DIST, 'create-flowgate.js'));
  const config = loadConfig({ env: process.env, cwd: process.env.BENCH_CWD });
  const flowgate = await createFlowgate(config, { announce: () => undefined });
  const url = await flowgate.listen();
  process.on('message', (m) => {
    if (m?.type === 'memory') {
      if (m.gc && typeof globalThis.gc === 'function') globalThis.gc();
      process.send({ type: 'memory', id: m.id, usage: process.memoryUsage() });
    }
  });
  answerProfiling();
  ready(Number(new URL(url).port), () => flowgate.close());
}

/** Lets the orchestrator take a CPU profile of this process (node:inspector) around a measured run. */
function answerProfiling() {
  let session;
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  process.on('message', async (m) => {
    if (m?.type === 'profile-start') {
      // The CPU profile covers the measured run only (not start-up or warm-up).
      const { Session } = await import('node:inspector');
      session = new Session();
      session.connect();
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: 500 });
      await post('Profiler.start');
      process.send({ type: 'profile', id: m.id });
    } else if (m?.type === 'profile-stop') {
      const { profile } = await post('Profiler.stop');
      writeFileSync(m.file, JSON.stringify(profile));
      session.disconnect();
      process.send({ type: 'profile', id: m.id });
    }
  });
}

// --- Orchestrator ---------------------------------------------------------------------
async function main() {
  const { default: autocannon } = await import('autocannon');
  const num = (name, def) => {
    const v = Number(process.env[name] ?? def);
    if (!Number.isFinite(v) || v < 0) throw new Error(`${name} must be a non-negative number, got ${process.env[name]}`);
    return v;
  };
  const DURATION = num('BENCH_DURATION', 10);
  const WARMUP = num('BENCH_WARMUP', 3);
  const CONNECTIONS = num('BENCH_CONNECTIONS', 50);
  const MEMORY_SECONDS = num('BENCH_MEMORY_SECONDS', 60);
  const RATE = num('BENCH_RATE', 1000);
  const RATE_SECONDS = num('BENCH_RATE_SECONDS', 5);
  const ROUNDS = Math.max(1, Math.floor(num('BENCH_ROUNDS', 1)));
  const EXTRA = process.env.BENCH_EXTRA !== '0';
  const PROFILED = process.env.BENCH_PROFILE === '1' ? ['flowgate-secured'] : (process.env.BENCH_PROFILE?.split(',').map((t) => t.trim()).filter((t) => t && t !== '0') ?? []);
  const QUIET_WAIT = num('BENCH_QUIET_WAIT', 120);
  const QUIET_CORES = 0.25;
  const RETRIES = Math.floor(num('BENCH_RETRIES', 2));
  const DISTURBED_CORES = 0.3;
  const LOAD = process.env.BENCH_LOAD ?? 'autocannon';
  if (!['autocannon', 'wrk'].includes(LOAD)) throw new Error(`BENCH_LOAD must be autocannon or wrk, got ${LOAD}`);
  const wrk = LOAD === 'wrk' ? findWrk() : undefined;
  if (LOAD === 'wrk' && !wrk) throw new Error('BENCH_LOAD=wrk: wrk not found (apt-get install wrk)');
  const ONLY = process.env.BENCH_TARGETS?.split(',').map((t) => t.trim()).filter(Boolean);
  if (!existsSync(join(DIST, 'create-flowgate.js'))) {
    console.error('gateway bench: packages/server/dist not found; run `npm run build` first (or `npm run bench:gateway`).');
    process.exit(1);
  }

  const tmp = mkdtempSync(join(os.tmpdir(), 'flowgate-gateway-bench-'));
  const children = new Set();
  process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
  });
  // Inherited FLOWGATE_* variables (a database URL, a config file) would change what is measured.
  const baseEnv = cleanEnv();



  /**
   * Waits (up to QUIET_WAIT s) until the rest of the machine is idle: other sessions' test
   * runs on a 2-core machine would otherwise decide the result. Returns the busy cores seen.
   */
  async function waitForQuiet() {
    const until = performance.now() + QUIET_WAIT * 1000;
    let busy;
    for (;;) {
      const b0 = machineBusySeconds();
      await sleep(1000);
      busy = machineBusySeconds() - b0;
      if (busy <= QUIET_CORES || performance.now() > until) return busy;
    }
  }

  /** Forks this file in a role; resolves once it listens. Output goes to a log file (its tail is shown on failure). */
  async function forkRole(role, env = {}, execArgv = []) {
    const log = join(tmp, `${role}-${randomBytes(3).toString('hex')}.log`);
    const fd = openSync(log, 'a');
    const child = fork(SELF, [role], { env: { ...baseEnv, ...env }, execArgv, stdio: ['ignore', fd, fd, 'ipc'] });
    children.add(child);
    const port = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${role}: not ready after 60 s\n${tail(log)}`)), 60_000);
      child.on('message', (m) => {
        if (m?.type === 'ready') {
          clearTimeout(timer);
          resolve(m.port);
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${role}: exited (${code ?? signal}) before it was ready\n${tail(log)}`));
      });
    });
    let nextId = 0;
    return {
      port,
      pid: child.pid,
      log,
      ask(message) {
        const id = ++nextId;
        return new Promise((resolve) => {
          const on = (m) => {
            if (m?.id !== id) return;
            child.off('message', on);
            resolve(m);
          };
          child.on('message', on);
          child.send({ ...message, id });
        });
      },
      stop: () => stopChild(child),
    };
  }

  async function stopChild(child) {
    if (child.exitCode !== null || child.signalCode !== null) {
      children.delete(child);
      return;
    }
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
    children.delete(child);
  }

  function tail(file) {
    try {
      return readFileSync(file, 'utf8').slice(-3000);
    } catch {
      return '';
    }
  }



  const median = (values) => {
    const s = values.filter((v) => v !== null && v !== undefined).sort((a, b) => a - b);
    if (s.length === 0) return null;
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };

  /** A growable list of float samples (latencies in ms). */
  function samples() {
    let data = new Float64Array(1 << 16);
    let n = 0;
    return {
      push(v) {
        if (n === data.length) {
          const bigger = new Float64Array(data.length * 2);
          bigger.set(data);
          data = bigger;
        }
        data[n++] = v;
      },
      sorted: () => data.slice(0, n).sort(),
      get length() {
        return n;
      },
    };
  }

  /**
   * Closed-loop load: `connections` connections, each sending its next request when the
   * answer to the previous one has arrived, for `seconds`. Latencies are recorded here
   * (autocannon's own histogram keeps whole milliseconds only).
   */
  async function closedLoop(url, headers, seconds) {
    if (LOAD === 'wrk') return wrkLoop(wrk, { url, headers, connections: CONNECTIONS, seconds });
    const lat = samples();
    const statuses = {};
    const instance = autocannon({ url, connections: CONNECTIONS, duration: seconds, headers, pipelining: 1, timeout: 10 });
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
      if (statusCode >= 200 && statusCode < 300) lat.push(responseTime);
    });
    const result = await instance;
    const sorted = lat.sorted();
    const ok = sorted.length;
    const answered = Object.values(statuses).reduce((a, b) => a + b, 0);
    return {
      seconds: result.duration,
      reqPerSec: ok / result.duration,
      ok,
      answered,
      non2xx: answered - ok,
      errors: result.errors,
      timeouts: result.timeouts,
      statuses,
      p50Ms: percentile(sorted, 50),
      p90Ms: percentile(sorted, 90),
      p99Ms: percentile(sorted, 99),
      maxMs: sorted.length ? sorted[sorted.length - 1] : null,
    };
  }

  /**
   * Open-loop load at a fixed rate over `connections` kept-alive connections (requests
   * spread round-robin): latency without the queueing of a saturated server.
   */
  async function openLoop(url, headers, rate, seconds) {
    const agents = Array.from({ length: CONNECTIONS }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    const lat = samples();
    let non2xx = 0;
    let errors = 0;
    let inFlight = 0;
    let allDone;
    const fire = (i, record) => {
      inFlight++;
      const t0 = performance.now();
      const done = () => {
        if (--inFlight === 0) allDone?.();
      };
      const req = http.request(url, { agent: agents[i % agents.length], headers }, (res) => {
        res.resume();
        res.on('end', () => {
          if (record) {
            if (res.statusCode >= 200 && res.statusCode < 300) lat.push(performance.now() - t0);
            else non2xx++;
          }
          done();
        });
      });
      req.on('error', () => {
        if (record) errors++;
        done();
      });
      req.end();
    };
    const pace = async (count, record) => {
      const start = performance.now();
      let sent = 0;
      while (sent < count) {
        const due = Math.min(count, Math.ceil(((performance.now() - start) / 1000) * rate));
        while (sent < due) fire(sent++, record);
        await sleep(1);
      }
    };
    await pace(Math.min(rate, CONNECTIONS * 20), false); // opens every connection first
    await pace(Math.round(rate * seconds), true);
    if (inFlight > 0) await new Promise((r) => (allDone = r));
    for (const a of agents) a.destroy();
    const sorted = lat.sorted();
    return { rate, seconds, ok: sorted.length, non2xx, errors, p50Ms: percentile(sorted, 50), p99Ms: percentile(sorted, 99), maxMs: sorted.length ? sorted[sorted.length - 1] : null };
  }

  // --- Targets ------------------------------------------------------------------------
  const machine = machineInfo();
  const version = packageVersion;
  const notes = [];
  console.log(`gateway bench: ${CONNECTIONS} connections, ${WARMUP} s warm-up + ${DURATION} s per target, ${ROUNDS} round(s); node ${process.version}, ${machine.cpus} cpus`);

  const upstream = await forkRole('upstream');
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;

  // nginx: found, or installed with apt-get, or skipped with a note.
  const nginx = findNginx();
  function findNginx() {
    const which = () => ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/bin/nginx'].find((p) => existsSync(p)) ?? (spawnSync('sh', ['-c', 'command -v nginx'], { encoding: 'utf8' }).stdout.trim() || undefined);
    let path = which();
    if (!path) {
      console.log('nginx: not found; trying `apt-get install -y nginx`');
      const install = () => spawnSync('apt-get', ['install', '-y', '-q', 'nginx'], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 300_000 });
      let r = install();
      if (r.status !== 0) {
        spawnSync('apt-get', ['update', '-q'], { encoding: 'utf8', timeout: 300_000 });
        r = install();
      }
      path = which();
      if (!path) {
        const reason = `nginx is not installed and \`apt-get install -y nginx\` failed (${(r.error?.message ?? r.stderr ?? '').trim().split('\n').at(-1) || `exit ${r.status}`})`;
        console.log(`nginx: SKIPPED: ${reason}`);
        notes.push(`nginx skipped: ${reason}`);
        return { skipped: reason };
      }
    }
    const v = spawnSync(path, ['-v'], { encoding: 'utf8' });
    return { path, version: (v.stderr || v.stdout).trim().replace(/^nginx version: /, '') };
  }

  async function startNginx() {
    const dir = mkdtempSync(join(tmp, 'nginx-'));
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(
      conf,
      `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
  upstream bench {
    server 127.0.0.1:${upstream.port};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location /open/ {
      proxy_pass http://bench/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`,
    );
    const child = spawn(nginx.path, ['-e', join(dir, 'error.log'), '-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const until = performance.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${stderr}${tail(join(dir, 'error.log'))}`);
      const ok = await fetch(`http://127.0.0.1:${port}/open/`).then((r) => r.status === 200, () => false);
      if (ok) break;
      if (performance.now() > until) throw new Error(`nginx did not answer within 10 s: ${stderr}${tail(join(dir, 'error.log'))}`);
      await sleep(50);
    }
    return { port, pid: child.pid, withChildren: true, stop: () => stopChild(child) };
  }

  // Flowgate: one data dir, configured once over HTTP; each Flowgate row then starts a fresh
  // process on it (same port, so the issuer of its tokens stays the same).
  const ADMIN_ID = 'bench-platform-admin';
  const ADMIN_SECRET = randomBytes(24).toString('hex');
  const flowgateDir = join(tmp, 'flowgate');
  mkdirSync(flowgateDir);
  const flowgatePort = await freePort();
  const flowgateBase = `http://127.0.0.1:${flowgatePort}`;
  const flowgateEnv = (extra = {}) => ({
    BENCH_CWD: flowgateDir,
    FLOWGATE_HOST: '127.0.0.1',
    FLOWGATE_PORT: String(flowgatePort),
    FLOWGATE_DATA_DIR: join(flowgateDir, 'data'),
    FLOWGATE_LOG_LEVEL: 'warn',
    FLOWGATE_BOOTSTRAP_CLIENT_ID: ADMIN_ID,
    FLOWGATE_BOOTSTRAP_CLIENT_SECRET: ADMIN_SECRET,
    ...extra,
  });
  const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  async function clientToken(id, secret) {
    const res = await request(`${flowgateBase}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(id, secret) },
      body: 'grant_type=client_credentials',
    });
    if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.text}`);
    return res.body.access_token;
  }
  async function api(method, path, token, body) {
    const res = await request(`${flowgateBase}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
    return res.body;
  }

  // The token is checked by the secured route only; every target gets the same request
  // headers (a real token of the service account), so the load on the wire is the same for
  // all (each forwards or drops them).
  let reader;
  let token;
  {
    const setup = await forkRole('flowgate', flowgateEnv());
    try {
      const admin = await clientToken(ADMIN_ID, ADMIN_SECRET);
      await api('PUT', '/api/v1/gateway/config', admin, {
        services: [{ name: 'bench', targets: [upstreamUrl] }],
        routes: [
          { name: 'open', service: 'bench', paths: ['/open/*'], stripPrefix: true, policies: { auth: { type: 'none' } } },
          { name: 'secured', service: 'bench', paths: ['/secured/*'], stripPrefix: true, policies: { auth: { type: 'jwt' }, scopes: { required: ['forms:read'] } } },
        ],
      });
      const tenant = await api('POST', '/api/v1/tenants', admin, { id: 'bench' });
      const ownerToken = await clientToken(tenant.owner.client_id, tenant.owner.client_secret);
      const account = await api('POST', '/api/v1/service-accounts', ownerToken, { name: 'bench-reader', scopes: ['forms:read'] });
      reader = { id: account.client_id, secret: account.client_secret };
      // Fails loudly now rather than mid-run; the targets before Flowgate send this one.
      token = await clientToken(reader.id, reader.secret);
    } finally {
      await setup.stop();
    }
  }
  const traceparent = `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;

  async function startFlowgate(extraEnv = {}) {
    const child = await forkRole('flowgate', flowgateEnv(extraEnv), ['--expose-gc']);
    token = await clientToken(reader.id, reader.secret);
    return { ...child, withChildren: false };
  }
  const forked = (role) => async () => ({ ...(await forkRole(role, { BENCH_UPSTREAM: upstreamUrl })), withChildren: false });

  const targets = [
    { name: 'direct', label: 'upstream direct (baseline)', path: '/hello', start: async () => ({ port: upstream.port, pid: upstream.pid, withChildren: false, stop: async () => undefined }), isUpstream: true },
    ...(nginx.skipped ? [] : [{ name: 'nginx', label: `nginx ${nginx.version} (keepalive 64, 1 worker)`, path: '/open/hello', start: startNginx }]),
    { name: 'fastify-http-proxy', label: `fastify ${version('fastify')} + @fastify/http-proxy ${version('@fastify/http-proxy')}`, path: '/open/hello', start: forked('fastify') },
    { name: 'raw', label: 'raw node:http + undici Pool (dispatch), no policies (the ceiling)', path: '/open/hello', start: forked('raw') },
    { name: 'fast-gateway', label: `fast-gateway ${version('fast-gateway')}`, path: '/open/hello', start: forked('fast-gateway') },
    { name: 'flowgate-open', label: 'Flowgate, auth none only', path: '/open/hello', start: () => startFlowgate(), flowgate: 'open' },
    { name: 'flowgate-secured', label: 'Flowgate, JWT ES256 + scope + traceparent + metrics', path: '/secured/hello', start: () => startFlowgate(), flowgate: 'secured' },
    ...(EXTRA
      ? [
          { name: 'flowgate-secured-no-access-log', label: 'Flowgate secured, FLOWGATE_GATEWAY_ACCESS_LOG=false', path: '/secured/hello', start: () => startFlowgate({ FLOWGATE_GATEWAY_ACCESS_LOG: 'false' }), flowgate: 'secured' },
          { name: 'flowgate-secured-info-log', label: 'Flowgate secured, FLOWGATE_LOG_LEVEL=info (access log written)', path: '/secured/hello', start: () => startFlowgate({ FLOWGATE_LOG_LEVEL: 'info' }), flowgate: 'secured' },
        ]
      : []),
  ]
    .filter((t) => !ONLY || ONLY.includes(t.name))
    .map((t) => ({ ...t, profile: PROFILED.includes(t.name) }));
  for (const name of PROFILED) {
    if (!['raw', 'flowgate-open', 'flowgate-secured', 'flowgate-secured-no-access-log', 'flowgate-secured-info-log'].includes(name)) throw new Error(`BENCH_PROFILE: ${name} cannot be profiled (raw and flowgate-* rows can)`);
  }
  const PARTIAL = !!ONLY;

  async function scrapeMetrics() {
    const res = await request(`${flowgateBase}/metrics`);
    const out = { requests: {}, durationSum: {}, durationCount: {}, residentMemoryBytes: null };
    for (const line of res.text.split('\n')) {
      let m = /^flowgate_gateway_requests_total\{([^}]*)\} (\S+)$/.exec(line);
      if (m) {
        const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
        out.requests[`${labels.route} ${labels.method} ${labels.status}`] = Number(m[2]);
        continue;
      }
      m = /^flowgate_gateway_request_duration_seconds_(sum|count)\{route="([^"]*)"\} (\S+)$/.exec(line);
      if (m) {
        out[m[1] === 'sum' ? 'durationSum' : 'durationCount'][m[2]] = Number(m[3]);
        continue;
      }
      m = /^flowgate_process_resident_memory_bytes (\S+)$/.exec(line);
      if (m) out.residentMemoryBytes = Number(m[1]);
    }
    return out;
  }

  /** One target: start, check one answer, warm up, measure, the fixed-rate phase, stop. */
  async function runTarget(target) {
    const server = await target.start();
    try {
      const url = `http://127.0.0.1:${server.port}${target.path}`;
      const headers = { authorization: `Bearer ${token}`, traceparent };
      const check = await request(url, { headers });
      if (check.status !== 200 || check.text !== BODY) throw new Error(`${target.name}: ${url} answered ${check.status} ${check.text.slice(0, 300)}`);
      if (WARMUP > 0) {
        const w = await closedLoop(url, headers, WARMUP);
        if (w.non2xx + w.errors > 0) console.log(`  ${target.name}: WARM-UP HAD FAILURES: ${w.non2xx} non-2xx, ${w.errors} errors (${JSON.stringify(w.statuses)})`);
      }
      // A run during which other processes kept a core busy is done again (up to
      // BENCH_RETRIES times) and the least disturbed one is kept.
      let best;
      const discarded = { runs: 0, non2xx: 0, errors: 0 };
      for (let attempt = 0; ; attempt++) {
        const m = await measure(target, server, url, headers, attempt);
        const other = m.cpu.otherSeconds / m.seconds;
        if (!best || other < best.cpu.otherSeconds / best.seconds) {
          if (best) Object.assign(discarded, { runs: discarded.runs + 1, non2xx: discarded.non2xx + best.non2xx, errors: discarded.errors + best.errors });
          best = m;
        } else {
          Object.assign(discarded, { runs: discarded.runs + 1, non2xx: discarded.non2xx + m.non2xx, errors: discarded.errors + m.errors });
        }
        if (other <= DISTURBED_CORES || attempt >= RETRIES) break;
        process.stdout.write(`(disturbed: ${round(other)} cores busy elsewhere; again) `);
      }
      const run = best;
      const cpu = best.cpu;
      const seen = (await upstream.ask({ type: 'counts', reset: true })).counts;
      const paced = RATE > 0 && RATE_SECONDS > 0 ? await openLoop(url, headers, RATE, RATE_SECONDS) : null;
      const metrics = target.flowgate ? await scrapeMetrics() : undefined;
      return { ...run, cpu, upstreamSaw: seen, paced, metrics, discarded };
    } finally {
      await server.stop();
    }
  }

  /** One measured run, with the CPU each process used meanwhile (and a CPU profile when asked). */
  async function measure(target, server, url, headers, attempt) {
    const idleBusyCores = await waitForQuiet();
    await upstream.ask({ type: 'counts', reset: true });
    const cpu0 = { target: cpuSeconds(server.pid, server.withChildren), upstream: cpuSeconds(upstream.pid), load: process.cpuUsage(), machine: machineBusySeconds() };
    const profileFile = target.profile ? join(tmp, 'profile', `${target.name}-${runs[target.name].length}-${attempt}.cpuprofile`) : undefined;
    if (profileFile) {
      mkdirSync(join(tmp, 'profile'), { recursive: true });
      await server.ask({ type: 'profile-start' });
    }
    const run = await closedLoop(url, headers, DURATION);
    if (profileFile) await server.ask({ type: 'profile-stop', file: profileFile });
    const loadCpu = process.cpuUsage(cpu0.load);
    const cpu = {
      targetSeconds: cpuSeconds(server.pid, server.withChildren) - cpu0.target,
      upstreamSeconds: target.isUpstream ? 0 : cpuSeconds(upstream.pid) - cpu0.upstream,
      loadGeneratorSeconds: (loadCpu.user + loadCpu.system) / 1e6 + (run.loadCpuSeconds ?? 0),
      machineSeconds: machineBusySeconds() - cpu0.machine,
      idleBusyCores,
    };
    // What the rest of the machine did meanwhile (other processes, kernel threads, softirqs):
    // a large share means the run was disturbed.
    cpu.otherSeconds = Math.max(0, cpu.machineSeconds - cpu.targetSeconds - cpu.upstreamSeconds - cpu.loadGeneratorSeconds);
    return { ...run, cpu, profileFile };
  }

  const runs = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const target of targets) {
      process.stdout.write(`  ${ROUNDS > 1 ? `round ${r + 1}/${ROUNDS} ` : ''}${target.name} ... `);
      const result = await runTarget(target);
      runs[target.name].push(result);
      console.log(`${Math.round(result.reqPerSec)} req/s, p50 ${round(result.p50Ms)} ms, p99 ${round(result.p99Ms)} ms${result.non2xx + result.errors > 0 ? `, FAILURES: ${result.non2xx} non-2xx, ${result.errors} errors` : ''}`);
    }
  }

  // --- Memory phase -------------------------------------------------------------------
  let memory = null;
  if (MEMORY_SECONDS > 0 && (!ONLY || ONLY.includes('flowgate-secured'))) {
    process.stdout.write(`  memory: Flowgate secured under load for ${MEMORY_SECONDS} s ... `);
    const server = await startFlowgate();
    try {
      const url = `http://127.0.0.1:${server.port}/secured/hello`;
      const headers = { authorization: `Bearer ${token}`, traceparent };
      if (WARMUP > 0) await closedLoop(url, headers, WARMUP);
      const idleBusyCores = await waitForQuiet();
      const mb = (b) => b / 2 ** 20;
      const before = (await server.ask({ type: 'memory', gc: true })).usage;
      const series = [];
      const t0 = performance.now();
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          const { usage } = await server.ask({ type: 'memory' });
          series.push({ t: round((performance.now() - t0) / 1000, 2), rssMb: round(mb(usage.rss), 2), heapUsedMb: round(mb(usage.heapUsed), 2), heapTotalMb: round(mb(usage.heapTotal), 2), externalMb: round(mb(usage.external), 2), arrayBuffersMb: round(mb(usage.arrayBuffers), 2) });
          await sleep(1000 - ((performance.now() - t0) % 1000));
        }
      })();
      const run = await closedLoop(url, headers, MEMORY_SECONDS);
      sampling = false;
      await sampler;
      const after = (await server.ask({ type: 'memory', gc: true })).usage;
      const metrics = await scrapeMetrics();
      const slope = (key) => {
        // Least squares, MB per minute.
        const n = series.length;
        const mx = series.reduce((a, s) => a + s.t, 0) / n;
        const my = series.reduce((a, s) => a + s[key], 0) / n;
        const sxy = series.reduce((a, s) => a + (s.t - mx) * (s[key] - my), 0);
        const sxx = series.reduce((a, s) => a + (s.t - mx) ** 2, 0);
        return sxx === 0 ? 0 : (sxy / sxx) * 60;
      };
      const summary = (key) => {
        const values = series.map((s) => s[key]);
        return { start: values[0], end: values.at(-1), max: Math.max(...values), min: Math.min(...values), slopeMbPerMin: round(slope(key), 3) };
      };
      const requests = run.ok + run.non2xx;
      const retained = after.heapUsed - before.heapUsed;
      memory = {
        seconds: MEMORY_SECONDS,
        busyCoresBeforeRun: round(idleBusyCores, 2),
        requests,
        reqPerSec: round(run.reqPerSec, 0),
        non2xx: run.non2xx,
        errors: run.errors,
        rss: summary('rssMb'),
        heapUsed: summary('heapUsedMb'),
        heapTotal: summary('heapTotalMb'),
        external: summary('externalMb'),
        heapAfterFullGc: { startMb: round(mb(before.heapUsed)), endMb: round(mb(after.heapUsed)), growthMb: round(mb(retained)), bytesPerRequest: round(retained / requests, 3) },
        rssAfterRunMb: round(mb(after.rss)),
        metricsRssMb: metrics.residentMemoryBytes === null ? null : round(mb(metrics.residentMemoryBytes)),
        samples: series,
      };
      // Under load the heap is a sawtooth (garbage promoted to old space, then a major GC) and
      // RSS follows it, so RSS's slope over one minute mostly says where in a tooth the run
      // ended. Flat means: the live heap (after a full GC) holds less than 1 MB more after the
      // run than before it (a leak of 100 bytes per request would hold ~50 MB after 500k
      // requests), and the memory outside the JS heap (RSS − heap total: native buffers,
      // sockets, code) grows by less than 5 MB between the second and the last quarter of the run.
      const outside = series.map((x) => x.rssMb - x.heapTotalMb);
      const quarter = Math.max(1, Math.floor(outside.length / 4));
      const mean = (list) => list.reduce((a, b) => a + b, 0) / list.length;
      memory.rssOutsideHeap = {
        secondQuarterMb: round(mean(outside.slice(quarter, 2 * quarter))),
        lastQuarterMb: round(mean(outside.slice(-quarter))),
        min: round(Math.min(...outside)),
        max: round(Math.max(...outside)),
      };
      memory.rssOutsideHeap.growthMb = round(memory.rssOutsideHeap.lastQuarterMb - memory.rssOutsideHeap.secondQuarterMb);
      memory.flat = memory.heapAfterFullGc.growthMb < 1 && memory.rssOutsideHeap.growthMb < 5;
      console.log(`${memory.requests} requests; RSS ${memory.rss.start} → ${memory.rss.end} MB (max ${memory.rss.max}); heap used ${memory.heapUsed.min}–${memory.heapUsed.max} MB; live heap after a full GC ${memory.heapAfterFullGc.startMb} → ${memory.heapAfterFullGc.endMb} MB`);
    } finally {
      await server.stop();
    }
  }
  await upstream.stop();

  // --- Report -------------------------------------------------------------------------
  const rows = {};
  for (const target of targets) {
    const list = runs[target.name];
    const pick = (f) => median(list.map(f));
    rows[target.name] = {
      label: target.label,
      path: target.path,
      reqPerSec: round(pick((r) => r.reqPerSec), 0),
      p50Ms: round(pick((r) => r.p50Ms), 3),
      p90Ms: round(pick((r) => r.p90Ms), 3),
      p99Ms: round(pick((r) => r.p99Ms), 3),
      maxMs: round(pick((r) => r.maxMs), 3),
      requests: list.reduce((a, r) => a + r.answered, 0),
      non2xx: list.reduce((a, r) => a + r.non2xx, 0),
      errors: list.reduce((a, r) => a + r.errors, 0),
      timeouts: list.reduce((a, r) => a + r.timeouts, 0),
      statuses: list.map((r) => r.statuses),
      cpu: {
        // CPU time per request of each process, from /proc: the cost of the proxy itself,
        // which the 2-core machine's sharing does not hide the way req/s can.
        targetUsPerRequest: round(pick((r) => (r.cpu.targetSeconds / r.ok) * 1e6), 1),
        targetCores: round(pick((r) => r.cpu.targetSeconds / r.seconds), 2),
        upstreamCores: round(pick((r) => r.cpu.upstreamSeconds / r.seconds), 2),
        loadGeneratorCores: round(pick((r) => r.cpu.loadGeneratorSeconds / r.seconds), 2),
        machineBusyCores: round(pick((r) => r.cpu.machineSeconds / r.seconds), 2),
        otherCores: round(pick((r) => r.cpu.otherSeconds / r.seconds), 2),
        busyCoresBeforeRun: round(Math.max(...list.map((r) => r.cpu.idleBusyCores)), 2),
      },
      upstreamSaw: list.at(-1).upstreamSaw,
      // Runs done again because other processes were busy meanwhile (their failures still count).
      disturbedRunsRepeated: list.reduce((a, r) => a + r.discarded.runs, 0),
      failuresInRepeatedRuns: list.reduce((a, r) => a + r.discarded.non2xx + r.discarded.errors, 0),
      paced: list[0].paced
        ? {
            rate: RATE,
            p50Ms: round(pick((r) => r.paced.p50Ms), 3),
            p99Ms: round(pick((r) => r.paced.p99Ms), 3),
            non2xx: list.reduce((a, r) => a + r.paced.non2xx, 0),
            errors: list.reduce((a, r) => a + r.paced.errors, 0),
          }
        : null,
      ...(list.at(-1).metrics ? { flowgateMetrics: list.at(-1).metrics } : {}),
      ...(ROUNDS > 1 ? { rounds: list.map((r) => ({ reqPerSec: round(r.reqPerSec, 0), p50Ms: round(r.p50Ms, 3), p99Ms: round(r.p99Ms, 3) })) } : {}),
    };
  }
  const direct = rows.direct;
  for (const row of Object.values(rows)) {
    // Throughput against the proxies of the issue's target and the raw ceiling, same run.
    if (rows['fastify-http-proxy']) row.ratioToFastifyHttpProxy = round(row.reqPerSec / rows['fastify-http-proxy'].reqPerSec, 3);
    if (rows.raw) row.ratioToRaw = round(row.reqPerSec / rows.raw.reqPerSec, 3);
    if (!direct || row === direct) continue;
    row.ratioToDirect = round(row.reqPerSec / direct.reqPerSec, 3);
    row.addedP50Ms = round(row.p50Ms - direct.p50Ms, 3);
    row.addedP99Ms = round(row.p99Ms - direct.p99Ms, 3);
    if (row.paced && direct.paced) {
      row.paced.addedP50Ms = round(row.paced.p50Ms - direct.paced.p50Ms, 3);
      row.paced.addedP99Ms = round(row.paced.p99Ms - direct.paced.p99Ms, 3);
    }
  }

  // Validity: every answer a 200, and what reached the upstream is what was asked.
  const problems = [];
  for (const [name, row] of Object.entries(rows)) {
    if (row.non2xx + row.errors + row.timeouts > 0) problems.push(`${name}: ${row.non2xx} non-2xx answers, ${row.errors} errors (${row.timeouts} timeouts) of ${row.requests} requests`);
    if (row.failuresInRepeatedRuns > 0) problems.push(`${name}: ${row.failuresInRepeatedRuns} failed requests in runs repeated because the machine was busy`);
    if (row.paced && row.paced.non2xx + row.paced.errors > 0) problems.push(`${name} (fixed rate): ${row.paced.non2xx} non-2xx answers, ${row.paced.errors} errors`);
  }
  for (const [name, list] of Object.entries(runs)) {
    const last = list.at(-1);
    // The upstream counts what it answered during the measured run; each answer must have come from it.
    if (last.upstreamSaw.total < last.ok) problems.push(`${name}: the upstream answered ${last.upstreamSaw.total} requests but the client got ${last.ok} 200s`);
  }
  if (memory && memory.non2xx + memory.errors > 0) problems.push(`memory phase: ${memory.non2xx} non-2xx answers, ${memory.errors} errors`);
  const secured = rows['flowgate-secured'];
  if (secured?.flowgateMetrics) {
    const recorded = secured.flowgateMetrics.requests['secured GET 200'] ?? 0;
    if (recorded < secured.requests / ROUNDS) problems.push(`flowgate-secured: /metrics recorded ${recorded} answered requests, fewer than the ${secured.requests / ROUNDS} measured`);
  }

  const requirements = {};
  const fastify = rows['fastify-http-proxy'];
  if (secured && fastify) {
    const ratio = secured.reqPerSec / fastify.reqPerSec;
    requirements.securedVsFastifyHttpProxy = {
      target: '≥ 1.3× fastify-http-proxy req/s',
      ratio: round(ratio, 3),
      pass: ratio >= 1.3,
      rawVsFastifyHttpProxy: rows.raw ? round(rows.raw.reqPerSec / fastify.reqPerSec, 3) : null,
    };
  }
  if (secured && direct) {
    requirements.addedP99OverDirect = {
      target: '≤ 2 ms added p99 over direct at 50 connections (Flowgate secured)',
      addedP99Ms: secured.addedP99Ms,
      pass: secured.addedP99Ms <= 2,
      flowgateOpenAddedP99Ms: rows['flowgate-open']?.addedP99Ms ?? null,
      atFixedRate: secured.paced ? { rate: RATE, addedP99Ms: secured.paced.addedP99Ms } : null,
    };
  }
  if (memory) {
    requirements.memoryFlat = {
      target: `Flowgate memory flat over a ${MEMORY_SECONDS} s run (live heap after a full GC grows < 1 MB; RSS outside the JS heap grows < 5 MB)`,
      rssMb: { start: memory.rss.start, end: memory.rss.end, max: memory.rss.max, slopePerMin: memory.rss.slopeMbPerMin },
      rssOutsideHeapMb: memory.rssOutsideHeap,
      heapAfterGcGrowthMb: memory.heapAfterFullGc.growthMb,
      pass: memory.flat,
    };
  }

  // Profile summaries: self time by function, from the .cpuprofile of each profiled target.
  const profiles = {};
  for (const [name, list] of Object.entries(runs)) {
    const files = list.map((r) => r.profileFile).filter(Boolean);
    if (files.length === 0) continue;
    const profile = summarizeProfiles(files);
    // Kept outside the temp dir, to open in Chrome DevTools or speedscope.
    profile.saved = join(os.tmpdir(), `${name.startsWith('flowgate') ? '' : 'flowgate-gateway-'}${name}-${Date.now()}.cpuprofile`);
    writeFileSync(profile.saved, readFileSync(files[0]));
    profiles[name] = profile;
  }

  const fmt = (v, d = 0) => (v === null || v === undefined ? '—' : v.toFixed(d));
  const table = [['target', 'req/s', '× direct', '× fastify', '× raw', 'p50 ms', 'p99 ms', '+p99 ms', 'failed', 'CPU µs/req', `p50/p99 ms @${RATE}/s`, '+p99 @rate']];
  for (const [name, row] of Object.entries(rows)) {
    table.push([
      name,
      fmt(row.reqPerSec),
      row === direct ? '1.00' : fmt(row.ratioToDirect, 2),
      fmt(row.ratioToFastifyHttpProxy, 2),
      fmt(row.ratioToRaw, 2),
      fmt(row.p50Ms, 2),
      fmt(row.p99Ms, 2),
      row === direct ? '' : fmt(row.addedP99Ms, 2),
      String(row.non2xx + row.errors),
      fmt(row.cpu.targetUsPerRequest, 0),
      row.paced ? `${fmt(row.paced.p50Ms, 2)} / ${fmt(row.paced.p99Ms, 2)}` : '—',
      row === direct || !row.paced ? '' : fmt(row.paced.addedP99Ms, 2),
    ]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
  console.log('');
  for (const row of table) console.log(row.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  '));
  console.log(`(${CONNECTIONS} connections, ${DURATION} s after ${WARMUP} s warm-up${ROUNDS > 1 ? `, median of ${ROUNDS} rounds` : ''}; fixed rate: ${RATE} req/s open loop over ${CONNECTIONS} connections for ${RATE_SECONDS} s; CPU: the target process(es) only)`);
  console.log('cores busy during each measured run (of ' + machine.cpus + '):');
  for (const row of Object.values(rows)) {
    console.log(`  ${row.label}: target ${row.cpu.targetCores}, upstream ${row.cpu.upstreamCores}, load generator ${row.cpu.loadGeneratorCores}, rest of the machine ${row.cpu.otherCores}${row.cpu.otherCores > 0.3 ? '  <- disturbed: something else was busy' : ''}`);
  }
  if (secured?.flowgateMetrics) {
    const m = secured.flowgateMetrics;
    const meanMs = (m.durationSum.secured / m.durationCount.secured) * 1000;
    console.log(`Flowgate /metrics after the secured run: ${JSON.stringify(m.requests)}; mean gateway time ${fmt(meanMs, 3)} ms`);
  }
  console.log('\nissue targets:');
  for (const [name, req] of Object.entries(requirements)) {
    const detail = name === 'securedVsFastifyHttpProxy' ? `${req.ratio}×${req.rawVsFastifyHttpProxy === null ? '' : ` (raw node:http + undici: ${req.rawVsFastifyHttpProxy}×)`}` : name === 'addedP99OverDirect' ? `+${req.addedP99Ms} ms (at ${RATE} req/s: +${req.atFixedRate?.addedP99Ms ?? '—'} ms)` : `RSS ${req.rssMb.start} → ${req.rssMb.end} MB, max ${req.rssMb.max}, slope ${req.rssMb.slopePerMin} MB/min (the heap's sawtooth); outside the heap ${req.rssOutsideHeapMb.secondQuarterMb} → ${req.rssOutsideHeapMb.lastQuarterMb} MB; live heap after a full GC ${req.heapAfterGcGrowthMb >= 0 ? '+' : ''}${req.heapAfterGcGrowthMb} MB`;
    console.log(`  ${req.pass ? 'PASS' : 'MISS'}  ${req.target}: ${detail}`);
  }
  for (const note of notes) console.log(`note: ${note}`);
  for (const [name, profile] of Object.entries(profiles)) {
    const short = (name) => name.replace(/ packages\/server\/dist\//, ' ').replace(/ node_modules\//, ' ');
    console.log(`\n${name} run, CPU profile (${fmt(profile.busySeconds, 1)} s busy, idle left out; the file: ${profile.saved}):`);
    console.log('self time by function (top 25), and the nearest Flowgate caller:');
    for (const f of profile.topFunctions.slice(0, 25)) console.log(`  ${fmt(f.percent, 1).padStart(5)}%  ${short(f.name)}   <- ${f.via.map((v) => `${short(v.caller)} ${fmt(v.percent, 1)}%`).join(', ')}`);
    console.log('by origin:');
    for (const f of profile.byOrigin.slice(0, 12)) console.log(`  ${fmt(f.percent, 1).padStart(5)}%  ${f.name}`);
    console.log('Flowgate functions, inclusive (with what they call):');
    for (const f of profile.flowgateInclusive.slice(0, 25)) console.log(`  ${fmt(f.percent, 1).padStart(5)}%  ${short(f.name)}`);
  }

  const valid = problems.length === 0;
  if (!valid) {
    console.log('\n' + '!'.repeat(78));
    console.log('INVALID RUN: requests failed, so these numbers do not measure proxying:');
    for (const p of problems) console.log(`  - ${p}`);
    console.log('!'.repeat(78));
  }

  const settings = {
    connections: CONNECTIONS,
    durationSeconds: DURATION,
    warmupSeconds: WARMUP,
    rounds: ROUNDS,
    fixedRate: { requestsPerSecond: RATE, seconds: RATE_SECONDS, connections: CONNECTIONS, loop: 'open (paced, node:http, one kept-alive connection per agent, round-robin)' },
    memorySeconds: MEMORY_SECONDS,
    upstreamBodyBytes: Buffer.byteLength(BODY),
    requestHeaders: 'authorization: Bearer <service-account token> and a fixed traceparent, to every target',
    loadGenerator:
      LOAD === 'wrk'
        ? `${((r) => r.stdout || r.stderr)(spawnSync(wrk, ['-v'], { encoding: 'utf8' })).split('\n')[0].trim()}, closed loop, one thread, a process of its own; latencies from its histogram (µs); statuses counted as < 400 and >= 400 only`
        : `autocannon ${version('autocannon')}, closed loop, pipelining 1, in the orchestrator process (one thread); latencies recorded per response in ms (float)`,
    nginx: nginx.skipped ? { skipped: nginx.skipped } : { version: nginx.version, workerProcesses: 1, upstreamKeepalive: 64, accessLog: 'off' },
    flowgate: { logLevel: 'warn', accessLog: 'default (on; info lines, so not written at warn)', processEach: 'a fresh process per row, same data dir and port', execArgv: '--expose-gc (used only by the memory phase)' },
  };
  const result = { date: machine.date, machine, settings, valid, problems, rows, requirements, memory, notes, ...(Object.keys(profiles).length > 0
      ? { profiles: Object.fromEntries(Object.entries(profiles).map(([name, p]) => [name, { busySeconds: p.busySeconds, topFunctions: p.topFunctions.slice(0, 40), byOrigin: p.byOrigin, flowgateInclusive: p.flowgateInclusive.slice(0, 40) }])) }
      : {}),
  };
  if (PARTIAL) {
    const partial = join(os.tmpdir(), 'flowgate-gateway-bench-partial.json');
    writeFileSync(partial, `${JSON.stringify(result, null, 2)}\n`);
    console.log(`(BENCH_TARGETS=${ONLY.join(',')}: a partial run, bench/results/gateway.json left as it was; results in ${partial})`);
  } else {
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench/results/gateway.json'), `${JSON.stringify(result, null, 2)}\n`);
    console.log('wrote bench/results/gateway.json');
  }
  rmSync(tmp, { recursive: true, force: true });
  process.exit(valid ? 0 : 1);
}

/**
 * Summarizes .cpuprofile files (idle time left out): self time per function, per origin
 * (package, Node internals, or Flowgate module), each hot function's nearest Flowgate
 * caller (what in Flowgate makes that work), and the inclusive time of Flowgate functions.
 */
function summarizeProfiles(files) {
  const self = new Map();
  const byOrigin = new Map();
  const inclusive = new Map();
  const blame = new Map();
  let total = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8'));
    const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const info = new Map();
    const describe = (id) => {
      let d = info.get(id);
      if (d) return d;
      const { callFrame } = nodes.get(id);
      const url = callFrame.url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '');
      const name = `${callFrame.functionName || '(anonymous)'}${url ? ` ${url}:${callFrame.lineNumber + 1}` : ''}`;
      const ours = url.startsWith('packages/');
      const origin = !url
        ? callFrame.functionName.startsWith('(') ? callFrame.functionName : '(native/V8)'
        : url.startsWith('node:')
          ? 'node internals'
          : (/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1] ?? (ours ? `flowgate ${url.split('/dist/')[1]?.split('/')[0] ?? url}` : url));
      const up = parent.get(id);
      const stack = up === undefined ? [] : describe(up).stack;
      const ourCaller = ours ? name : up === undefined ? '(none)' : describe(up).ourCaller;
      d = { name, origin, ourCaller, stack: stack.includes(name) ? stack : [...stack, name], idle: callFrame.functionName === '(idle)' };
      info.set(id, d);
      return d;
    };
    for (let i = 0; i < profile.samples.length; i++) {
      const dt = profile.timeDeltas[i] ?? 0;
      const d = describe(profile.samples[i]);
      if (d.idle) continue;
      total += dt;
      self.set(d.name, (self.get(d.name) ?? 0) + dt);
      byOrigin.set(d.origin, (byOrigin.get(d.origin) ?? 0) + dt);
      const key = `${d.name}\n${d.ourCaller}`;
      blame.set(key, (blame.get(key) ?? 0) + dt);
      for (const name of d.stack) if (name.includes(' packages/')) inclusive.set(name, (inclusive.get(name) ?? 0) + dt);
    }
  }
  const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, percent: (us / total) * 100 }));
  const callers = new Map();
  for (const [key, us] of blame) {
    const [name, caller] = key.split('\n');
    const list = callers.get(name) ?? [];
    list.push({ caller, percent: (us / total) * 100 });
    callers.set(name, list);
  }
  const topFunctions = sorted(self).map((f) => ({ ...f, via: (callers.get(f.name) ?? []).sort((a, b) => b.percent - a.percent).slice(0, 3) }));
  return { busySeconds: total / 1e6, files: files.length, topFunctions, byOrigin: sorted(byOrigin), flowgateInclusive: sorted(inclusive) };
}
