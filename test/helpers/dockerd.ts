// A private dockerd for the tests: its own data root, exec root, pid file and socket in a
// temporary directory, no iptables, no bridge, no ip forwarding. Stopped by the PID in its
// pid file; nothing outside its directory is touched.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { isRunning, readStat } from '../../src/core/proc.js';
import { engineGet } from '../../src/runtimes/engine-api.js';
import { cgroupsCreated, CONTAINERD_RUN_DIRS, dirsCreatedOutside } from './host.js';

export interface PrivateDockerd {
  dir: string;
  socket: string;
  env: { DOCKER_HOST: string };
  /** the dockerd pid (from its pid file) */
  pid: number;
  /** runs the docker CLI against this daemon */
  docker(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

/** Live processes whose command line mentions `needle` (our daemon's directory). */
export async function processesMentioning(needle: string): Promise<{ pid: number; cmd: string }[]> {
  const out: { pid: number; cmd: string }[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(needle) && Number(name) !== process.pid && isRunning(Number(name))) {
      out.push({ pid: Number(name), cmd: cmd.split('\0').join(' ').trim() });
    }
  }
  return out;
}

/** Mount points at or under `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const points = text.split('\n').filter(Boolean)
    .map((l) => l.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Waits up to `ms` for the process to end (a zombie counts as ended). */
export async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isRunning(pid)) {
    if (Date.now() > deadline) return false;
    await delay(20);
  }
  return true;
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    if (readStat(Number(name))?.ppid === pid) out.push(Number(name));
  }
  return out;
}

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
  const pidFile = join(dir, 'dockerd.pid');
  const logFile = join(dir, 'dockerd.log');
  const env = { DOCKER_HOST: `unix://${socket}` };
  const logFd = openSync(logFile, 'a');
  const child = spawn('dockerd', [
    '--data-root', join(dir, 'data'),
    '--exec-root', join(dir, 'exec'),
    '--pidfile', pidFile,
    '-H', env.DOCKER_HOST,
    '--iptables=false', '--ip6tables=false', '--bridge=none', '--ip-forward=false', '--ip-masq=false',
    ...extraArgs,
  ], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  child.unref();
  let exited = false;
  child.once('exit', () => { exited = true; });
  child.once('error', () => { exited = true; });
  let pid = child.pid ?? 0;
  // if the test process dies without stop(), do not leave a daemon behind
  const onExit = () => {
    try {
      if (pid > 0) process.kill(pid, 'SIGTERM');
    } catch { /* gone */ }
  };
  process.once('exit', onExit);

  let stopping: Promise<void> | undefined;
  async function teardown(): Promise<void> {
    const fromFile = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
    if (fromFile > 0) pid = fromFile;
    const kids = pid > 0 && isRunning(pid) ? childrenOf(pid) : [];
    if (pid > 0 && isRunning(pid)) {
      process.kill(pid, 'SIGTERM');
      if (!(await waitGone(pid, STOP_TIMEOUT_MS))) {
        process.kill(pid, 'SIGKILL');
        if (!(await waitGone(pid, 5_000))) throw new Error(`dockerd ${pid} survived SIGKILL`);
      }
    }
    // dockerd stops its containerd on the way out; make sure, then anything left that ran
    // from this directory (shims of containers someone forgot)
    for (const k of kids) {
      if (!(await waitGone(k, 10_000))) {
        try { process.kill(k, 'SIGKILL'); } catch { /* gone */ }
        await waitGone(k, 5_000);
      }
    }
    for (const p of await processesMentioning(dir)) {
      try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
      await waitGone(p.pid, 5_000);
    }
    for (const m of await mountsUnder(dir)) await execa('umount', ['-l', m], { reject: false, stdin: 'ignore' });
    const left = await mountsUnder(dir);
    if (left.length) throw new Error(`mounts left under ${dir}: ${left.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
    runDirs.remove();
    const cgroupsLeft = await cgroups.remove();
    if (cgroupsLeft.length) throw new Error(`dockerd left cgroups: ${cgroupsLeft.join(', ')}`);
    process.removeListener('exit', onExit);
  }
  const stop = () => (stopping ??= teardown().catch((err: unknown) => {
    stopping = undefined;
    throw err;
  }));

  const docker = async (args: string[]) => {
    const r = await execa('docker', args, { env, reject: false, stdin: 'ignore', timeout: 60_000 });
    return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await ping(socket))) {
    if (exited || Date.now() > deadline) {
      const log = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-30).join('\n');
      await stop().catch(() => {});
      throw new Error(`dockerd ${exited ? 'exited' : 'did not answer on its socket'} (log ${logFile}):\n${log}`);
    }
    await delay(50);
  }
  const fromFile = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
  if (fromFile > 0) pid = fromFile;
  return { dir, socket, env, pid, docker, stop };
}

/**
 * Imports a scratch root (bin/sleeper, and bin/busybox with `busybox`) as image `tag`.
 */
export async function importScratchImage(d: PrivateDockerd, tag: string, sleeper: string): Promise<void> {
  const root = join(d.dir, 'image-root');
  for (const sub of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) await mkdir(join(root, sub), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile(sleeper, join(root, 'bin/sleeper'));
  await chmod(join(root, 'bin/sleeper'), 0o755);
  const tar = join(d.dir, 'root.tar');
  await execa('tar', ['--numeric-owner', '-C', root, '-cf', tar, '.'], { stdin: 'ignore' });
  const r = await d.docker(['import', tar, tag]);
  if (r.code !== 0) throw new Error(`docker import ${tar} ${tag} failed: ${r.stderr}`);
  await rm(root, { recursive: true, force: true });
  await rm(tar, { force: true });
}
