/**
 * `flowgate audit verify` checks the tenant's audit chain; `flowgate audit export`
 * writes its records as JSON Lines, oldest first.
 */
import type { AuditVerify } from '@flowgate/contracts';
import type { Command } from 'commander';
import { bearerToken, type ClientContext } from './auth.js';
import type { ClientCommandFactory } from './bus-commands.js';
import { responseError } from './http.js';
import { CliError } from './io.js';
import { printJson } from './output.js';

export interface AuditCommandOptions {
  readonly platform?: boolean;
  readonly from?: string;
  readonly to?: string;
  readonly action?: string;
  readonly actor?: string;
  readonly outcome?: string;
}

/** Adds `audit verify` and `audit export` to the program. */
export function registerAuditCommands(program: Command, client: ClientCommandFactory): void {
  const audit = program.command('audit').description("your tenant's audit log");
  client(audit, 'verify', 'check that no record was changed, removed or inserted; exits 1 if one was', (ctx, command) => verify(ctx, command.opts<AuditCommandOptions>())).option(
    '--platform',
    "the platform's own records (platform administrators)",
  );
  client(audit, 'export', 'write the records as JSON Lines, oldest first', (ctx, command) => exportRecords(ctx, command.opts<AuditCommandOptions>()))
    .option('--platform', "the platform's own records (platform administrators)")
    .option('--from <time>', 'records at or after this ISO time')
    .option('--to <time>', 'records before this ISO time')
    .option('--action <action>', 'an action, or a prefix ending in * (iam.*)')
    .option('--actor <subject>', 'records of this subject')
    .option('--outcome <outcome>', 'success or failure');
}

export async function verify(ctx: ClientContext, options: AuditCommandOptions): Promise<void> {
  const report = await ctx.http.request<AuditVerify>('GET', `/api/v1/audit/verify${options.platform ? '?scope=platform' : ''}`, { token: await bearerToken(ctx) });
  if (ctx.options.json) printJson(ctx.io.stdout, report);
  else if (report.ok) {
    const to = report.verified_to ? `; matches its signed checkpoint at record ${report.verified_to.seq} (${report.verified_to.time})` : '; no signed checkpoint yet';
    ctx.io.stdout.write(`audit chain intact: ${report.records} record${report.records === 1 ? '' : 's'}${to}\n`);
  } else {
    const problem = report.problem!;
    ctx.io.stdout.write(`audit chain BROKEN at record ${problem.seq}${problem.event_id ? ` (event ${problem.event_id})` : ''}: ${problem.kind}: ${problem.detail}\n`);
  }
  if (!report.ok) throw new CliError('the audit log was changed behind its back', 1);
}

export async function exportRecords(ctx: ClientContext, options: AuditCommandOptions): Promise<void> {
  const url = new URL(`${ctx.baseUrl}/api/v1/audit/export`);
  if (options.platform) url.searchParams.set('scope', 'platform');
  for (const key of ['from', 'to', 'action', 'actor', 'outcome'] as const) {
    const value = options[key];
    if (value !== undefined) url.searchParams.set(key, value);
  }
  const res = await fetch(url, { headers: { authorization: `Bearer ${await bearerToken(ctx)}` }, redirect: 'manual' }).catch((err: unknown) => {
    throw new CliError(`cannot reach the Flowgate server at ${ctx.baseUrl} (${(err as Error).message}); is it running?`);
  });
  if (!res.ok || !res.body) throw await responseError(res, url);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) ctx.io.stdout.write(chunk.value);
}
