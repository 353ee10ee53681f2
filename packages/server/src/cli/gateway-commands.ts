/**
 * `flowgate apply -f gateway.yaml` makes the running gateway serve exactly the file's
 * services and routes, printing what changed (`--dry-run` only prints it);
 * `flowgate gateway get` prints the configuration now served.
 */
import type { GatewayApplyResult, GatewayChange, GatewayConfigState } from '@flowgate/contracts';
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseDocument, stringify } from 'yaml';
import { bearerToken, type ClientContext } from './auth.js';
import type { ClientCommandFactory } from './bus-commands.js';
import { HttpError } from './http.js';
import { CliError } from './io.js';
import { printJson } from './output.js';

export interface ApplyOptions {
  readonly file?: string;
  readonly dryRun?: boolean;
}

export function registerGatewayCommands(program: Command, client: ClientCommandFactory): void {
  client(program, 'apply', "make the gateway serve exactly the file's services and routes (platform administrators)", (ctx, command) => apply(ctx, command.opts<ApplyOptions>()))
    .requiredOption('-f, --file <path>', 'the gateway configuration: YAML or JSON with services and routes')
    .option('--dry-run', 'only show what would change');
  const gateway = program.command('gateway').description('the API gateway (platform administrators)');
  client(gateway, 'get', 'print the configuration the gateway serves, as YAML', (ctx) => get(ctx));
}

export async function apply(ctx: ClientContext, options: ApplyOptions): Promise<void> {
  const path = resolve(ctx.io.cwd, options.file ?? '');
  const document = await readConfig(path);
  let result: GatewayApplyResult;
  try {
    result = await ctx.http.request<GatewayApplyResult>('PUT', '/api/v1/gateway/config', {
      token: await bearerToken(ctx),
      json: document,
      query: { dryRun: options.dryRun ? 'true' : undefined },
    });
  } catch (err) {
    throw withProblems(err, path);
  }
  if (ctx.options.json) {
    printJson(ctx.io.stdout, result);
    return;
  }
  for (const change of result.changes) ctx.io.stdout.write(`${describe(change)}\n`);
  if (result.changes.length === 0) ctx.io.stdout.write(`no changes: the gateway already serves ${options.file} (revision ${result.revision})\n`);
  else if (result.dryRun) ctx.io.stdout.write(`dry run: ${count(result.changes.length)} would be applied; nothing was changed\n`);
  else ctx.io.stdout.write(`applied ${count(result.changes.length)}: the gateway serves revision ${result.revision}\n`);
}

export async function get(ctx: ClientContext): Promise<void> {
  const state = await ctx.http.request<GatewayConfigState>('GET', '/api/v1/gateway/config', { token: await bearerToken(ctx) });
  if (ctx.options.json) printJson(ctx.io.stdout, state);
  else ctx.io.stdout.write(`# revision ${state.revision}\n${stringify({ services: state.services, routes: state.routes })}`);
}

/** Reads YAML (or JSON, which YAML reads too), naming the line of a syntax error. */
async function readConfig(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 2);
  }
  const document = parseDocument(text, { prettyErrors: true });
  const error = document.errors[0];
  if (error) {
    const where = error.linePos?.[0] ? ` at line ${error.linePos[0].line}, column ${error.linePos[0].col}` : '';
    throw new CliError(`${path} is not valid YAML${where}: ${error.message.split('\n')[0]}; nothing was applied`, 2);
  }
  const value: unknown = document.toJS();
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CliError(`${path} must be a mapping with services and routes; nothing was applied`, 2);
  return value;
}

/** An invalid configuration: every problem the server found, one per line. */
function withProblems(err: unknown, path: string): unknown {
  if (!(err instanceof HttpError) || err.status !== 400) return err;
  const problems = (err.problem as { errors?: Array<{ path: string; message: string }> } | undefined)?.errors;
  if (!problems || problems.length === 0) return err;
  const lines = problems.map((p) => `  ${p.path}: ${p.message}`).join('\n');
  return new CliError(`${path} is not a valid gateway configuration; nothing was applied (the gateway keeps its current one):\n${lines}`, 1);
}

const SIGN = { create: '+', update: '~', delete: '-' } as const;

function describe(change: GatewayChange): string {
  return `${SIGN[change.op]} ${change.kind} ${change.name} (${change.op})`;
}

function count(n: number): string {
  return `${n} change${n === 1 ? '' : 's'}`;
}
