/**
 * The credentials file: what `flowgate login` saved, per server URL. It holds tokens
 * and possibly a client secret, so it is written atomically with mode 0600 in a 0700
 * folder, and never printed.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError } from './io.js';

/** One server's saved sign-in. `expires_at` is in epoch seconds. */
export interface StoredCredentials {
  readonly kind: 'user' | 'client';
  readonly access_token: string;
  readonly refresh_token?: string;
  readonly expires_at: number;
  readonly client_id?: string;
  readonly client_secret?: string;
}

type CredentialsFile = Record<string, StoredCredentials>;

/** `$FLOWGATE_CREDENTIALS_FILE`, else `${XDG_CONFIG_HOME:-~/.config}/flowgate/credentials.json`. */
export function credentialsPath(env: Readonly<Record<string, string | undefined>>): string {
  if (env.FLOWGATE_CREDENTIALS_FILE) return env.FLOWGATE_CREDENTIALS_FILE;
  const configHome = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(configHome, 'flowgate', 'credentials.json');
}

/** Lock files older than this are left over by a process that died; they are broken. */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 15_000;

export class CredentialStore {
  constructor(readonly file: string) {}

  /** The saved sign-in for a server URL, if any. */
  get(url: string): StoredCredentials | undefined {
    const entry = this.readAll()[url];
    return entry && isEntry(entry) ? entry : undefined;
  }

  set(url: string, entry: StoredCredentials): void {
    const all = this.readAll();
    all[url] = entry;
    this.writeAll(all);
  }

  /** Forgets a server's sign-in; false when there was none. */
  delete(url: string): boolean {
    const all = this.readAll();
    if (!(url in all)) return false;
    delete all[url];
    this.writeAll(all);
    return true;
  }

  /**
   * Runs `fn` holding an exclusive lock on the file, so that two processes refreshing
   * the same sign-in do not both spend the one-use refresh token (which the server
   * answers by revoking the whole session).
   */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const lock = `${this.file}.lock`;
    this.ensureFolder();
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      try {
        closeSync(openSync(lock, 'wx', 0o600));
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw this.failure('lock', err);
        if (lockAge(lock) > STALE_LOCK_MS) {
          rmSync(lock, { force: true });
          continue;
        }
        if (Date.now() > deadline) throw new CliError(`the credentials file ${this.file} is locked by another flowgate process (remove ${lock} if none is running)`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    try {
      return await fn();
    } finally {
      rmSync(lock, { force: true });
    }
  }

  private readAll(): CredentialsFile {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw this.failure('read', err);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CliError(`the credentials file ${this.file} is not valid JSON; remove it and sign in again`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new CliError(`the credentials file ${this.file} is not a JSON object; remove it and sign in again`);
    }
    return parsed as CredentialsFile;
  }

  private writeAll(all: CredentialsFile): void {
    this.ensureFolder();
    const temp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      writeFileSync(temp, `${JSON.stringify(all, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
      chmodSync(temp, 0o600);
      renameSync(temp, this.file);
    } catch (err) {
      try {
        unlinkSync(temp);
      } catch {
        // Never created, or already renamed.
      }
      throw this.failure('write', err);
    }
  }

  private ensureFolder(): void {
    try {
      mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    } catch (err) {
      throw this.failure('create the folder of', err);
    }
  }

  private failure(action: string, err: unknown): CliError {
    return new CliError(`cannot ${action} the credentials file ${this.file}: ${(err as Error).message}`);
  }
}

function lockAge(lock: string): number {
  try {
    return Date.now() - statSync(lock).mtimeMs;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

function isEntry(value: unknown): value is StoredCredentials {
  if (typeof value !== 'object' || value === null) return false;
  const entry = value as Record<string, unknown>;
  return (entry.kind === 'user' || entry.kind === 'client') && typeof entry.access_token === 'string' && typeof entry.expires_at === 'number';
}
