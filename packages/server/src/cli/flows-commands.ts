/**
 * The flow commands (issue 5): `flowgate flows list|apply|start|stop|run` manage your
 * tenant's flows, `flowgate executions list|show` read their executions. `--wait` polls
 * until the flow or execution settles, since the API answers start, stop and run at once.
 */
import { EXECUTION_STATUSES, FLOW_STATUSES, type ExecutionView, type FlowView } from '@flowgate/contracts';
import { InvalidArgumentError, type Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { bearerToken, type ClientContext } from './auth.js';
import type { ClientCommandFactory } from './bus-commands.js';
import { HttpError } from './http.js';
import { CliError } from './io.js';
import { printFields, printJson, printTable } from './output.js';

export interface WaitOptions {
  readonly wait?: boolean;
  /** Seconds. */
  readonly timeout: number;
}

export interface RunOptions extends WaitOptions {
  readonly input?: string;
  readonly inputFile?: string;
}

export interface ExecutionListOptions {
  readonly flow?: string;
  readonly status?: string;
  readonly limit?: number;
  readonly cursor?: string;
}

interface Page<T> {
  readonly items: T[];
  readonly next_cursor: string | null;
}

const DEFAULT_WAIT_S = 60;
const POLL_MS = 200;
const FINISHED = new Set(['succeeded', 'failed', 'cancelled']);

/** Adds `flows …` and `executions …` to the program. */
export function registerFlowCommands(program: Command, client: ClientCommandFactory): void {
  const flows = program.command('flows').description("your tenant's flows");
  client(flows, 'list', 'list the flows', (ctx, command) => listFlows(ctx, command.opts<{ status?: string }>().status)).option(
    '--status <status>',
    `only flows in this status (${FLOW_STATUSES.join(', ')})`,
    oneOf(FLOW_STATUSES),
  );
  client(flows, 'apply', "make the file's flow exist as written: a new flow, or a new version of the flow of its name", (ctx, command) => apply(ctx, command.opts<{ file: string }>().file)).requiredOption(
    '-f, --file <path>',
    'the flow definition: YAML or JSON; the flow of its name is updated (or an `id` field names the flow)',
  );
  for (const action of ['start', 'stop'] as const) {
    waiting(client(flows, action, `${action} a flow`, (ctx, command) => startOrStop(ctx, action, command.args[0]!, command.opts<WaitOptions>()))).argument('<id>', 'flow id or name');
  }
  waiting(client(flows, 'run', 'run an active flow with an input; prints the execution id', (ctx, command) => run(ctx, command.args[0]!, command.opts<RunOptions>())))
    .argument('<id>', 'flow id or name')
    .option('--input <json>', 'the input as JSON (default: {})')
    .option('--input-file <path>', 'read the input from this JSON file');

  const executions = program.command('executions').description('executions of your flows');
  client(executions, 'list', 'list executions, newest first (one page)', (ctx, command) => listExecutions(ctx, command.opts<ExecutionListOptions>()))
    .option('--flow <id>', 'only executions of this flow (id or name)')
    .option('--status <status>', `only executions in this status (${EXECUTION_STATUSES.join(', ')})`, oneOf(EXECUTION_STATUSES))
    .option('--limit <n>', 'at most n executions', parsePositive)
    .option('--cursor <cursor>', 'the page after this cursor');
  client(executions, 'show', 'show an execution and its steps', (ctx, command) => showExecution(ctx, command.args[0]!)).argument('<id>', 'execution id');
}

export async function listFlows(ctx: ClientContext, status?: string): Promise<void> {
  const token = await bearerToken(ctx);
  const items: FlowView[] = [];
  let cursor: string | undefined;
  do {
    const page = await ctx.http.request<Page<FlowView>>('GET', '/api/v1/flows', { token, query: { status, cursor, limit: '200' } });
    items.push(...page.items);
    cursor = page.next_cursor ?? undefined;
  } while (cursor !== undefined);
  if (ctx.options.json) return printJson(ctx.io.stdout, { items, next_cursor: null });
  printTable(
    ctx.io.stdout,
    ['ID', 'NAME', 'STATUS', 'VERSION'],
    items.map((f) => [f.id, nameOf(f), f.status, String(f.version)]),
  );
}

/**
 * `flows apply -f`: makes the tenant's flow of the file's name match the file (a new
 * version when it exists and the file differs, a new flow when not). An `id` in the file
 * names the flow to change instead, so a rename can be applied too.
 */
export async function apply(ctx: ClientContext, file: string): Promise<void> {
  const path = resolve(ctx.io.cwd, file);
  const { id, ...definition } = await readDocument(path);
  if (id !== undefined && (typeof id !== 'string' || id === '')) throw new CliError(`${file}: id must be a flow id (a string)`, 2);
  const token = await bearerToken(ctx);
  const lookup = (key: string) =>
    ctx.http.request<FlowView>('GET', `/api/v1/flows/${encodeURIComponent(key)}`, { token }).catch((err: unknown) => {
      if (err instanceof HttpError && err.status === 404) return undefined;
      throw err;
    });
  const name = (definition as { name?: unknown }).name;
  let existing = id !== undefined ? await lookup(id) : typeof name === 'string' && name !== '' ? await lookup(name) : undefined;
  if (id !== undefined && !existing) ctx.io.stderr.write(`no flow ${id} in your tenant: creating a new one\n`);
  // A lookup by name could find a flow whose id is that name; only the name itself counts.
  if (id === undefined && existing && nameOf(existing) !== name) existing = undefined;
  let flow: FlowView;
  try {
    flow = existing
      ? await ctx.http.request<FlowView>('PUT', `/api/v1/flows/${encodeURIComponent(existing.id)}`, { token, json: definition })
      : await ctx.http.request<FlowView>('POST', '/api/v1/flows', { token, json: definition });
  } catch (err) {
    throw withProblems(err, `${file} is not a valid flow definition; nothing was applied`);
  }
  if (ctx.options.json) return printJson(ctx.io.stdout, flow);
  const what = !existing ? 'created' : flow.version === existing.version ? 'unchanged' : 'updated';
  ctx.io.stdout.write(`${what} flow ${nameOf(flow)}: id ${flow.id}, version ${flow.version} (${flow.status})\n`);
}

export async function startOrStop(ctx: ClientContext, action: 'start' | 'stop', id: string, options: WaitOptions): Promise<void> {
  const token = await bearerToken(ctx);
  const answer = await ctx.http.request<FlowView>('POST', `/api/v1/flows/${encodeURIComponent(id)}/${action}`, { token });
  let flow = answer;
  if (options.wait) {
    const target = action === 'start' ? 'active' : 'inactive';
    flow = await poll(ctx, options, `flow ${answer.id} to be ${target}`, answer, (f) => f.status === target || f.status === 'failed', async () =>
      ctx.http.request<FlowView>('GET', `/api/v1/flows/${encodeURIComponent(answer.id)}`, { token: await bearerToken(ctx) }),
    );
  }
  if (ctx.options.json) printJson(ctx.io.stdout, flow);
  else ctx.io.stdout.write(`flow ${nameOf(flow)} (${flow.id}) is ${flow.status}${flow.status_reason ? `: ${flow.status_reason}` : ''}\n`);
  if (options.wait && flow.status === 'failed') throw new CliError(`flow ${flow.id} failed to ${action}: ${flow.status_reason ?? 'no reason given'}`);
}

export async function run(ctx: ClientContext, id: string, options: RunOptions): Promise<void> {
  const input = await readInput(ctx, options);
  const token = await bearerToken(ctx);
  let execution: ExecutionView;
  try {
    execution = await ctx.http.request<ExecutionView>('POST', `/api/v1/flows/${encodeURIComponent(id)}/executions`, { token, json: input === undefined ? {} : { input } });
  } catch (err) {
    throw withProblems(err, 'the flow refused the input');
  }
  if (!options.wait) {
    if (ctx.options.json) return printJson(ctx.io.stdout, execution);
    ctx.io.stdout.write(`${execution.id}\n`);
    return;
  }
  const started = execution;
  execution = await poll(ctx, options, `execution ${started.id} to finish`, started, (e) => FINISHED.has(e.status), async () =>
    ctx.http.request<ExecutionView>('GET', `/api/v1/executions/${encodeURIComponent(started.id)}`, { token: await bearerToken(ctx) }),
  );
  if (ctx.options.json) printJson(ctx.io.stdout, execution);
  else printFields(ctx.io.stdout, executionFields(execution));
  if (execution.status !== 'succeeded') throw new CliError(`execution ${execution.id} ${execution.status}${execution.error ? `: ${execution.error.message}` : ''}`);
}

export async function listExecutions(ctx: ClientContext, options: ExecutionListOptions): Promise<void> {
  const query = { flow: options.flow, status: options.status, limit: options.limit?.toString(), cursor: options.cursor };
  const page = await ctx.http.request<Page<ExecutionView>>('GET', '/api/v1/executions', { token: await bearerToken(ctx), query });
  if (ctx.options.json) return printJson(ctx.io.stdout, page);
  printTable(
    ctx.io.stdout,
    ['ID', 'FLOW', 'STATUS', 'STARTED', 'FINISHED'],
    page.items.map((e) => [e.id, e.flow_id, e.status, e.created_at, e.finished_at ?? '-']),
  );
  if (page.next_cursor !== null) ctx.io.stderr.write(`More results: add --cursor ${page.next_cursor}\n`);
}

export async function showExecution(ctx: ClientContext, id: string): Promise<void> {
  const token = await bearerToken(ctx);
  const page = (from: number) => ctx.http.request<ExecutionView>('GET', `/api/v1/executions/${encodeURIComponent(id)}`, { token, query: { steps_from: from === 0 ? undefined : String(from) } });
  // The server shows the steps a page at a time: all of them are read.
  const first = await page(0);
  const steps = [...(first.steps ?? [])];
  for (let next = first.steps_next; next !== undefined && next !== null; ) {
    const more = await page(next);
    steps.push(...(more.steps ?? []));
    next = more.steps_next;
  }
  const execution = { ...first, steps, steps_next: null };
  if (ctx.options.json) return printJson(ctx.io.stdout, execution);
  printFields(ctx.io.stdout, executionFields(execution));
  ctx.io.stdout.write(`\nsteps (${steps.length}):\n`);
  printTable(
    ctx.io.stdout,
    ['NODE', 'PHASE', 'STATUS', 'ATTEMPTS', 'ERROR'],
    steps.map((s) => [s.node, s.phase, s.status, String(s.attempt), s.error ? `${s.error.code}: ${s.error.message}` : '-']),
  );
}

function executionFields(e: ExecutionView): Array<[string, string]> {
  const fields: Array<[string, string]> = [
    ['id', e.id],
    ['flow', `${e.flow_id} (version ${e.flow_version})`],
    ['status', e.status],
    ['trigger', e.trigger],
    ['started', e.created_at],
    ['finished', e.finished_at ?? '-'],
    ['output', e.output === undefined ? '-' : JSON.stringify(e.output)],
  ];
  if (e.error) fields.push(['error', `${e.error.code}: ${e.error.message}${e.error.node ? ` (node ${e.error.node})` : ''}`]);
  return fields;
}

/** Asks `next` every POLL_MS until `done`, or fails after `--timeout` seconds. */
async function poll<T extends { status: string }>(ctx: ClientContext, options: WaitOptions, what: string, first: T, done: (value: T) => boolean, next: () => Promise<T>): Promise<T> {
  const deadline = ctx.io.now() + options.timeout * 1000;
  let value = first;
  while (!done(value)) {
    if (ctx.io.now() >= deadline) throw new CliError(`gave up waiting for ${what} after ${options.timeout} s (it is ${value.status})`);
    await new Promise((r) => setTimeout(r, POLL_MS));
    value = await next();
  }
  return value;
}

async function readInput(ctx: ClientContext, options: RunOptions): Promise<unknown> {
  if (options.input !== undefined && options.inputFile !== undefined) throw new CliError('give --input or --input-file, not both', 2);
  let text = options.input;
  const source = options.inputFile === undefined ? '--input' : options.inputFile;
  if (options.inputFile !== undefined) text = await readText(resolve(ctx.io.cwd, options.inputFile));
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CliError(`${source} is not valid JSON (quote strings: '"hello"')`, 2);
  }
}

/** Reads a YAML (or JSON, which YAML reads too) mapping, naming the line of a syntax error. */
async function readDocument(path: string): Promise<Record<string, unknown>> {
  const document = parseDocument(await readText(path), { prettyErrors: true });
  const error = document.errors[0];
  if (error) {
    const where = error.linePos?.[0] ? ` at line ${error.linePos[0].line}, column ${error.linePos[0].col}` : '';
    throw new CliError(`${path} is not valid YAML${where}: ${error.message.split('\n')[0]}; nothing was applied`, 2);
  }
  const value: unknown = document.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CliError(`${path} must be a mapping with name, triggers and nodes; nothing was applied`, 2);
  return value as Record<string, unknown>;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
}

/** A refused document or input: every problem the server listed, one per line. */
function withProblems(err: unknown, heading: string): unknown {
  if (!(err instanceof HttpError) || (err.status !== 400 && err.status !== 422)) return err;
  const problems = (err.problem as { errors?: Array<{ path: string; message: string }> } | undefined)?.errors;
  if (!problems || problems.length === 0) return err;
  // Schema errors name the request body ("body.nodes.0"); the file is the body.
  const lines = problems.map((p) => `  ${p.path.replace(/^body\.?/, '') || '(top level)'}: ${p.message}`).join('\n');
  return new CliError(`${heading}:\n${lines}`, 1);
}

function nameOf(flow: FlowView): string {
  return typeof flow.definition.name === 'string' ? flow.definition.name : '-';
}

function oneOf(values: readonly string[]): (value: string) => string {
  return (value) => {
    if (!values.includes(value)) throw new InvalidArgumentError(`must be one of ${values.join(', ')}`);
    return value;
  };
}

function parsePositive(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) === 0) throw new InvalidArgumentError('must be a positive whole number');
  return Number(value);
}

function waiting(command: Command): Command {
  return command
    .option('--wait', 'wait until it settles (flows: active or inactive; runs: finished)')
    .option('--timeout <seconds>', 'with --wait, give up after this many seconds', parsePositive, DEFAULT_WAIT_S);
}
