/**
 * The scope grammar and its implication rules (`@flowgate/contracts`): what a held
 * scope grants, and what it never grants.
 */
import { describe, expect, it } from 'vitest';
import {
  formatScope,
  isOidcScope,
  isRole,
  isScope,
  missingScopes,
  parseScope,
  ROLE_SCOPES,
  roleRank,
  SCOPE_PATTERN_SOURCE,
  scopesGrant,
  splitScopeParam,
} from '@flowgate/contracts';

describe('scope grammar', () => {
  it.each([
    'forms:read',
    'flows:run',
    'flows:*',
    '*:read',
    '*:*',
    'platform:admin',
    'data:read:visit=a1',
    'flows:run:flow=my_analysis',
    'data.v2:read-all:region_code=EU-west.1~x@y',
    'a:b',
  ])('%s is a scope', (text) => {
    expect(isScope(text)).toBe(true);
  });

  it.each([
    ['an empty string', ''],
    ['a bare resource', 'forms'],
    ['a missing action', 'forms:'],
    ['a missing resource', ':read'],
    ['upper case', 'Forms:read'],
    ['a leading digit', '1forms:read'],
    ['an empty qualifier', 'data:read:'],
    ['a qualifier without a value', 'data:read:visit='],
    ['a qualifier without a key', 'data:read:=a1'],
    ['a qualifier without =', 'data:read:visit'],
    ['an upper-case qualifier key', 'data:read:Visit=a1'],
    ['a wildcard qualifier', 'data:read:*=a1'],
    ['two qualifiers', 'data:read:visit=a1:form=b2'],
    ['a space', 'forms: read'],
    ['a slash in the value', 'data:read:visit=a/1'],
    ['a partial wildcard', 'fo*:read'],
    ['an OIDC scope', 'openid'],
    ['a name longer than 63 characters', `${'a'.repeat(64)}:read`],
  ])('%s is not a scope (%j)', (_label, text) => {
    expect(isScope(text)).toBe(false);
    expect(parseScope(text)).toBeUndefined();
  });

  it('parses the parts of a scope', () => {
    expect(parseScope('forms:read')).toEqual({ resource: 'forms', action: 'read' });
    expect(parseScope('data:read:visit=a1')).toEqual({ resource: 'data', action: 'read', qualifier: { key: 'visit', value: 'a1' } });
  });

  it('formats a parsed scope back to the same text', () => {
    for (const text of ['forms:read', '*:*', 'data:read:visit=a1']) expect(formatScope(parseScope(text)!)).toBe(text);
  });

  it('the exported pattern source accepts and refuses what the parser does', () => {
    const pattern = new RegExp(SCOPE_PATTERN_SOURCE);
    const samples = ['forms:read', '*:read', 'data:read:visit=a1', 'Forms:read', 'forms', 'data:read:visit='];
    expect(samples.map((text) => pattern.test(text))).toEqual(samples.map(isScope));
    expect(samples.map(isScope)).toEqual([true, true, true, false, false, false]);
  });

  it('recognises the OpenID Connect scopes', () => {
    expect(['openid', 'profile', 'offline_access'].every(isOidcScope)).toBe(true);
    expect(isOidcScope('email')).toBe(false);
    expect(isOidcScope('forms:read')).toBe(false);
  });
});

describe('scope implication', () => {
  it('a scope grants itself', () => {
    expect(scopesGrant(['forms:read'], 'forms:read')).toBe(true);
    expect(scopesGrant(['data:read:visit=a1'], 'data:read:visit=a1')).toBe(true);
  });

  it('a scope grants nothing else of its resource or another resource', () => {
    expect(scopesGrant(['forms:read'], 'forms:write')).toBe(false);
    expect(scopesGrant(['forms:read'], 'flows:read')).toBe(false);
  });

  it('an unqualified scope grants every qualified form of it', () => {
    expect(scopesGrant(['data:read'], 'data:read:visit=a1')).toBe(true);
    expect(scopesGrant(['flows:run'], 'flows:run:flow=my_analysis')).toBe(true);
  });

  it('a qualified scope grants neither the unqualified scope nor another qualifier', () => {
    expect(scopesGrant(['data:read:visit=a1'], 'data:read')).toBe(false);
    expect(scopesGrant(['data:read:visit=a1'], 'data:read:visit=a2')).toBe(false);
    expect(scopesGrant(['data:read:visit=a1'], 'data:read:form=a1')).toBe(false);
    expect(scopesGrant(['data:read:visit=a1'], 'data:write:visit=a1')).toBe(false);
  });

  it('a wildcard action grants every action of its resource, qualified or not', () => {
    expect(scopesGrant(['flows:*'], 'flows:run')).toBe(true);
    expect(scopesGrant(['flows:*'], 'flows:write')).toBe(true);
    expect(scopesGrant(['flows:*'], 'flows:run:flow=x')).toBe(true);
    expect(scopesGrant(['flows:*'], 'forms:run')).toBe(false);
  });

  it('a qualified wildcard action stays within its qualifier', () => {
    expect(scopesGrant(['flows:*:flow=x'], 'flows:run:flow=x')).toBe(true);
    expect(scopesGrant(['flows:*:flow=x'], 'flows:run:flow=y')).toBe(false);
    expect(scopesGrant(['flows:*:flow=x'], 'flows:run')).toBe(false);
  });

  it('a wildcard resource grants its action on every tenant resource', () => {
    expect(scopesGrant(['*:read'], 'forms:read')).toBe(true);
    expect(scopesGrant(['*:read'], 'data:read:visit=a1')).toBe(true);
    expect(scopesGrant(['*:read'], 'forms:write')).toBe(false);
  });

  it('*:* grants every tenant scope', () => {
    const wanted = ['forms:read', 'flows:run:flow=x', 'users:write', 'tokens:exchange', '*:read'];
    expect(wanted.filter((w) => !scopesGrant(['*:*'], w))).toEqual([]);
  });

  it('no wildcard reaches the platform resource', () => {
    expect(scopesGrant(['*:*'], 'platform:admin')).toBe(false);
    expect(scopesGrant(['*:admin'], 'platform:admin')).toBe(false);
    expect(scopesGrant(['*:read'], 'platform:read')).toBe(false);
  });

  it('only an explicit platform scope grants platform scopes', () => {
    expect(scopesGrant(['platform:admin'], 'platform:admin')).toBe(true);
    expect(scopesGrant(['platform:*'], 'platform:admin')).toBe(true);
    expect(scopesGrant(['platform:admin'], 'forms:read')).toBe(false);
  });

  it('a narrower wildcard does not grant a broader one', () => {
    expect(scopesGrant(['*:read'], '*:*')).toBe(false);
    expect(scopesGrant(['forms:*'], '*:*')).toBe(false);
    expect(scopesGrant(['forms:read'], '*:read')).toBe(false);
  });

  it('a malformed held scope grants nothing', () => {
    expect(scopesGrant(['Forms:Read'], 'forms:read')).toBe(false);
    expect(scopesGrant(['*'], 'forms:read')).toBe(false);
    expect(scopesGrant(['forms:read '], 'forms:read')).toBe(false);
  });

  it('a malformed wanted scope is granted by nothing', () => {
    expect(scopesGrant(['*:*'], 'forms')).toBe(false);
    expect(scopesGrant(['*:*'], '')).toBe(false);
    expect(scopesGrant(['*:*'], 'openid')).toBe(false);
  });

  it('no held scopes grant nothing', () => {
    expect(scopesGrant([], 'forms:read')).toBe(false);
  });
});

describe('missingScopes', () => {
  it('lists the wanted scopes the held ones do not grant, in order', () => {
    expect(missingScopes(['forms:read', 'flows:*'], ['forms:read', 'forms:write', 'flows:run', 'platform:admin'])).toEqual([
      'forms:write',
      'platform:admin',
    ]);
  });

  it('is empty when everything is granted or nothing is wanted', () => {
    expect(missingScopes(['*:*'], ['forms:read', 'data:write:visit=a1'])).toEqual([]);
    expect(missingScopes([], [])).toEqual([]);
  });

  it('counts a malformed wanted scope as missing', () => {
    expect(missingScopes(['*:*'], ['Forms:read'])).toEqual(['Forms:read']);
  });
});

describe('splitScopeParam', () => {
  it('splits on spaces and drops empty items', () => {
    expect(splitScopeParam('openid  forms:read flows:run ')).toEqual(['openid', 'forms:read', 'flows:run']);
  });

  it('drops duplicates, keeping the first occurrence', () => {
    expect(splitScopeParam('forms:read flows:run forms:read')).toEqual(['forms:read', 'flows:run']);
  });

  it('an absent or empty parameter is no scopes', () => {
    expect(splitScopeParam(undefined)).toEqual([]);
    expect(splitScopeParam('')).toEqual([]);
    expect(splitScopeParam('   ')).toEqual([]);
  });
});

describe('roles', () => {
  it('ranks roles from owner down to viewer', () => {
    expect(roleRank('owner')).toBeLessThan(roleRank('admin'));
    expect(roleRank('admin')).toBeLessThan(roleRank('member'));
    expect(roleRank('member')).toBeLessThan(roleRank('viewer'));
  });

  it('recognises role names', () => {
    expect(isRole('admin')).toBe(true);
    expect(isRole('root')).toBe(false);
  });

  it('no role scope reaches platform administration', () => {
    for (const scopes of Object.values(ROLE_SCOPES)) expect(scopesGrant(scopes, 'platform:admin')).toBe(false);
  });

  it('a viewer reads but does not write', () => {
    expect(scopesGrant(ROLE_SCOPES.viewer, 'forms:read')).toBe(true);
    expect(scopesGrant(ROLE_SCOPES.viewer, 'flows:write')).toBe(false);
  });
});
