#!/usr/bin/env node
// S4 end to end against a running Flowgate (npm start): creates a webhook flow and a
// polling (cron) flow, starts them (starting, flow.starting … flow.started, active), calls
// the webhook with POST and GET, watches the cron fire (each firing asks a stock service for
// a resource with an access token kept in an oauth2 secret, which the service introspects at
// Flowgate's IAM), stops both, and shows the audit trail and its verification. Prints each
// step; exits 1 if anything differs from the story.
//
// The flow calls the stock service on 127.0.0.1, so the server must allow it:
// FLOWGATE_OUTBOUND_ALLOW=127.0.0.1/32 (loopback is refused by default).
//
//   FLOWGATE_URL=http://127.0.0.1:8080 FLOWGATE_CLIENT_ID=… FLOWGATE_CLIENT_SECRET=… \
//     node examples/s4-flows/run.mjs
//
// FLOWGATE_CLIENT_ID/SECRET are a platform administrator's (the bootstrap credentials
// the first start prints).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { checker, client, settings } from '../support/client.mjs';
import { startStockService } from './stock-service.mjs';

const { url, adminId, adminSecret } = settings();
const { check, failed } = checker();
const { call, tokenFor } = client(url);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function until(what, test, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await test();
    if (value) return value;
    if (Date.now() > deadline) {
      check(false, `${what} (gave up after ${timeoutMs} ms)`);
      return undefined;
    }
    await sleep(100);
  }
}
const flowFile = (name) => parse(readFileSync(new URL(`./${name}`, import.meta.url), 'utf8'));

const admin = await tokenFor(adminId, adminSecret);
const tenant = `shop-${randomBytes(3).toString('hex')}`;
const created = await call('POST', '/api/v1/tenants', { token: admin, body: { id: tenant } });
const token = await tokenFor(created.body.owner.client_id, created.body.owner.client_secret);
const statusOf = async (id) => (await call('GET', `/api/v1/flows/${id}`, { token })).body.status;
const eventsOf = async (topic) => (await call('GET', `/api/v1/topics/${topic}/events?from=0&limit=500`, { token })).body.items ?? [];

// The stock service introspects as its own service account; the poller's account may read stock.
const account = async (name, scopes) => (await call('POST', '/api/v1/service-accounts', { token, body: { name, scopes } })).body;
const service = await account('stock-service', []);
const poller = await account('stock-poller', ['stock:read']);
const stock = await startStockService({ port: Number(process.env.STOCK_PORT ?? 0), flowgateUrl: url, clientId: service.client_id, clientSecret: service.client_secret });
const secret = await call('POST', '/api/v1/secrets', {
  token,
  body: { name: 'stock_api', kind: 'oauth2', value: { tokenUrl: `${url}/oauth/token`, clientId: poller.client_id, clientSecret: poller.client_secret, scope: 'stock:read' } },
});
try {
  console.log(`1. The client creates two flows in tenant ${tenant} and starts them`);
  check(secret.status === 201, `secret stock_api (oauth2: the poller's client credentials, stored encrypted): ${secret.status}`);
  const flows = {};
  for (const file of ['webhook-flow.yaml', 'polling-flow.yaml']) {
    const body = flowFile(file);
    for (const node of body.nodes) if (node.component === 'http') node.config.url = `http://127.0.0.1:${stock.port}/stock`;
    const res = await call('POST', '/api/v1/flows', { token, body });
    check(res.status === 201 && res.body.status === 'inactive', `created ${res.body.definition?.name} (version ${res.body.version}, ${res.body.status})`);
    flows[res.body.definition.name] = res.body.id;
  }
  const hook = flows['order-intake'];
  const pollerFlow = flows['stock-poller'];
  const early = await call('POST', `/hook/${hook}`, { body: { order: 1 } });
  check(early.status === 404, `the webhook is not served before the flow is active: ${early.status}`);
  for (const id of Object.values(flows)) {
    const start = await call('POST', `/api/v1/flows/${id}/start`, { token });
    check(start.status === 202 && start.body.status === 'starting', `POST /api/v1/flows/${id}/start → ${start.status} ${start.body.status}`);
  }
  for (const id of Object.values(flows)) await until(`flow ${id} active`, async () => (await statusOf(id)) === 'active');
  check(true, 'both flows are active');

  console.log('2. The webhook flow takes POST {headers, query, body} and GET {headers, body: query}');
  const posted = await call('POST', `/hook/${hook}?src=shop`, { body: { order: 42 }, headers: { 'x-source': 'shop-a' } });
  check(posted.status === 202, `POST /hook/${hook} → 202, execution ${posted.body.execution_id}`);
  const got = await call('GET', `/hook/${hook}?a=1`);
  check(got.status === 202, `GET /hook/${hook}?a=1 → 202, execution ${got.body.execution_id}`);
  for (const run of [posted, got]) {
    const done = await until('the execution to succeed', async () => {
      const e = (await call('GET', `/api/v1/executions/${run.body.execution_id}`, { token })).body;
      return e.status === 'succeeded' ? e : undefined;
    });
    if (done) check(true, `execution ${done.id}: ${done.steps.map((s) => `${s.node} ${s.status}`).join(', ')}; first node got ${JSON.stringify(done.input.body)}`);
  }
  const received = await until('two orders.received events', async () => {
    const items = await eventsOf('orders.received');
    return items.length >= 2 ? items : undefined;
  });
  if (received) check(true, `orders.received: ${received.map((i) => JSON.stringify(i.event.payload.order)).join(', ')}`);

  console.log('3. The polling flow fires on its cron; each firing sends a message to its first node');
  const polled = await until('two cron firings', async () => {
    const items = await eventsOf('stock.polled');
    return items.length >= 2 ? items : undefined;
  });
  if (polled) check(true, `stock.polled ${polled.length} times, e.g. ${JSON.stringify(polled[0].event.payload)}`);
  const cronRuns = (await call('GET', `/api/v1/executions?flow=${pollerFlow}`, { token })).body.items ?? [];
  check(cronRuns.length >= 2 && cronRuns.every((e) => e.trigger === 'cron'), `${cronRuns.length} executions of the polling flow, trigger cron`);

  console.log('4. Each firing requests the stock with an ephemeral token, which the service introspects');
  const asked = stock.seen.filter((s) => s.allowed);
  const first = asked[0];
  check(asked.length >= 2 && [poller.id, poller.client_id].includes(first.sub) && first.scope === 'stock:read', `the stock service introspected ${asked.length} requests: active=${first?.active} sub=${first?.sub} scope=${first?.scope}`);
  check(first && first.exp - Date.now() / 1000 < 3600, `the token is short-lived: it expires in ${first ? Math.round(first.exp - Date.now() / 1000) : '?'} s, and the secret renews it`);
  const done = await until('a finished polling execution', async () => {
    const items = (await call('GET', `/api/v1/executions?flow=${pollerFlow}&status=succeeded&limit=1`, { token })).body.items ?? [];
    return items[0] ? (await call('GET', `/api/v1/executions/${items[0].id}`, { token })) : undefined;
  });
  if (done) {
    const text = JSON.stringify(done.body);
    check(!asked.some((s) => text.includes(s.token)), `the execution record holds no token (secrets resolve at run time and are redacted from records): ${done.body.steps.map((s) => `${s.node} ${s.status}`).join(', ')}`);
  }

  console.log('5. Stop is the mirror: stopping, flow.stopping … flow.stopped, inactive');
  for (const id of Object.values(flows)) {
    const stop = await call('POST', `/api/v1/flows/${id}/stop`, { token });
    check(stop.status === 202 && stop.body.status === 'stopping', `POST /api/v1/flows/${id}/stop → ${stop.status} ${stop.body.status}`);
  }
  for (const id of Object.values(flows)) await until(`flow ${id} inactive`, async () => (await statusOf(id)) === 'inactive');
  const late = await call('POST', `/hook/${hook}`, { body: { order: 2 } });
  check(late.status === 404, `the webhook is no longer served: ${late.status}`);
  const lifecycle = [];
  for (const topic of ['flow.starting', 'flow.started', 'flow.stopping', 'flow.stopped']) {
    for (const item of await eventsOf(topic)) if (item.event.payload.flow.id === hook) lifecycle.push(item.event);
  }
  lifecycle.sort((a, b) => a.headers.createdAt.localeCompare(b.headers.createdAt));
  const order = lifecycle.map((e) => `${e.headers.name}(${e.payload.flow.status})`).join(' → ');
  check(order === 'flow.starting(starting) → flow.started(active) → flow.stopping(stopping) → flow.stopped(inactive)', `events of the webhook flow: ${order}`);
  const opening = lifecycle[0];
  check(Boolean(opening?.headers.name && opening.headers.createdAt && opening.headers.serviceName), `envelope headers: name=${opening?.headers.name} createdAt=${opening?.headers.createdAt} serviceName=${opening?.headers.serviceName}`);

  console.log('6. The audit log has every change and every read of the secret, and can prove none was altered');
  const audit = await until('the flow audit records', async () => {
    const res = await call('GET', '/api/v1/audit?action=flows.*&limit=100', { token });
    const actions = new Set((res.body.items ?? []).map((r) => r.action));
    return actions.has('flows.flow.created') && actions.has('flows.flow.started') && actions.has('flows.flow.stopped') ? res.body.items : undefined;
  });
  if (audit) check(true, `audit: ${[...new Set(audit.map((r) => r.action))].sort().join(', ')}`);
  const reads = (await call('GET', '/api/v1/audit?action=secrets.read&limit=5', { token })).body.items ?? [];
  check(reads.length > 0 && reads[0].actor === `flow:${pollerFlow}` && reads[0].target === 'secret:stock_api', `secrets.read by ${reads[0]?.actor} (${reads[0]?.details?.component}, node ${reads[0]?.details?.node}), never the value`);
  const verified = await call('GET', '/api/v1/audit/verify', { token });
  check(verified.status === 200 && verified.body.ok === true, `audit verify: ${JSON.stringify(verified.body).slice(0, 160)}`);

} finally {
  await stock.close();
}
console.log(failed() ? 'S4: FAILED' : 'S4: done');
process.exit(failed() ? 1 : 0);
