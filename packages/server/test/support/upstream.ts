/** A fake upstream HTTP server for gateway tests: records what reaches it, answers as told. */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface FakeUpstream {
  readonly url: string;
  readonly port: number;
  readonly seen: SeenRequest[];
  /** Replaces how it answers (default: 200 with a JSON echo of the request). */
  answer(handler: (req: IncomingMessage, res: ServerResponse, body: string) => void): void;
  close(): Promise<void>;
}

/** Answers 200 with {method, url, headers} unless told otherwise. */
export async function startUpstream(options: { readBody?: boolean } = {}): Promise<FakeUpstream> {
  const seen: SeenRequest[] = [];
  let handler = (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify({ method: req.method, url: req.url });
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' }).end(body);
  };
  let custom: ((req: IncomingMessage, res: ServerResponse, body: string) => void) | undefined;
  const server: Server = createServer((req, res) => {
    if (options.readBody === false && custom) {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' });
      custom(req, res, '');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (custom) custom(req, res, body);
      else handler(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    answer(next) {
      custom = next;
      handler = () => undefined;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
