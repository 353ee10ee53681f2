import { SECRET_NAME_PATTERN_SOURCE, type SecretKind } from '@flowgate/contracts';
import type { Kysely } from 'kysely';
import { FlowgateError } from '../errors/index.js';
import type { Clock } from '../kernel/index.js';
import { isUniqueViolation, type Store } from '../storage/index.js';
import type { DataKeys } from './data-keys.js';
import { open, seal } from './envelope.js';
import type { SecretsTables } from './secrets.migrations.js';

type Db = Kysely<SecretsTables>;


/** A secret as the API shows it: everything but the value. */
export interface SecretMetadata {
  readonly name: string;
  readonly kind: SecretKind;
  readonly description: string | null;
  readonly version: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface NewSecret {
  readonly name: string;
  readonly kind: SecretKind;
  /** A string, or a JSON object (an oauth2 secret's client id, secret and refresh token). */
  readonly value: unknown;
  readonly description?: string | undefined;
}

export interface SecretChange {
  readonly value?: unknown;
  readonly description?: string | null | undefined;
}

const SECRET_NAME = new RegExp(SECRET_NAME_PATTERN_SOURCE);

/**
 * A tenant's secrets, sealed with the tenant's data key (AES-256-GCM, bound to tenant and
 * name). Values leave only through {@link reveal}, for the components that use them; every
 * other answer carries metadata only. Another tenant's secret is not found, not forbidden.
 */
export class SecretStore {
  constructor(
    private readonly store: Store,
    private readonly keys: DataKeys,
    private readonly clock: Clock,
  ) {}

  private get db(): Db {
    return this.store.db<SecretsTables>();
  }

  async create(tenant: string, secret: NewSecret): Promise<SecretMetadata> {
    checkName(secret.name);
    const key = await this.keys.active(tenant);
    const now = this.clock.now();
    const row = {
      tenant_id: tenant,
      name: secret.name,
      kind: secret.kind,
      description: secret.description ?? null,
      data_key_id: key.id,
      ciphertext: seal(key.key, encode(secret.value), valueContext(tenant, secret.name)),
      version: 1,
      created_at: now,
      updated_at: now,
    };
    try {
      await this.db.insertInto('secrets').values(row).execute();
    } catch (error) {
      if (isUniqueViolation(error)) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', `A secret named ${secret.name} exists already; update it instead.`);
      throw error;
    }
    return toMetadata(row);
  }

  async list(tenant: string): Promise<SecretMetadata[]> {
    const rows = await this.db.selectFrom('secrets').selectAll().where('tenant_id', '=', tenant).orderBy('name').execute();
    return rows.map(toMetadata);
  }

  async get(tenant: string, name: string): Promise<SecretMetadata> {
    return toMetadata(await this.row(tenant, name));
  }

  /**
   * Changes the value (sealed anew, with the tenant's active data key) or the description.
   * A new value also drops an oauth2 secret's access token, unless `keepToken` (the token
   * endpoint itself rotated the refresh token).
   */
  async update(tenant: string, name: string, change: SecretChange, options: { keepToken?: boolean } = {}): Promise<SecretMetadata> {
    const current = await this.row(tenant, name);
    const next = { ...current, updated_at: this.clock.now(), version: current.version + 1 };
    if (change.description !== undefined) next.description = change.description;
    if (change.value !== undefined) {
      const key = await this.keys.active(tenant);
      next.data_key_id = key.id;
      next.ciphertext = seal(key.key, encode(change.value), valueContext(tenant, name));
    }
    const result = await this.db
      .updateTable('secrets')
      .set({ description: next.description, data_key_id: next.data_key_id, ciphertext: next.ciphertext, version: next.version, updated_at: next.updated_at })
      .where('tenant_id', '=', tenant)
      .where('name', '=', name)
      .where('version', '=', current.version)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_CONFLICT', `The secret ${name} changed meanwhile; read it again and retry.`);
    if (change.value !== undefined && !options.keepToken) await this.dropToken(tenant, name);
    return toMetadata(next);
  }

  /** Deletes the secret; false when there was none. */
  async delete(tenant: string, name: string): Promise<boolean> {
    const result = await this.db.deleteFrom('secrets').where('tenant_id', '=', tenant).where('name', '=', name).executeTakeFirst();
    await this.dropToken(tenant, name);
    return Number(result.numDeletedRows) > 0;
  }

  private async dropToken(tenant: string, name: string): Promise<void> {
    await this.db.deleteFrom('secret_oauth2_tokens').where('tenant_id', '=', tenant).where('name', '=', name).execute();
  }

  /** The value, for a component about to use it. Never put it in an answer or a log. */
  async reveal(tenant: string, name: string): Promise<unknown> {
    const row = await this.row(tenant, name);
    const key = await this.keys.byId(tenant, row.data_key_id);
    const plain = open(key.key, row.ciphertext, valueContext(tenant, name), `The secret ${name}`);
    return JSON.parse(plain.toString('utf8')) as unknown;
  }

  private async row(tenant: string, name: string): Promise<SecretsTables['secrets']> {
    const row = await this.db.selectFrom('secrets').selectAll().where('tenant_id', '=', tenant).where('name', '=', name).executeTakeFirst();
    if (!row) throw new FlowgateError('FLOWGATE_ERR_RESOURCE_NOT_FOUND', `There is no secret named ${name}.`);
    return row;
  }
}

function checkName(name: string): void {
  if (!SECRET_NAME.test(name)) {
    throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'A secret name starts with a lower-case letter and has up to 100 lower-case letters, digits and underscores.');
  }
}

function encode(value: unknown): Buffer {
  if (value === undefined || value === null || value === '') throw new FlowgateError('FLOWGATE_ERR_REQUEST_INVALID', 'A secret needs a value.');
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function valueContext(tenant: string, name: string): string {
  return `flowgate secret\0${tenant}\0${name}`;
}

function toMetadata(row: SecretsTables['secrets']): SecretMetadata {
  return { name: row.name, kind: row.kind as SecretKind, description: row.description, version: row.version, createdAt: Number(row.created_at), updatedAt: Number(row.updated_at) };
}
