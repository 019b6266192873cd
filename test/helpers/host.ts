// Leak checks and preconditions shared by the tests that touch the real host.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { lstat, readdir, readFile, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { onPath } from '../../src/core/host-path.js';
import { readMountInfo } from '../../src/core/proc.js';

export interface TargetSnapshot {
  pid: number;
  /** One line per /dev entry of the container: name type mode uid gid rdev. */
  dev: string[];
  /** The container's mountinfo lines that mention crashcart, without mount ids. */
  mounts: string[];
  /** One line per rootfs entry: path type mode size mtime. */
  rootfs: string[];
}

export interface HostSnapshot {
  /** Bound loop devices: "loopN backing-file". */
  loops: string[];
  /** Host mountinfo lines that mention crashcart, without mount ids. */
  mounts: string[];
  target?: TargetSnapshot;
}

function typeOf(st: import('node:fs').Stats): string {
  if (st.isDirectory()) return 'd';
  if (st.isSymbolicLink()) return 'l';
  if (st.isBlockDevice()) return 'b';
  if (st.isCharacterDevice()) return 'c';
  if (st.isFIFO()) return 'p';
  if (st.isSocket()) return 's';
  return 'f';
}

async function boundLoops(): Promise<string[]> {
  const out: string[] = [];
  for (const name of await readdir('/sys/block').catch(() => [] as string[])) {
    if (!name.startsWith('loop')) continue;
    // the file exists only while a backing file is attached
    const backing = await readFile(`/sys/block/${name}/loop/backing_file`, 'utf8').catch(() => undefined);
    if (backing !== undefined) out.push(`${name} ${backing.trim()}`);
  }
  return out.sort();
}

/** Mount ids are dropped so a line compares equal across snapshots. */
async function crashcartMounts(mountinfo: string): Promise<string[]> {
  const text = await readFile(mountinfo, 'utf8');
  return text.split('\n')
    .filter((l) => l.includes('crashcart'))
    .map((l) => l.split(' ').slice(2).join(' '))
    .sort();
}

async function devListing(pid: number): Promise<string[]> {
  const dir = `/proc/${pid}/root/dev`;
  try {
    const out: string[] = [];
    for (const name of await readdir(dir)) {
      const st = await lstat(join(dir, name));
      out.push(`${name} ${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${st.uid} ${st.gid} ${st.rdev}`);
    }
    return out.sort();
  } catch (err) {
    return [`<unreadable ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}>`];
  }
}

/** Every entry of the tree; the contents of the proc, sys and dev mountpoints are skipped. */
async function treeDigest(rootfs: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    const abs = rel ? join(rootfs, rel) : rootfs;
    const st = await lstat(abs);
    out.push(`${rel || '.'} ${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${st.size} ${st.mtimeMs}`);
    if (!st.isDirectory() || ['proc', 'sys', 'dev'].includes(rel)) return;
    for (const name of (await readdir(abs)).sort()) await walk(rel ? `${rel}/${name}` : name);
  }
  try {
    await walk('');
  } catch (err) {
    out.push(`<unreadable ${rootfs}: ${(err as NodeJS.ErrnoException).code ?? String(err)}>`);
  }
  return out;
}

export async function snapshotHost(target?: { pid: number; rootfs: string }): Promise<HostSnapshot> {
  const snap: HostSnapshot = {
    loops: await boundLoops(),
    mounts: await crashcartMounts('/proc/self/mountinfo'),
  };
  if (target) {
    snap.target = {
      pid: target.pid,
      dev: await devListing(target.pid),
      mounts: await crashcartMounts(`/proc/${target.pid}/mountinfo`).catch((err: NodeJS.ErrnoException) => [
        `<unreadable /proc/${target.pid}/mountinfo: ${err.code ?? String(err)}>`,
      ]),
      rootfs: await treeDigest(target.rootfs),
    };
  }
  return snap;
}

/** Lines of `after` not in `before`, counting duplicates (a second identical mount is a leak). */
function added(before: string[], after: string[]): string[] {
  const left = new Map<string, number>();
  for (const l of before) left.set(l, (left.get(l) ?? 0) + 1);
  const out: string[] = [];
  for (const l of after) {
    const n = left.get(l) ?? 0;
    if (n > 0) left.set(l, n - 1);
    else out.push(l);
  }
  return out;
}

/**
 * Fails when anything new appeared on the host (loop devices, crashcart
 * mounts) or the target changed at all (its /dev, its crashcart mounts, its
 * rootfs tree).
 */
export function assertNoLeaks(before: HostSnapshot, after: HostSnapshot): void {
  const problems: string[] = [];
  const report = (what: string, lines: string[]) => {
    for (const l of lines) problems.push(`${what}: ${l}`);
  };
  report('new loop device', added(before.loops, after.loops));
  report('new host mount', added(before.mounts, after.mounts));
  if (before.target && after.target) {
    assert.equal(after.target.pid, before.target.pid, 'snapshots of different targets');
    report('new in target /dev', added(before.target.dev, after.target.dev));
    report('gone from target /dev', added(after.target.dev, before.target.dev));
    report('new target mount', added(before.target.mounts, after.target.mounts));
    report('target rootfs entry new or changed', added(before.target.rootfs, after.target.rootfs));
    report('target rootfs entry gone or changed', added(after.target.rootfs, before.target.rootfs));
  } else {
    assert.equal(Boolean(after.target), Boolean(before.target), 'one snapshot has a target, the other not');
  }
  assert.ok(problems.length === 0, `leaks:\n  ${problems.join('\n  ')}`);
}

/** CI must never skip silently: a missing precondition there is a failure. */
function skipOrThrow(t: TestContext, reason: string): false {
  if (process.env.CI) throw new Error(`CI: ${reason}`);
  t.skip(reason);
  return false;
}

export function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  return skipOrThrow(t, 'needs root');
}

export { onPath };

export function requireCommand(t: TestContext, name: string): boolean {
  if (onPath(name)) return true;
  return skipOrThrow(t, `needs ${name}`);
}

/** The directory holding this project's package.json, from dist/ or from a source checkout. */
export function projectRoot(): string {
  for (let d = dirname(fileURLToPath(import.meta.url)); d !== dirname(d); d = dirname(d)) {
    const pkg = join(d, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'crashcart') return d;
  }
  throw new Error('crashcart project root not found');
}

let compiled: Promise<string> | undefined;

/** build/Release/sleeper when it is up to date, else a private static build (once per process). */
export function sleeperPath(): Promise<string> {
  const root = projectRoot();
  const source = join(root, 'images/demo/sleeper.c');
  const built = join(root, 'build/Release/sleeper');
  if (existsSync(built) && (!existsSync(source) || statSync(built).mtimeMs >= statSync(source).mtimeMs)) {
    return Promise.resolve(built);
  }
  compiled ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'crashcart-sleeper-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'sleeper');
    await execa('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-o', out, source], { stdin: 'ignore' }).catch((err: Error) => {
      throw new Error(`no build/Release/sleeper and compiling ${source} failed (needs gcc with static libc): ${err.message}`);
    });
    return out;
  })();
  return compiled;
}

/**
 * Directories that a daemon's helpers create outside the daemon's own directory (containerd's
 * shims keep their sockets in /run/containerd/s whatever its state directory is). Call it
 * before starting the daemon; remove() then takes away, deepest first, those that were not
 * there before and are empty again.
 */
export function dirsCreatedOutside(dirs: string[]): { remove(): void } {
  const before = new Set(dirs.filter((d) => existsSync(d)));
  return {
    remove() {
      for (const d of [...dirs].sort((a, b) => b.length - a.length)) {
        if (before.has(d)) continue;
        try {
          rmdirSync(d);
        } catch {
          // not empty (someone else's now), or not there
        }
      }
    },
  };
}

/** What containerd's shims and ctr create under /run/containerd, whatever the daemon's state directory. */
export const CONTAINERD_RUN_DIRS = ['/run/containerd', '/run/containerd/s', '/run/containerd/fifo', '/run/containerd/runc',
  '/run/containerd/runc/default', '/run/containerd/runc/k8s.io', '/run/containerd/runc/moby'];

/**
 * Adds `line` to a system file (e.g. /etc/subuid) for a test, unless it is there already,
 * and returns how to take exactly that line out again: done at the latest when the test
 * process exits, and without touching what others wrote meanwhile.
 */
export function addLineFor(file: string, line: string): { undo(): void } {
  const before = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  if (before?.split('\n').includes(line)) return { undo() {} };
  writeFileSync(file, `${before ?? ''}${before && !before.endsWith('\n') ? '\n' : ''}${line}\n`);
  const undo = () => {
    process.removeListener('exit', undo);
    if (!existsSync(file)) return;
    const lines = readFileSync(file, 'utf8').split('\n');
    const i = lines.indexOf(line);
    if (i >= 0) lines.splice(i, 1);
    const text = lines.join('\n');
    if (before === undefined && text.trim() === '') rmSync(file, { force: true });
    else writeFileSync(file, text);
  };
  process.once('exit', undo);
  return { undo };
}

/** Removes a cgroup directory and everything below it, deepest first; returns what stayed. */
export async function removeCgroupTree(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [];
  const left: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isDirectory()) left.push(...(await removeCgroupTree(join(dir, e.name))));
  }
  await rmdir(dir).catch((err: NodeJS.ErrnoException) => left.push(`cgroup not removed: ${dir}: ${err.code}`));
  return left;
}

/** The mount points of every cgroup hierarchy of this host. */
export function cgroupHierarchies(): string[] {
  return [...new Set(readMountInfo('self').filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2').map((m) => m.mountPoint))];
}

/**
 * Cgroups a daemon makes at the top of every hierarchy (dockerd's /docker, podman's
 * /libpod_parent). Call it before starting the daemon; remove() takes away those that were
 * not there before and returns what it could not remove.
 */
export function cgroupsCreated(names: string[]): { remove(): Promise<string[]> } {
  const dirs = cgroupHierarchies().flatMap((h) => names.map((n) => join(h, n)));
  const before = new Set(dirs.filter((d) => existsSync(d)));
  return {
    async remove() {
      const left: string[] = [];
      for (const d of dirs) if (!before.has(d)) left.push(...(await removeCgroupTree(d)));
      return left;
    },
  };
}
