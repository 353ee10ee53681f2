/**
 * The CLI's HTTP client for one Flowgate server: JSON API calls with a bearer token,
 * OAuth form posts, and errors turned into one readable line (the problem's detail,
 * code and trace id), never echoing a token.
 */
import { CliError } from './io.js';

const DEFAULT_TIMEOUT_MS = 30_000;

/** A problem document (RFC 9457) as Flowgate sends it. */
export interface ProblemBody {
  readonly detail?: string;
  readonly code?: string;
  readonly traceId?: string;
  readonly title?: string;
  readonly error?: string;
}

/** The server answered with an error status. */
export class HttpError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly problem: ProblemBody | undefined,
  ) {
    super(message, 1);
    this.name = 'HttpError';
  }
}

export interface RequestOptions {
  readonly token?: string;
  readonly json?: unknown;
  readonly form?: Readonly<Record<string, string>>;
  /** HTTP Basic client authentication. */
  readonly basic?: readonly [string, string];
  readonly query?: Readonly<Record<string, string | undefined>>;
}

/** Normalises a server URL: http(s) only, no trailing slash, no query or fragment. */
export function normaliseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError(`not a URL: ${JSON.stringify(raw)} (use e.g. http://127.0.0.1:8080)`, 2);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`the server URL must be http or https (got ${url.protocol})`, 2);
  if (url.username || url.password) throw new CliError('the server URL must not carry credentials', 2);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

export class FlowgateHttp {
  constructor(
    /** Normalised, see {@link normaliseUrl}. */
    readonly baseUrl: string,
    private readonly fetchFn: typeof fetch = fetch,
  ) {}

  /** Sends a request and returns the parsed JSON answer (undefined when empty). */
  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const url = new URL(`${this.baseUrl}${path}`);
    for (const [key, value] of Object.entries(options.query ?? {})) if (value !== undefined) url.searchParams.set(key, value);
    const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
    let body: string | undefined;
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    if (options.basic) {
      const [id, secret] = options.basic;
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
    }
    if (options.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(options.form).toString();
    } else if (options.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.json);
    }

    let res: Response;
    try {
      res = await this.fetchFn(url, { method, headers, body, redirect: 'manual', signal: AbortSignal.timeout(DEFAULT_TIMEOUT_MS) });
    } catch (err) {
      throw this.unreachable(err);
    }
    const text = await res.text();
    const type = res.headers.get('content-type') ?? '';
    let parsed: unknown;
    if (text.length > 0 && /json/.test(type)) {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new CliError(`the server at ${this.baseUrl} sent malformed JSON (HTTP ${res.status})`);
      }
    }
    if (!res.ok) throw httpError(res, parsed, `${method} ${url.pathname}`);
    if (text.length > 0 && parsed === undefined) {
      throw new CliError(`the server at ${this.baseUrl} answered ${url.pathname} with ${type || 'no content type'}, not JSON; is --url a Flowgate server?`);
    }
    return parsed as T;
  }

  private unreachable(err: unknown): CliError {
    const error = err as Error & { cause?: { code?: string; message?: string } };
    if (error.name === 'TimeoutError') return new CliError(`the Flowgate server at ${this.baseUrl} did not answer within ${DEFAULT_TIMEOUT_MS / 1000} s`);
    const code = error.cause?.code;
    const hint = 'is the server running? Point the CLI elsewhere with --url or FLOWGATE_URL.';
    if (code === 'ECONNREFUSED') return new CliError(`cannot connect to the Flowgate server at ${this.baseUrl} (connection refused); ${hint}`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return new CliError(`cannot find the host of ${this.baseUrl} (${code}); check --url or FLOWGATE_URL.`);
    return new CliError(`cannot reach the Flowgate server at ${this.baseUrl}: ${error.cause?.message ?? error.message}; ${hint}`);
  }
}

function httpError(res: Response, body: unknown, what: string): HttpError {
  const problem = typeof body === 'object' && body !== null ? (body as ProblemBody) : undefined;
  if (problem && typeof problem.detail === 'string') {
    const extra = [problem.code, problem.traceId ? `trace ${problem.traceId}` : undefined].filter((x) => x !== undefined).join(', ');
    return new HttpError(extra ? `${problem.detail} (${extra})` : problem.detail, res.status, problem);
  }
  return new HttpError(`${what} failed: HTTP ${res.status} ${res.statusText}`.trimEnd(), res.status, problem);
}

/** The error a non-2xx answer to a streamed GET stands for: its problem detail when it has one. */
export async function responseError(res: Response, url: URL): Promise<HttpError> {
  const text = await res.text().catch(() => '');
  let problem: ProblemBody | undefined;
  try {
    problem = JSON.parse(text) as ProblemBody;
  } catch {
    problem = undefined;
  }
  if (problem && typeof problem.detail === 'string') {
    const extra = [problem.code, problem.traceId ? `trace ${problem.traceId}` : undefined].filter((x) => x !== undefined).join(', ');
    return new HttpError(extra ? `${problem.detail} (${extra})` : problem.detail, res.status, problem);
  }
  return new HttpError(`GET ${url.pathname} failed: HTTP ${res.status} ${res.statusText}`.trimEnd(), res.status, problem);
}
