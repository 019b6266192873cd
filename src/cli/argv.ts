// Splits a command line into crashcart's own part and the command to run in the target,
// like `docker exec web ps -ef`: the command starts at the first word after the target
// that is not one of crashcart's options, or after a `--` that follows the target's options.
//   crashcart -v web -i img -- ls -l      own: -v web -i img     command: ls -l
//   crashcart web ls -- -l                own: web               command: ls -- -l
// --pod, --rootfs, --from-image and --all name the target, so then the first word is the command's:
//   crashcart --pod web ls -l             own: --pod web         command: ls -l
//   crashcart --all ps                    own: --all             command: ps
// Which options take a value comes from the attach options' table (attach-args.ts).
import { SUBCOMMANDS, VALUE_OPTIONS } from './attach-args.js';

/** Options that name what to open instead of a target: after them the first word is the command's. */
const TARGET_OPTIONS = ['--pod', '--rootfs', '--from-image'];

export interface SplitArgv {
  /** what yargs parses */
  own: string[];
  /** the command for the target ([] for the default shell) */
  command: string[];
}

export function splitArgv(args: string[]): SplitArgv {
  let seenTarget = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') return { own: args.slice(0, i), command: args.slice(i + 1) };
    if (a.startsWith('-') && a !== '-') {
      if (a === '--all' || TARGET_OPTIONS.some((o) => a === o || a.startsWith(`${o}=`))) seenTarget = true;
      if (!a.includes('=') && VALUE_OPTIONS.has(a)) i++; // its value
      continue;
    }
    if (!seenTarget) {
      if (SUBCOMMANDS.has(a)) return splitSubcommand(args);
      seenTarget = true;
      continue;
    }
    return { own: args.slice(0, i), command: args.slice(i) }; // the command's first word
  }
  return { own: args, command: [] };
}

// `crashcart demo -- cmd`, `crashcart image build -o x`: only `--` separates a command.
function splitSubcommand(args: string[]): SplitArgv {
  const dd = args.indexOf('--');
  return dd < 0 ? { own: args, command: [] } : { own: args.slice(0, dd), command: args.slice(dd + 1) };
}
