// systemd-nspawn containers. Every one is a running systemd-nspawn process whose child is
// the container's leader (its PID 1), so they are found in /proc: the machine name comes
// from the command line (-M/--machine, else the directory's or image's name, as nspawn
// derives it). Registered machines also have a record from systemd-machined in
// /run/systemd/machines, which names them when the command line cannot (--ephemeral).
// machinectl is not spawned: it needs machined over D-Bus, which a host without systemd as
// PID 1 does not have, and /proc answers faster where it has.
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { namespaceInode, processState, readStat } from '../core/proc.js';
import type { Container, Runtime } from './types.js';

export const MACHINES_DIR = '/run/systemd/machines';
/**
 * nspawn's runtime directory (it makes propagate/<machine> there for every container):
 * /run/systemd/nspawn, or CRASHCART_NSPAWN_DIR. Only when it exists is /proc scanned.
 */
export const nspawnDir = () => process.env.CRASHCART_NSPAWN_DIR ?? '/run/systemd/nspawn';
const NSPAWN_COMM = 'systemd-nspawn';

/** Short options of systemd-nspawn (v252) that take a value. */
const SHORT_WITH_VALUE = new Set('DuLMSZipE'.split(''));
/** Long options of systemd-nspawn (v252) whose value may be the next word (required_argument). */
const LONG_WITH_VALUE = new Set([
  'settings', 'directory', 'template', 'image', 'oci-bundle', 'root-hash', 'root-hash-sig', 'verity-data',
  'pivot-root', 'chdir', 'setenv', 'user', 'kill-signal', 'notify-ready', 'suppress-sync', 'machine',
  'hostname', 'uuid', 'slice', 'property', 'register', 'private-users-ownership', 'network-interface',
  'network-macvlan', 'network-ipvlan', 'network-veth-extra', 'network-bridge', 'network-zone',
  'network-namespace-path', 'port', 'capability', 'drop-capability', 'ambient-capability',
  'no-new-privileges', 'system-call-filter', 'rlimit', 'oom-score-adjust', 'cpu-affinity', 'personality',
  'resolv-conf', 'timezone', 'link-journal', 'bind', 'bind-ro', 'inaccessible', 'tmpfs', 'overlay',
  'overlay-ro', 'bind-user', 'console', 'set-credential', 'load-credential', 'selinux-context',
  'selinux-apifs-context',
]);

export interface NspawnArgs {
  machine?: string;
  directory?: string;
  image?: string;
  ephemeral: boolean;
}

/** The options that name a container, from systemd-nspawn's argv (argv[0] excluded). */
export function parseNspawnArgs(args: string[]): NspawnArgs {
  const out: NspawnArgs = { ephemeral: false };
  const set = (opt: string, value: string) => {
    if (opt === 'M' || opt === 'machine') out.machine = value;
    else if (opt === 'D' || opt === 'directory') out.directory = value;
    else if (opt === 'i' || opt === 'image') out.image = value;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    // nspawn's options end at the first word that is not one (its getopt string starts with +)
    if (a === '--' || !a.startsWith('-') || a === '-') break;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (eq >= 0) set(name, a.slice(eq + 1));
      else if (LONG_WITH_VALUE.has(name)) set(name, args[++i] ?? '');
      else if (name === 'ephemeral') out.ephemeral = true;
      continue;
    }
    // a cluster of short options: -xD dir, -Mweb, -qM web
    for (let j = 1; j < a.length; j++) {
      const opt = a[j];
      if (opt === 'x') out.ephemeral = true;
      if (!SHORT_WITH_VALUE.has(opt)) continue;
      set(opt, j + 1 < a.length ? a.slice(j + 1) : (args[++i] ?? ''));
      break;
    }
  }
  return out;
}

/** nspawn's hostname_cleanup(): keep [a-zA-Z0-9-_.], no leading, trailing or doubled dots. */
function hostnameCleanup(s: string): string {
  let out = '';
  let dot = true;
  for (const ch of s) {
    if (ch === '.') {
      if (dot) continue;
      out += ch;
      dot = true;
    } else if (/[A-Za-z0-9_-]/.test(ch)) {
      out += ch;
      dot = false;
    }
  }
  return out.replace(/\.$/, '').slice(0, 64);
}

/**
 * The machine name nspawn uses: -M, else the cleaned-up basename of the image (without
 * .raw) or directory (default: nspawn's working directory). An --ephemeral container gets
 * a random suffix that only machined's record knows; the base name stands in for it.
 */
export function machineName(a: NspawnArgs, cwd: string): string | undefined {
  if (a.machine) return a.machine;
  if (a.image) return hostnameCleanup(basename(a.image).replace(/\.raw$/, '')) || undefined;
  const dir = resolve(cwd, a.directory ?? '.');
  if (dir === '/') return undefined; // nspawn uses the host's name for the host's root
  return hostnameCleanup(basename(dir)) || undefined;
}

/** machined's record of a machine: KEY=VALUE lines (NAME, LEADER, CLASS, SERVICE, ...). */
export function parseMachineRecord(text: string): { name: string; leader: number; class?: string; service?: string } | undefined {
  const f = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0 && !line.startsWith('#')) f.set(line.slice(0, eq), line.slice(eq + 1).trim());
  }
  const name = f.get('NAME');
  const leader = Number(f.get('LEADER'));
  if (!name || !Number.isInteger(leader) || leader <= 0) return undefined;
  return { name, leader, class: f.get('CLASS'), service: f.get('SERVICE') };
}

/** Registered machines' names by leader pid. */
export function machinedNames(dir = MACHINES_DIR): Map<number, string> {
  const out = new Map<number, string>();
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return out;
  }
  for (const f of files) {
    if (f.includes(':')) continue; // unit:* symlinks
    try {
      const r = parseMachineRecord(readFileSync(join(dir, f), 'utf8'));
      if (r && (r.class ?? 'container') === 'container') out.set(r.leader, r.name);
    } catch { /* gone meanwhile */ }
  }
  return out;
}

const read = (path: string): string | undefined => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * nspawn's child in another pid namespace is the container's leader, once it has exec'd
 * the container's command. Without one the container is starting (nspawn's intermediate child is still in the host's) or stopping
 * (the leader has exited and waits, a zombie, for nspawn to reap it).
 */
export function nspawnLeader(nspawnPid: number): { pid: number; status: string } {
  const own = namespaceInode(nspawnPid, 'pid');
  const cmdline = read(`/proc/${nspawnPid}/cmdline`);
  const children = (read(`/proc/${nspawnPid}/task/${nspawnPid}/children`) ?? '').split(' ').filter(Boolean).map(Number);
  for (const child of children) {
    const ns = namespaceInode(child, 'pid');
    if (ns === undefined || own === undefined || ns === own || processState(child) === 'Z') continue;
    // until it execs the command, the leader is nspawn setting the container up
    const setup = readStat(child)?.comm === NSPAWN_COMM && read(`/proc/${child}/cmdline`) === cmdline;
    return setup ? { pid: 0, status: 'starting' } : { pid: child, status: 'running' };
  }
  return { pid: 0, status: children.some((c) => processState(c) === 'Z') ? 'stopping' : 'starting' };
}

/** Every systemd-nspawn process on the host, as containers. */
export function scanNspawn(machinesDir = MACHINES_DIR): Container[] {
  const out: Container[] = [];
  let registered: Map<number, string> | undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const pid = Number(entry);
    const stat = readStat(pid);
    if (stat?.comm !== NSPAWN_COMM || stat.state === 'Z') continue;
    // nspawn's own children run under its name until the leader execs (its intermediate
    // child, and the leader itself); a zombie parent still has its name. So a nested
    // nspawn that is itself a container's leader is not found here (its PID still works).
    if (readStat(stat.ppid)?.comm === NSPAWN_COMM) continue;
    const argv = (read(`/proc/${pid}/cmdline`) ?? '').split('\0');
    if (argv.at(-1) === '') argv.pop();
    let cwd = '/';
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch { /* the default directory is then unknown */ }
    const leader = nspawnLeader(pid);
    registered ??= machinedNames(machinesDir);
    const name = (leader.pid && registered.get(leader.pid)) || machineName(parseNspawnArgs(argv.slice(1)), cwd);
    if (!name) continue;
    out.push({ runtime: 'nspawn', id: name, pid: leader.pid, status: leader.status });
  }
  return out;
}

export const nspawn: Runtime = {
  name: 'nspawn',
  present: () => existsSync(nspawnDir()),
  list: async () => scanNspawn(),
  // there is no exec for nspawn containers (machinectl shell needs machined): --exec is refused
};
