// The flows bench's helper processes, each forked with its role as argument: the flows'
// local upstream, and the node:http server answering 202 (the ingestion ceiling).
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { epochMs } from './load.mjs';

switch (process.argv[2]) {
  case 'upstream':
    await runUpstream();
    break;
  case 'ceiling':
    await runCeiling();
    break;
  default:
    throw new Error(`unknown role ${process.argv[2]}`);
}

function ready(server, close = () => undefined) {
  process.send({ type: 'ready', port: server.address().port });
  const stop = () => {
    close();
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('disconnect', stop);
}

/**
 * The flows' local upstream. POST /echo answers 200 with a small JSON body and records when
 * each execution's call arrived (epoch ms); POST /hold never finishes (the accept row's flow);
 * POST /gate answers as /echo while the gate is open, and while it is closed holds the call
 * (its head and a space every 4 s) until the gate opens (the backlog row's outage).
 */
async function runUpstream() {
  let arrivals = [];
  const held = new Set();
  let gateOpen = true;
  const gated = new Set();
  const echo = '{"ok":true,"stock":12}';
  const server = http.createServer((req, res) => {
    const at = epochMs();
    if (req.url === '/gate') {
      req.resume();
      if (gateOpen) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(echo);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(' ');
      const timer = setInterval(() => res.write(' '), 4000);
      const entry = { res, timer };
      gated.add(entry);
      res.once('close', () => {
        clearInterval(timer);
        gated.delete(entry);
      });
      return;
    }
    if (req.url === '/hold') {
      // Answers its head and then a space every 4 s, never the end: the step neither finishes
      // nor trips the outbound client's 10 s idle timeout.
      held.add(res);
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write(' ');
      const timer = setInterval(() => res.write(' '), 4000);
      res.once('close', () => clearInterval(timer));
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try {
        const { execution } = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        arrivals.push([execution, at]);
      } catch {
        // Not a flow's call: answered all the same.
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true,"stock":12}');
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (m) => {
    if (m?.type === 'arrivals') {
      process.send({ type: 'arrivals', id: m.id, arrivals });
      arrivals = [];
    } else if (m?.type === 'gate') {
      gateOpen = m.open;
      if (gateOpen) {
        // Leading spaces are JSON whitespace: the held calls end as /echo's answer.
        for (const { res, timer } of gated) {
          clearInterval(timer);
          res.end(echo);
        }
        gated.clear();
      }
      process.send({ type: 'gate', id: m.id, held: gated.size });
    } else if (m?.type === 'release') {
      for (const res of held) res.destroy();
      held.clear();
      process.send({ type: 'released', id: m.id });
    }
  });
  ready(server, () => held.forEach((r) => r.destroy()));
}

/** The ingestion ceiling: node:http reading the body and answering 202 with a JSON id, as a webhook does. */
async function runCeiling() {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const body = `{"execution_id":"${randomBytes(13).toString('hex')}","status":"running"}`;
      res.writeHead(202, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  server.keepAliveTimeout = 72_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  ready(server);
}
