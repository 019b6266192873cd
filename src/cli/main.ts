// crashcart's command line: parse, run one command, print one line on failure, exit with
// a code that means something (see README: exit codes).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { EXIT_CRASHCART } from '../core/errors.js';
import { projectDir } from '../native/index.js';
import { splitArgv } from './argv.js';
import { attach, attachOptions, type AttachArgs } from './commands/attach.js';
import { imageCommands } from './commands/image.js';
import { psCommand } from './commands/ps.js';
import { report } from './output.js';

// yargs' CommonJS build loads in a third of the time its ES module entry takes, and every
// attach pays for it. The demo, doctor and image commands are loaded only when used.
const yargs = createRequire(import.meta.url)('yargs/yargs') as (args: string[]) => Argv;

function version(): string {
  return (JSON.parse(readFileSync(join(projectDir, 'package.json'), 'utf8')) as { version: string }).version;
}

export async function main(argv: string[]): Promise<number> {
  const { own, command } = splitArgv(argv);
  let exitCode = 0;
  const run = (p: Promise<number>) =>
    p.then((code) => {
      exitCode = code;
    });

  await yargs(own)
    .scriptName('crashcart')
    .usage('$0 [options] <target> [-- command args...]\n$0 [options] --pod NAME [--container NAME] [-- command args...]\n\nGraft a read-only debugging toolkit at /dev/crashcart inside a running container and run a shell (or the command) in all its namespaces.')
    .command<AttachArgs>(
      '$0 [target]',
      'attach to a container: run bash (or the command) inside it with the toolkit',
      (y) => attachOptions(y) as never,
      (a) => run(attach(a as AttachArgs, command)),
    )
    .command(
      'demo',
      'start a disposable scratch container and attach to it',
      (y) => y.option('image', { alias: 'i', type: 'string', describe: 'toolkit image file' }),
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
    .command({ ...psCommand, handler: (a) => run(Promise.resolve(psCommand.handler(a)).then(() => 0)) })
    .command(
      'doctor',
      'check whether crashcart can attach on this host, and what to fix',
      (y) => y.option('json', { type: 'boolean', default: false, describe: 'print a JSON array of {check, status, detail, fix} instead of a table' }),
      (a) => run(import('./commands/doctor.js').then(({ doctor }) => doctor(a as never))),
    )
    .command('image', 'build, pull and manage toolkit images', (y) => y.command(imageCommands).demandCommand(1, 'name an image command: build, pull, ls, inspect, rm'))
    .option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'say what happens, on stderr' })
    .version('version', 'show the version', version())
    .alias('version', 'V')
    .help('help')
    .alias('help', 'h')
    .strict()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? Object.assign(new Error(msg), { usage: true });
    })
    .parseAsync();
  return exitCode;
}

/** yargs' messages in one line: "Invalid values: Argument: method, Given: "x", Choices: ..." */
export function usageLine(msg: string): string {
  const choice = /Argument: ([\w-]+), Given: ("[^"]*"|\S+), Choices: (.*)$/s.exec(msg);
  if (choice) return `invalid --${choice[1]} ${choice[2]}: choose one of ${choice[3].replace(/"/g, '').replace(/\s+/g, ' ').trim()}`;
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

export async function run(): Promise<void> {
  const argv = process.argv.slice(2);
  const verbose = splitArgv(argv).own.some((a) => a === '-v' || a === '--verbose');
  let code: number;
  try {
    code = await main(argv);
  } catch (e) {
    if (e instanceof Error && (e as { usage?: boolean }).usage) {
      process.stderr.write(`crashcart: ${usageLine(e.message)}; see crashcart --help\n`);
      code = EXIT_CRASHCART;
    } else {
      code = report(e, verbose);
    }
  }
  process.exitCode = code;
}
