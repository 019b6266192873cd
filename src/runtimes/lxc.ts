// LXC containers. LXC keeps one directory per container under its lxcpath, holding the
// container's config; that is how lxc-ls finds them too. A running container keeps nothing
// on disk (its monitor answers on an abstract socket), so its state and init pid come from
// `lxc-info -s -p`, asked only about the containers that may match (~4 ms each).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashcartError } from '../core/errors.js';
import { LOOKUP_DEADLINE_MS, runCommand, withDeadline } from './deadline.js';
import type { Container, ExecCommand, ExecRequest, Runtime } from './types.js';

export const DEFAULT_LXC_PATH = '/var/lib/lxc';
/** LXC's system config, where lxc.lxcpath may move the default. */
export const LXC_SYSTEM_CONFIG = '/etc/lxc/lxc.conf';

/**
 * LXC's config syntax: `key = value` lines, `#` comments, blank lines. Keys may repeat
 * (lxc.include, lxc.mount.entry): every value is kept, in order.
 */
export function parseLxcConfig(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    out.set(key, [...(out.get(key) ?? []), value]);
  }
  return out;
}

/** The lxcpath: CRASHCART_LXC_PATH, else lxc.lxcpath from /etc/lxc/lxc.conf, else /var/lib/lxc. */
export function lxcPath(env: NodeJS.ProcessEnv = process.env, systemConfig = LXC_SYSTEM_CONFIG): string {
  if (env.CRASHCART_LXC_PATH) return env.CRASHCART_LXC_PATH;
  let text = '';
  try {
    text = readFileSync(systemConfig, 'utf8');
  } catch {
    return DEFAULT_LXC_PATH;
  }
  return parseLxcConfig(text).get('lxc.lxcpath')?.at(-1) || DEFAULT_LXC_PATH;
}

/** Container names under `dir`: the entries that hold a config file (as lxc-ls decides). */
export function definedContainers(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => !n.startsWith('.') && existsSync(join(dir, n, 'config'))).sort();
}

/**
 * `lxc-info -s -p`: `State: RUNNING` (or STOPPED, FROZEN, STARTING, STOPPING, ABORTING),
 * then `PID: N` when the container has an init.
 */
export function parseLxcInfo(text: string): { status: string; pid: number } | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z ]+):\s*(.*)$/.exec(line.trim());
    if (m) fields.set(m[1].toLowerCase(), m[2].trim());
  }
  const state = fields.get('state');
  if (!state || !/^[A-Z]+$/.test(state)) return undefined;
  const status = state.toLowerCase();
  const pid = /^[1-9][0-9]*$/.test(fields.get('pid') ?? '') ? Number(fields.get('pid')) : 0;
  return { status, pid: status === 'running' || status === 'frozen' ? pid : 0 };
}

async function lxcInfo(path: string, name: string, signal: AbortSignal): Promise<string | undefined> {
  const args = ['-P', path, '-n', name, '-s', '-p'];
  let r;
  try {
    r = await runCommand('lxc-info', args, { signal, what: `lxc-info -P ${path} -n ${name}`, hint: 'check the container with lxc-info' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CrashcartError(`lxc-info not found: cannot read the state of LXC container ${name} in ${path}`, {
        hint: 'install lxc (it provides lxc-info)',
      });
    }
    throw err;
  }
  if (r.code === 0) return r.stdout;
  // removed since the directory was read: not a container any more
  if (/doesn't exist/.test(r.stderr)) return undefined;
  throw new CrashcartError(`lxc-info -P ${path} -n ${name} failed: ${r.stderr.trim() || `exit ${r.code}`}`, {
    hint: 'check the container with lxc-info',
  });
}

/** The state of each container named; lxc-info runs for all of them at once, under one deadline. */
function inspect(path: string, names: string[], signal?: AbortSignal): Promise<Container[]> {
  if (names.length === 0) return Promise.resolve([]);
  return withDeadline(LOOKUP_DEADLINE_MS, signal, async (sig) => {
    const out = await Promise.all(names.map(async (name): Promise<Container | undefined> => {
      const text = await lxcInfo(path, name, sig);
      const info = text === undefined ? undefined : parseLxcInfo(text);
      return info && { runtime: 'lxc', id: name, pid: info.pid, status: info.status };
    }));
    return out.filter((c): c is Container => c !== undefined);
  });
}

/**
 * `lxc-attach` running `req` in the container, with only `req.env` (and LXC's own
 * container=lxc) in its environment. lxc-attach picks a terminal itself (when stdin is
 * one) and has no option for the working directory, nor for user names.
 */
export function lxcAttachCommand(path: string, name: string, req: ExecRequest): ExecCommand {
  if (req.workdir !== undefined) {
    throw new CrashcartError(`lxc-attach cannot set the working directory (${req.workdir})`, {
      hint: 'leave out the working directory with --runtime lxc',
    });
  }
  const args = ['-P', path, '-n', name, '--clear-env'];
  for (const [k, v] of Object.entries(req.env)) args.push('-v', `${k}=${v}`);
  if (req.user !== undefined) {
    const m = /^([0-9]+)(?::([0-9]+))?$/.exec(req.user);
    if (!m) {
      throw new CrashcartError(`lxc-attach takes numeric user and group ids only, not '${req.user}'`, {
        hint: 'give the user as uid[:gid]',
      });
    }
    args.push('-u', m[1]);
    if (m[2] !== undefined) args.push('-g', m[2]);
  }
  return { file: 'lxc-attach', args: [...args, '--', ...req.argv] };
}

export const lxc: Runtime = {
  name: 'lxc',
  present: () => existsSync(lxcPath()),
  async list(_scope, signal): Promise<Container[]> {
    const path = lxcPath();
    return inspect(path, definedContainers(path), signal);
  },
  async find(query: string, _scope, signal): Promise<Container[]> {
    const path = lxcPath();
    return inspect(path, definedContainers(path).filter((n) => n.startsWith(query)), signal);
  },
  daemon: () => `lxc-info (lxcpath ${lxcPath()})`,
  // a container of that name has a directory with a config, as definedContainers() decides
  couldName: (query) => query !== '' && query !== '.' && query !== '..' && !query.includes('/') && existsSync(join(lxcPath(), query, 'config')),
  execCommand: (c: Container, req: ExecRequest) => lxcAttachCommand(lxcPath(), c.id, req),
  describeStopped: async (c: Container) => (await import('./lxc-stopped.js')).describeLxc(c),
};
