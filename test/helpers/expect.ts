// What the hardening suites (faults, hostile contents, limits, load) check after every run:
// crashcart's own failures are one line, nothing is left on the host or in the target, and
// no session record stays behind.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { cgroupDirs, readCgroups, readMountInfo } from '../../src/core/proc.js';
import type { ScratchContainer } from '../../src/demo/scratch.js';
import { privateDirs, type CliResult } from './cli.js';
import { assertNoLeaks, snapshotHost, type HostSnapshot } from './host.js';
import { processes, readProc } from './procs.js';
import { until } from './wait.js';

export { waitFor } from './wait.js';

export const TOOLKIT = '/dev/crashcart';

export const snapshot = (c?: ScratchContainer) => snapshotHost(c && { pid: c.pid, rootfs: c.rootfs });

/** What the private state directory's records directory holds (see helpers/cli.ts): records and their spares. */
function stateFiles(): string[] {
  try {
    return readdirSync(`${privateDirs().state}/targets`).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
}

/** The session records in the private state directory. */
export const stateRecords = (): string[] => stateFiles().filter((n) => n.endsWith('.json'));

/**
 * Nothing left since `before`: loop devices (autoclear frees one when its last user goes, so
 * that is waited for), mounts, the target's /dev and rootfs, and session records.
 */
export async function assertClean(before: HostSnapshot, c?: ScratchContainer): Promise<void> {
  const loops = new Set(before.loops);
  await until(async () => (await snapshotHost()).loops.every((l) => loops.has(l)), { ms: 5_000 });
  assertNoLeaks(before, await snapshot(c));
  assert.deepEqual(stateFiles(), [], 'session records (or their spares) left in the state directory');
}

/** A failure of crashcart's own: exactly `line` (or one line matching it) on stderr, nothing on stdout. */
export function assertFailure(r: CliResult, code: number, line: string | RegExp): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  const lines = r.stderr.split('\n');
  assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^crashcart: /);
  if (typeof line === 'string') assert.equal(lines[0], line);
  else assert.match(lines[0]!, line);
  assert.equal(r.stdout, '');
}

/** A success: exit 0 and nothing on stderr (no -v). */
export function assertOk(r: CliResult): void {
  assert.equal(r.code, 0, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stderr, '');
}

export function mountinfo(pid: number): string[] {
  return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter(Boolean);
}

/** The toolkit mounts in a process's mount namespace. */
export const grafts = (pid: number) => mountinfo(pid).filter((l) => l.split(' ')[4] === TOOLKIT);

/** Per-mount options of a mount point ('ro,nosuid' ...), from mountinfo. */
export function mountOptions(pid: number, mountPoint: string): string[] {
  const line = mountinfo(pid).filter((l) => l.split(' ')[4] === mountPoint).at(-1);
  assert.ok(line, `no ${mountPoint} in /proc/${pid}/mountinfo`);
  return line.split(' ')[5]!.split(',');
}

/** The processes in the container's cgroup (crashcart's waiting process joins it too). */
export function cgroupProcs(pid: number): number[] {
  const dir = cgroupDirs(readCgroups(pid), readMountInfo('self'))[0];
  assert.ok(dir, `no cgroup directory for pid ${pid}`);
  return readFileSync(`${dir}/cgroup.procs`, 'utf8').split('\n').filter(Boolean).map(Number);
}

/** The state letter of a process (R, S, T, Z...), or undefined once it is gone. */
export const procState = (pid: number): string | undefined => readProc(pid)?.state;

/** Every process whose parent is `pid`. */
export const childrenOf = (pid: number): number[] => processes().filter((p) => p.ppid === pid).map((p) => p.pid);
