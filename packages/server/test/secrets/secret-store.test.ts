import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/kernel/index.js';
import { DataKeys, MasterKeyRing, SecretStore, secretsMigrations, type SecretsTables } from '../../src/secrets/index.js';
import { rejection } from '../support/bus.js';
import { openTestStore, STORE_KINDS, type TestStore } from '../support/stores.js';

describe('master keys', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flowgate-keys-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('creates a key file readable by its owner only on first start, and reads the same key after', async () => {
    const created: string[] = [];
    const first = MasterKeyRing.load({ dataDir: dir }, (file) => created.push(file));
    expect(created).toEqual([join(dir, 'master.key')]);
    expect((await stat(join(dir, 'master.key'))).mode & 0o777).toBe(0o600);
    const again = MasterKeyRing.load({ dataDir: dir }, (file) => created.push(file));
    expect(created).toHaveLength(1);
    expect(again.current.id).toBe(first.current.id);
  });

  it('refuses a FLOWGATE_MASTER_KEY that is not 32 bytes of base64, without repeating it', () => {
    const error = rejectionSync(() => MasterKeyRing.load({ dataDir: dir, masterKey: 'hunter2-not-a-key' }));
    expect(error.code).toBe('FLOWGATE_ERR_CONFIG_INVALID');
    expect(error.message).toContain('FLOWGATE_MASTER_KEY');
    expect(error.message).not.toContain('hunter2');
  });

  it('takes several keys from FLOWGATE_MASTER_KEY, the first current', () => {
    const [a, b] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
    const ring = MasterKeyRing.load({ dataDir: dir, masterKey: `${a},${b}` });
    expect(ring.ids).toHaveLength(2);
    expect(ring.current.key.toString('base64')).toBe(a);
  });

  it('does not make a key where instances share the store, and says how to give one', () => {
    const error = rejectionSync(() => MasterKeyRing.load({ dataDir: dir }, undefined, { mayCreate: false }));
    expect(error.code).toBe('FLOWGATE_ERR_CONFIG_INVALID');
    expect(error.message).toContain('FLOWGATE_MASTER_KEY');
  });

  it('refuses a key file without a key', async () => {
    await writeFile(join(dir, 'keys'), '# nothing here\n');
    const error = rejectionSync(() => MasterKeyRing.load({ dataDir: dir, masterKeyFile: 'keys' }));
    expect(error.message).toMatch(/FLOWGATE_MASTER_KEY_FILE.*holds no master key/);
  });
});

describe.each(STORE_KINDS)('secrets on %s', (kind) => {
  let opened: TestStore;
  let dir: string;
  let ring: MasterKeyRing;
  let secrets: SecretStore;
  let keys: DataKeys;

  beforeEach(async () => {
    opened = await openTestStore(kind, { migrate: false });
    await opened.store.migrate(secretsMigrations);
    dir = await mkdtemp(join(tmpdir(), 'flowgate-secrets-'));
    ring = MasterKeyRing.load({ dataDir: dir });
    keys = new DataKeys(opened.store, ring, systemClock);
    secrets = new SecretStore(opened.store, keys, systemClock);
  });
  afterEach(async () => {
    await opened.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const db = () => opened.store.db<SecretsTables>();

  it('keeps a value that only reveal gives back; lists and reads show metadata only', async () => {
    await secrets.create('acme', { name: 'crm_api_key', kind: 'api_key', value: 'sk-live-123456', description: 'CRM' });
    const listed = await secrets.list('acme');
    expect(listed).toEqual([expect.objectContaining({ name: 'crm_api_key', kind: 'api_key', description: 'CRM', version: 1 })]);
    expect(JSON.stringify(listed)).not.toContain('sk-live');
    expect(JSON.stringify(await secrets.get('acme', 'crm_api_key'))).not.toContain('sk-live');
    expect(await secrets.reveal('acme', 'crm_api_key')).toBe('sk-live-123456');
    const stored = await db().selectFrom('secrets').selectAll().execute();
    expect(JSON.stringify(stored)).not.toContain('sk-live');
  });

  it("does not find another tenant's secret", async () => {
    await secrets.create('acme', { name: 'token', kind: 'generic', value: 'a' });
    expect((await rejection(secrets.reveal('globex', 'token'))).code).toBe('FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expect((await rejection(secrets.get('globex', 'token'))).code).toBe('FLOWGATE_ERR_RESOURCE_NOT_FOUND');
    expect(await secrets.delete('globex', 'token')).toBe(false);
    expect(await secrets.list('globex')).toEqual([]);
  });

  it('refuses a ciphertext copied to another tenant or changed by one byte, revealing nothing', async () => {
    await secrets.create('acme', { name: 'token', kind: 'generic', value: 'acme-value' });
    await secrets.create('globex', { name: 'token', kind: 'generic', value: 'globex-value' });
    const acme = await db().selectFrom('secrets').selectAll().where('tenant_id', '=', 'acme').executeTakeFirstOrThrow();
    // Tenant B's row gets A's ciphertext (and data key): it must not open as B's secret.
    await db().updateTable('secrets').set({ ciphertext: acme.ciphertext, data_key_id: acme.data_key_id }).where('tenant_id', '=', 'globex').execute();
    const copied = await rejection(secrets.reveal('globex', 'token'));
    expect(copied.code).toBe('FLOWGATE_ERR_SECRETS_UNREADABLE');
    expect(copied.message).not.toContain('acme-value');

    const parts = acme.ciphertext.split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0] = body[0]! ^ 1;
    parts[3] = body.toString('base64url');
    await db().updateTable('secrets').set({ ciphertext: parts.join('.') }).where('tenant_id', '=', 'acme').execute();
    expect((await rejection(secrets.reveal('acme', 'token'))).code).toBe('FLOWGATE_ERR_SECRETS_UNREADABLE');
  });

  it('updates a value and a description, counting versions; a second create of a name conflicts', async () => {
    await secrets.create('acme', { name: 'db_password', kind: 'password', value: 'one' });
    expect((await rejection(secrets.create('acme', { name: 'db_password', kind: 'password', value: 'two' }))).code).toBe('FLOWGATE_ERR_RESOURCE_CONFLICT');
    const updated = await secrets.update('acme', 'db_password', { value: 'two', description: 'rotated' });
    expect(updated).toMatchObject({ version: 2, description: 'rotated' });
    expect(await secrets.reveal('acme', 'db_password')).toBe('two');
    expect(await secrets.delete('acme', 'db_password')).toBe(true);
    expect((await rejection(secrets.reveal('acme', 'db_password'))).code).toBe('FLOWGATE_ERR_RESOURCE_NOT_FOUND');
  });

  it('keeps structured values (oauth2 credentials) whole', async () => {
    const value = { clientId: 'flowgate', clientSecret: 's3cr3t', refreshToken: 'r-1', tokenUrl: 'https://idp.example/token' };
    await secrets.create('acme', { name: 'crm_oauth', kind: 'oauth2', value });
    expect(await secrets.reveal('acme', 'crm_oauth')).toEqual(value);
  });

  it('refuses names a flow could not refer to, and empty values', async () => {
    expect((await rejection(secrets.create('acme', { name: 'Bad-Name', kind: 'generic', value: 'x' }))).code).toBe('FLOWGATE_ERR_REQUEST_INVALID');
    expect((await rejection(secrets.create('acme', { name: 'empty', kind: 'generic', value: '' }))).code).toBe('FLOWGATE_ERR_REQUEST_INVALID');
  });

  it('loses no secret when secrets are created and changed while the master key rotates', async () => {
    const instance = new SecretStore(opened.store, new DataKeys(opened.store, MasterKeyRing.load({ dataDir: dir }), systemClock), systemClock);
    const written = new Map<string, string>();
    let stop = false;
    let n = 0;
    const load = (async () => {
      // At least one write per tenant, however slowly the machine runs.
      while (!stop || n < 8) {
        const tenant = `load-${n % 7}`;
        const name = `s${n}`;
        await instance.create(tenant, { name, kind: 'generic', value: `v${n}` });
        written.set(`${tenant}/${name}`, `v${n}`);
        if (n % 3 === 0) {
          await secrets.update(tenant, name, { value: `v${n}-changed` });
          written.set(`${tenant}/${name}`, `v${n}-changed`);
        }
        n++;
        // SQLite answers within microtasks: let timers (and the rotation) run between writes.
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    // The rotation begins with writes under way.
    while (n < 3) await new Promise((resolve) => setTimeout(resolve, 5));
    ring.addNewKey();
    await keys.rewrapAll();
    stop = true;
    await load;
    // Whatever the rotation left under the old key is re-wrapped by a second pass.
    await keys.rewrapAll();
    expect(written.size).toBeGreaterThan(7);
    const onlyNew = new DataKeys(opened.store, MasterKeyRing.load({ dataDir: dir }), systemClock);
    await onlyNew.checkMasterKeys();
    const fresh = new SecretStore(opened.store, onlyNew, systemClock);
    for (const [where, value] of written) {
      const [tenant, name] = where.split('/') as [string, string];
      expect(await fresh.reveal(tenant, name)).toBe(value);
    }
    const masters = await db().selectFrom('secret_data_keys').select('master_key_id').distinct().execute();
    expect(masters).toEqual([{ master_key_id: ring.current.id }]);
  });

  it('wraps a new tenant key with the new master key even in an instance started before the rotation', async () => {
    const stale = new SecretStore(opened.store, new DataKeys(opened.store, MasterKeyRing.load({ dataDir: dir }), systemClock), systemClock);
    const newKey = ring.addNewKey();
    await keys.rewrapAll();
    await stale.create('late-tenant', { name: 'token', kind: 'generic', value: 'late' });
    const wrapped = await db().selectFrom('secret_data_keys').select('master_key_id').where('tenant_id', '=', 'late-tenant').execute();
    expect(wrapped).toEqual([{ master_key_id: newKey.id }]);
  });

  it('refuses to start with a master key that did not wrap the data keys, naming the key ids', async () => {
    await secrets.create('acme', { name: 'token', kind: 'generic', value: 'x' });
    const other = await mkdtemp(join(tmpdir(), 'flowgate-other-key-'));
    try {
      const wrongRing = MasterKeyRing.load({ dataDir: other });
      const error = await rejection(new DataKeys(opened.store, wrongRing, systemClock).checkMasterKeys());
      expect(error.code).toBe('FLOWGATE_ERR_SECRETS_MASTER_KEY');
      expect(error.message).toContain(ring.current.id);
      expect(error.message).toContain(wrongRing.current.id);
      await expect(new DataKeys(opened.store, ring, systemClock).checkMasterKeys()).resolves.toBeUndefined();
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('rotates the master key under load: every secret reads throughout, and after it only the new key is needed', async () => {
    const tenants = ['acme', 'globex', 'initech'];
    for (const tenant of tenants) for (let i = 0; i < 5; i++) await secrets.create(tenant, { name: `s${i}`, kind: 'generic', value: `${tenant}-${i}` });
    const oldId = ring.current.id;

    // Another instance, which loaded the key file before the rotation.
    const otherInstance = new SecretStore(opened.store, new DataKeys(opened.store, MasterKeyRing.load({ dataDir: dir }), systemClock), systemClock);
    let reads = 0;
    let stop = false;
    const load = (async () => {
      while (!stop) {
        for (const tenant of tenants) {
          expect(await otherInstance.reveal(tenant, 's0')).toBe(`${tenant}-0`);
          expect(await secrets.reveal(tenant, 's4')).toBe(`${tenant}-4`);
          reads += 2;
        }
      }
    })();

    // An instance that loaded the key file before the rotation but reads only after it:
    // it finds the new key by reading the file again.
    const lateReader = new SecretStore(opened.store, new DataKeys(opened.store, MasterKeyRing.load({ dataDir: dir }), systemClock), systemClock);

    const newKey = ring.addNewKey();
    const result = await keys.rewrapAll();
    stop = true;
    await load;
    expect(reads).toBeGreaterThan(0);
    expect(result).toEqual({ rewrapped: 3, total: 3 });
    const masters = await db().selectFrom('secret_data_keys').select('master_key_id').distinct().execute();
    expect(masters).toEqual([{ master_key_id: newKey.id }]);
    for (const tenant of tenants) expect(await lateReader.reveal(tenant, 's2')).toBe(`${tenant}-2`);

    // A fresh start with only the new key reads everything; a new instance reading the
    // file that still lists the old key also does.
    const keyFile = await readFile(join(dir, 'master.key'), 'utf8');
    const onlyNew = keyFile.split('\n').filter((line) => line === newKey.key.toString('base64'));
    const newDir = await mkdtemp(join(tmpdir(), 'flowgate-new-key-'));
    try {
      await writeFile(join(newDir, 'master.key'), `${onlyNew.join('\n')}\n`);
      const fresh = new DataKeys(opened.store, MasterKeyRing.load({ dataDir: newDir }), systemClock);
      await fresh.checkMasterKeys();
      const freshSecrets = new SecretStore(opened.store, fresh, systemClock);
      for (const tenant of tenants) for (let i = 0; i < 5; i++) expect(await freshSecrets.reveal(tenant, `s${i}`)).toBe(`${tenant}-${i}`);
    } finally {
      await rm(newDir, { recursive: true, force: true });
    }
    expect(oldId).not.toBe(newKey.id);
  });
});

function rejectionSync(run: () => unknown): Error & { code?: string } {
  try {
    run();
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a failure');
}
