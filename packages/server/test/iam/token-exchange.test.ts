/**
 * The RFC 8693 token-exchange decision: who may exchange, for which scopes, for how long,
 * and how the new token names the actors.
 */
import { describe, expect, it } from 'vitest';
import type { ActClaim, Principal } from '../../src/iam/principal.js';
import { decideTokenExchange, type ExchangeActor, type ExchangeDecision, type ExchangeRequest } from '../../src/iam/token-exchange.js';

const NOW = 1_800_000_000;

function principal(overrides: Partial<Principal> = {}): Principal {
  return {
    kind: 'user',
    sub: 'user-1',
    tenant: 'acme',
    scopes: ['forms:read', 'flows:run', 'data:read'],
    clientId: 'web',
    act: undefined,
    jti: 'jti-1',
    issuer: 'https://flowgate.example',
    exp: NOW + 600,
    iat: NOW - 300,
    name: 'ada',
    ...overrides,
  };
}

const actor: ExchangeActor = { sub: 'sa-1', clientId: 'etl', tenant: 'acme', scopes: ['tokens:exchange'] };

function request(overrides: Partial<ExchangeRequest> = {}): ExchangeRequest {
  return {
    subject: principal(),
    actor,
    actorToken: undefined,
    requestedScopes: undefined,
    requestedTtl: undefined,
    defaultTtl: 300,
    now: NOW,
    ...overrides,
  };
}

function expectGranted(decision: ExchangeDecision): { scopes: string[]; ttl: number; act: ActClaim } {
  expect(decision).toMatchObject({ ok: true });
  if (!decision.ok) throw new Error('unreachable');
  return decision;
}

function expectRefused(decision: ExchangeDecision, code: string): string {
  expect(decision.ok).toBe(false);
  if (decision.ok) throw new Error('unreachable');
  expect(decision.code).toBe(code);
  return decision.detail;
}

describe('decideTokenExchange', () => {
  it('exchanges for the subject scopes by default, naming the actor', () => {
    const granted = expectGranted(decideTokenExchange(request()));
    expect(granted.scopes).toEqual(['forms:read', 'flows:run', 'data:read']);
    expect(granted.act).toEqual({ sub: 'sa-1', client_id: 'etl' });
    expect(granted.ttl).toBe(300);
  });

  it('an actor without tokens:exchange is refused', () => {
    const detail = expectRefused(
      decideTokenExchange(request({ actor: { ...actor, scopes: ['forms:read'] } })),
      'FLOWGATE_ERR_OAUTH_UNAUTHORIZED_CLIENT',
    );
    expect(detail).toContain('tokens:exchange');
  });

  it('an actor holding tokens:exchange through a wildcard may exchange', () => {
    expectGranted(decideTokenExchange(request({ actor: { ...actor, scopes: ['*:*'] } })));
  });

  it('a subject token of another tenant is refused', () => {
    expectRefused(decideTokenExchange(request({ subject: principal({ tenant: 'globex' }) })), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
  });

  it('asking for a scope the subject does not hold is refused, naming the scope', () => {
    const detail = expectRefused(
      decideTokenExchange(request({ requestedScopes: ['forms:read', 'forms:write'] })),
      'FLOWGATE_ERR_OAUTH_INVALID_SCOPE',
    );
    expect(detail).toContain('forms:write');
    expect(detail).not.toContain('forms:read');
  });

  it('asking for a broader form of a held scope is refused', () => {
    const subject = principal({ scopes: ['data:read:visit=a1'] });
    const detail = expectRefused(decideTokenExchange(request({ subject, requestedScopes: ['data:read'] })), 'FLOWGATE_ERR_OAUTH_INVALID_SCOPE');
    expect(detail).toContain('data:read');
  });

  it('asking for fewer or narrower scopes is granted', () => {
    const granted = expectGranted(decideTokenExchange(request({ requestedScopes: ['forms:read', 'data:read:visit=a1'] })));
    expect(granted.scopes).toEqual(['forms:read', 'data:read:visit=a1']);
  });

  it('OpenID Connect scopes are dropped from the exchanged token', () => {
    const granted = expectGranted(decideTokenExchange(request({ requestedScopes: ['openid', 'forms:read'] })));
    expect(granted.scopes).toEqual(['forms:read']);
  });

  it('an exchange that would carry no scope is refused', () => {
    expectRefused(decideTokenExchange(request({ requestedScopes: ['openid'] })), 'FLOWGATE_ERR_OAUTH_INVALID_SCOPE');
    expectRefused(decideTokenExchange(request({ requestedScopes: [] })), 'FLOWGATE_ERR_OAUTH_INVALID_SCOPE');
  });

  it('a lifetime longer than the subject token has left is refused', () => {
    const detail = expectRefused(decideTokenExchange(request({ requestedTtl: 601 })), 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
    expect(detail).toContain('600');
  });

  it('a lifetime up to what the subject token has left is granted', () => {
    expect(expectGranted(decideTokenExchange(request({ requestedTtl: 600 }))).ttl).toBe(600);
    expect(expectGranted(decideTokenExchange(request({ requestedTtl: 60 }))).ttl).toBe(60);
  });

  it('a lifetime that is not a positive whole number is refused', () => {
    for (const ttl of [0, -5, 1.5]) {
      expectRefused(decideTokenExchange(request({ requestedTtl: ttl })), 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
    }
  });

  it('the default lifetime is capped at what the subject token has left', () => {
    const granted = expectGranted(decideTokenExchange(request({ subject: principal({ exp: NOW + 42 }), defaultTtl: 900 })));
    expect(granted.ttl).toBe(42);
  });

  it('an expired subject token is refused', () => {
    expectRefused(decideTokenExchange(request({ subject: principal({ exp: NOW }) })), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
  });

  it('nests the actor of an earlier exchange under the new actor', () => {
    const earlier: ActClaim = { sub: 'sa-0', client_id: 'gateway', act: { sub: 'sa-00' } };
    const granted = expectGranted(decideTokenExchange(request({ subject: principal({ act: earlier }) })));
    expect(granted.act).toEqual({ sub: 'sa-1', client_id: 'etl', act: earlier });
  });

  it('an actor token standing for the authenticated client is accepted', () => {
    const actorToken = principal({ kind: 'service_account', sub: 'sa-1', clientId: 'etl', scopes: ['tokens:exchange'] });
    expectGranted(decideTokenExchange(request({ actorToken })));
  });

  it('an actor token standing for someone else is refused', () => {
    const actorToken = principal({ kind: 'service_account', sub: 'sa-2', clientId: 'other' });
    expectRefused(decideTokenExchange(request({ actorToken })), 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
  });

  it('an actor token of another tenant is refused', () => {
    const actorToken = principal({ kind: 'service_account', sub: 'sa-1', tenant: 'globex' });
    expectRefused(decideTokenExchange(request({ actorToken })), 'FLOWGATE_ERR_OAUTH_INVALID_REQUEST');
  });

  it('gives the same answer for the same inputs', () => {
    const req = request({ requestedScopes: ['forms:read'], requestedTtl: 120 });
    expect(decideTokenExchange(req)).toEqual(decideTokenExchange(req));
  });
});
