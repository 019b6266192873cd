// Real systemd-nspawn containers on a scratch root, without systemd or machined:
// --register=no (no machined) and --keep-unit (no transient scope, so no D-Bus). nspawn
// then makes its payload cgroup inside its own, so it is started in private cgroups that
// are removed again; it is stopped by PID (SIGTERM: nspawn kills its container and exits).
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { namespaceInode, readComm, readMountInfo } from '../../src/core/proc.js';
import { removeDaemonDir, startDaemon, type Daemon } from './daemon.js';
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

/** nspawn's child that runs the sleeper in a pid namespace of its own, once there is one. */
function leaderOf(nspawnPid: number): number {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${nspawnPid}/task/${nspawnPid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return 0;
  }
  const own = namespaceInode(nspawnPid, 'pid');
  return children.find((c) => readComm(c) === 'sleeper' && ![undefined, own].includes(namespaceInode(c, 'pid'))) ?? 0;
}

export async function startNspawn(opts: NspawnOptions = {}): Promise<NspawnContainer> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-nspawn-'));
  const rootfs = join(dir, opts.dirName ?? 'root');
  const name = opts.machine ?? opts.dirName ?? 'root';
  // one name in every hierarchy: on hybrid hosts nspawn mirrors its cgroup2 path into name=systemd
  const cgroupName = `crashcart-nspawn-${randomBytes(4).toString('hex')}`;
  const cgroups = nspawnHierarchies().map((h) => join(h, cgroupName));
  let nspawn: Daemon | undefined;

  async function stop(): Promise<string[]> {
    const problems: string[] = [];
    if (nspawn && (await nspawn.stop()).killed) problems.push('systemd-nspawn ignored SIGTERM; killed');
    // in every hierarchy, not only those it was placed in
    for (const h of cgroupHierarchies()) {
      problems.push(...(await removeCgroupTree(join(h, cgroupName))));
    }
    // nspawn removes it itself where /run is a tmpfs, and refuses to elsewhere
    await rmdir(join('/run/systemd/nspawn/propagate', name)).catch(() => {});
    problems.push(...(await removeDaemonDir(dir)));
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
    const t0 = performance.now();
    // the shell moves itself into the private cgroups, then becomes nspawn; stdio on a file,
    // as a pipe would keep the caller waiting; a session of its own, away from any terminal
    const started = await startDaemon({
      name: 'systemd-nspawn',
      command: 'sh',
      args: ['-c', 'for f in "$@"; do case $f in --) break;; esac; echo $$ > "$f"; shift; done; shift; exec systemd-nspawn "$@"',
        'sh', ...cgroups.map((c) => join(c, 'cgroup.procs')), '--', ...args],
      log: join(dir, 'nspawn.log'),
      readyWhen: `the container runs its command (${args.join(' ')})`,
      ready: leaderOf,
      startMs: START_TIMEOUT_MS,
      stopMs: STOP_TIMEOUT_MS,
      detached: true,
      // poll often: the start time is reported
      every: 5,
    });
    nspawn = started.daemon;
    const startMs = Math.round(performance.now() - t0);
    return { name, nspawnPid: nspawn.pid, pid: started.ready, dir, rootfs, startMs, stop };
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
