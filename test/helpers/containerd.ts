// A private containerd for the tests: root, state, gRPC socket and runc root in a temporary
// directory, the CRI plugin off. Stopped by PID after every task is killed (shims outlive
// their daemon); nothing outside its directory is touched.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { isRunning } from '../../src/core/proc.js';
import { mountsUnder, processesMentioning, waitGone } from './dockerd.js';
import { cgroupHierarchies, CONTAINERD_RUN_DIRS, dirsCreatedOutside, removeCgroupTree } from './host.js';

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
  const logFile = join(dir, 'containerd.log');
  const env = { CONTAINERD_ADDRESS: socket, CRASHCART_CONTAINERD_STATE: state };
  // ctr's default cgroup is /<namespace>/<id>, whose parent nobody removes
  const cgroupParent = `/${basename(dir)}`;
  const runOptions = (ns: string, id: string) => ['--runc-root', runcRoot, '--cgroup', `${cgroupParent}/${ns}-${id}`];
  const config = await writeConfig(dir, socket).catch(async (err: unknown) => {
    await rm(dir, { recursive: true, force: true }); // nothing runs yet: the directory is all there is
    throw err;
  });
  const logFd = openSync(logFile, 'a');
  const child = spawn('containerd', ['--config', config], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  let exited = false;
  child.once('exit', () => { exited = true; });
  child.once('error', () => { exited = true; });
  const pid = child.pid ?? 0;
  const onExit = () => {
    try {
      if (pid > 0) process.kill(pid, 'SIGTERM');
    } catch { /* gone */ }
  };
  process.once('exit', onExit);

  const ctr = async (args: string[]) => {
    const r = await execa('ctr', ['--address', socket, ...args], { reject: false, stdin: 'ignore', timeout: 60_000 });
    return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

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

  let stopping: Promise<void> | undefined;
  async function teardown(): Promise<void> {
    if (isRunning(pid)) await removeEverything().catch(() => {});
    if (pid > 0 && isRunning(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitGone(pid, STOP_TIMEOUT_MS))) {
        process.kill(pid, 'SIGKILL');
        if (!(await waitGone(pid, 5_000))) throw new Error(`containerd ${pid} survived SIGKILL`);
      }
    }
    // shims (and their containers) outlive containerd: anything still running from here
    for (const p of await processesMentioning(dir)) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      await waitGone(p.pid, 5_000);
    }
    for (const m of await mountsUnder(dir)) await execa('umount', ['-l', m], { reject: false, stdin: 'ignore' });
    const left = await mountsUnder(dir);
    if (left.length) throw new Error(`mounts left under ${dir}: ${left.join(', ')}`);
    await removeCgroups(cgroupParent);
    await rm(dir, { recursive: true, force: true });
    runDirs.remove();
    process.removeListener('exit', onExit);
  }
  const stop = () => (stopping ??= teardown().catch((err: unknown) => {
    stopping = undefined;
    throw err;
  }));

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

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if ((await ctr(['version'])).code === 0) break;
    if (exited || Date.now() > deadline) {
      const log = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-30).join('\n');
      await stop().catch(() => {});
      throw new Error(`containerd ${exited ? 'exited' : 'did not answer on its socket'} (log ${logFile}):\n${log}`);
    }
    await delay(50);
  }
  return { dir, socket, state, env, pid, cgroupParent, runOptions, ctr, runSleeper, stop };
}

/** The daemon's cgroup tree (every container's below it) in every hierarchy. */
async function removeCgroups(parent: string): Promise<void> {
  const left = (await Promise.all(cgroupHierarchies().map((h) => removeCgroupTree(join(h, parent))))).flat();
  if (left.length) throw new Error(`cgroups left: ${left.join(', ')}`);
}

/** A scratch root (bin/sleeper and the usual empty directories) at `root`. */
export async function makeScratchRoot(root: string, sleeper: string): Promise<void> {
  for (const sub of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) await mkdir(join(root, sub), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile(sleeper, join(root, 'bin/sleeper'));
  await chmod(join(root, 'bin/sleeper'), 0o755);
}

/**
 * Imports a scratch root as image `ref` into namespace `ns`. ctr imports docker-archives
 * only, so one is written by hand: manifest.json, the image config and one layer tar.
 */
export async function importScratchImage(d: PrivateContainerd, ns: string, ref: string, sleeper: string): Promise<void> {
  const work = await mkdtemp(join(d.dir, 'image-'));
  try {
    const root = join(work, 'root');
    await makeScratchRoot(root, sleeper);
    const archive = join(work, 'archive');
    await mkdir(archive);
    await execa('tar', ['--numeric-owner', '-C', root, '-cf', join(archive, 'layer.tar'), '.'], { stdin: 'ignore' });
    const diffId = createHash('sha256').update(await readFile(join(archive, 'layer.tar'))).digest('hex');
    const config = JSON.stringify({
      architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sleeper'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diffId}`] },
    });
    const configName = `${createHash('sha256').update(config).digest('hex')}.json`;
    await writeFile(join(archive, configName), config);
    await writeFile(join(archive, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [ref], Layers: ['layer.tar'] }]));
    const tar = join(work, 'image.tar');
    await execa('tar', ['-C', archive, '-cf', tar, 'manifest.json', configName, 'layer.tar'], { stdin: 'ignore' });
    const r = await d.ctr(['-n', ns, 'images', 'import', tar]);
    if (r.code !== 0) throw new Error(`ctr -n ${ns} images import ${tar} failed: ${r.stderr}`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
