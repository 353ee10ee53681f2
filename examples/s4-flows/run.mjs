#!/usr/bin/env node
// S4 end to end against a running Flowgate (npm start): creates a webhook flow and a
// polling (cron) flow, starts them (starting, flow.starting … flow.started, active), calls
// the webhook with POST and GET, watches the cron fire, stops both, and shows the audit
// trail and its verification. Prints each step; exits 1 if anything differs from the story.
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

console.log(`1. The client creates two flows in tenant ${tenant} and starts them`);
const flows = {};
for (const file of ['webhook-flow.yaml', 'polling-flow.yaml']) {
  const res = await call('POST', '/api/v1/flows', { token, body: flowFile(file) });
  check(res.status === 201 && res.body.status === 'inactive', `created ${res.body.definition?.name} (version ${res.body.version}, ${res.body.status})`);
  flows[res.body.definition.name] = res.body.id;
}
const hook = flows['order-intake'];
const poller = flows['stock-poller'];
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
const cronRuns = (await call('GET', `/api/v1/executions?flow=${poller}`, { token })).body.items ?? [];
check(cronRuns.length >= 2 && cronRuns.every((e) => e.trigger === 'cron'), `${cronRuns.length} executions of the polling flow, trigger cron`);

console.log('4. Stop is the mirror: stopping, flow.stopping … flow.stopped, inactive');
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
const first = lifecycle[0];
check(Boolean(first?.headers.name && first.headers.createdAt && first.headers.serviceName), `envelope headers: name=${first?.headers.name} createdAt=${first?.headers.createdAt} serviceName=${first?.headers.serviceName}`);

console.log('5. The audit log has every change, and can prove none was altered');
const audit = await until('the flow audit records', async () => {
  const res = await call('GET', '/api/v1/audit?action=flows.*&limit=100', { token });
  const actions = new Set((res.body.items ?? []).map((r) => r.action));
  return actions.has('flows.flow.created') && actions.has('flows.flow.started') && actions.has('flows.flow.stopped') ? res.body.items : undefined;
});
if (audit) check(true, `audit: ${[...new Set(audit.map((r) => r.action))].sort().join(', ')}`);
const verified = await call('GET', '/api/v1/audit/verify', { token });
check(verified.status === 200 && verified.body.ok === true, `audit verify: ${JSON.stringify(verified.body).slice(0, 160)}`);

console.log(failed() ? 'S4: FAILED' : 'S4: done');
process.exit(failed() ? 1 : 0);
