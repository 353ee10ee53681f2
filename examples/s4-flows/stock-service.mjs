// S4 step 4: a resource the polling flow calls. It takes a bearer token and asks Flowgate's
// IAM whether it is active (RFC 7662 introspection, as its own service account), and
// answers only a token that is active and carries stock:read. It remembers what it saw.
import { createServer } from 'node:http';

export async function startStockService({ port = 0, flowgateUrl, clientId, clientSecret }) {
  const seen = [];
  const server = createServer(async (req, res) => {
    const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    let claims = { active: false };
    if (token) {
      const answer = await fetch(`${flowgateUrl}/oauth/introspect`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ token }).toString(),
      });
      claims = await answer.json();
    }
    const allowed = claims.active === true && String(claims.scope ?? '').split(' ').includes('stock:read');
    seen.push({ url: req.url, token, active: claims.active, sub: claims.sub, scope: claims.scope, exp: claims.exp, allowed });
    if (!allowed) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'invalid_token' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ sku: 'A-100', level: 40 + (seen.length % 7) }));
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    seen,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
