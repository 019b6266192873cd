// A private podman for the tests: its own graph root, run root, tmp dir, lock files and
// events log in a temporary directory, named by CONTAINERS_STORAGE_CONF and CONTAINERS_CONF
// (which crashcart honours too). runc and cgroupfs (crun fails on this host's hybrid
// cgroups, and there is no systemd), no network namespace (the bridge would leave iptables
// chains and ip_forward=1 behind), file locks instead of /dev/shm/libpod_lock.
//
// Podman 4.3 also writes two places it does not let us move: /run/containers/networks
// (netavark's run dir) and /var/lib/containers/cache (the blob info cache of `podman import`).
// Whichever of them did not exist before is removed again, when it holds nothing else.
import { existsSync } from 'node:fs';
import { mkdtemp, rmdir, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliRunner, endProcesses, removeDir, runOnce } from './daemon.js';
import { cgroupsCreated } from './host.js';
import { importScratchRoot } from './rootfs.js';

export interface PrivatePodman {
  dir: string;
  env: { CONTAINERS_CONF: string; CONTAINERS_STORAGE_CONF: string };
  /** runs podman against this storage */
  podman(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** removes every container, the storage mounts, what podman left outside, and the directory */
  stop(): Promise<void>;
}

/** Paths outside its directory that podman 4.3 creates on its own, deepest first. */
const OUTSIDE = [
  { dir: '/run/containers/networks', files: [] as string[] },
  { dir: '/run/containers', files: [] as string[] },
  { dir: '/var/lib/containers/cache', files: ['blob-info-cache-v1.boltdb'] },
  { dir: '/var/lib/containers', files: [] as string[] },
];

/** how long conmon and `podman container cleanup` get to finish after `podman rm` */
const CLEANUP_GRACE_MS = 5_000;

/** The default rlimits fail here ("error setting rlimit": root lacks CAP_SYS_RESOURCE). */
export const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096'];

export async function startPodman(): Promise<PrivatePodman> {
  const preexisting = new Set(OUTSIDE.filter((o) => existsSync(o.dir)).map((o) => o.dir));
  const cgroups = cgroupsCreated(['libpod_parent']); // conmon's and the containers' parent (cgroupfs)
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-podman-'));
  const env = { CONTAINERS_CONF: join(dir, 'containers.conf'), CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf') };
  await writeFile(env.CONTAINERS_STORAGE_CONF, [
    '[storage]',
    'driver = "overlay"',
    `graphroot = "${join(dir, 'graph')}"`,
    `runroot = "${join(dir, 'run')}"`,
    '',
  ].join('\n'));
  await writeFile(env.CONTAINERS_CONF, [
    '[containers]',
    'netns = "none"',
    '[network]',
    `network_config_dir = "${join(dir, 'networks')}"`,
    '[engine]',
    'runtime = "runc"',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = "${join(dir, 'events.log')}"`,
    `tmp_dir = "${join(dir, 'tmp')}"`,
    `volume_path = "${join(dir, 'volumes')}"`,
    'lock_type = "file"',
    '',
  ].join('\n'));

  const podman = cliRunner('podman', [], env);

  const stop = runOnce(async () => {
    const problems: string[] = [];
    const rmAll = await podman(['rm', '-a', '-f', '-t', '0']);
    if (rmAll.code !== 0) problems.push(`podman rm -a -f: ${rmAll.stderr.trim()}`);
    // conmon, and the `podman container cleanup` it runs when a container exits, name our
    // directory in their arguments: give them a moment to finish, then end them
    problems.push(...(await endProcesses(dir, { graceMs: CLEANUP_GRACE_MS })));
    const rmi = await podman(['rmi', '-a', '-f']);
    if (rmi.code !== 0) problems.push(`podman rmi -a -f: ${rmi.stderr.trim()}`);
    // the overlay driver keeps its graph directory bind-mounted on itself
    problems.push(...(await removeDir(dir, { mountsExpected: true })));
    for (const o of OUTSIDE) {
      if (preexisting.has(o.dir)) continue;
      for (const f of o.files) await unlink(join(o.dir, f)).catch(() => {});
      await rmdir(o.dir).catch(() => {}); // only when empty: someone else's files stay
    }
    problems.push(...(await cgroups.remove()));
    if (problems.length) throw new Error(`private podman teardown: ${problems.join('; ')}`);
  });

  const v = await podman(['version', '--format', '{{.Client.Version}}']);
  if (v.code !== 0) {
    await stop().catch(() => {});
    throw new Error(`podman version failed: ${v.stderr}`);
  }
  return { dir, env, podman, stop };
}

/** Imports a scratch root (bin/sleeper, and bin/busybox and bin/sh with `busybox`) as image `tag`. */
export async function importScratchImage(p: PrivatePodman, tag: string, sleeper: string, opts: { busybox?: boolean } = {}): Promise<void> {
  await importScratchRoot(p.podman, 'podman', p.dir, tag, sleeper, opts);
}

/** Whether any of the paths podman writes outside its directory are there now. */
export const outsidePaths = () => OUTSIDE.filter((o) => existsSync(o.dir)).map((o) => o.dir);
