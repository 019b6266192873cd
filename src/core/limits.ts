// A container at its pids or memory limit: joining its cgroup would make the session's own
// fork fail (EAGAIN) or charge the tools to a container already on the edge of the OOM
// killer. crashcart reads the limits first (cgroup v2 and v1, the target's cgroup and every
// one above it) and runs such a session outside the container's cgroups instead.
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cgroupPlaces, hostCgroupMounts, readCgroups, type CgroupPlace, type MountInfo } from './proc.js';

/** Fewer free pids than this, and a shell with a tool or two could not start. */
export const PIDS_HEADROOM = 8;
/** Less free memory than this share of the limit (and at least MEMORY_HEADROOM_MIN). */
export const MEMORY_HEADROOM_SHARE = 0.1;
export const MEMORY_HEADROOM_MIN = 32 << 20;

export interface CgroupLimit {
  kind: 'pids' | 'memory';
  /** the files read, e.g. /sys/fs/cgroup/pids/x/pids.current */
  currentFile: string;
  maxFile: string;
  current: number;
  max: number;
}

export interface LimitCheck {
  /** limits that are reached or nearly so */
  reached: CgroupLimit[];
  /** every limit found (for -v) */
  limits: CgroupLimit[];
}

function readNumber(file: string): number | undefined {
  try {
    const text = readFileSync(file, 'utf8').trim();
    if (text === 'max') return Infinity;
    const n = Number(text);
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

// cgroup v1 says "no limit" with the largest page-aligned signed 64-bit value.
const V1_UNLIMITED = 2 ** 62;

interface LimitFiles {
  kind: CgroupLimit['kind'];
  current: string;
  max: string;
  /** in the unified hierarchy, or in a v1 one of that controller */
  v2: boolean;
  v1: boolean;
}

const FILES: LimitFiles[] = [
  { kind: 'pids', current: 'pids.current', max: 'pids.max', v2: true, v1: true },
  { kind: 'memory', current: 'memory.current', max: 'memory.max', v2: true, v1: false },
  { kind: 'memory', current: 'memory.usage_in_bytes', max: 'memory.limit_in_bytes', v2: false, v1: true },
];

/** The files a hierarchy can have (looking for the others would only meet ENOENT). */
const filesOf = (p: CgroupPlace) => FILES.filter((f) => (p.v2 ? f.v2 : f.v1 && p.controllers.includes(f.kind)));

/** The limits set on `dir` itself (a cgroup directory as the host sees it). */
export function limitsOf(dir: string, read = readNumber, files = FILES): CgroupLimit[] {
  const out: CgroupLimit[] = [];
  for (const f of files) {
    const max = read(`${dir}/${f.max}`);
    if (max === undefined || max === Infinity || max >= V1_UNLIMITED) continue;
    const current = read(`${dir}/${f.current}`);
    if (current === undefined) continue;
    out.push({ kind: f.kind, currentFile: `${dir}/${f.current}`, maxFile: `${dir}/${f.max}`, current, max });
  }
  return out;
}

export function isReached(l: CgroupLimit): boolean {
  const free = l.max - l.current;
  if (l.kind === 'pids') return free < PIDS_HEADROOM;
  return free < Math.max(MEMORY_HEADROOM_MIN, l.max * MEMORY_HEADROOM_SHARE);
}

/** Each of `dirs` and its ancestors up to the root of the cgroup mount it is under. */
export function withAncestors(dirs: string[], mounts: MountInfo[]): string[] {
  const roots = mounts.filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2').map((m) => m.mountPoint);
  const out = new Set<string>();
  for (const dir of dirs) {
    const root = roots.filter((r) => dir === r || dir.startsWith(`${r}/`)).sort((a, b) => b.length - a.length)[0];
    if (!root) continue;
    for (let d = dir; ; d = dirname(d)) {
      out.add(d);
      if (d === root || d.length <= root.length) break;
    }
  }
  return [...out];
}

/** The pids and memory limits over the process `pid`, and which of them it is at. */
export function checkLimits(pid: number, mounts: MountInfo[] = hostCgroupMounts()): LimitCheck {
  let places: CgroupPlace[];
  try {
    places = cgroupPlaces(readCgroups(pid), mounts);
  } catch {
    return { reached: [], limits: [] }; // the process is gone: the attach fails elsewhere
  }
  const limits = places.flatMap((p) => {
    const files = filesOf(p);
    return files.length === 0 ? [] : withAncestors([p.dir], mounts).flatMap((d) => limitsOf(d, readNumber, files));
  });
  return { reached: limits.filter(isReached), limits };
}

const mib = (n: number) => `${Math.round(n / (1 << 20))} MiB`;

/** "pids 1 of 1 (/sys/fs/cgroup/pids/x)" */
export function describeLimit(l: CgroupLimit): string {
  const numbers = l.kind === 'pids' ? `${l.current} of ${l.max}` : `${mib(l.current)} of ${mib(l.max)}`;
  return `${l.kind} ${numbers} (${dirname(l.maxFile)})`;
}
