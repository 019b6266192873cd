// Real systemd-nspawn containers on a scratch root, without systemd or machined:
// --register=no (no machined) and --keep-unit (no transient scope, so no D-Bus). nspawn
// then makes its payload cgroup inside its own, so it is started in private cgroups that
// are removed again; it is stopped by PID (SIGTERM: nspawn kills its container and exits).
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { readMountInfo } from '../../src/core/proc.js';
import { mountsUnder, processesMentioning } from './dockerd.js';
import { cgroupHierarchies, removeCgroupTree, sleeperPath } from './host.js';
import { makeRootfs } from './rootfs.js';

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

export interface NspawnOptions {
  /** -M NAME; without it nspawn names the machine after the root directory */
  machine?: string;
  /** the root directory's name (default: root) */
  dirName?: string;
  readOnly?: boolean;
}

export interface NspawnContainer {
  /** the machine name nspawn uses */
  name: string;
  nspawnPid: number;
  /** the container's leader (its PID 1) */
  pid: number;
  dir: string;
  rootfs: string;
  /** milliseconds from spawning nspawn until the leader ran the sleeper */
  startMs: number;
  /** stops nspawn and removes everything; returns what was left behind */
  stop(): Promise<string[]>;
}

/** The hierarchies nspawn places itself in: the cgroup2 mount and the name=systemd one. */
function nspawnHierarchies(): string[] {
  return readMountInfo('self')
    .filter((m) => m.fsType === 'cgroup2' || (m.fsType === 'cgroup' && m.superOptions.split(',').includes('name=systemd')))
    .map((m) => m.mountPoint);
}

const pidNs = (pid: number): number | undefined => {
  try {
    return statSync(`/proc/${pid}/ns/pid`).ino;
  } catch {
    return undefined;
  }
};

const comm = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
};

/** nspawn's child that runs the sleeper in a pid namespace of its own, once there is one. */
function leaderOf(nspawnPid: number): number {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return 0;
  }
  const own = pidNs(nspawnPid);
  return children.find((c) => comm(c) === 'sleeper' && pidNs(c) !== undefined && pidNs(c) !== own) ?? 0;
}

export async function startNspawn(opts: NspawnOptions = {}): Promise<NspawnContainer> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-nspawn-'));
  const rootfs = join(dir, opts.dirName ?? 'root');
  const name = opts.machine ?? opts.dirName ?? 'root';
  // one name in every hierarchy: on hybrid hosts nspawn mirrors its cgroup2 path into name=systemd
  const cgroupName = `crashcart-nspawn-${randomBytes(4).toString('hex')}`;
  const cgroups = nspawnHierarchies().map((h) => join(h, cgroupName));
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  async function stop(): Promise<string[]> {
    const problems: string[] = [];
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child!.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
      if (child.signalCode === 'SIGKILL') problems.push('systemd-nspawn ignored SIGTERM; killed');
    }
    // in every hierarchy, not only those it was placed in
    for (const h of cgroupHierarchies()) {
      problems.push(...(await removeCgroupTree(join(h, cgroupName))));
    }
    problems.push(...(await processesMentioning(dir)).map((p) => `process left: ${p.pid} ${p.cmd}`));
    const mounts = await mountsUnder(dir);
    problems.push(...mounts.map((m) => `mount left: ${m}`));
    // nspawn removes it itself where /run is a tmpfs, and refuses to elsewhere
    await rmdir(join('/run/systemd/nspawn/propagate', name)).catch(() => {});
    // never recurse into a mount that stayed: it would delete what is mounted there
    if (mounts.length === 0) await rm(dir, { recursive: true, force: true });
    return problems;
  }

  try {
    await makeRootfs(rootfs, await sleeperPath());
    for (const cg of cgroups) await mkdir(cg);
    const args = [
      '--keep-unit', '--register=no', '--quiet', '--resolv-conf=off', '--timezone=off',
      ...(opts.machine ? ['-M', opts.machine] : []),
      '-D', rootfs,
      ...(opts.readOnly ? ['--read-only'] : []),
      '/bin/sleeper', '100000',
    ];
    const log = join(dir, 'nspawn.log');
    const out = openSync(log, 'a');
    const t0 = performance.now();
    try {
      // the shell moves itself into the private cgroups, then becomes nspawn; stdio on a
      // file, as a pipe would keep the caller waiting; a session of its own, away from any
      // terminal
      child = spawn('sh', ['-c', 'for f in "$@"; do case $f in --) break;; esac; echo $$ > "$f"; shift; done; shift; exec systemd-nspawn "$@"',
        'sh', ...cgroups.map((c) => join(c, 'cgroup.procs')), '--', ...args], { stdio: ['ignore', out, out], detached: true });
    } finally {
      closeSync(out);
    }
    exited = new Promise((resolve) => {
      child!.once('exit', () => resolve());
      child!.once('error', () => resolve());
    });
    const nspawnPid = child.pid!;
    let pid = 0;
    for (const deadline = Date.now() + START_TIMEOUT_MS; !pid; await delay(5)) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        const text = (await readFile(log, 'utf8').catch(() => '')).trim();
        throw new Error(`systemd-nspawn ${args.join(' ')} ${Date.now() > deadline ? 'timed out' : `exited (${child.exitCode ?? child.signalCode})`}: ${text}`);
      }
      pid = leaderOf(nspawnPid);
    }
    const startMs = Math.round(performance.now() - t0);
    return { name, nspawnPid, pid, dir, rootfs, startMs, stop };
  } catch (err) {
    const left = await stop();
    if (err instanceof Error && left.length) err.message += ` (cleanup: ${left.join('; ')})`;
    throw err;
  }
}

/** nspawn's runtime directories this suite made (to remove afterwards), deepest first. */
export function nspawnRunDirsMissing(): string[] {
  return ['/run/systemd/nspawn/propagate', '/run/systemd/nspawn/locks', '/run/systemd/nspawn'].filter((d) => !existsSync(d));
}
