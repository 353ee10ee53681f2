/**
 * The event bus commands: `flowgate publish` sends one event, `flowgate tail` follows a
 * topic (or a glob or /regex/ of topics) over Server-Sent Events until Ctrl-C or
 * `--limit` events, resuming after the last event it printed when the server ends the
 * stream (a restart, or a client too slow to keep up).
 */
import type { EventEnvelope } from '@flowgate/contracts';
import { InvalidArgumentError, type Command } from 'commander';
import { bearerToken, type ClientContext } from './auth.js';
import { responseError } from './http.js';
import { CliError, type CliIo } from './io.js';
import { printJson } from './output.js';

/** How program.ts makes a client command (with --url, --token, --json…); see there. */
export type ClientCommandFactory = (parent: Command, name: string, description: string, action: (ctx: ClientContext, command: Command) => Promise<void>) => Command;

export interface PublishCommandOptions {
  readonly key?: string;
}

export interface TailCommandOptions {
  readonly from?: number;
  readonly limit?: number;
}

/** Standard input, when the caller's io carries one (tests do); the process's otherwise. */
type StdinIo = CliIo & { readonly stdin?: AsyncIterable<string | Uint8Array> & { readonly isTTY?: boolean } };

const CONNECT_TIMEOUT_MS = 30_000;
const RECONNECT_DELAY_MS = 1000;

/** Adds `publish` and `tail` to the program. */
export function registerBusCommands(program: Command, client: ClientCommandFactory): void {
  client(program, 'publish', 'publish an event; the payload JSON comes from the argument or standard input', (ctx, command) =>
    publish(ctx, command.args[0]!, command.args[1], command.opts<PublishCommandOptions>()),
  )
    .argument('<topic>', 'the topic, e.g. orders.created')
    .argument('[json]', 'the payload as JSON; read from standard input when absent or -')
    .option('--key <key>', 'ordering key: events sharing it are handled in order');
  client(program, 'tail', 'print events as they are published, one line each, until Ctrl-C', (ctx, command) =>
    tail(ctx, command.args[0]!, command.opts<TailCommandOptions>()),
  )
    .argument('<topic|pattern>', 'a topic, a glob (orders.*, sensors.**) or a /regex/')
    .option('--from <seq>', 'start at this seq (e.g. 0 for everything kept) instead of at new events', parseSeq)
    .option('--limit <n>', 'exit after n events', parseCount);
}

/** `flowgate publish <topic> [json]`: prints the new event's id, or its envelope with --json. */
export async function publish(ctx: ClientContext, topic: string, json: string | undefined, options: PublishCommandOptions): Promise<void> {
  const text = json === undefined || json === '-' ? await readStdin(ctx.io) : json;
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    throw new CliError('the payload is not valid JSON (quote strings: \'"hello"\')', 2);
  }
  const event = await ctx.http.request<EventEnvelope>('POST', `/api/v1/topics/${encodeURIComponent(topic)}/events`, {
    token: await bearerToken(ctx),
    json: { payload, ...(options.key !== undefined ? { key: options.key } : {}) },
  });
  if (ctx.options.json) return printJson(ctx.io.stdout, event);
  ctx.io.stdout.write(`${event.id}\n`);
}

async function readStdin(io: StdinIo): Promise<string> {
  const stdin: AsyncIterable<string | Uint8Array> & { readonly isTTY?: boolean } = io.stdin ?? (process.stdin as AsyncIterable<Buffer> & { readonly isTTY?: boolean });
  if (stdin.isTTY) throw new CliError('give the payload as an argument, or pipe it in: echo \'{"a":1}\' | flowgate publish <topic>', 2);
  const decoder = new TextDecoder();
  let text = '';
  for await (const chunk of stdin) text += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

/** One Server-Sent Event (WHATWG HTML §9.2.6). */
interface SseEvent {
  readonly id: string | undefined;
  readonly type: string;
  readonly data: string;
}

/**
 * `flowgate tail <topic|pattern>`: prints `seq topic id payload` per event, or the
 * envelope as one JSON line with --json.
 */
export async function tail(ctx: ClientContext, target: string, options: TailCommandOptions): Promise<void> {
  const pattern = target.includes('*') || (target.length > 2 && target.startsWith('/') && target.endsWith('/'));
  const url = new URL(pattern ? `${ctx.baseUrl}/api/v1/streams` : `${ctx.baseUrl}/api/v1/topics/${encodeURIComponent(target)}/stream`);
  if (pattern) url.searchParams.set('filter', target);
  if (options.from !== undefined) url.searchParams.set('from', String(options.from));

  const stop = new AbortController();
  const onSigint = () => stop.abort();
  process.once('SIGINT', onSigint);
  let printed = 0;
  let lastId: string | undefined;
  try {
    for (let connection = 0; !stop.signal.aborted; connection++) {
      if (connection > 0) await sleep(RECONNECT_DELAY_MS, stop.signal);
      const body = await connect(ctx, url, lastId, stop.signal);
      if (!body) return;
      if (connection === 0) ctx.io.stderr.write(`Following ${target}; Ctrl-C to stop.\n`);
      for await (const event of readEvents(body, stop.signal)) {
        if (event.type !== 'event') continue;
        lastId = event.id ?? lastId;
        printEvent(ctx, event);
        printed += 1;
        if (options.limit !== undefined && printed >= options.limit) return;
      }
    }
  } finally {
    process.off('SIGINT', onSigint);
    stop.abort();
  }
}

function printEvent(ctx: ClientContext, event: SseEvent): void {
  if (ctx.options.json) {
    ctx.io.stdout.write(`${event.data}\n`);
    return;
  }
  let envelope: EventEnvelope;
  try {
    envelope = JSON.parse(event.data) as EventEnvelope;
  } catch {
    throw new CliError(`the server sent an event that is not JSON (seq ${event.id ?? '?'})`);
  }
  ctx.io.stdout.write(`${event.id ?? '-'} ${envelope.headers.name} ${envelope.id} ${JSON.stringify(envelope.payload)}\n`);
}

/** Opens the stream, resuming after `lastId`; undefined once stopped (Ctrl-C). */
async function connect(ctx: ClientContext, url: URL, lastId: string | undefined, stop: AbortSignal): Promise<ReadableStream<Uint8Array> | undefined> {
  const headers: Record<string, string> = { accept: 'text/event-stream', authorization: `Bearer ${await bearerToken(ctx)}` };
  if (lastId !== undefined) headers['last-event-id'] = lastId;
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), CONNECT_TIMEOUT_MS);
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: 'manual', signal: AbortSignal.any([stop, timeout.signal]) });
  } catch (err) {
    if (stop.aborted) return undefined;
    if (timeout.signal.aborted) throw new CliError(`the Flowgate server at ${ctx.baseUrl} did not answer within ${CONNECT_TIMEOUT_MS / 1000} s`);
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    throw new CliError(`cannot reach the Flowgate server at ${ctx.baseUrl} (${cause?.code ?? cause?.message ?? (err as Error).message}); is it running? Point the CLI elsewhere with --url or FLOWGATE_URL.`);
  } finally {
    clearTimeout(timer);
  }
  if (!res.ok || !res.body) throw await responseError(res, url);
  if (!(res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    await res.body.cancel();
    throw new CliError(`the server at ${ctx.baseUrl} did not answer ${url.pathname} with an event stream; is --url a Flowgate server?`);
  }
  return res.body;
}

/** Parses an event stream (WHATWG HTML §9.2.6): fields up to a blank line make one event. */
async function* readEvents(body: ReadableStream<Uint8Array>, stop: AbortSignal): AsyncGenerator<SseEvent> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let data: string[] = [];
  let type = '';
  let id: string | undefined;
  try {
    for (;;) {
      // A dropped connection ends the events too: the caller reconnects after the last one seen.
      const chunk = await reader.read().catch(() => undefined);
      if (!chunk || chunk.done || stop.aborted) return;
      buffer += chunk.value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop() ?? '';
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) yield { id, type: type || 'message', data: data.join('\n') };
          data = [];
          type = '';
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
        else if (field === 'event') type = value;
        else if (field === 'id' && !value.includes('\u0000')) id = value;
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });
}

function parseSeq(value: string): number {
  if (!/^\d{1,15}$/.test(value)) throw new InvalidArgumentError('must be a seq: a whole number, 0 or more');
  return Number(value);
}

function parseCount(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) === 0) throw new InvalidArgumentError('must be a positive whole number');
  return Number(value);
}
