// crashcart's commands and options as data, read from the same yargs definitions that parse
// the command line (defineCli in main.ts): the man page and the completion scripts are made
// from this, so they cannot drift from --help. The definitions are run against a recorder
// that has yargs' shape and keeps what it is told; no handler runs.
import type { Argv } from 'yargs';

export interface OptionSpec {
  name: string;
  /** one-letter and other aliases, without dashes */
  aliases: string[];
  type?: 'boolean' | 'string' | 'number' | 'count';
  array: boolean;
  describe?: string;
  choices?: readonly string[];
  default?: unknown;
  /** takes a value (every non-boolean option does) */
  takesValue: boolean;
}

export interface PositionalSpec {
  name: string;
  describe?: string;
  choices?: readonly string[];
  required: boolean;
}

export interface CommandSpec {
  /** the word that selects it ('' for the default command, the attach) */
  name: string;
  /** as defined: 'pull <url>', '$0 [target]' */
  usage: string;
  describe: string;
  positionals: PositionalSpec[];
  options: OptionSpec[];
  commands: CommandSpec[];
}

export interface CliSpec extends CommandSpec {
  /** usage lines of the program as a whole */
  programUsage: string;
  /** options every command has (--verbose, --version, --help) */
  global: OptionSpec[];
}

type Builder = ((y: Argv) => unknown) | Record<string, object> | undefined;
interface ModuleLike { command: string | string[]; describe?: string | false; desc?: string; builder?: Builder }

function option(name: string, o: Record<string, unknown> = {}): OptionSpec {
  const alias = o.alias === undefined ? [] : Array.isArray(o.alias) ? (o.alias as string[]) : [o.alias as string];
  const type = o.type as OptionSpec['type'];
  return {
    name,
    aliases: alias,
    ...(type ? { type } : {}),
    array: Boolean(o.array),
    ...(typeof o.describe === 'string' ? { describe: o.describe } : typeof o.description === 'string' ? { describe: o.description } : {}),
    ...(o.choices ? { choices: o.choices as string[] } : {}),
    ...('default' in o ? { default: o.default } : {}),
    takesValue: type !== 'boolean' && type !== 'count',
  };
}

function recorder(into: CommandSpec, global: OptionSpec[] | undefined): Argv {
  const add = (list: OptionSpec[], o: OptionSpec) => {
    const i = list.findIndex((x) => x.name === o.name);
    if (i >= 0) list[i] = o;
    else list.push(o);
  };
  const command = (def: ModuleLike) => {
    const usage = Array.isArray(def.command) ? def.command[0]! : def.command;
    const word = usage.split(/\s+/)[0]!;
    const spec: CommandSpec = {
      name: word === '$0' ? '' : word,
      usage,
      describe: (def.describe || def.desc || '') as string,
      positionals: [...usage.matchAll(/([<[])([\w-]+)(?:\.\.\.)?[>\]]/g)].map((m) => ({ name: m[2]!, required: m[1] === '<' })),
      options: [],
      commands: [],
    };
    const target = spec.name === '' ? into : spec;
    if (spec.name === '') into.positionals.push(...spec.positionals);
    else into.commands.push(spec);
    if (typeof def.builder === 'function') def.builder(recorder(target, undefined));
    else if (def.builder) for (const [n, o] of Object.entries(def.builder)) add(target.options, option(n, o as Record<string, unknown>));
  };
  const self: Argv = new Proxy({} as Argv, {
    get(_t, prop) {
      switch (prop) {
        case 'option':
        case 'options':
          return (name: string | Record<string, object>, o?: Record<string, unknown>) => {
            if (typeof name === 'string') add(global ?? into.options, option(name, o));
            else for (const [n, x] of Object.entries(name)) add(global ?? into.options, option(n, x as Record<string, unknown>));
            return self;
          };
        case 'positional':
          return (name: string, o: Record<string, unknown> = {}) => {
            const p = into.positionals.find((x) => x.name === name);
            const fields = { ...(typeof o.describe === 'string' ? { describe: o.describe } : {}), ...(o.choices ? { choices: o.choices as string[] } : {}) };
            if (p) Object.assign(p, fields);
            else into.positionals.push({ name, required: Boolean(o.demandOption), ...fields });
            return self;
          };
        case 'command':
          return (a: string | ModuleLike | ModuleLike[], describe?: string, builder?: Builder) => {
            if (Array.isArray(a)) a.forEach(command);
            else if (typeof a === 'string') command({ command: a, describe: describe ?? '', builder });
            else command(a);
            return self;
          };
        case 'usage':
          return (text: string) => {
            if (global) (into as CliSpec).programUsage = text.replace(/\$0/g, 'crashcart');
            return self;
          };
        case 'version':
          return (name: string, describe: string) => {
            add(global ?? into.options, option(name, { type: 'boolean', describe }));
            return self;
          };
        case 'help':
          return (name: string, describe = 'Show help') => {
            add(global ?? into.options, option(name, { type: 'boolean', describe }));
            return self;
          };
        case 'alias':
          return (name: string, alias: string) => {
            const o = [...(global ?? []), ...into.options].find((x) => x.name === name);
            if (o && !o.aliases.includes(alias)) o.aliases.push(alias);
            return self;
          };
        case 'then':
          return undefined; // not a promise
        default:
          return () => self;
      }
    },
  });
  return self;
}

/** What `define` puts on a yargs instance (defineCli), as data. */
export function recordCli(define: (y: Argv) => unknown): CliSpec {
  const spec: CliSpec = { name: '', usage: '$0', describe: '', programUsage: '', positionals: [], options: [], commands: [], global: [] };
  define(recorder(spec, spec.global));
  return spec;
}

/** Every way an option is written: ['-i', '--image'], and '--no-X' for a boolean whose default is true. */
export function optionWords(o: OptionSpec): string[] {
  const words = [...o.aliases.filter((a) => a.length === 1).map((a) => `-${a}`), `--${o.name}`, ...o.aliases.filter((a) => a.length > 1).map((a) => `--${a}`)];
  if (o.type === 'boolean' && o.default === true) words.push(`--no-${o.name}`);
  return words;
}
