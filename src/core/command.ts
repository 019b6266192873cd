// What the command inside the target gets: argv, environment, PATH search, user.
// Pure functions: the unit tests cover them without root.
import { CrashcartError } from './errors.js';

export const TOOLKIT_BIN = '/dev/crashcart/bin';
export const TOOLKIT_RC = '/dev/crashcart/etc/bashrc';
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The shell crashcart runs when no command is given. Interactive on a terminal; on a pipe
 *  it reads commands from stdin and prints nothing of its own (clean stdout for scripts). */
export function defaultCommand(interactive: boolean): string[] {
  return interactive
    ? [`${TOOLKIT_BIN}/bash`, '--rcfile', TOOLKIT_RC, '-i']
    : [`${TOOLKIT_BIN}/bash`, '-s'];
}

/**
 * The container's settings for the dynamic loader are not passed on: they would make the
 * toolkit's programs load the container's libraries (a library they dlopen() by a name the
 * toolkit lacks, or an LD_PRELOAD such as jemalloc). --env can still set them.
 */
const LOADER_VARIABLES = new Set(['LD_PRELOAD', 'LD_LIBRARY_PATH', 'LD_AUDIT']);

function splitEnv(kv: string): [string, string] {
  const i = kv.indexOf('=');
  return [kv.slice(0, i), kv.slice(i + 1)];
}

/** PATH with the toolkit first, once. */
export function toolkitPath(path: string | undefined): string {
  const rest = (path ?? DEFAULT_PATH).split(':').filter((d) => d && d !== TOOLKIT_BIN);
  return [TOOLKIT_BIN, ...rest].join(':');
}

export interface EnvOptions {
  /** the target's own environment (/proc/PID/environ), or undefined with --no-target-env */
  targetEnv?: string[];
  /** the caller's TERM */
  term?: string;
  /** --env K=V, applied last */
  extra: string[];
  /** HOME=/ when the target has none (default true); a runtime's exec knows the user's own */
  defaultHome?: boolean;
}

export function commandEnv(opts: EnvOptions): string[] {
  const env = new Map<string, string>();
  for (const kv of opts.targetEnv ?? []) {
    const [k, v] = splitEnv(kv);
    if (k && !LOADER_VARIABLES.has(k)) env.set(k, v);
  }
  env.set('PATH', toolkitPath(env.get('PATH')));
  if (opts.term) env.set('TERM', opts.term);
  if (opts.defaultHome !== false && !env.has('HOME')) env.set('HOME', '/');
  for (const [k, v] of envAssignments(opts.extra)) env.set(k, k === 'PATH' ? toolkitPath(v) : v);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

/**
 * For --exec: the runtime's exec starts from the container's own environment, so only what
 * commandEnv would change in it is passed on, with the loader variables it drops emptied.
 */
export function execEnv(opts: EnvOptions): Record<string, string> {
  const target = new Map((opts.targetEnv ?? []).map(splitEnv));
  const out: Record<string, string> = {};
  for (const [k, v] of commandEnv({ ...opts, defaultHome: false }).map(splitEnv)) if (target.get(k) !== v) out[k] = v;
  for (const k of LOADER_VARIABLES) if (target.has(k) && !(k in out)) out[k] = '';
  return out;
}

/** --env NAME=VALUE arguments, checked, in order. */
export function envAssignments(extra: string[]): [string, string][] {
  return extra.map((kv) => {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(kv)) {
      throw new CrashcartError(`invalid --env '${kv}'`, { hint: 'use --env NAME=VALUE' });
    }
    return splitEnv(kv);
  });
}

/** Where execve will look for argv[0], in order, as execvp would with the command's PATH. */
export function searchCandidates(argv0: string, env: string[]): string[] {
  if (!argv0) throw new CrashcartError('empty command', { hint: 'give a command after --' });
  if (argv0.includes('/')) return [argv0];
  const path = env.find((kv) => kv.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
  return path
    .split(':')
    .filter((d) => d.startsWith('/')) // relative entries would depend on the cwd: skipped
    .map((d) => `${d.replace(/\/+$/, '')}/${argv0}`);
}

export interface UserSpec {
  uid: number;
  gid: number;
}

/** --user uid[:gid] or name[:group], names looked up in the container's own files. */
export function parseUser(spec: string | undefined, passwd = '', group = ''): UserSpec {
  if (spec === undefined || spec === '') return { uid: 0, gid: 0 };
  checkUserSpec(spec);
  const [u, g] = spec.split(':', 2);
  const users = passwd
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 4);
  let uid: number;
  let gid: number | undefined;
  if (/^[0-9]+$/.test(u)) {
    uid = Number(u);
    const entry = users.find((f) => f[2] === u);
    gid = entry ? Number(entry[3]) : undefined;
  } else {
    const entry = users.find((f) => f[0] === u);
    if (!entry) {
      throw new CrashcartError(`user '${u}' is not in the container's /etc/passwd`, { hint: 'give a numeric uid[:gid]' });
    }
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (g !== undefined && g !== '') {
    if (/^[0-9]+$/.test(g)) gid = Number(g);
    else {
      const entry = group
        .split('\n')
        .map((l) => l.split(':'))
        .find((f) => f[0] === g);
      if (!entry) {
        throw new CrashcartError(`group '${g}' is not in the container's /etc/group`, { hint: 'give a numeric gid' });
      }
      gid = Number(entry[2]);
    }
  }
  return { uid, gid: gid ?? 0 }; // docker exec does the same for an unknown uid
}

/** The largest uid or gid: (uid_t)-1 means "no change" to setresuid. */
const MAX_ID = 0xfffffffe;

/** The shape of --user, before any name is looked up: user[:group], numbers in range. */
export function checkUserSpec(spec: string): void {
  const parts = spec.split(':');
  const bad = parts.length > 2 || parts[0] === '' || parts.some((p) => /^[0-9]+$/.test(p) && Number(p) > MAX_ID);
  if (bad) {
    throw new CrashcartError(`invalid --user '${spec}'`, {
      hint: `give uid[:gid] (numbers up to ${MAX_ID}) or user[:group] names of the container's /etc/passwd and /etc/group`,
    });
  }
}

