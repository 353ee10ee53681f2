/** What the CLI talks to: its streams, its environment and the clock; tests may replace any of them. */
import { spawn } from 'node:child_process';

/** A stream the CLI writes text to. */
export interface TextOut {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly cwd: string;
  readonly stdout: TextOut;
  readonly stderr: TextOut;
  /** Epoch milliseconds. */
  readonly now: () => number;
  /** Tries to show a URL in a browser; failures are ignored. */
  readonly openBrowser: (url: string) => void;
}

/**
 * A failure the CLI reports as `flowgate: <message>` on standard error, exiting with
 * `exitCode`: 1 for a failed operation, 2 for a usage or configuration error.
 */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** The real process: its streams, environment and working folder. */
export function processIo(): CliIo {
  return {
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    now: () => Date.now(),
    openBrowser,
  };
}

function openBrowser(url: string): void {
  const command = process.platform === 'darwin' ? 'open' : 'xdg-open';
  try {
    const child = spawn(command, [url], { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // No browser opener: the URL is printed already.
  }
}
