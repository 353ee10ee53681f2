// A stand-in for product B ("Flow"): a REST API that trusts only tokens minted for its
// own audience by the gateway, verified at Flowgate's JWKS. It records what it saw, so the
// example can show that Lumen's token never reached it.
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { createServer } from 'node:http';

export async function startProductB({ port, flowgateUrl }) {
  const jwks = createRemoteJWKSet(new URL(`${flowgateUrl}/.well-known/jwks.json`));
  const seen = [];
  const server = createServer(async (req, res) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const entry = { method: req.method, url: req.url, traceparent: req.headers.traceparent, token };
    seen.push(entry);
    try {
      const { payload } = await jwtVerify(token ?? '', jwks, { audience: 'flow-api', issuer: flowgateUrl });
      entry.claims = payload;
    } catch (err) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `not a token for Flow: ${err.code ?? err.message}` }));
      return;
    }
    const id = /^\/api\/forms\/([^/?]+)/.exec(req.url ?? '')?.[1];
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(id ? { id, title: `Form ${id}`, fields: ['name', 'date'] } : { items: [] }));
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { seen, port: server.address().port, close: () => new Promise((resolve) => server.close(resolve)) };
}
