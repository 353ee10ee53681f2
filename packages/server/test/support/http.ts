/** Small HTTP helpers over fetch, so tests read like the requests they make. */

export interface JsonResponse<T = any> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
  readonly text: string;
}

async function read<T>(res: Response): Promise<JsonResponse<T>> {
  const text = await res.text();
  let body: unknown = undefined;
  if (text.length > 0 && /json/.test(res.headers.get('content-type') ?? '')) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: body as T, text };
}

/** Calls the JSON API. */
export async function api<T = any>(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  }
  return read<T>(await fetch(`${base}${path}`, { method, headers, body, redirect: 'manual' }));
}

/** Posts an OAuth form (application/x-www-form-urlencoded). */
export async function postForm<T = any>(
  base: string,
  path: string,
  params: Record<string, string>,
  options: { basic?: [string, string]; headers?: Record<string, string> } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', ...options.headers };
  if (options.basic) {
    const [id, secret] = options.basic;
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
  }
  return read<T>(await fetch(`${base}${path}`, { method: 'POST', headers, body: new URLSearchParams(params).toString(), redirect: 'manual' }));
}

/** A client_credentials token; throws unless the server issued one. */
export async function clientToken(base: string, clientId: string, secret: string, scope?: string): Promise<string> {
  const res = await postForm<{ access_token: string }>(base, '/oauth/token', { grant_type: 'client_credentials', ...(scope ? { scope } : {}) }, {
    basic: [clientId, secret],
  });
  if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${res.text}`);
  return res.body.access_token;
}
