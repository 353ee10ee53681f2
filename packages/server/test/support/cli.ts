import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { CliIo } from '../../src/cli/io.js';

export interface CapturedIo {
  readonly io: CliIo;
  stdout(): string;
  stderr(): string;
}

/** A CLI io whose streams are strings, credentials kept under `root`, with an optional standard input. */
export function captureIo(root: string, stdin?: string): CapturedIo {
  let out = '';
  let err = '';
  const io = {
    env: { FLOWGATE_CREDENTIALS_FILE: join(root, 'credentials.json') },
    cwd: root,
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    now: () => Date.now(),
    openBrowser: () => undefined,
    ...(stdin !== undefined ? { stdin: Readable.from([stdin]) } : {}),
  };
  return { io, stdout: () => out, stderr: () => err };
}
