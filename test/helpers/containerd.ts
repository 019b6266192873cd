// A private containerd for the tests: root, state, gRPC socket and runc root in a temporary
// directory, the CRI plugin off. Stopped by PID after every task is killed (shims outlive
// their daemon); nothing outside its directory is touched.
import { createHash } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { isRunning } from '../../src/core/proc.js';
import { cliRunner, removeDaemonDir, runOnce, startDaemon, type Daemon } from './daemon.js';
import { cgroupHierarchies, CONTAINERD_RUN_DIRS, dirsCreatedOutside, removeCgroupTree } from './host.js';
import { withScratchTar } from './rootfs.js';

export { makeScratchRoot } from './rootfs.js';

export interface PrivateContainerd {
  dir: string;
  socket: string;
  /** containerd's state directory (tasks live in io.containerd.runtime.v2.task/<ns>/<id>) */
  state: string;
  /** what crashcart needs to see this daemon */
  env: { CONTAINERD_ADDRESS: string; CRASHCART_CONTAINERD_STATE: string };
  pid: number;
  /** the cgroup (in every hierarchy) that holds this daemon's containers; removed by stop() */
  cgroupParent: string;
  /** the options for `ctr run` that keep a container's cgroup and runc state in ours */
  runOptions(ns: string, id: string): string[];
  /** runs `ctr --address <socket> args...` */
  ctr(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * Starts a detached task from a rootfs: `ctr [-n ns] run -d --null-io --read-only
   * [--label k=v...] [--annotation k=v...] --rootfs <rootfs> <id> /bin/sleeper 100000`;
   * returns its pid.
   */
  runSleeper(ns: string, id: string, rootfs: string, labels?: Record<string, string>, annotations?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 15_000;

/** containerd's default configuration with every path moved under `dir`. */
async function writeConfig(dir: string, socket: string): Promise<string> {
  const { stdout } = await execa('containerd', ['config', 'default'], { stdin: 'ignore' });
  const set = (text: string, key: string, value: string) => {
    const re = new RegExp(`^(\\s*${key}\\s*=).*$`, 'm');
    if (!re.test(text)) throw new Error(`containerd config default has no '${key}'`);
    return text.replace(re, `$1 ${JSON.stringify(value)}`);
  };
  let cfg = stdout;
  cfg = cfg.replace(/^disabled_plugins\s*=.*$/m, 'disabled_plugins = ["io.containerd.grpc.v1.cri"]');
  cfg = set(cfg, 'root', join(dir, 'root'));
  cfg = set(cfg, 'state', join(dir, 'state'));
  // the first `address` is [grpc]'s; [ttrpc] and [debug] stay empty (off)
  cfg = cfg.replace(/(\[grpc\]\s*\n\s*address\s*=).*$/m, `$1 ${JSON.stringify(socket)}`);
  const file = join(dir, 'config.toml');
  await writeFile(file, cfg);
  return file;
}

export async function startContainerd(): Promise<PrivateContainerd> {
  const runDirs = dirsCreatedOutside(CONTAINERD_RUN_DIRS);
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-containerd-'));
  // a user-namespaced container's init (a mapped host uid) must reach its rootfs in here
  await chmod(dir, 0o711);
  const socket = join(dir, 'containerd.sock');
  const state = join(dir, 'state');
  const runcRoot = join(dir, 'runc');
  const env = { CONTAINERD_ADDRESS: socket, CRASHCART_CONTAINERD_STATE: state };
  // ctr's default cgroup is /<namespace>/<id>, whose parent nobody removes
  const cgroupParent = `/${basename(dir)}`;
  const runOptions = (ns: string, id: string) => ['--runc-root', runcRoot, '--cgroup', `${cgroupParent}/${ns}-${id}`];
  const ctr = cliRunner('ctr', ['--address', socket]);
  let daemon: Daemon | undefined;

  async function removeEverything(): Promise<void> {
    const nss = (await ctr(['namespaces', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
    for (const ns of nss) {
      const tasks = (await ctr(['-n', ns, 'tasks', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
      for (const id of tasks) {
        await ctr(['-n', ns, 'tasks', 'kill', '-a', '-s', 'SIGKILL', id]);
        await ctr(['-n', ns, 'tasks', 'delete', '-f', id]);
      }
      const cs = (await ctr(['-n', ns, 'containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
      if (cs.length) await ctr(['-n', ns, 'containers', 'delete', ...cs]);
    }
  }

  const stop = runOnce(async () => {
    if (daemon && !daemon.exited) await removeEverything().catch(() => {});
    await daemon?.stop();
    // shims (and their containers) outlive containerd: anything still running from here
    const problems = await removeDaemonDir(dir, { processesExpected: true, mountsExpected: true });
    problems.push(...(await removeCgroups(cgroupParent)));
    runDirs.remove();
    if (problems.length) throw new Error(`private containerd teardown: ${problems.join('; ')}`);
  });

  async function runSleeper(ns: string, id: string, rootfs: string, labels: Record<string, string> = {},
    annotations: Record<string, string> = {}): Promise<number> {
    const pidFile = join(dir, `${ns}-${id}.pid`);
    const r = await ctr(['-n', ns, 'run', '-d', '--null-io', '--read-only', ...runOptions(ns, id), '--pid-file', pidFile,
      ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
      ...Object.entries(annotations).flatMap(([k, v]) => ['--annotation', `${k}=${v}`]),
      '--rootfs', rootfs, id, '/bin/sleeper', '100000']);
    if (r.code !== 0) throw new Error(`ctr -n ${ns} run ${id} failed: ${r.stderr}`);
    const taskPid = Number.parseInt(await readFile(pidFile, 'utf8'), 10);
    await rm(pidFile, { force: true });
    if (!(taskPid > 0) || !isRunning(taskPid)) throw new Error(`ctr -n ${ns} run ${id}: no running task (pid ${taskPid})`);
    return taskPid;
  }

  try {
    const config = await writeConfig(dir, socket);
    ({ daemon } = await startDaemon({
      name: 'containerd',
      command: 'containerd',
      args: ['--config', config],
      log: join(dir, 'containerd.log'),
      readyWhen: 'its socket answers',
      ready: async () => (await ctr(['version'])).code === 0,
      startMs: START_TIMEOUT_MS,
      stopMs: STOP_TIMEOUT_MS,
    }));
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }
  return { dir, socket, state, env, pid: daemon.pid, cgroupParent, runOptions, ctr, runSleeper, stop };
}

/** The daemon's cgroup tree (every container's below it) in every hierarchy; returns what stayed. */
async function removeCgroups(parent: string): Promise<string[]> {
  return (await Promise.all(cgroupHierarchies().map((h) => removeCgroupTree(join(h, parent))))).flat();
}

/**
 * Imports a scratch root as image `ref` into namespace `ns`. ctr imports docker-archives
 * only, so one is written by hand: manifest.json, the image config and one layer tar.
 */
export async function importScratchImage(d: PrivateContainerd, ns: string, ref: string, sleeper: string): Promise<void> {
  await withScratchTar(d.dir, sleeper, {}, async (layer) => {
    const work = dirname(layer);
    const diffId = createHash('sha256').update(await readFile(layer)).digest('hex');
    const config = JSON.stringify({
      architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sleeper'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    });
    const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
    await writeFile(join(work, configName), config);
    await writeFile(join(work, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: [basename(layer)] }]));
    const tar = join(work, 'image.tar');
    await execa('tar', ['-C', work, '-cf', tar, 'manifest.json', configName, basename(layer)], { stdin: 'ignore' });
    const r = await d.ctr(['-n', ns, 'images', 'import', tar]);
    if (r.code !== 0) throw new Error(`ctr -n ${ns} images import ${tar} failed: ${r.stderr}`);
  });
}
