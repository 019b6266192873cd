// crashcart's command line: parse, run one command, print one line on failure, exit with
// a code that means something (see README: exit codes).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { EXIT_CRASHCART } from '../core/errors.js';
import { projectDir, provideAddon } from '../native/index.js';
import { splitArgv } from './argv.js';
import { parseAttachArgs, VERBOSE } from './attach-args.js';
import { attach, attachOptions, type AttachArgs } from './commands/attach.js';
import { report } from './output.js';
import { noteCodeCache } from '../core/timing.js';

function version(): string {
  return (JSON.parse(readFileSync(join(projectDir, 'package.json'), 'utf8')) as { version: string }).version;
}

type Runner = (p: Promise<number>) => Promise<void> | void;

/** The command modules the definitions use, loaded only with yargs (never for a plain attach). */
export async function cliModules() {
  const [{ imageCommands }, { psCommand }, { cpOptions, forwardOptions }] = await Promise.all([
    import('./commands/image.js'),
    import('./commands/ps.js'),
    import('./commands/reach-options.js'),
  ]);
  return { imageCommands, psCommand, cpOptions, forwardOptions };
}
export type CliModules = Awaited<ReturnType<typeof cliModules>>;

/**
 * Every command and option of crashcart, on `y`. The man page (src/cli/man.ts) and the
 * completion scripts read them from here too (src/cli/spec.ts), so none of them can drift.
 */
export function defineCli(y: Argv, m: CliModules, command: string[] = [], run: Runner = () => undefined, own: string[] = [], load?: number): Argv {
  const { imageCommands, psCommand, cpOptions, forwardOptions } = m;
  return y
    .scriptName('crashcart')
    .usage('$0 [options] <target> [-- command args...]\n$0 [options] --pod NAME [--container NAME] [-- command args...]\n\nGraft a read-only debugging toolkit at /dev/crashcart inside a running container and run a shell (or the command) in all its namespaces.')
    .command<AttachArgs>(
      '$0 [target]',
      'attach to a container: run bash (or the command) inside it with the toolkit',
      (y) => attachOptions(y) as never,
      (a) => run(attach(a as AttachArgs, command, load)),
    )
    .command(
      'demo',
      'start a disposable scratch container and attach to it',
      (y) => y.option('image', { alias: 'i', type: 'string', requiresArg: true, describe: 'toolkit image file' }),
      (a) => run(import('./commands/demo.js').then(({ demo }) => demo(a as never, command))),
    )
    .command(
      'gc',
      'remove grafts whose sessions have all ended, and the state of targets that are gone',
      (y) => y
        .option('dry-run', { alias: 'n', type: 'boolean', default: false, describe: 'say what would be removed; change nothing' })
        .option('audit', { type: 'boolean', default: true, describe: 'record the run in the audit log' }),
      (a) => run(import('./commands/gc.js').then(({ gc }) => gc(a as never))),
    )
    .command(
      'forward <target> [ports..]',
      "forward host ports into the target's network namespace: to a port or a unix socket inside",
      (y) => forwardOptions(y),
      (a) => run(import('./commands/forward.js').then(({ forward }) => forward(a as never))),
    )
    .command(
      'cp <source> <destination>',
      "copy files into or out of a container (TARGET:PATH on one side; '-' for a tar stream)",
      (y) => cpOptions(y),
      // yargs gives a lone '-' as '': the stream of docker cp's syntax
      (a) => run(import('./commands/cp.js').then(({ cp, lonelyDash }) => cp(lonelyDash(a as never, own)))),
    )
    .command({ ...psCommand, handler: (a) => run(Promise.resolve(psCommand.handler(a)).then(() => 0)) })
    .command(
      'doctor',
      'check whether crashcart can attach on this host, and what to fix',
      (y) => y.option('json', { type: 'boolean', default: false, describe: 'print a JSON array of {check, status, detail, fix} instead of a table' }),
      (a) => run(import('./commands/doctor.js').then(({ doctor }) => doctor(a as never))),
    )
    .command('image', 'build, pull and manage toolkit images', (y) => y.command(imageCommands).demandCommand(1, 'name an image command: build, pull, ls, inspect, rm'))
    .command(
      'completion <shell>',
      'print the shell completion script for bash or zsh',
      (y) => y.positional('shell', { choices: ['bash', 'zsh'] as const, describe: 'the shell' }),
      (a) => run(import('./commands/completion.js').then(({ completion }) => completion((a as { shell: 'bash' | 'zsh' }).shell))),
    )
    .option('verbose', VERBOSE)
    .version('version', 'show the version', version())
    .alias('version', 'V')
    .help('help')
    .alias('help', 'h');
}

/**
 * The whole command line through yargs: subcommands, --help, --version, and any attach
 * that parseAttachArgs leaves to it. yargs (its CommonJS build: a third of the load time of
 * its ES module entry) and the other commands are loaded only here, when used.
 */
export async function main(argv: string[], load?: number): Promise<number> {
  const { own, command } = splitArgv(argv);
  // node:module here, not on an attach's path: it brings Node's ES module loader along
  const { createRequire } = await import('node:module');
  const yargs = createRequire(import.meta.filename)('yargs/yargs') as (args: string[]) => Argv;
  const m = await cliModules();
  let exitCode = 0;
  const run = (p: Promise<number>) =>
    p.then((code) => {
      exitCode = code;
    });

  await defineCli(yargs(own), m, command, run, own, load)
    .strict()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      // yargs' own complaints (unknown options, missing values) are usage errors too; a
      // command's failure is passed on as it is
      if (err && err.name !== 'YError') throw err;
      throw Object.assign(new Error(msg || err?.message || 'invalid command line'), { usage: true });
    })
    .parseAsync();
  return exitCode;
}

const SUBCOMMANDS: Record<string, string[]> = { image: ['build', 'pull', 'ls', 'inspect', 'rm'], demo: [], gc: [], ps: [], doctor: [], forward: [], cp: [], completion: [] };

/** The subcommand words of a command line: ['image', 'pull'], or [] for an attach. */
function commandWords(argv: string[]): string[] {
  const words = argv.filter((a) => !a.startsWith('-'));
  const first = words[0];
  if (first === undefined || !(first in SUBCOMMANDS)) return [];
  return SUBCOMMANDS[first]!.includes(words[1] ?? '') ? [first, words[1]!] : [first];
}

/** An option as the user wrote it ('-i', '--env'), from yargs' name for it ('i', 'env'). */
function written(name: string, argv: string[]): string | undefined {
  return argv.find((a) => a === `-${name}` || a === `--${name}` || a.startsWith(`--${name}=`))?.replace(/=.*$/, '');
}

/**
 * yargs' messages as one line that says what is wrong and where to look:
 *   Invalid values: Argument: method, Given: "x", Choices: ...  ->  invalid --method "x": choose one of ...
 *   Not enough arguments following: env                         ->  --env needs a value
 *   Unknown argument: bogus                                     ->  unknown option --bogus
 */
export function usageLine(msg: string, argv: string[] = []): string {
  const words = commandWords(argv);
  const help = `see crashcart${words.length ? ` ${words.join(' ')}` : ''} --help`;
  const text = msg.replace(/\s*\n\s*/g, ' ').trim();
  const choice = /Argument: ([\w-]+), Given: ("[^"]*"|\S+), Choices: (.*)$/.exec(text);
  if (choice) return `invalid --${choice[1]} ${choice[2]}: choose one of ${choice[3]!.replace(/"/g, '')}; ${help}`;
  const following = /^Not enough arguments following: ([\w-]+)$/.exec(text);
  if (following) return `${written(following[1]!, argv) ?? `--${following[1]}`} needs a value; ${help}`;
  const unknown = /^Unknown arguments?: (.*)$/.exec(text);
  if (unknown) {
    const names = unknown[1]!.split(', ');
    const options = names.map((n) => written(n, argv)).filter((o): o is string => o !== undefined);
    if (options.length > 0) return `unknown option${options.length > 1 ? 's' : ''} ${[...new Set(options)].join(', ')}; ${help}`;
    const choices = words.length === 1 ? SUBCOMMANDS[words[0]!]! : [];
    if (choices.length > 0) return `unknown ${words[0]} command '${names[0]}'; choose one of ${choices.join(', ')}`;
    return `unexpected argument${names.length > 1 ? 's' : ''} ${names.map((n) => `'${n}'`).join(', ')} for crashcart${words.length ? ` ${words.join(' ')}` : ''}; ${help}`;
  }
  const positional = /^Not enough non-option arguments: got (\d+), need at least (\d+)$/.exec(text);
  if (positional) return `crashcart ${words.join(' ')} needs ${positional[2]} argument${positional[2] === '1' ? '' : 's'}, got ${positional[1]}; ${help}`;
  return `${text}; ${help}`;
}

/** Runs the command line; says 'attach' after a plain attach (bin/crashcart keeps V8's code cache of one). */
export async function run(opts: { codeCache?: string; addon?: unknown } = {}): Promise<'attach' | undefined> {
  const load = process.uptime() * 1000; // since the process started: Node's start and loading the CLI
  noteCodeCache(opts.codeCache);
  provideAddon(opts.addon);
  const argv = process.argv.slice(2);
  // what the completion scripts ask while a user presses TAB: no yargs, no attach modules
  if (argv[0] === '__complete') {
    process.exitCode = await (await import('./commands/complete.js')).complete(argv.slice(1));
    return undefined;
  }
  // a runbook's `crashcart --version` needs no yargs either (it costs that command ~100 ms)
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(`${version()}\n`);
    return undefined;
  }
  const split = splitArgv(argv);
  const verbose = split.own.some((a) => a === '-v' || a === '--verbose');
  let code: number;
  let fast;
  try {
    // a plain attach needs no yargs (see attach-args.ts)
    fast = parseAttachArgs(split.own);
    code = fast ? await attach(fast, split.command, load) : await main(argv, load);
  } catch (e) {
    if (e instanceof Error && (e as { usage?: boolean }).usage) {
      process.stderr.write(`crashcart: ${usageLine(e.message, splitArgv(argv).own)}\n`);
      code = EXIT_CRASHCART;
    } else {
      code = report(e, verbose);
    }
  }
  process.exitCode = code;
  return fast && code !== EXIT_CRASHCART ? 'attach' : undefined;
}
