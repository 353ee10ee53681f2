#!/usr/bin/env node
// S1 end to end against a running Flowgate (npm start): applies gateway.yaml, creates
// Lumen's service account with forms:read, and calls product B through the gateway.
// Prints each step; exits 1 if anything behaves differently from the story.
//
//   FLOWGATE_URL=http://127.0.0.1:8080 FLOWGATE_CLIENT_ID=… FLOWGATE_CLIENT_SECRET=… \
//     node examples/s1-gateway/run.mjs
//
// FLOWGATE_CLIENT_ID/SECRET are a platform administrator's (the bootstrap credentials
// the first start prints). FLOW_PORT moves product B's stand-in (default 9100).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { checker, client, settings } from '../support/client.mjs';
import { startProductB } from './product-b.mjs';

const { url, adminId, adminSecret } = settings();
const { check, failed } = checker();
const { call, tokenFor } = client(url);

const productB = await startProductB({ port: Number(process.env.FLOW_PORT ?? 9100), flowgateUrl: url });
try {
  console.log(`1. The operator applies gateway.yaml (product B at 127.0.0.1:${productB.port})`);
  const config = parse(readFileSync(new URL('./gateway.yaml', import.meta.url), 'utf8'));
  config.services[0].targets = [`http://127.0.0.1:${productB.port}/api`];
  const admin = await tokenFor(adminId, adminSecret);
  const applied = await call('PUT', '/api/v1/gateway/config', { token: admin, body: config });
  check(applied.status === 200, `applied: ${JSON.stringify(applied.body.changes ?? applied.body)}`);

  console.log("2. Lumen's service account gets a token with forms:read (client credentials)");
  const tenant = `lumen-${randomBytes(3).toString('hex')}`;
  const created = await call('POST', '/api/v1/tenants', { token: admin, body: { id: tenant } });
  const owner = await tokenFor(created.body.owner.client_id, created.body.owner.client_secret);
  const account = (await call('POST', '/api/v1/service-accounts', { token: owner, body: { name: 'lumen-reader', scopes: ['forms:read'] } })).body;
  const token = await tokenFor(account.client_id, account.client_secret);
  check(typeof token === 'string', `tenant ${tenant}, account ${account.client_id}`);

  console.log('3. GET /flow/forms/42 through the gateway');
  const traceId = randomBytes(16).toString('hex');
  const res = await fetch(`${url}/flow/forms/42`, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` } });
  const form = await res.json();
  check(res.status === 200 && form.id === '42', `answer ${res.status}: ${JSON.stringify(form)}`);
  const seen = productB.seen.at(-1);
  check(seen?.url === '/api/forms/42', `product B saw ${seen?.method} ${seen?.url}`);
  check(seen?.token !== token && seen?.claims?.aud === 'flow-api', `with its own token: aud=${seen?.claims?.aud} sub=${seen?.claims?.sub} tenant=${seen?.claims?.tenant} scope=${seen?.claims?.scope}`);
  check(seen?.traceparent?.includes(traceId), `and the trace: ${seen?.traceparent}`);

  console.log('4. Refusals at the gateway: B never sees them, each is audited');
  const before = productB.seen.length;
  const none = await call('GET', '/flow/forms/42');
  check(none.status === 401 && none.headers.get('content-type')?.startsWith('application/problem+json'), `no token: ${none.status} ${none.body.code}`);
  const bad = await call('GET', '/flow/forms/42', { token: `${token.slice(0, -4)}AAAA` });
  check(bad.status === 401, `bad token: ${bad.status} ${bad.body.code}: ${bad.body.detail}`);
  const other = (await call('POST', '/api/v1/service-accounts', { token: owner, body: { name: 'lumen-other', scopes: ['visits:read'] } })).body;
  const scope = await call('GET', '/flow/forms/42', { token: await tokenFor(other.client_id, other.client_secret) });
  check(scope.status === 403, `missing scope: ${scope.status} ${scope.body.code}: ${scope.body.detail}`);
  check(productB.seen.length === before, 'product B saw none of them');

  // The tenant's own refusal is in its audit chain; anonymous ones in the platform's.
  let denied = [];
  for (let i = 0; i < 50 && denied.length === 0; i++) {
    denied = (await call('GET', '/api/v1/audit?action=gateway.denied', { token: owner })).body.items ?? [];
    if (denied.length === 0) await new Promise((r) => setTimeout(r, 100));
  }
  check(denied.some((r) => r.traceId === scope.body.traceId), `audit: ${denied.map((r) => `${r.action} ${r.outcome} ${r.details?.code}`).join('; ')}`);
} finally {
  await productB.close();
}
console.log(failed() ? 'S1: FAILED' : 'S1: done');
process.exit(failed() ? 1 : 0);
