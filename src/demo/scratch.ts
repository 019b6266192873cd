// Disposable runc (or crun) containers whose whole root is a static sleeper (plus an
// optional busybox), or a caller's program and the few files it needs: real targets for the
// demo command and the test-suite, which also builds such roots alone for other runtimes.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { access, chmod, copyFile, lchown, mkdir, mkdtemp, readdir, readFile, rm, rmdir, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, posix, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { cgroupDirs, processState, readCgroups, readMountInfo, startTime } from '../core/proc.js';

export interface UsernsOptions {
  /** Host uid that the container's uid 0 maps to. */
  hostUid: number;
  /** Host gid that the container's gid 0 maps to. */
  hostGid: number;
  /** Number of ids mapped (uid and gid). */
  size: number;
}

/** A file put into the rootfs before the container starts: copied, written or a symlink. */
export interface RootfsFile {
  /** absolute path in the container */
  path: string;
  /** host file to copy (symlinks followed) */
  source?: string;
  content?: string | Uint8Array;
  /** make a symlink with this target instead */
  symlink?: string;
  /** default 0755 for copies, 0644 for content */
  mode?: number;
}

/** What a scratch root holds: the program, the usual empty directories, and what is asked for. */
export interface ScratchRootOptions {
  /** the root's program (a static sleeper unless the caller brings its own root files) */
  sleeperPath: string;
  /** where sleeperPath goes in the root; default /bin/sleeper */
  programPath?: string;
  /** more files (libraries, /etc files...) */
  files?: RootfsFile[];
  /** bin/busybox from the host's busybox-static, and bin/sh linked to it */
  busybox?: boolean;
  /** a working directory to make (absolute) */
  cwd?: string;
  /** host uid and gid that own every entry (a user-namespaced container's root) */
  owner?: { uid: number; gid: number };
}

/** The container's root is a scratch root (owned by the mapped root with `userns`). */
export interface ScratchOptions extends Omit<ScratchRootOptions, 'owner'> {
  id?: string;
  /** process.user: uid and gid the program runs as (default 0:0) */
  user?: { uid: number; gid: number };
  readOnly?: boolean;
  /** mount the container's /dev tmpfs read-only too (runc remounts it after making nodes) */
  devReadOnly?: boolean;
  /** give the container a tmpfs /dev (default true); false: /dev is part of its root, and
   *  with readOnly there is nowhere writable in it */
  devTmpfs?: boolean;
  userns?: UsernsOptions;
  /** linux.resources of the OCI config (pids and memory limits, ...), merged over runc's */
  resources?: Record<string, unknown>;
  hostname?: string;
  env?: string[];
  args?: string[];
  runcRoot?: string;
  /** the OCI runtime that runs it (same CLI and bundle format); default runc */
  runtime?: 'runc' | 'crun';
  baseDir?: string;
}

export interface ScratchContainer {
  id: string;
  pid: number;
  bundleDir: string;
  rootfs: string;
  remove(): Promise<void>;
}

const BUSYBOX = '/bin/busybox';
const DEFAULT_PROGRAM = '/bin/sleeper';
const RUN_TIMEOUT_MS = 30_000;
const DELETE_TIMEOUT_MS = 10_000;
const EXIT_WAIT_MS = 3_000;
// runc delete -f has already SIGKILLed and waited when it returns
const DELETE_GRACE_MS = 200;

function runcArgs(runcRoot: string | undefined, args: string[]): string[] {
  return runcRoot ? ['--root', runcRoot, ...args] : args;
}

/** True while the process runs; a zombie waiting for its reaper counts as gone. */
function isRunning(pid: number, start: number | undefined): boolean {
  const state = processState(pid);
  return state !== undefined && state !== 'Z' && state !== 'X' && (start === undefined || startTime(pid) === start);
}

async function waitGone(pid: number, start: number | undefined, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isRunning(pid, start)) {
    if (Date.now() > deadline) return false;
    await delay(10);
  }
  return true;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

async function containerExists(runtime: string, id: string, runcRoot: string | undefined): Promise<boolean> {
  const r = await execa(runtime, runcArgs(runcRoot, ['state', id]), { reject: false, timeout: DELETE_TIMEOUT_MS, stdin: 'ignore' });
  return r.exitCode === 0;
}

/**
 * With a user namespace runc's init runs as the mapped host uid and must
 * traverse every directory down to the rootfs: a 0700 ancestor (mkdtemp's
 * default) fails the rootfs bind mount with a bare "permission denied".
 */
async function checkTraversable(dir: string, hostUid: number, hostGid: number): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const st = await stat(d);
    const bit = st.uid === hostUid ? 0o100 : st.gid === hostGid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) {
      throw new Error(`${d} (mode ${(st.mode & 0o7777).toString(8)}) is not searchable by host uid ${hostUid}, ` +
        'which a user-namespaced container needs to reach its rootfs; use a baseDir with o+x ancestors');
    }
    if (d === dirname(d)) return;
  }
}

/** A container path under rootfs; normalizing an absolute path drops leading '..'. */
function inRootfs(rootfs: string, path: string): string {
  if (!isAbsolute(path)) throw new Error(`rootfs path must be absolute: ${path}`);
  return join(rootfs, posix.normalize(path));
}

async function addFile(rootfs: string, f: RootfsFile): Promise<void> {
  const dest = inRootfs(rootfs, f.path);
  await mkdir(dirname(dest), { recursive: true });
  if (f.symlink !== undefined) {
    await symlink(f.symlink, dest);
  } else if (f.source !== undefined) {
    await copyFile(f.source, dest);
    await chmod(dest, f.mode ?? 0o755);
  } else if (f.content !== undefined) {
    await writeFile(dest, f.content);
    await chmod(dest, f.mode ?? 0o644);
  } else {
    throw new Error(`rootfs file ${f.path}: give source, content or symlink`);
  }
}

/** Builds a scratch root at `rootfs` (created if missing). */
export async function buildScratchRoot(rootfs: string, opts: ScratchRootOptions): Promise<void> {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) await mkdir(join(rootfs, d), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  const program = inRootfs(rootfs, opts.programPath ?? DEFAULT_PROGRAM);
  await mkdir(dirname(program), { recursive: true });
  await copyFile(opts.sleeperPath, program);
  await chmod(program, 0o755);
  for (const f of opts.files ?? []) await addFile(rootfs, f);
  if (opts.busybox) {
    if (!(await exists(BUSYBOX))) throw new Error(`${BUSYBOX} not found: install busybox-static`);
    await copyFile(BUSYBOX, join(rootfs, 'bin/busybox'));
    await chmod(join(rootfs, 'bin/busybox'), 0o755);
    await symlink('busybox', join(rootfs, 'bin/sh'));
  }
  if (opts.cwd) await mkdir(inRootfs(rootfs, opts.cwd), { recursive: true });
  if (opts.owner) {
    // the container's root must own its files (else they show as nobody)
    const { uid, gid } = opts.owner;
    await lchown(rootfs, uid, gid);
    for (const rel of await readdir(rootfs, { recursive: true })) {
      await lchown(join(rootfs, rel), uid, gid);
    }
  }
}

async function writeConfig(bundleDir: string, rootfs: string, opts: ScratchOptions, cwd: string): Promise<void> {
  await execa('runc', ['spec', '--bundle', bundleDir], { stdin: 'ignore', timeout: RUN_TIMEOUT_MS });
  const path = join(bundleDir, 'config.json');
  const config = JSON.parse(await readFile(path, 'utf8'));
  config.process.terminal = false;
  config.process.args = opts.args ?? [opts.programPath ?? DEFAULT_PROGRAM];
  if (opts.user) config.process.user = { uid: opts.user.uid, gid: opts.user.gid };
  if (opts.env) config.process.env = opts.env;
  config.process.cwd = cwd;
  if (opts.hostname !== undefined) config.hostname = opts.hostname;
  config.root = { path: rootfs, readonly: opts.readOnly ?? true };
  if (opts.devTmpfs === false) {
    // the mounts below /dev go too: runc would have to make their mount points in the root
    config.mounts = config.mounts.filter((m: { destination: string }) => m.destination !== '/dev' && !m.destination.startsWith('/dev/'));
  }
  if (opts.devReadOnly) {
    const dev = config.mounts.find((m: { destination: string }) => m.destination === '/dev');
    dev.options.push('ro');
  }
  if (opts.resources) config.linux.resources = { ...config.linux.resources, ...opts.resources };
  if (opts.userns) {
    const { hostUid, hostGid, size } = opts.userns;
    // runc's default spec already has pid and network namespaces, which the
    // fresh proc and sysfs mounts need once a user namespace is added
    config.linux.namespaces.push({ type: 'user' });
    config.linux.uidMappings = [{ containerID: 0, hostID: hostUid, size }];
    config.linux.gidMappings = [{ containerID: 0, hostID: hostGid, size }];
  }
  await writeFile(path, JSON.stringify(config, null, 2));
}

/** Creates and starts a container; on failure removes whatever it made. */
export async function createScratchContainer(opts: ScratchOptions): Promise<ScratchContainer> {
  const runtime = opts.runtime ?? 'runc';
  const id = opts.id ?? `crashcart-${randomBytes(6).toString('hex')}`;
  // normalizing an absolute path drops leading '..', so the dir stays in the rootfs
  const cwd = posix.normalize(opts.cwd ?? '/');
  if (!isAbsolute(cwd)) throw new Error(`cwd must be absolute: ${opts.cwd}`);
  // refuse before making anything: cleanup must never delete someone else's container
  if (await containerExists(runtime, id, opts.runcRoot)) throw new Error(`${runtime} container ${id} already exists`);

  const bundleDir = await mkdtemp(join(resolve(opts.baseDir ?? tmpdir()), `${id}-`));
  const rootfs = join(bundleDir, 'rootfs');
  const pidFile = join(bundleDir, 'init.pid');
  const logFile = join(bundleDir, 'runc.log');
  let pid = 0;
  let start: number | undefined;
  let ranRunc = false;
  let cgroups: string[] = [];

  let removing: Promise<void> | undefined;
  // concurrent and repeated calls share one teardown; a failed one may be retried
  const remove = (): Promise<void> =>
    (removing ??= teardown().catch((err: unknown) => {
      removing = undefined;
      throw err;
    }));

  async function teardown(): Promise<void> {
    if (ranRunc) {
      if (pid === 0) {
        // runc may have started the init before failing or timing out
        pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10) || 0;
        if (pid > 0) start = startTime(pid);
      }
      const del = await execa(runtime, runcArgs(opts.runcRoot, ['delete', '-f', id]), {
        reject: false, timeout: DELETE_TIMEOUT_MS, stdin: 'ignore',
      });
      // runc exits 0 even for an id it does not know (lost state), so its exit
      // code proves nothing: look at the process itself and kill it by PID
      if (pid > 0 && !(await waitGone(pid, start, del.exitCode === 0 ? DELETE_GRACE_MS : 0))) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch { /* already gone */ }
        if (!(await waitGone(pid, start, EXIT_WAIT_MS))) throw new Error(`container ${id} init ${pid} survived SIGKILL`);
      }
      if (await containerExists(runtime, id, opts.runcRoot)) {
        // the init is dead now, so delete can finish the cleanup
        const again = await execa(runtime, runcArgs(opts.runcRoot, ['delete', '-f', id]), {
          reject: false, timeout: DELETE_TIMEOUT_MS, stdin: 'ignore',
        });
        if (again.exitCode !== 0) throw new Error(`${runtime} delete -f ${id} failed: ${again.stderr || del.stderr}`);
      }
      // normally runc removed them already; after a kill by PID nobody else will
      for (const dir of cgroups) await rmdir(dir).catch(() => {});
    }
    await rm(bundleDir, { recursive: true, force: true });
  }

  try {
    if (opts.userns) {
      await chmod(bundleDir, 0o711);
      await checkTraversable(bundleDir, opts.userns.hostUid, opts.userns.hostGid);
    }
    await buildScratchRoot(rootfs, { ...opts, cwd, ...(opts.userns ? { owner: { uid: opts.userns.hostUid, gid: opts.userns.hostGid } } : {}) });
    await writeConfig(bundleDir, rootfs, opts, cwd);

    ranRunc = true;
    const result = await runDetached(runtime, runcArgs(opts.runcRoot, ['run', '-d', '--pid-file', pidFile, '--bundle', bundleDir, id]), logFile);
    if (result.exitCode !== 0) {
      const log = (await readFile(logFile, 'utf8').catch(() => '')).trim();
      // runc refused because the id was taken meanwhile: not ours to delete
      if (/already exists/.test(log)) ranRunc = false;
      throw new Error(`${runtime} run ${id} failed (${result.timedOut ? 'timed out' : `exit ${result.exitCode ?? result.signal}`}): ${log}`);
    }
    pid = await readPidFile(pidFile);
    start = startTime(pid);
    cgroups = runcCgroupDirs(pid, id);
    if (!isRunning(pid, start)) {
      const log = (await readFile(logFile, 'utf8').catch(() => '')).trim();
      throw new Error(`container ${id} init ${pid} exited right after start${log ? `: ${log}` : ''}`);
    }
  } catch (err) {
    await remove().catch((cleanupErr: unknown) => {
      if (err instanceof Error) err.message += ` (cleanup also failed: ${String(cleanupErr)})`;
    });
    throw err;
  }
  return { id, pid, bundleDir, rootfs, remove };
}

/**
 * `runc run -d` with stdio on a log file. The detached init inherits runc's
 * stdio, so a pipe would keep the caller waiting for EOF until the container
 * exits; execa's typings only offer pipes or files it writes through streams.
 */
interface RunResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

async function runDetached(runtime: string, args: string[], logFile: string): Promise<RunResult> {
  const logFd = openSync(logFile, 'a');
  try {
    if (runtime === 'crun' && hybridCgroups()) {
      // crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"): hide
      // the cgroup2 mount from it alone, in a private mount namespace.
      return await spawnWithTimeout('unshare', ['-m', 'sh', '-c', 'umount /sys/fs/cgroup/unified && exec crun "$@"', 'crun', ...args], logFd);
    }
    return await spawnWithTimeout(runtime, args, logFd);
  } finally {
    closeSync(logFd);
  }
}

function hybridCgroups(): boolean {
  return readMountInfo('self').some((m) => m.mountPoint === '/sys/fs/cgroup/unified' && m.fsType === 'cgroup2');
}

function spawnWithTimeout(cmd: string, args: string[], logFd: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const child = spawn(cmd, args, { stdio: ['ignore', logFd, logFd] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, RUN_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, timedOut });
    });
  });
}

/** The host paths of the cgroups runc made for the container (the ones named after its id). */
function runcCgroupDirs(pid: number, id: string): string[] {
  try {
    const own = readCgroups(pid).filter((cg) => cg.path.split('/').pop() === id);
    return cgroupDirs(own, readMountInfo('self'));
  } catch {
    return [];
  }
}

/** runc writes the pid file before `run -d` returns; poll briefly anyway. */
async function readPidFile(path: string): Promise<number> {
  const deadline = Date.now() + 2_000;
  for (;;) {
    const text = await readFile(path, 'utf8').catch(() => '');
    const pid = Number.parseInt(text.trim(), 10);
    if (pid > 0) return pid;
    if (Date.now() > deadline) throw new Error(`no pid in ${path}`);
    await delay(10);
  }
}
