/**
 * The `flowgate` command line: the commander program and the entry point that runs it
 * and turns every failure into a message and an exit code (1: the operation failed,
 * 2: a usage or configuration error).
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { VERSION } from '../version.js';
import {
  createAccount,
  createApiKey,
  createTenant,
  listAccounts,
  listApiKeys,
  listTenants,
  revokeApiKey,
  rotateKeys,
  token,
  whoami,
  type PageOptions,
} from './admin-commands.js';
import { clientContext, DEFAULT_URL, type ClientOptions } from './auth.js';
import { registerAuditCommands } from './audit-commands.js';
import { registerBusCommands } from './bus-commands.js';
import { registerFlowCommands } from './flows-commands.js';
import { registerGatewayCommands } from './gateway-commands.js';
import { CliError, type CliIo } from './io.js';
import { DEFAULT_LOGIN_TIMEOUT_MS, login, logout } from './login.js';
import { migrate, rotateMaster, start } from './server-commands.js';

type Action = (ctx: ReturnType<typeof clientContext>, command: Command) => Promise<void>;

/** Builds the program; `io` carries the streams and environment, so tests may run it in-process. */
export function buildProgram(io: CliIo): Command {
  const program = new Command('flowgate')
    .description('Flowgate: run the server, or manage one over its API.')
    .version(VERSION, '-V, --version')
    .exitOverride()
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .showHelpAfterError('(add --help for usage)')
    .addHelpText(
      'after',
      `
Client commands talk to --url, or $FLOWGATE_URL, or ${DEFAULT_URL}. Their bearer token comes
from --token or $FLOWGATE_TOKEN; else from client credentials (--client-id/--client-secret or
$FLOWGATE_CLIENT_ID/$FLOWGATE_CLIENT_SECRET); else from the sign-in saved by "flowgate login".`,
    );

  // --- Server ------------------------------------------------------------------------------
  program
    .command('start')
    .description('run the server, configured from flowgate.yaml and FLOWGATE_* variables')
    .action(() => start(io));
  program
    .command('migrate')
    .description('apply pending database migrations, then exit')
    .option('--json', 'print the result as JSON')
    .action((options: { json?: boolean }) => migrate(io, options));
  program
    .command('secrets')
    .description('server-side secret keys (run where the server runs, with its configuration)')
    .command('rotate-master')
    .description('make a new master key current and re-wrap every data key with it; servers keep running')
    .option('--rewrap-only', 'do not add a key: re-wrap what an older key still wraps (finishes an interrupted rotation)')
    .option('--json', 'print the result as JSON')
    .action((options: { json?: boolean; rewrapOnly?: boolean }) => rotateMaster(io, options));

  // --- Sign-in -----------------------------------------------------------------------------
  program
    .command('login')
    .description('sign in through a browser (or check and save client credentials)')
    .option('--url <url>', 'server URL')
    .option('--client-id <id>', 'sign in as this service account instead')
    .option('--client-secret <secret>', 'its secret (prefer $FLOWGATE_CLIENT_SECRET)')
    .option('--tenant <tenant>', 'the tenant to sign in to; refuse any other')
    .option('--no-browser', 'only print the sign-in URL, do not open a browser')
    .option('--timeout <seconds>', 'how long to wait for the browser', parsePositiveInt, DEFAULT_LOGIN_TIMEOUT_MS / 1000)
    .option('--json', 'print the signed-in identity as JSON')
    .action(async (options: ClientOptions & { tenant?: string; browser: boolean; timeout: number }) => {
      await login(clientContext(io, options), { tenant: options.tenant, browser: options.browser, timeoutMs: options.timeout * 1000 });
    });
  program
    .command('logout')
    .description('revoke the saved sign-in at the server and forget it')
    .option('--url <url>', 'server URL')
    .option('--json', 'print the result as JSON')
    .action((options: ClientOptions) => logout(clientContext(io, options)));

  // --- API ---------------------------------------------------------------------------------
  const client = (parent: Command, name: string, description: string, action: Action): Command =>
    parent
      .command(name)
      .description(description)
      .option('--url <url>', 'server URL')
      .option('--token <token>', 'bearer token (prefer $FLOWGATE_TOKEN)')
      .option('--client-id <id>', 'service account client id')
      .option('--client-secret <secret>', 'service account secret (prefer $FLOWGATE_CLIENT_SECRET)')
      .option('--json', 'print the raw JSON answer')
      .action(async (...args: unknown[]) => {
        const command = args[args.length - 1] as Command;
        await action(clientContext(io, command.opts<ClientOptions>()), command);
      });
  const paged = (command: Command) =>
    command.option('--limit <n>', 'one page of at most n items', parsePositiveInt).option('--cursor <cursor>', 'the page after this cursor');

  client(program, 'token', 'print a valid access token (for scripts)', (ctx) => token(ctx));
  client(program, 'whoami', 'show who the token stands for', (ctx) => whoami(ctx));

  const tenants = program.command('tenants').description('tenants (platform administrators)');
  client(tenants, 'create', 'create a tenant and its owner service account', (ctx, command) => createTenant(ctx, command.args[0]!)).argument('<id>', 'tenant id, e.g. acme');
  paged(client(tenants, 'list', 'list the tenants you can see', (ctx, command) => listTenants(ctx, command.opts<PageOptions>())));

  const accounts = program.command('accounts').alias('service-accounts').description('service accounts of your tenant');
  client(accounts, 'create', 'create a service account (its secret is shown once)', (ctx, command) =>
    createAccount(ctx, command.args[0]!, splitScopes(command.opts<{ scope?: string[] }>().scope)),
  )
    .argument('<name>', 'account name')
    .option('--scope <scopes...>', 'scopes to grant: repeat the flag, or separate with spaces');
  paged(client(accounts, 'list', 'list the service accounts', (ctx, command) => listAccounts(ctx, command.opts<PageOptions>())));

  const apiKeys = accounts.command('api-keys').description("a service account's API keys (for the gateway's api-key auth)");
  client(apiKeys, 'create', 'create an API key (shown once)', (ctx, command) => {
    const options = command.opts<{ scope?: string[]; expiresInDays?: number }>();
    return createApiKey(ctx, command.args[0]!, command.args[1]!, { scopes: splitScopes(options.scope), ...(options.expiresInDays ? { expiresInDays: options.expiresInDays } : {}) });
  })
    .argument('<account-id>', 'the service account id (accounts list --json shows it)')
    .argument('<name>', 'key name')
    .option('--scope <scopes...>', "scopes of the key, among the account's (default: all of them)")
    .option('--expires-in-days <days>', 'expire the key after this many days (default: never)', parsePositiveInt);
  paged(client(apiKeys, 'list', 'list the API keys of an account (never the keys)', (ctx, command) => listApiKeys(ctx, command.args[0]!, command.opts<PageOptions>()))).argument(
    '<account-id>',
    'the service account id',
  );
  client(apiKeys, 'revoke', 'revoke an API key', (ctx, command) => revokeApiKey(ctx, command.args[0]!, command.args[1]!))
    .argument('<account-id>', 'the service account id')
    .argument('<key-id>', 'the API key id');

  const keys = program.command('keys').description('token signing keys (platform administrators)');
  client(keys, 'rotate', 'make a new signing key; old ones stay published until their tokens expire', (ctx) => rotateKeys(ctx));

  registerBusCommands(program, client);
  registerAuditCommands(program, client);
  registerGatewayCommands(program, client);
  registerFlowCommands(program, client);

  return program;
}

/** Runs the program on `argv` (as in `process.argv`) and returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const program = buildProgram(io);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2; // commander printed the message
    if (err instanceof CliError) {
      io.stderr.write(`flowgate: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`flowgate: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

function parsePositiveInt(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) === 0) throw new InvalidArgumentError('must be a positive whole number');
  return Number(value);
}

function splitScopes(values: readonly string[] | undefined): string[] {
  return [...new Set((values ?? []).flatMap((v) => v.split(/[\s,]+/)).filter((s) => s.length > 0))];
}
