// A private dockerd for the tests: its own data root, exec root, pid file and socket in a
// temporary directory, no iptables, no bridge, no ip forwarding. Stopped by its PID; nothing
// outside its directory is touched.
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { engineGet } from '../../src/runtimes/engine-api.js';
import { after, before } from 'node:test';
import { cliRunner, removeDaemonDir, runOnce, startDaemon, stopAndCheck, type Daemon } from './daemon.js';
import { cgroupsCreated, CONTAINERD_RUN_DIRS, dirsCreatedOutside } from './host.js';
import { importScratchRoot } from './rootfs.js';

// where they always were: many tests import them from here
export { mountsUnder } from './daemon.js';
export { processesMentioning, waitGone } from './procs.js';

export interface PrivateDockerd {
  dir: string;
  socket: string;
  env: { DOCKER_HOST: string };
  pid: number;
  /** runs the docker CLI against this daemon */
  docker(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;
/** how long dockerd's own containerd gets to follow it out */
const CHILDREN_GRACE_MS = 10_000;

async function ping(socket: string): Promise<boolean> {
  try {
    const r = await engineGet(socket, '/_ping', 1_000);
    return r.status === 200;
  } catch {
    return false;
  }
}

/** `extraArgs` go to dockerd (e.g. --userns-remap). */
export async function startDockerd(extraArgs: string[] = []): Promise<PrivateDockerd> {
  const runDirs = dirsCreatedOutside(CONTAINERD_RUN_DIRS);
  const cgroups = cgroupsCreated(['docker']); // the cgroupfs driver's default parent
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-dockerd-'));
  // a remapped root (--userns-remap) must be able to pass through to its data root
  await chmod(dir, 0o711);
  const socket = join(dir, 'docker.sock');
  const env = { DOCKER_HOST: `unix://${socket}` };
  let daemon: Daemon | undefined;

  const stop = runOnce(async () => {
    await daemon?.stop();
    // dockerd stops its containerd on the way out; then anything left that ran from this
    // directory (shims of containers someone forgot)
    const problems = await removeDaemonDir(dir, { graceMs: CHILDREN_GRACE_MS, processesExpected: true, mountsExpected: true });
    runDirs.remove();
    problems.push(...(await cgroups.remove()).map((c) => `cgroup left: ${c}`));
    if (problems.length) throw new Error(`private dockerd teardown: ${problems.join('; ')}`);
  });

  try {
    ({ daemon } = await startDaemon({
      name: 'dockerd',
      command: 'dockerd',
      args: [
        '--data-root', join(dir, 'data'),
        '--exec-root', join(dir, 'exec'),
        '--pidfile', join(dir, 'dockerd.pid'),
        '-H', env.DOCKER_HOST,
        '--iptables=false', '--ip6tables=false', '--bridge=none', '--ip-forward=false', '--ip-masq=false',
        ...extraArgs,
      ],
      log: join(dir, 'dockerd.log'),
      readyWhen: 'its socket answers',
      ready: () => ping(socket),
      startMs: START_TIMEOUT_MS,
      stopMs: STOP_TIMEOUT_MS,
    }));
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return { dir, socket, env, pid: daemon.pid, docker: cliRunner('docker', [], env), stop };
}

/** Imports a scratch root (bin/sleeper) as image `tag`. */
export async function importScratchImage(d: PrivateDockerd, tag: string, sleeper: string): Promise<void> {
  await importScratchRoot(d.docker, 'docker', d.dir, tag, sleeper);
}

/**
 * A private dockerd for the tests of one describe block, with one scratch image of
 * `program`: started before them (when `wanted()`), its containers removed and the daemon
 * stopped and checked after. The getter throws what went wrong in the set-up.
 */
export function dockerdForSuite(image: string, program: () => Promise<string>, wanted: () => boolean): () => PrivateDockerd {
  let d: PrivateDockerd | undefined;
  let setupError: unknown;
  before(async () => {
    if (!wanted()) return;
    try {
      d = await startDockerd();
      await importScratchImage(d, image, await program());
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    if (!d) return;
    const ids = (await d.docker(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await d.docker(['rm', '-f', ...ids]);
    await stopAndCheck(d, 'dockerd or containerd');
  });
  return () => {
    if (setupError) throw setupError;
    if (!d) throw new Error('the private dockerd was not started');
    return d;
  };
}
