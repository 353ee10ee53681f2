import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { FlowgateError } from '../errors/index.js';

/** A master key and its id (a digest of it, safe to store and to log). */
export interface MasterKey {
  readonly id: string;
  readonly key: Buffer;
}

/** Where the master keys come from. */
export interface MasterKeySource {
  /** `FLOWGATE_MASTER_KEY`: base64 keys separated by commas, the first current. */
  readonly masterKey?: string | undefined;
  /** `FLOWGATE_MASTER_KEY_FILE`: one base64 key per line, the first current. */
  readonly masterKeyFile?: string | undefined;
  readonly dataDir: string;
}

const KEY_BYTES = 32;
const FILE_HEADER = [
  '# Flowgate master keys, base64, one per line. The first is current: it wraps new data keys.',
  '# Keep an older key listed until `flowgate secrets rotate-master` has re-wrapped everything',
  '# it wrapped. Without these keys the secrets in the database cannot be read: back them up.',
];

/**
 * The master keys of this server, newest first. They only wrap and unwrap data keys
 * (data-keys.ts); secrets are sealed with the data keys. Read from `FLOWGATE_MASTER_KEY`,
 * else from the key file, which the embedded default creates on first start.
 */
export class MasterKeyRing {
  private constructor(
    private keys: readonly MasterKey[],
    private readonly file: string | undefined,
  ) {}

  /**
   * Loads the keys. Without a configured key and without a key file, writes a new key
   * file (mode 0600) and calls `created` with its path.
   */
  static load(source: MasterKeySource, created?: (file: string) => void, options: { mayCreate?: boolean } = {}): MasterKeyRing {
    if (source.masterKey !== undefined) return new MasterKeyRing(parseKeys(source.masterKey.split(','), 'FLOWGATE_MASTER_KEY'), undefined);
    const file = keyFilePath(source);
    if (!existsSync(file)) {
      if (options.mayCreate === false) {
        throw new FlowgateError(
          'FLOWGATE_ERR_CONFIG_INVALID',
          `FLOWGATE_MASTER_KEY: not set, and there is no key file at ${file}. Instances sharing a PostgreSQL store must share the master key: set FLOWGATE_MASTER_KEY (openssl rand -base64 32), or FLOWGATE_MASTER_KEY_FILE to a file every instance reads.`,
        );
      }
      writeKeyFile(file, [randomBytes(KEY_BYTES)]);
      created?.(file);
    }
    return new MasterKeyRing(readKeyFile(file), file);
  }

  /** The key that wraps new data keys. */
  get current(): MasterKey {
    return this.keys[0]!;
  }

  get ids(): readonly string[] {
    return this.keys.map((k) => k.id);
  }

  /**
   * The key with this id. When it is unknown and the keys come from a file, the file is
   * read again first: another instance may have rotated in a new key meanwhile.
   */
  find(id: string): MasterKey | undefined {
    const known = this.keys.find((k) => k.id === id);
    if (known || !this.file) return known;
    this.keys = readKeyFile(this.file);
    return this.keys.find((k) => k.id === id);
  }

  /**
   * The keys as they are now: the key file is read again (another instance may have
   * rotated in a new current key). Keys from FLOWGATE_MASTER_KEY do not change.
   */
  refresh(): void {
    if (this.file) this.keys = readKeyFile(this.file);
  }

  /**
   * Puts a new current key at the head of the key file, keeping the others so that what
   * they wrapped stays readable. Keys given by FLOWGATE_MASTER_KEY cannot be added here.
   */
  addNewKey(): MasterKey {
    if (!this.file) {
      throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', 'FLOWGATE_MASTER_KEY is set: put the new key first in it (keeping the old one after a comma) and restart, then rotate.');
    }
    const key = randomBytes(KEY_BYTES);
    writeKeyFile(this.file, [key, ...readKeyFile(this.file).map((k) => k.key)]);
    this.keys = readKeyFile(this.file);
    return this.current;
  }
}

/** A key's id: 16 hex digits of SHA-256 over a label and the key. */
export function masterKeyId(key: Buffer): string {
  return `mk_${createHash('sha256').update('flowgate master key id\0').update(key).digest('hex').slice(0, 16)}`;
}

function keyFilePath(source: MasterKeySource): string {
  return source.masterKeyFile ? resolve(source.dataDir, source.masterKeyFile) : join(source.dataDir, 'master.key');
}

function readKeyFile(file: string): MasterKey[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `FLOWGATE_MASTER_KEY_FILE: ${file} cannot be read.`, { cause });
  }
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  return parseKeys(lines, `FLOWGATE_MASTER_KEY_FILE (${file})`);
}

/** Writes the key file whole or not at all: a crash mid-write must not lose the keys. */
function writeKeyFile(file: string, keys: readonly Buffer[]): void {
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  const fd = openSync(temporary, 'w', 0o600);
  try {
    writeSync(fd, `${[...FILE_HEADER, ...keys.map((k) => k.toString('base64'))].join('\n')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  // openSync's mode applies only to a new file.
  chmodSync(temporary, 0o600);
  renameSync(temporary, file);
}

function parseKeys(values: readonly string[], where: string): MasterKey[] {
  const keys = values.map((v) => v.trim()).filter((v) => v !== '');
  if (keys.length === 0) throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `${where}: holds no master key.`);
  return keys.map((value, i) => {
    const key = Buffer.from(value, /^[A-Za-z0-9_-]+$/.test(value) ? 'base64url' : 'base64');
    if (key.length !== KEY_BYTES || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) {
      // The value itself is never repeated: it is (meant to be) a key.
      throw new FlowgateError('FLOWGATE_ERR_CONFIG_INVALID', `${where}: key ${i + 1} is not base64 of ${KEY_BYTES} bytes (make one with: openssl rand -base64 32).`);
    }
    return { id: masterKeyId(key), key };
  });
}
