// What the story scripts share: the server's URL and an administrator's credentials from
// the environment, a small JSON/form HTTP client, and a step checker that remembers
// whether anything misbehaved (the scripts exit 1 then; the example tests rely on it).

/** FLOWGATE_URL and a platform administrator's FLOWGATE_CLIENT_ID/SECRET; exits 2 without them. */
export function settings() {
  const url = (process.env.FLOWGATE_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
  const adminId = process.env.FLOWGATE_CLIENT_ID;
  const adminSecret = process.env.FLOWGATE_CLIENT_SECRET;
  if (!adminId || !adminSecret) {
    console.error('Set FLOWGATE_CLIENT_ID and FLOWGATE_CLIENT_SECRET to a platform administrator (the bootstrap credentials).');
    process.exit(2);
  }
  return { url, adminId, adminSecret };
}

/** Prints each step as ok or FAILED; `failed()` says whether any failed. */
export function checker() {
  let failed = false;
  return {
    check(ok, what) {
      console.log(`${ok ? '  ok ' : '  FAILED'} ${what}`);
      if (!ok) failed = true;
    },
    failed: () => failed,
  };
}

/** `call(method, path, {token, body, basic, form, headers})` against `url`, and client-credentials tokens. */
export function client(url) {
  async function call(method, path, { token, body, basic, form, headers: extra } = {}) {
    const headers = { ...extra };
    if (token) headers.authorization = `Bearer ${token}`;
    if (basic) headers.authorization = `Basic ${Buffer.from(basic.join(':')).toString('base64')}`;
    let payload;
    if (form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      payload = new URLSearchParams(form).toString();
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await fetch(`${url}${path}`, { method, headers, body: payload });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text && /json/.test(res.headers.get('content-type') ?? '') ? JSON.parse(text) : text };
  }
  const tokenFor = async (id, secret) => (await call('POST', '/oauth/token', { basic: [id, secret], form: { grant_type: 'client_credentials' } })).body.access_token;
  return { call, tokenFor };
}
