/**
 * The IAM's storage, run against both dialects: repositories, tenant isolation, signing
 * keys, refresh-token rotation, authorization codes, revocation and failure throttling.
 */
import { randomBytes } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import type { Kysely } from 'kysely';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ErrorCode } from '@flowgate/contracts';
import { FlowgateError } from '../../src/errors/flowgate-error.js';
import { AuthCodeStore, s256Challenge } from '../../src/iam/auth-codes.js';
import { FailureThrottle } from '../../src/iam/failure-throttle.js';
import type { IamTables } from '../../src/iam/iam.tables.js';
import { iamMigrations } from '../../src/iam/iam.migrations.js';
import { MemberRepository } from '../../src/iam/member.repository.js';
import { RefreshTokenStore, type IssueRefreshToken } from '../../src/iam/refresh-tokens.js';
import { RevocationList } from '../../src/iam/revocation-list.js';
import { createScryptHasher } from '../../src/iam/secret-hasher.js';
import { accountScopes, ServiceAccountRepository, type ServiceAccountRow } from '../../src/iam/service-account.repository.js';
import { SigningKeyStore } from '../../src/iam/signing-keys.js';
import { TenantRepository } from '../../src/iam/tenant.repository.js';
import { UserRepository, type UserRow } from '../../src/iam/user.repository.js';
import { ManualClock } from '../../src/kernel/clock.js';
import type { Store } from '../../src/storage/store.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

/** Awaits a promise that must reject with a {@link FlowgateError} of `code`. */
async function expectFlowgateError(promise: Promise<unknown>, code: ErrorCode): Promise<FlowgateError> {
  const outcome = await promise.then(
    () => ({ rejected: false as const }),
    (error: unknown) => ({ rejected: true as const, error }),
  );
  expect(outcome).toMatchObject({ rejected: true });
  const error = outcome.rejected ? outcome.error : undefined;
  expect(error).toBeInstanceOf(FlowgateError);
  expect((error as FlowgateError).code).toBe(code);
  return error as FlowgateError;
}

const TENANT_A = 'acme';
const TENANT_B = 'globex';

describe.each(STORE_KINDS)('IAM storage on %s', (kind) => {
  let opened: TestStore;
  let store: Store;
  let db: Kysely<IamTables>;
  let clock: ManualClock;

  beforeEach(async () => {
    opened = await openTestStore(kind);
    store = opened.store;
    db = store.db<IamTables>();
    clock = new ManualClock();
  });

  afterEach(async () => {
    await opened.cleanup();
  });

  async function createTenants(...ids: string[]): Promise<void> {
    const tenants = new TenantRepository(db);
    for (const id of ids) await tenants.create(id, clock.now());
  }

  function userRow(tenantId: string, id: string, username: string): Omit<UserRow, 'disabled'> {
    return { id, tenant_id: tenantId, username, password_hash: 'scrypt$x', display_name: null, created_at: clock.now() };
  }

  function accountRow(tenantId: string, id: string, clientId: string, scopes: string[] = ['forms:read']): Omit<ServiceAccountRow, 'disabled'> {
    return {
      id,
      tenant_id: tenantId,
      name: `account ${id}`,
      client_id: clientId,
      secret_hash: 'scrypt$old',
      scopes: JSON.stringify(scopes),
      created_by: null,
      created_at: clock.now(),
    };
  }

  describe('migrations', () => {
    it('applies the IAM migrations to an empty store, then has nothing left to do', async () => {
      const fresh = await openTestStore(kind, { migrate: false });
      try {
        await expect(fresh.store.migrate(iamMigrations)).resolves.toEqual(['20261123_01_iam_initial', '20261123_07_iam_api_keys']);
        await expect(fresh.store.migrate(iamMigrations)).resolves.toEqual([]);
        await expect(new TenantRepository(fresh.store.db<IamTables>()).count()).resolves.toBe(0);
      } finally {
        await fresh.cleanup();
      }
    });

    it('migrating an up-to-date store changes nothing', async () => {
      await createTenants(TENANT_A);
      await expect(store.migrate(iamMigrations)).resolves.toEqual([]);
      await expect(new TenantRepository(db).get(TENANT_A)).resolves.toEqual({ id: TENANT_A, created_at: clock.now() });
    });

    it('answers a ping', async () => {
      await expect(store.ping()).resolves.toBe(true);
    });
  });

  describe('tenants', () => {
    it('creates a tenant and reads it back', async () => {
      const tenants = new TenantRepository(db);
      await expect(tenants.create(TENANT_A, clock.now())).resolves.toEqual({ id: TENANT_A, created_at: clock.now() });
      await expect(tenants.get(TENANT_A)).resolves.toEqual({ id: TENANT_A, created_at: clock.now() });
      await expect(tenants.count()).resolves.toBe(1);
    });

    it('an unknown tenant is undefined', async () => {
      await expect(new TenantRepository(db).get('nobody')).resolves.toBeUndefined();
    });

    it('a second tenant with the same id is a resource conflict', async () => {
      const tenants = new TenantRepository(db);
      await tenants.create(TENANT_A, clock.now());
      const error = await expectFlowgateError(tenants.create(TENANT_A, clock.now()), 'FLOWGATE_ERR_RESOURCE_CONFLICT');
      expect(error.status).toBe(409);
      await expect(tenants.count()).resolves.toBe(1);
    });

    it('lists tenants in id order, page by page, following the cursor', async () => {
      const ids = ['echo', 'alpha', 'delta', 'bravo', 'charlie'];
      await createTenants(...ids);
      const tenants = new TenantRepository(db);
      const seen: string[] = [];
      const pageSizes: number[] = [];
      let cursor: string | undefined;
      for (let i = 0; i < 10; i++) {
        const page = await tenants.list(2, cursor);
        seen.push(...page.items.map((t) => t.id));
        pageSizes.push(page.items.length);
        if (page.next_cursor === null) break;
        cursor = page.next_cursor;
      }
      expect(seen).toEqual(['alpha', 'bravo', 'charlie', 'delta', 'echo']);
      expect(pageSizes).toEqual([2, 2, 1]);
    });

    it('a page that holds everything has no next cursor', async () => {
      await createTenants('alpha', 'bravo');
      const page = await new TenantRepository(db).list(2);
      expect(page.items.map((t) => t.id)).toEqual(['alpha', 'bravo']);
      expect(page.next_cursor).toBeNull();
    });
  });

  describe('users', () => {
    beforeEach(async () => {
      await createTenants(TENANT_A, TENANT_B);
    });

    it('creates a user and finds it by id and by user name', async () => {
      const users = new UserRepository(db);
      const created = await users.create(userRow(TENANT_A, 'u1', 'ada'));
      expect(created.disabled).toBe(0);
      await expect(users.get(TENANT_A, 'u1')).resolves.toEqual(created);
      await expect(users.findByUsername(TENANT_A, 'ada')).resolves.toEqual(created);
      await expect(users.findByUsername(TENANT_A, 'grace')).resolves.toBeUndefined();
    });

    it('a second user with the same name in one tenant is a resource conflict', async () => {
      const users = new UserRepository(db);
      await users.create(userRow(TENANT_A, 'u1', 'ada'));
      await expectFlowgateError(users.create(userRow(TENANT_A, 'u2', 'ada')), 'FLOWGATE_ERR_RESOURCE_CONFLICT');
    });

    it('the same user name may exist in two tenants', async () => {
      const users = new UserRepository(db);
      await users.create(userRow(TENANT_A, 'u1', 'ada'));
      await users.create(userRow(TENANT_B, 'u2', 'ada'));
      expect((await users.findByUsername(TENANT_A, 'ada'))?.id).toBe('u1');
      expect((await users.findByUsername(TENANT_B, 'ada'))?.id).toBe('u2');
    });

    it('updates a user', async () => {
      const users = new UserRepository(db);
      await users.create(userRow(TENANT_A, 'u1', 'ada'));
      await expect(users.update(TENANT_A, 'u1', { display_name: 'Ada L.', disabled: 1, password_hash: 'scrypt$new' })).resolves.toBe(true);
      expect(await users.get(TENANT_A, 'u1')).toMatchObject({ display_name: 'Ada L.', disabled: 1, password_hash: 'scrypt$new' });
    });

    it('updating or deleting an unknown user reports false', async () => {
      const users = new UserRepository(db);
      await expect(users.update(TENANT_A, 'nobody', { display_name: 'x' })).resolves.toBe(false);
      await expect(users.delete(TENANT_A, 'nobody')).resolves.toBe(false);
    });

    it('deletes a user', async () => {
      const users = new UserRepository(db);
      await users.create(userRow(TENANT_A, 'u1', 'ada'));
      await expect(users.delete(TENANT_A, 'u1')).resolves.toBe(true);
      await expect(users.get(TENANT_A, 'u1')).resolves.toBeUndefined();
      await expect(users.delete(TENANT_A, 'u1')).resolves.toBe(false);
    });

    it('lists the users of a tenant page by page', async () => {
      const users = new UserRepository(db);
      for (const [id, name] of [['u1', 'ada'], ['u2', 'grace'], ['u3', 'alan']] as const) await users.create(userRow(TENANT_A, id, name));
      await users.create(userRow(TENANT_B, 'u4', 'edsger'));
      const first = await users.list(TENANT_A, 2);
      expect(first.items.map((u) => u.id)).toEqual(['u1', 'u2']);
      expect(first.next_cursor).toBe('u2');
      const second = await users.list(TENANT_A, 2, first.next_cursor ?? undefined);
      expect(second.items.map((u) => u.id)).toEqual(['u3']);
      expect(second.next_cursor).toBeNull();
    });

    it('a user of another tenant is invisible and untouchable', async () => {
      const users = new UserRepository(db);
      await users.create(userRow(TENANT_A, 'u1', 'ada'));
      await expect(users.get(TENANT_B, 'u1')).resolves.toBeUndefined();
      await expect(users.findByUsername(TENANT_B, 'ada')).resolves.toBeUndefined();
      await expect(users.list(TENANT_B)).resolves.toEqual({ items: [], next_cursor: null });
      await expect(users.update(TENANT_B, 'u1', { disabled: 1, password_hash: 'stolen' })).resolves.toBe(false);
      await expect(users.delete(TENANT_B, 'u1')).resolves.toBe(false);
      expect(await users.get(TENANT_A, 'u1')).toMatchObject({ disabled: 0, password_hash: 'scrypt$x' });
    });
  });

  describe('service accounts', () => {
    beforeEach(async () => {
      await createTenants(TENANT_A, TENANT_B);
    });

    it('creates an account and reads it back, with its scopes', async () => {
      const accounts = new ServiceAccountRepository(db);
      const created = await accounts.create(accountRow(TENANT_A, 'sa1', 'acme-etl', ['forms:read', 'flows:run']));
      expect(created.disabled).toBe(0);
      const read = await accounts.get(TENANT_A, 'sa1');
      expect(read).toEqual(created);
      expect(accountScopes(read!)).toEqual(['forms:read', 'flows:run']);
    });

    it('finds an account by client id without knowing its tenant', async () => {
      const accounts = new ServiceAccountRepository(db);
      await accounts.create(accountRow(TENANT_B, 'sa1', 'globex-etl'));
      expect(await accounts.findByClientId('globex-etl')).toMatchObject({ id: 'sa1', tenant_id: TENANT_B });
      await expect(accounts.findByClientId('nobody')).resolves.toBeUndefined();
    });

    it('a client id is unique across tenants', async () => {
      const accounts = new ServiceAccountRepository(db);
      await accounts.create(accountRow(TENANT_A, 'sa1', 'shared-id'));
      await expectFlowgateError(accounts.create(accountRow(TENANT_B, 'sa2', 'shared-id')), 'FLOWGATE_ERR_RESOURCE_CONFLICT');
    });

    it('replaces the secret hash', async () => {
      const accounts = new ServiceAccountRepository(db);
      await accounts.create(accountRow(TENANT_A, 'sa1', 'acme-etl'));
      await expect(accounts.setSecretHash(TENANT_A, 'sa1', 'scrypt$new')).resolves.toBe(true);
      expect((await accounts.get(TENANT_A, 'sa1'))?.secret_hash).toBe('scrypt$new');
    });

    it('lists the accounts of a tenant page by page and deletes one', async () => {
      const accounts = new ServiceAccountRepository(db);
      await accounts.create(accountRow(TENANT_A, 'sa1', 'c1'));
      await accounts.create(accountRow(TENANT_A, 'sa2', 'c2'));
      const first = await accounts.list(TENANT_A, 1);
      expect(first.items.map((a) => a.id)).toEqual(['sa1']);
      const second = await accounts.list(TENANT_A, 1, first.next_cursor ?? undefined);
      expect(second).toMatchObject({ items: [{ id: 'sa2' }], next_cursor: null });
      await expect(accounts.delete(TENANT_A, 'sa1')).resolves.toBe(true);
      expect((await accounts.list(TENANT_A)).items.map((a) => a.id)).toEqual(['sa2']);
    });

    it('an account of another tenant is invisible and untouchable', async () => {
      const accounts = new ServiceAccountRepository(db);
      await accounts.create(accountRow(TENANT_A, 'sa1', 'acme-etl'));
      await expect(accounts.get(TENANT_B, 'sa1')).resolves.toBeUndefined();
      await expect(accounts.list(TENANT_B)).resolves.toEqual({ items: [], next_cursor: null });
      await expect(accounts.setSecretHash(TENANT_B, 'sa1', 'stolen')).resolves.toBe(false);
      await expect(accounts.delete(TENANT_B, 'sa1')).resolves.toBe(false);
      expect((await accounts.get(TENANT_A, 'sa1'))?.secret_hash).toBe('scrypt$old');
    });
  });

  describe('members', () => {
    beforeEach(async () => {
      await createTenants(TENANT_A, TENANT_B);
    });

    it('gives a principal a role and changes it in place', async () => {
      const members = new MemberRepository(db);
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'u1', principal_type: 'user', role: 'viewer', created_at: clock.now() });
      await expect(members.roleOf(TENANT_A, 'u1')).resolves.toBe('viewer');
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'u1', principal_type: 'user', role: 'admin', created_at: clock.now() });
      await expect(members.roleOf(TENANT_A, 'u1')).resolves.toBe('admin');
      expect((await members.list(TENANT_A)).items).toHaveLength(1);
    });

    it('lists members with the name of the user or account behind each', async () => {
      const users = new UserRepository(db);
      const accounts = new ServiceAccountRepository(db);
      const members = new MemberRepository(db);
      await users.create(userRow(TENANT_A, 'p1', 'ada'));
      await accounts.create({ ...accountRow(TENANT_A, 'p2', 'acme-etl'), name: 'ETL robot' });
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p1', principal_type: 'user', role: 'owner', created_at: clock.now() });
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p2', principal_type: 'service_account', role: 'member', created_at: clock.now() });
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p3', principal_type: 'user', role: 'viewer', created_at: clock.now() });
      const page = await members.list(TENANT_A);
      expect(page.items.map((m) => [m.principal_id, m.name, m.role])).toEqual([
        ['p1', 'ada', 'owner'],
        ['p2', 'ETL robot', 'member'],
        ['p3', 'p3', 'viewer'],
      ]);
      expect(page.next_cursor).toBeNull();
    });

    it('pages through members with the cursor', async () => {
      const members = new MemberRepository(db);
      for (const id of ['p1', 'p2', 'p3']) {
        await members.upsert({ tenant_id: TENANT_A, principal_id: id, principal_type: 'user', role: 'viewer', created_at: clock.now() });
      }
      const first = await members.list(TENANT_A, 2);
      expect(first.items.map((m) => m.principal_id)).toEqual(['p1', 'p2']);
      const second = await members.list(TENANT_A, 2, first.next_cursor ?? undefined);
      expect(second.items.map((m) => m.principal_id)).toEqual(['p3']);
      expect(second.next_cursor).toBeNull();
    });

    it('counts the owners of a tenant only', async () => {
      const members = new MemberRepository(db);
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p1', principal_type: 'user', role: 'owner', created_at: clock.now() });
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p2', principal_type: 'user', role: 'owner', created_at: clock.now() });
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p3', principal_type: 'user', role: 'admin', created_at: clock.now() });
      await members.upsert({ tenant_id: TENANT_B, principal_id: 'p4', principal_type: 'user', role: 'owner', created_at: clock.now() });
      await expect(members.countOwners(TENANT_A)).resolves.toBe(2);
      await expect(members.countOwners(TENANT_B)).resolves.toBe(1);
      await expect(members.countOwners('nobody')).resolves.toBe(0);
    });

    it('removes a member', async () => {
      const members = new MemberRepository(db);
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p1', principal_type: 'user', role: 'viewer', created_at: clock.now() });
      await expect(members.delete(TENANT_A, 'p1')).resolves.toBe(true);
      await expect(members.roleOf(TENANT_A, 'p1')).resolves.toBeUndefined();
      await expect(members.delete(TENANT_A, 'p1')).resolves.toBe(false);
    });

    it('a membership in another tenant grants no role here', async () => {
      const members = new MemberRepository(db);
      await members.upsert({ tenant_id: TENANT_A, principal_id: 'p1', principal_type: 'user', role: 'owner', created_at: clock.now() });
      await expect(members.roleOf(TENANT_B, 'p1')).resolves.toBeUndefined();
      await expect(members.list(TENANT_B)).resolves.toEqual({ items: [], next_cursor: null });
      await expect(members.delete(TENANT_B, 'p1')).resolves.toBe(false);
      await expect(members.roleOf(TENANT_A, 'p1')).resolves.toBe('owner');
    });
  });

  describe('signing keys', () => {
    const options = { cacheMs: 30_000, publishMs: 3_600_000 };

    it('the first start creates one signing key, and later starts reuse it', async () => {
      const keys = new SigningKeyStore(db, clock, options);
      await keys.init();
      await new SigningKeyStore(db, clock, options).init();
      const list = await keys.list();
      expect(list).toHaveLength(1);
      expect(list[0]).toMatchObject({ alg: 'ES256', retiredAt: null, publishedUntil: null });
    });

    it('publishes the public half of the active key in the JWKS, never the private one', async () => {
      const keys = new SigningKeyStore(db, clock, options);
      await keys.init();
      const { kid } = await keys.activeKey();
      const { keys: published } = await keys.jwks();
      expect(published).toHaveLength(1);
      expect(published[0]).toMatchObject({ kid, alg: 'ES256', use: 'sig', kty: 'EC', crv: 'P-256' });
      expect(published[0]).not.toHaveProperty('d');
    });

    it('a token signed with the active key verifies with the published key of its kid', async () => {
      const keys = new SigningKeyStore(db, clock, options);
      await keys.init();
      const { kid, key } = await keys.activeKey();
      const jwt = await new SignJWT({ sub: 'u1' }).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
      const publicKey = await keys.publicKey(kid);
      expect(publicKey).toBeDefined();
      const { payload } = await jwtVerify(jwt, publicKey!);
      expect(payload.sub).toBe('u1');
    });

    it('rotation makes a new active key and keeps the old one published until its window passes', async () => {
      const keys = new SigningKeyStore(db, clock, options);
      await keys.init();
      const { kid: oldKid } = await keys.activeKey();
      clock.advance(1000);
      const rotated = await keys.rotate();
      expect(rotated.kid).not.toBe(oldKid);
      expect((await keys.activeKey()).kid).toBe(rotated.kid);
      expect((await keys.jwks()).keys.map((k) => k.kid).sort()).toEqual([oldKid, rotated.kid].sort());
      await expect(keys.publicKey(oldKid)).resolves.toBeDefined();

      clock.advance(options.publishMs - 1);
      await expect(keys.publicKey(oldKid)).resolves.toBeDefined();

      clock.advance(1);
      expect((await keys.jwks()).keys.map((k) => k.kid)).toEqual([rotated.kid]);
      await expect(keys.publicKey(oldKid)).resolves.toBeUndefined();
      await expect(keys.publicKey(rotated.kid)).resolves.toBeDefined();
    });

    it('lists a retired key with the end of its publication', async () => {
      const keys = new SigningKeyStore(db, clock, options);
      await keys.init();
      const { kid: oldKid } = await keys.activeKey();
      const retiredAt = clock.now() + 5000;
      clock.set(retiredAt);
      await keys.rotate();
      const old = (await keys.list()).find((k) => k.kid === oldKid);
      expect(old).toMatchObject({ retiredAt, publishedUntil: retiredAt + options.publishMs });
    });

    it('an instance learns of a key another instance rotated in', async () => {
      const first = new SigningKeyStore(db, clock, options);
      const second = new SigningKeyStore(db, clock, options);
      await first.init();
      await second.init();
      const { kid } = await first.rotate();
      await expect(second.publicKey(kid)).resolves.toBeDefined();
    });

    it('the public key of an unknown kid is undefined', async () => {
      const keys = new SigningKeyStore(db, clock, options);
      await keys.init();
      await expect(keys.publicKey('no-such-kid')).resolves.toBeUndefined();
    });
  });

  describe('refresh tokens', () => {
    const lifetimeMs = 3_600_000;
    const base: IssueRefreshToken = {
      tenantId: TENANT_A,
      principalId: 'u1',
      principalType: 'user',
      clientId: 'web',
      scope: 'openid forms:read',
      authTime: Date.UTC(2026, 0, 1),
    };

    beforeEach(async () => {
      await createTenants(TENANT_A);
    });

    it('issues an opaque token stored only as its hash', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const { token, familyId } = await tokens.issue(base);
      const row = await tokens.find(token);
      expect(row).toMatchObject({ family_id: familyId, tenant_id: TENANT_A, scope: 'openid forms:read', expires_at: clock.now() + lifetimeMs });
      expect(row?.token_hash).not.toContain(token);
      expect(tokens.isActive(row!)).toBe(true);
    });

    it('spending a token returns its row and uses it up', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const { token, familyId } = await tokens.issue(base);
      expect(await tokens.spend(token, 'web')).toMatchObject({ family_id: familyId, principal_id: 'u1' });
      expect(tokens.isActive((await tokens.find(token))!)).toBe(false);
    });

    it('a token presented by another client is refused', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const { token } = await tokens.issue(base);
      await expectFlowgateError(tokens.spend(token, 'other-client'), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
      expect(tokens.isActive((await tokens.find(token))!)).toBe(true);
    });

    it('an unknown token is refused', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      await expectFlowgateError(tokens.spend('fgr_unknown', 'web'), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });

    it('replaying a spent token revokes its whole family, successor included', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const first = await tokens.issue(base);
      const spent = await tokens.spend(first.token, 'web');
      const successor = await tokens.issue({ ...base, familyId: spent.family_id, expiresAt: spent.expires_at });
      expect(successor.familyId).toBe(first.familyId);
      expect(tokens.isActive((await tokens.find(successor.token))!)).toBe(true);

      await expectFlowgateError(tokens.spend(first.token, 'web'), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');

      const successorRow = await tokens.find(successor.token);
      expect(successorRow?.revoked_at).not.toBeNull();
      expect(tokens.isActive(successorRow!)).toBe(false);
      await expectFlowgateError(tokens.spend(successor.token, 'web'), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });

    it('revoking a family leaves other families alone', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const mine = await tokens.issue(base);
      const other = await tokens.issue(base);
      await tokens.revokeFamily(mine.familyId);
      expect(tokens.isActive((await tokens.find(mine.token))!)).toBe(false);
      expect(tokens.isActive((await tokens.find(other.token))!)).toBe(true);
    });

    it('a successor keeps the absolute end of its family', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const first = await tokens.issue(base);
      clock.advance(60_000);
      const spent = await tokens.spend(first.token, 'web');
      const successor = await tokens.issue({ ...base, familyId: spent.family_id, expiresAt: spent.expires_at });
      expect((await tokens.find(successor.token))?.expires_at).toBe(spent.expires_at);
    });

    it('an expired token is refused', async () => {
      const tokens = new RefreshTokenStore(db, clock, lifetimeMs);
      const { token } = await tokens.issue(base);
      clock.advance(lifetimeMs);
      expect(tokens.isActive((await tokens.find(token))!)).toBe(false);
      await expectFlowgateError(tokens.spend(token, 'web'), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });
  });

  describe('authorization codes', () => {
    const lifetimeMs = 60_000;
    const verifier = randomBytes(32).toString('base64url');
    const redirectUri = 'https://app.example/callback';
    const noReplay = () => Promise.resolve();

    beforeEach(async () => {
      await createTenants(TENANT_A);
    });

    async function issueCode(codes: AuthCodeStore): Promise<string> {
      return codes.issue({
        tenant_id: TENANT_A,
        user_id: 'u1',
        client_id: 'web',
        redirect_uri: redirectUri,
        code_challenge: s256Challenge(verifier),
        scope: 'openid forms:read',
        nonce: 'n-1',
        auth_time: clock.now(),
      });
    }

    it('computes the RFC 7636 S256 challenge', () => {
      // RFC 7636 appendix B.
      expect(s256Challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
    });

    it('redeems a code with the right client, redirect URI and PKCE verifier', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      const row = await codes.redeem(code, { clientId: 'web', redirectUri, verifier }, noReplay);
      expect(row).toMatchObject({ tenant_id: TENANT_A, user_id: 'u1', scope: 'openid forms:read', nonce: 'n-1' });
      expect(row.code_hash).not.toContain(code);
    });

    it('a wrong PKCE verifier is refused', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      const wrong = randomBytes(32).toString('base64url');
      await expectFlowgateError(codes.redeem(code, { clientId: 'web', redirectUri, verifier: wrong }, noReplay), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });

    it('a verifier outside the RFC 7636 grammar is refused', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const shortVerifier = 'too-short';
      const code = await codes.issue({
        tenant_id: TENANT_A,
        user_id: 'u1',
        client_id: 'web',
        redirect_uri: redirectUri,
        code_challenge: s256Challenge(shortVerifier),
        scope: 'openid',
        nonce: null,
        auth_time: clock.now(),
      });
      await expectFlowgateError(
        codes.redeem(code, { clientId: 'web', redirectUri, verifier: shortVerifier }, noReplay),
        'FLOWGATE_ERR_OAUTH_INVALID_GRANT',
      );
    });

    it('a different redirect URI is refused', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      await expectFlowgateError(
        codes.redeem(code, { clientId: 'web', redirectUri: 'https://evil.example/callback', verifier }, noReplay),
        'FLOWGATE_ERR_OAUTH_INVALID_GRANT',
      );
    });

    it('a code presented by another client is refused', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      await expectFlowgateError(codes.redeem(code, { clientId: 'other', redirectUri, verifier }, noReplay), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });

    it('an expired code is refused', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      clock.advance(lifetimeMs);
      await expectFlowgateError(codes.redeem(code, { clientId: 'web', redirectUri, verifier }, noReplay), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });

    it('an unknown code is refused', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      await expectFlowgateError(codes.redeem('fgac_unknown', { clientId: 'web', redirectUri, verifier }, noReplay), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
    });

    it('a replayed code is refused and reports the token family its first use produced', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      await codes.redeem(code, { clientId: 'web', redirectUri, verifier }, noReplay);
      await codes.linkFamily(code, 'family-1');
      const onReplay = vi.fn((_familyId: string) => Promise.resolve());
      await expectFlowgateError(codes.redeem(code, { clientId: 'web', redirectUri, verifier }, onReplay), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
      expect(onReplay).toHaveBeenCalledExactlyOnceWith('family-1');
    });

    it('a replayed code with no family yet is refused without a replay callback', async () => {
      const codes = new AuthCodeStore(db, clock, lifetimeMs);
      const code = await issueCode(codes);
      await codes.redeem(code, { clientId: 'web', redirectUri, verifier }, noReplay);
      const onReplay = vi.fn((_familyId: string) => Promise.resolve());
      await expectFlowgateError(codes.redeem(code, { clientId: 'web', redirectUri, verifier }, onReplay), 'FLOWGATE_ERR_OAUTH_INVALID_GRANT');
      expect(onReplay).not.toHaveBeenCalled();
    });
  });

  describe('revocation list', () => {
    it('a revoked jti is revoked, any other is not', async () => {
      const list = new RevocationList(db, clock);
      await list.revoke('jti-1', TENANT_A, clock.now() / 1000 + 900);
      await expect(list.isRevoked('jti-1')).resolves.toBe(true);
      await expect(list.isRevoked('jti-2')).resolves.toBe(false);
    });

    it('another instance sees a revocation through the store', async () => {
      await new RevocationList(db, clock).revoke('jti-1', TENANT_A, clock.now() / 1000 + 900);
      await expect(new RevocationList(db, clock).isRevoked('jti-1')).resolves.toBe(true);
    });

    it('revoking the same token twice is harmless', async () => {
      const list = new RevocationList(db, clock);
      await list.revoke('jti-1', TENANT_A, clock.now() / 1000 + 900);
      await list.revoke('jti-1', TENANT_A, clock.now() / 1000 + 900);
      await expect(new RevocationList(db, clock).isRevoked('jti-1')).resolves.toBe(true);
    });

    it('forgets revocations of tokens that have expired anyway', async () => {
      const list = new RevocationList(db, clock);
      await list.revoke('jti-old', TENANT_A, clock.now() / 1000 + 10);
      clock.advance(20_000);
      await list.revoke('jti-new', TENANT_A, clock.now() / 1000 + 900);
      const fresh = new RevocationList(db, clock);
      await expect(fresh.isRevoked('jti-old')).resolves.toBe(false);
      await expect(fresh.isRevoked('jti-new')).resolves.toBe(true);
    });
  });

  describe('failure throttle', () => {
    const options = { maxFailures: 3, windowSeconds: 900, lockSeconds: 60 };

    it('does not lock below the limit', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      await expect(throttle.recordFailure('client:a')).resolves.toBe(0);
      await expect(throttle.recordFailure('client:a')).resolves.toBe(0);
      await expect(throttle.retryAfter('client:a')).resolves.toBe(0);
    });

    it('locks a key once it reaches the limit, and the lock grows with further failures', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      for (let i = 1; i < options.maxFailures; i++) await throttle.recordFailure('client:a');
      await expect(throttle.recordFailure('client:a')).resolves.toBe(60);
      const wait = await throttle.retryAfter('client:a');
      expect(wait).toBeGreaterThan(0);
      expect(wait).toBeLessThanOrEqual(60);
      await expect(throttle.recordFailure('client:a')).resolves.toBe(120);
    });

    it('a lock never exceeds the window', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      let last = 0;
      for (let i = 0; i < 20; i++) last = await throttle.recordFailure('client:a');
      expect(last).toBe(options.windowSeconds);
    });

    it('a lock ends when its time has passed', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      for (let i = 0; i < options.maxFailures; i++) await throttle.recordFailure('client:a');
      clock.advance(60_000);
      await expect(throttle.retryAfter('client:a')).resolves.toBe(0);
    });

    it('locks one key without touching another', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      for (let i = 0; i < options.maxFailures; i++) await throttle.recordFailure('client:a');
      await expect(throttle.retryAfter('client:b')).resolves.toBe(0);
    });

    it('failures older than the window are forgotten', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      for (let i = 1; i < options.maxFailures; i++) await throttle.recordFailure('client:a');
      clock.advance(options.windowSeconds * 1000 + 1);
      await expect(throttle.recordFailure('client:a')).resolves.toBe(0);
    });

    it('reset clears the failures and the lock', async () => {
      const throttle = new FailureThrottle(db, clock, options);
      for (let i = 0; i < options.maxFailures; i++) await throttle.recordFailure('client:a');
      await throttle.reset('client:a');
      await expect(throttle.retryAfter('client:a')).resolves.toBe(0);
      await expect(throttle.recordFailure('client:a')).resolves.toBe(0);
    });
  });
});

describe('accountScopes', () => {
  it('reads the JSON list of scopes, keeping only strings', () => {
    expect(accountScopes({ scopes: '["forms:read", 3, null, "flows:run"]' })).toEqual(['forms:read', 'flows:run']);
  });

  it('anything but a JSON list gives no scopes', () => {
    expect(accountScopes({ scopes: '{"forms:read": true}' })).toEqual([]);
    expect(accountScopes({ scopes: '"forms:read"' })).toEqual([]);
  });
});

describe('scrypt secret hasher', () => {
  const hasher = createScryptHasher({ log2N: 10, r: 8, p: 1 });

  it('hashes into a self-describing string that verifies the right secret', async () => {
    const stored = await hasher.hash('correct horse battery staple');
    expect(stored).toMatch(/^scrypt\$10\$8\$1\$[A-Za-z0-9_-]+\$[A-Za-z0-9_-]+$/);
    expect(stored).not.toContain('correct horse');
    await expect(hasher.verify('correct horse battery staple', stored)).resolves.toBe(true);
  });

  it('refuses a wrong secret', async () => {
    const stored = await hasher.hash('correct horse battery staple');
    await expect(hasher.verify('correct horse battery stapler', stored)).resolves.toBe(false);
    await expect(hasher.verify('', stored)).resolves.toBe(false);
  });

  it('salts every hash', async () => {
    const [a, b] = await Promise.all([hasher.hash('same'), hasher.hash('same')]);
    expect(a).not.toBe(b);
  });

  it('verifies a hash made with other cost parameters, which the stored string names', async () => {
    const stored = await createScryptHasher({ log2N: 11, r: 4, p: 2 }).hash('secret');
    expect(stored.startsWith('scrypt$11$4$2$')).toBe(true);
    await expect(hasher.verify('secret', stored)).resolves.toBe(true);
  });

  it('treats canonically equivalent Unicode secrets alike', async () => {
    const stored = await hasher.hash('caf\u00e9');
    await expect(hasher.verify('cafe\u0301', stored)).resolves.toBe(true);
  });

  it.each([
    ['an empty string', ''],
    ['a plain string', 'not-a-hash'],
    ['another algorithm', 'bcrypt$10$8$1$c2FsdA$aGFzaA'],
    ['too few parts', 'scrypt$10$8$1$c2FsdA'],
    ['a non-numeric cost', 'scrypt$x$8$1$c2FsdA$aGFzaA'],
    ['a zero cost', 'scrypt$10$0$1$c2FsdA$aGFzaA'],
    ['an excessive cost', 'scrypt$25$8$1$c2FsdA$aGFzaA'],
    ['an empty hash', 'scrypt$10$8$1$c2FsdA$'],
  ])('a malformed stored hash (%s) verifies nothing', async (_label, stored) => {
    await expect(hasher.verify('secret', stored)).resolves.toBe(false);
  });
});
