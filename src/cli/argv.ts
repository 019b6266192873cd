// Splits a command line into crashcart's own part and the command to run in the target.
// With `--`, everything before it is crashcart's and everything after it the command.
// Without, the command starts after the first positional argument (the target), options
// included, like `docker exec web ps -ef`.
const VALUE_OPTIONS = new Set(['-i', '--image', '--user', '--workdir', '-w', '--env', '--method', '-r', '--runtime']);
const SUBCOMMANDS = new Set(['image', 'demo', 'help']);

export interface SplitArgv {
  /** what yargs parses */
  own: string[];
  /** the command for the target ([] for the default shell) */
  command: string[];
}

export function splitArgv(args: string[]): SplitArgv {
  const dashdash = args.indexOf('--');
  if (dashdash >= 0) return { own: args.slice(0, dashdash), command: args.slice(dashdash + 1) };
  const head = args;
  let firstPositional = -1;
  for (let i = 0; i < head.length; i++) {
    const a = head[i];
    if (a.startsWith('-') && a !== '-') {
      if (!a.includes('=') && VALUE_OPTIONS.has(a)) i++; // its value
      continue;
    }
    firstPositional = i;
    break;
  }
  if (firstPositional < 0 || SUBCOMMANDS.has(head[firstPositional])) return { own: head, command: [] };
  return { own: head.slice(0, firstPositional + 1), command: head.slice(firstPositional + 1) };
}
