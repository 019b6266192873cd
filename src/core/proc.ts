// Readers for what /proc says about a process: namespaces, id maps, environment, cgroups,
// mounts. Pure parsers are exported separately so unit tests can feed them text.
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { CrashcartError, errnoCode } from './errors.js';

export const NAMESPACES = ['ipc', 'uts', 'net', 'pid', 'cgroup', 'mnt', 'user'] as const;
export type Namespace = (typeof NAMESPACES)[number];

/** The inode that identifies a process's namespace, or undefined when it cannot be read. */
export function namespaceInode(pid: number | 'self', ns: Namespace): number | undefined {
  try {
    return statSync(`/proc/${pid}/ns/${ns}`).ino;
  } catch {
    return undefined;
  }
}

const ownNamespaces = new Map<string, number | undefined>();
/** crashcart's own namespaces, and PID 1's: they never change while it runs (it never setns's itself). */
export function fixedNamespaceInode(pid: 'self' | 1, ns: Namespace): number | undefined {
  const k = `${pid}/${ns}`;
  if (!ownNamespaces.has(k)) ownNamespaces.set(k, namespaceInode(pid, ns));
  return ownNamespaces.get(k);
}

export interface IdMapping {
  inside: number;
  outside: number;
  count: number;
}

export function parseIdMap(text: string): IdMapping[] {
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/).map(Number))
    .filter((f) => f.length === 3 && f.every(Number.isInteger))
    .map(([inside, outside, count]) => ({ inside, outside, count }));
}

/** The host id that `id` inside a user namespace maps to, or undefined when unmapped. */
export function mapToHost(map: IdMapping[], id: number): number | undefined {
  const m = map.find((r) => id >= r.inside && id < r.inside + r.count);
  return m === undefined ? undefined : m.outside + (id - m.inside);
}

export function readIdMap(pid: number, which: 'uid' | 'gid'): IdMapping[] {
  return parseIdMap(readFileSync(`/proc/${pid}/${which}_map`, 'utf8'));
}

export function parseEnviron(buf: Buffer | string): string[] {
  return buf
    .toString()
    .split('\0')
    .filter((kv) => kv.includes('='));
}

export function readEnviron(pid: number): string[] {
  try {
    return parseEnviron(readFileSync(`/proc/${pid}/environ`));
  } catch (e) {
    // the process exited after it was looked up (a restarting container)
    throw new CrashcartError(`cannot read the environment of process ${pid}: ${errnoCode(e) ?? (e as Error).message}`, {
      hint: 'is it still running? (--no-target-env starts from an empty environment)',
      cause: e,
    });
  }
}

export interface ProcStat {
  comm: string;
  /** state letter: R, S, D, Z, ... */
  state: string;
  ppid: number;
  /** field 9, the kernel's PF_* flags (PF_KTHREAD: a kernel thread) */
  flags: number;
  /** field 22, start time in clock ticks: with the pid it names a process uniquely, even
   *  after the pid is reused */
  start: number;
}

export function parseStat(text: string): ProcStat {
  // comm (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  return { comm: text.slice(text.indexOf('(') + 1, close), state: rest[0], ppid: Number(rest[1]), flags: Number(rest[6]), start: Number(rest[19]) };
}

export const parseStartTime = (stat: string): number => parseStat(stat).start;

export function readStat(pid: number | 'self'): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** PF_KTHREAD in /proc/PID/stat's flags. */
export const PF_KTHREAD = 0x00200000;

export const startTime = (pid: number | 'self'): number | undefined => readStat(pid)?.start;

/** The process's state letter (R, S, Z, ...), or undefined when it is gone. */
export const processState = (pid: number): string | undefined => readStat(pid)?.state;

/** Does a process with this pid exist, other than as a zombie? */
export function isRunning(pid: number): boolean {
  const st = readStat(pid);
  return st !== undefined && st.state !== 'Z';
}

let ownStart: number | undefined;
/** crashcart's own start time (it cannot change while it runs). */
export const selfStart = (): number | undefined => (ownStart ??= startTime('self'));

/** Is the process still the one we knew (same pid, same start time), and not a zombie? */
export function isAlive(pid: number, start: number): boolean {
  if (pid === process.pid && start === selfStart()) return true; // crashcart itself
  const st = readStat(pid);
  return st !== undefined && st.start === start && st.state !== 'Z';
}

export interface MountInfo {
  id: number;
  parent: number;
  major: number;
  minor: number;
  root: string;
  mountPoint: string;
  options: string;
  fsType: string;
  source: string;
  superOptions: string;
}

// mountinfo escapes space, tab, newline and backslash as octal.
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export function parseMountInfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0) continue;
    const [major, minor] = f[2].split(':').map(Number);
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      major,
      minor,
      root: unescape(f[3]),
      mountPoint: unescape(f[4]),
      options: f[5],
      fsType: f[dash + 1],
      source: unescape(f[dash + 2]),
      superOptions: f[dash + 3] ?? '',
    });
  }
  return out;
}

export function readMountInfo(pid: number | 'self'): MountInfo[] {
  return parseMountInfo(readFileSync(`/proc/${pid}/mountinfo`, 'utf8'));
}

let cgroupMounts: MountInfo[] | undefined;
/** The host's cgroup mounts, read once: where a target's cgroups are (they stay put while crashcart runs). */
export function hostCgroupMounts(): MountInfo[] {
  return (cgroupMounts ??= readMountInfo('self').filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2'));
}

export interface CgroupEntry {
  hierarchy: number;
  controllers: string[]; // [] for the unified (v2) hierarchy
  path: string;
}

export function parseCgroups(text: string): CgroupEntry[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const first = line.indexOf(':');
      const second = line.indexOf(':', first + 1);
      const controllers = line.slice(first + 1, second);
      return {
        hierarchy: Number(line.slice(0, first)),
        controllers: controllers ? controllers.split(',') : [],
        path: line.slice(second + 1),
      };
    });
}

/** A process's cgroup directory in one hierarchy, as the host sees it. */
export interface CgroupPlace {
  dir: string;
  /** the unified hierarchy (cgroup v2) */
  v2: boolean;
  /** v1: the hierarchy's controllers (pids, memory, freezer, ...) */
  controllers: string[];
}

/**
 * The cgroup directories (as the host sees them) of every hierarchy a process belongs to:
 * cgroup v2, and each v1 hierarchy that is mounted in `hostMounts`.
 */
export function cgroupPlaces(cgroups: CgroupEntry[], hostMounts: MountInfo[]): CgroupPlace[] {
  const places: CgroupPlace[] = [];
  for (const cg of cgroups) {
    const mount = hostMounts.find((m) => {
      if (cg.controllers.length === 0) return m.fsType === 'cgroup2';
      if (m.fsType !== 'cgroup') return false;
      const opts = m.superOptions.split(',');
      return cg.controllers.every((c) => opts.includes(c));
    });
    if (!mount) continue;
    // The mount may show a sub-tree of the hierarchy (its root field).
    const inside = cg.path === mount.root || cg.path.startsWith(`${mount.root}/`);
    const rel = mount.root === '/' ? cg.path : inside ? cg.path.slice(mount.root.length) || '/' : undefined;
    if (rel === undefined) continue;
    places.push({ dir: `${mount.mountPoint}${rel === '/' ? '' : rel}`.replace(/\/+/g, '/'), v2: cg.controllers.length === 0, controllers: cg.controllers });
  }
  return places;
}

export function cgroupDirs(cgroups: CgroupEntry[], hostMounts: MountInfo[]): string[] {
  return cgroupPlaces(cgroups, hostMounts).map((p) => p.dir);
}

/** The cgroup.procs file of each of those directories: writing a pid there moves it. */
export function cgroupProcsFiles(cgroups: CgroupEntry[], hostMounts: MountInfo[]): string[] {
  return cgroupDirs(cgroups, hostMounts).map((d) => `${d}/cgroup.procs`);
}

/**
 * Is the process in a frozen cgroup (a paused container)? Joining it would hang the command
 * until someone thaws it. cgroup v1's freezer.state or v2's cgroup.freeze, whichever is there.
 */
export function isFrozen(pid: number, hostMounts: MountInfo[] = hostCgroupMounts()): boolean {
  try {
    // only the file each hierarchy has: a missing one costs an exception
    return cgroupPlaces(readCgroups(pid), hostMounts).some((p) => {
      const file = p.v2 ? 'cgroup.freeze' : p.controllers.includes('freezer') ? 'freezer.state' : undefined;
      if (!file) return false;
      try {
        const state = readFileSync(`${p.dir}/${file}`, 'utf8').trim();
        return p.v2 ? state === '1' : state === 'FROZEN' || state === 'FREEZING';
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

export function readCgroups(pid: number): CgroupEntry[] {
  return parseCgroups(readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
}

export function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

export function readExe(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}
