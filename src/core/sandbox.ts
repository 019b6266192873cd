// The sandbox of a stopped container (or of any root filesystem): its files opened in
// namespaces of their own, with the toolkit at /dev/crashcart. One mechanism for every
// runtime; what it opens comes from a StoppedContainer (stopped.ts). The root is an overlay
// of all of the container's layers, its writable one too, under a throwaway tmpfs: nothing
// reaches the container's files but what --rw-volumes lets into its volumes. Every mount is
// made inside the sandbox's own mount namespace after pivot_root (native/sandbox.cc), so when
// its last process exits they all go with it, and the loop device (autoclear) frees itself:
// nothing is left on the host, whatever happens to crashcart.
import { closeSync, constants as fsConstants, openSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { posix } from 'node:path';
import { writeAudit, type AuditEntry } from './audit.js';
import { commandEnv, defaultCommand, parseUser, searchCandidates } from './command.js';
import { CrashcartError, EXIT_CANNOT_INVOKE, EXIT_CRASHCART, EXIT_NOT_FOUND, errnoCode } from './errors.js';
import { faultPoint, injectedFault, nativeFault } from './fault.js';
import { readInRoot, statInRoot } from './inroot.js';
import { acquireLoop, releaseLoop } from './loop.js';
import { FORWARDED_SIGNALS, signalsSeen, TERMINAL_SIGNALS, trapSignals } from './signals.js';
import { displayName, ownDestination, type StoppedContainer, type StoppedMount } from './stopped.js';
import { constants, isNativeError, sandbox, sandboxView, type ChildFailure, type ExitStatus, type SandboxOp } from '../native/index.js';

export type Log = (line: string) => void;

export interface SandboxOptions {
  /** the command given ([] for the toolkit's shell) */
  command: string[];
  /** --entrypoint: the container's own entrypoint and arguments after the command */
  entrypoint: boolean;
  interactive: boolean;
  user?: string;
  workdir?: string;
  env: string[];
  /** start from the container's environment (--no-target-env: from nothing) */
  targetEnv: boolean;
  /** loopback only (none), or the host's network */
  net: 'none' | 'host';
  /** the container's volumes and binds writable, as it had them */
  rwVolumes: boolean;
  image: string;
  imageSha256?: string | null;
  audit: boolean;
  log: Log;
  warn: Log;
}

export const TOOLKIT_MOUNT = '/dev/crashcart';

/** The kernel takes one page of overlay options: ~26 bytes per layer as /proc/self/fd/N. */
export const MAX_LAYERS = 128;

/** Character devices of the sandbox's /dev: name, major, minor (all 0666, as runtimes make them). */
const DEVICES: [string, number, number][] = [['null', 1, 3], ['zero', 1, 5], ['full', 1, 7], ['random', 1, 8], ['urandom', 1, 9], ['tty', 5, 0]];
const DEV_LINKS: [string, string][] = [['fd', '/proc/self/fd'], ['stdin', '/proc/self/fd/0'], ['stdout', '/proc/self/fd/1'], ['stderr', '/proc/self/fd/2'], ['ptmx', 'pts/ptmx']];

/** What a mount of the table is, for messages: "/data (volume vol1)". */
export interface PlannedOp extends SandboxOp {
  what: string;
}

/** The command line: the one given, the container's own after it (--entrypoint), or the shell. */
export function sandboxArgv(c: StoppedContainer, opts: Pick<SandboxOptions, 'command' | 'entrypoint' | 'interactive'>): string[] {
  if (!opts.entrypoint) return opts.command.length > 0 ? opts.command : defaultCommand(opts.interactive);
  const own = [...c.config.entrypoint, ...c.config.cmd];
  if (own.length === 0) {
    throw new CrashcartError(`--entrypoint: ${displayName(c)} has no entrypoint or command in its config`, { hint: 'give the command to run instead' });
  }
  return [...opts.command, ...own];
}

/** Sorted as runtimes mount them: parents before what is mounted inside them. */
function byDepth(a: StoppedMount, b: StoppedMount): number {
  const depth = (m: StoppedMount) => m.destination.split('/').filter(Boolean).length;
  return depth(a) - depth(b);
}

/** A path as the mount table takes it: absolute, normalized, no "..". */
export function cleanDestination(dest: string): string | undefined {
  if (!dest.startsWith('/')) return undefined;
  const clean = posix.normalize(dest).replace(/\/+$/, '');
  return clean && clean !== '/' ? clean : undefined;
}

/**
 * The container's own mounts, parents first: volumes and binds read-only unless
 * `rwVolumes`, the runtime's files always read-only, and with `tmpfs` its tmpfs mounts
 * fresh (without, what its layers have there shows).
 */
export function containerMounts(c: StoppedContainer, o: { rwVolumes: boolean; sourceIsDir: (path: string) => boolean; tmpfs: boolean }): PlannedOp[] {
  const k = constants();
  const ops: PlannedOp[] = [];
  for (const m of [...c.mounts].sort(byDepth)) {
    const target = cleanDestination(m.destination);
    if (!target || ownDestination(target)) continue;
    const what = `${target} (${m.kind === 'volume' && m.name ? `volume ${m.name}` : m.kind === 'runtime' ? `the runtime's ${m.source}` : m.kind === 'bind' ? `bind mount of ${m.source}` : m.kind})`;
    if (m.kind === 'tmpfs') {
      if (o.tmpfs) ops.push({ op: 'mount', target, fsType: 'tmpfs', source: 'tmpfs', flags: k.MS_NOSUID | k.MS_NODEV, data: 'mode=1777', create: 'dir', what });
      continue;
    }
    const readOnly = m.kind === 'runtime' || m.readOnly || !o.rwVolumes;
    ops.push({ op: 'bind', target, source: m.source, recursive: true, readOnly, create: o.sourceIsDir(m.source!) ? 'dir' : 'file', what });
  }
  return ops;
}

/**
 * The sandbox's mount table, in order: /dev (a tmpfs with the usual devices, pts, shm and
 * the toolkit), a read-only /sys, the container's mounts (volumes and binds read-only unless
 * `rwVolumes`, tmpfs fresh, the runtime's files always read-only), the working directory,
 * and /proc, mounted by the sandbox's init in its PID namespace.
 */
export function planMounts(c: StoppedContainer, o: { devicePath: string; rwVolumes: boolean; workdir?: string; sourceIsDir: (path: string) => boolean }): PlannedOp[] {
  const k = constants();
  const ops: PlannedOp[] = [];
  const dev = (rel: string) => `/dev/${rel}`;
  ops.push({ op: 'mount', target: '/dev', fsType: 'tmpfs', source: 'tmpfs', flags: k.MS_NOSUID, data: 'mode=755,size=65536k', create: 'dir', what: '/dev (tmpfs)' });
  for (const [name, major, minor] of DEVICES) {
    ops.push({ op: 'mknod', target: dev(name), mode: fsConstants.S_IFCHR | 0o666, major, minor, what: `${dev(name)} (device)` });
  }
  for (const [name, to] of DEV_LINKS) ops.push({ op: 'symlink', target: dev(name), linkTo: to, what: `${dev(name)} (symlink)` });
  ops.push({ op: 'mount', target: '/dev/pts', fsType: 'devpts', source: 'devpts', flags: k.MS_NOSUID | k.MS_NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620', create: 'dir', what: '/dev/pts (devpts)' });
  ops.push({ op: 'mount', target: '/dev/shm', fsType: 'tmpfs', source: 'shm', flags: k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC, data: 'mode=1777,size=65536k', create: 'dir', what: '/dev/shm (tmpfs)' });
  ops.push({ op: 'mount', target: TOOLKIT_MOUNT, fsType: 'ext3', source: o.devicePath, flags: k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV, create: 'dir', what: `${TOOLKIT_MOUNT} (the toolkit, ${o.devicePath})` });
  ops.push({ op: 'mount', target: '/sys', fsType: 'sysfs', source: 'sysfs', flags: k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC, create: 'dir', what: '/sys (sysfs, read-only)' });
  ops.push(...containerMounts(c, { rwVolumes: o.rwVolumes, sourceIsDir: o.sourceIsDir, tmpfs: true }));
  if (o.workdir && o.workdir !== '/') ops.push({ op: 'mkdir', target: o.workdir, create: 'dir', what: `${o.workdir} (the working directory)` });
  ops.push({ op: 'mount', target: '/proc', fsType: 'proc', source: 'proc', flags: k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC, create: 'dir', late: true, what: '/proc (proc)' });
  return ops;
}

/**
 * A file of the container's image as the overlay will show it: the top layer that has it
 * wins, and a whiteout (a 0:0 character device) there means it was deleted. Read inside
 * each layer's root, so a symlink there cannot lead to a host file.
 */
export function readFromLayers(layers: string[], path: string): string | undefined {
  for (const layer of layers) {
    let root: number;
    try {
      root = openSync(layer, constants().O_PATH | fsConstants.O_DIRECTORY);
    } catch {
      continue;
    }
    try {
      const st = statInRoot(root, path);
      if (!st) continue;
      if (st.isCharacterDevice() && st.rdev === 0) return undefined;
      return readInRoot(root, path);
    } finally {
      closeSync(root);
    }
  }
  return undefined;
}

/** Every layer must still be there, a directory: a removed container's are gone. */
function checkLayers(c: StoppedContainer): void {
  if (c.layers.length === 0) throw new CrashcartError(`${displayName(c)} has no files crashcart can open`, { hint: 'this is a bug in crashcart' });
  if (c.layers.length > MAX_LAYERS) {
    throw new CrashcartError(`${displayName(c)} has ${c.layers.length} layers; the sandbox stacks at most ${MAX_LAYERS}`, { hint: 'open a flattened copy with --rootfs DIR' });
  }
  for (const layer of c.layers) {
    let st;
    try {
      st = statSync(layer);
    } catch (e) {
      throw new CrashcartError(`the files of ${displayName(c)} are gone: its layer ${layer}: ${errnoCode(e) ?? (e as Error).message}`, {
        hint: 'was it removed meanwhile? see it with the runtime', cause: e,
      });
    }
    if (!st.isDirectory()) throw new CrashcartError(`${displayName(c)}: its layer ${layer} is not a directory`, { hint: 'this is not a filesystem crashcart can open' });
  }
}

/** Whether a mount's source is a directory; a source that is gone is one line. */
function sourceIsDirOf(c: StoppedContainer): (path: string) => boolean {
  return (path: string) => {
    try {
      return statSync(path).isDirectory();
    } catch (e) {
      throw new CrashcartError(`the source of a mount of ${displayName(c)} is gone: ${path}: ${errnoCode(e) ?? (e as Error).message}`, {
        hint: 'was the volume removed? see it with the runtime', cause: e,
      });
    }
  };
}

/** A stopped container's files as crashcart cp reads them: `rootFd` is its root. */
export interface StoppedView {
  /** the process that holds the view's mount namespace */
  pid: number;
  /** /proc/PID/root of that process, opened */
  rootFd: number;
  /** closes rootFd and ends the process; with it go the namespace and every mount in it */
  close(): Promise<void>;
}

/**
 * Opens the files of `c` as its processes saw them, without running anything there: the
 * sandbox's root (all its layers as lower layers of an overlay, under a throwaway tmpfs)
 * and its volumes and binds read-only at their destinations, in a mount namespace of its
 * own held by a process of crashcart's (native sandboxView). That process ends when
 * close() closes its lifeline, or when crashcart dies, SIGKILL included: nothing is ever
 * mounted on the host. Its tmpfs mounts are not made: their contents went with the
 * container, and what its layers have below them shows.
 */
export async function openView(c: StoppedContainer, log: Log): Promise<StoppedView> {
  checkLayers(c);
  const ops = containerMounts(c, { rwVolumes: false, sourceIsDir: sourceIsDirOf(c), tmpfs: false });
  for (const op of ops) log(`view: ${op.op} ${op.what}`);
  let view;
  try {
    view = sandboxView({ layers: c.layers, ops: ops.map(({ what: _what, ...op }) => op), ...nativeFault() });
  } catch (e) {
    if (!isNativeError(e)) throw e;
    throw new CrashcartError(`cannot open the files of ${displayName(c)}: ${e.message}`, { hint: 'run with -v for details', code: e.code, cause: e });
  }
  const v = view;
  let released = false;
  const end = async () => {
    if (!released) closeSync(v.release);
    released = true;
    await v.exited;
  };
  let rootFd: number;
  try {
    await v.ready;
    rootFd = openSync(`/proc/${v.pid}/root`, 'r');
  } catch (e) {
    await end();
    if (!isNativeError(e) || !('step' in e)) {
      throw new CrashcartError(`cannot open the files of ${displayName(c)}: ${(e as Error).message}`, { hint: 'run with -v for details', cause: e });
    }
    throw failureOf(e as ChildFailure, c, ops, `cannot open the files of ${displayName(c)}`);
  }
  log(`view: the files of ${displayName(c)} are /proc/${v.pid}/root (process ${v.pid})`);
  const close = async () => {
    closeSync(rootFd);
    await end();
  };
  try {
    faultPoint('cp-view-open');
  } catch (e) {
    await close();
    throw e;
  }
  return { pid: v.pid, rootFd, close };
}

/** Which namespaces the sandbox makes, and which of a live process's it joins (a pod's). */
function namespaces(c: StoppedContainer, net: 'none' | 'host'): { unshare: number; join: Array<[number, number]>; joined: number[] } {
  const k = constants();
  let unshare = k.CLONE_NEWNS | k.CLONE_NEWPID | k.CLONE_NEWCGROUP | k.CLONE_NEWIPC | k.CLONE_NEWUTS;
  if (net === 'none') unshare |= k.CLONE_NEWNET;
  const join: Array<[number, number]> = [];
  const joined: number[] = [];
  if (c.join) {
    unshare &= ~(k.CLONE_NEWIPC | k.CLONE_NEWUTS | k.CLONE_NEWNET);
    try {
      for (const [ns, flag] of [['net', k.CLONE_NEWNET], ['ipc', k.CLONE_NEWIPC], ['uts', k.CLONE_NEWUTS]] as const) {
        const fd = openSync(`/proc/${c.join.pid}/ns/${ns}`, fsConstants.O_RDONLY);
        joined.push(fd);
        join.push([fd, flag]);
      }
    } catch (e) {
      for (const fd of joined) closeSync(fd);
      throw new CrashcartError(`cannot open the namespaces of ${c.join.what} (pid ${c.join.pid}): ${errnoCode(e) ?? (e as Error).message}`, {
        hint: 'is the pod sandbox still running?', cause: e,
      });
    }
  }
  return { unshare, join, joined };
}

/** The first line of a sandbox session: what was found, and what the sandbox is. */
export function firstLine(c: StoppedContainer, what: string, net: string): string {
  const sandboxed = 'changes are thrown away, none of its processes run';
  if (c.kind === 'rootfs') return `${c.id} is opened in a sandbox: changes are thrown away, network: ${net}`;
  if (c.kind === 'image') return `image ${what} is opened in a sandbox: changes are thrown away, network: ${net}`;
  return `${what}; its files are opened in a sandbox: ${sandboxed}, network: ${net}`;
}

/** Runs the command in a sandbox of `c`; resolves to the exit code crashcart should exit with. */
export async function runSandbox(c: StoppedContainer, opts: SandboxOptions): Promise<number> {
  const started = performance.now();
  const argv = sandboxArgv(c, opts);
  const entry: AuditEntry = {
    event: 'sandbox',
    target: { runtime: c.runtime, id: c.id, ...(c.name ? { name: c.name } : {}), pid: 0 },
    image: { path: opts.image, sha256: opts.imageSha256 ?? null },
    command: argv,
    method: 'sandbox',
  };
  let status: ExitStatus = { code: EXIT_CRASHCART, signal: null };
  try {
    status = await run(c, opts, argv);
    return exitCodeOf(status);
  } catch (e) {
    status = { code: e instanceof CrashcartError ? e.exitCode : EXIT_CRASHCART, signal: null };
    throw e;
  } finally {
    const result = { exitCode: exitCodeOf(status), signal: status.signal, durationMs: Math.round(performance.now() - started) };
    const why = writeAudit(opts.audit ? { ...entry, ...result } : { event: 'sandbox', noAudit: true });
    if (why) opts.warn(why);
  }
}

export function exitCodeOf(status: ExitStatus): number {
  if (status.signal !== null) return 128 + status.signal;
  return status.code ?? EXIT_CRASHCART;
}

async function run(c: StoppedContainer, opts: SandboxOptions, argv: string[]): Promise<ExitStatus> {
  checkLayers(c);
  const env = commandEnv({ targetEnv: opts.targetEnv ? c.config.env : undefined, term: process.env.TERM, extra: opts.env });
  const userSpec = opts.user ?? c.config.user;
  const user = userSpec ? parseUser(userSpec, readFromLayers(c.layers, '/etc/passwd') ?? '', readFromLayers(c.layers, '/etc/group') ?? '') : { uid: 0, gid: 0 };
  const groups = opts.user === undefined ? c.config.groups ?? [] : [];
  const workdir = opts.workdir ?? (c.config.cwd || '/');
  const sourceIsDir = sourceIsDirOf(c);
  const ns = namespaces(c, opts.net);
  const trap = trapSignals();
  let loop;
  try {
    loop = acquireLoop(opts.image);
    // the config's own working directory is made if missing, as runtimes do; --workdir must exist
    const ops = planMounts(c, { devicePath: loop.path, rwVolumes: opts.rwVolumes, ...(opts.workdir === undefined ? { workdir } : {}), sourceIsDir });
    for (const op of ops) opts.log(`sandbox: ${op.op} ${op.what}`);
    faultPoint('sandbox-opened');
    await signalsSeen();
    trap.throwIfReceived();
    const candidates = searchCandidates(argv[0]!, env);
    let handle;
    try {
      handle = sandbox({
        layers: c.layers,
        join: ns.join,
        unshare: ns.unshare,
        // none in its config: it had the host's, copied into its own UTS namespace, as here
        hostname: c.config.hostname.slice(0, 64),
        loopback: opts.net === 'none' && !c.join,
        ops: ops.map(({ what: _what, ...op }) => op),
        workdir,
        uid: user.uid,
        gid: user.gid,
        groups,
        candidates,
        argv,
        env,
        forwardSignals: FORWARDED_SIGNALS.map((s) => osConstants.signals[s]),
        terminalSignals: TERMINAL_SIGNALS.map((s) => osConstants.signals[s]),
        ...nativeFault(),
      });
    } catch (e) {
      if (!isNativeError(e)) throw e;
      throw new CrashcartError(`cannot start the sandbox: ${e.message}`, { hint: 'run with -v for details', code: e.code, cause: e });
    }
    // the children hold the loop device and the namespaces now
    releaseLoop(loop);
    loop = undefined;
    for (const fd of ns.joined.splice(0)) closeSync(fd);
    opts.log(`started ${argv[0]} in the sandbox (waiting process ${handle.pid})`);
    trap.forwardTo(handle.pid);
    faultPoint('sandbox-running');
    try {
      return await handle.exited;
    } catch (e) {
      throw sandboxError(e, c, ops, argv, env, workdir);
    }
  } finally {
    if (loop) releaseLoop(loop);
    for (const fd of ns.joined) closeSync(fd);
    trap.release();
  }
}

/** A failure of the sandbox's children, in the user's words. */
function sandboxError(e: unknown, c: StoppedContainer, ops: PlannedOp[], argv: string[], env: string[], workdir: string): unknown {
  if (!isNativeError(e)) return e;
  const f = e as ChildFailure;
  const argv0 = argv[0]!;
  if (f.step === 'fault') return injectedFault(e);
  if (f.step === 'execve') {
    if (e.code === 'ENOENT') {
      const searched = argv0.includes('/') ? `execve '${argv0}': ENOENT` : `searched ${searchCandidates(argv0, env).map((p) => posix.dirname(p)).join(':')}`;
      return new CrashcartError(`command not found in the sandbox: ${argv0} (${searched})`, {
        exitCode: EXIT_NOT_FOUND,
        hint: `the toolkit is at ${TOOLKIT_MOUNT}/bin; give a full path or a tool that exists (a missing #! interpreter or ELF loader looks the same)`,
        cause: e,
      });
    }
    const why = e.code === 'EACCES' ? 'it is not executable, or a directory'
      : e.code === 'ENOEXEC' ? 'it is not an executable for this machine'
        : e.code === 'E2BIG' ? 'its arguments and environment are more than execve takes' : 'it cannot be run';
    return new CrashcartError(`cannot run ${argv0} in the sandbox: ${why} (${e.message})`, { exitCode: EXIT_CANNOT_INVOKE, hint: 'give the path of an executable file', cause: e });
  }
  if (f.step === 'chdir' && f.detail === 0) f.path = workdir;
  return failureOf(f, c, ops, `cannot start the sandbox of ${displayName(c)}`);
}

/** A failed step of the box, with the mount or layer it was about. */
function failureOf(f: ChildFailure, c: StoppedContainer, ops: PlannedOp[], lead: string): unknown {
  if (f.step === 'fault') return injectedFault(f);
  const e = f;
  const name = displayName(c);
  const op = f.detail >= 0 && f.detail < ops.length && !['setns', 'fork', 'chdir', 'setresuid', 'setresgid', 'setgroups'].includes(f.step) ? ops[f.detail] : undefined;
  const part: Record<number, string> = { [-1]: 'making its mounts private', [-2]: 'the tmpfs of its throwaway layer', [-3]: `the overlay of ${name}'s layers`, [-4]: 'leaving the old root' };
  const layer = f.detail <= -100 ? c.layers[-100 - f.detail] : undefined;
  const about = op ? ` (${op.what})` : layer ? ` (layer ${layer})` : part[f.detail] ? ` (${part[f.detail]})` : '';
  const hints: Record<string, string> = {
    chdir: `check --workdir: the directory must exist in the files of ${name}`,
    setresuid: 'check --user',
    setresgid: 'check --user',
    unshare: 'the kernel refused a new namespace: is crashcart running in a container itself?',
    pivot_root: 'the host root cannot be pivoted away from (an initramfs root?)',
  };
  let hint = hints[f.step] ?? 'run with -v for details';
  if (layer && e.code === 'ENOENT') hint = 'was the container removed meanwhile?';
  if (op?.op === 'bind' && e.code === 'ENOENT' && f.step === 'openat') hint = 'was the volume removed? see it with the runtime';
  if (f.detail === -3 && e.code === 'EINVAL') hint = 'the kernel refused to stack these directories with overlayfs (dmesg says why)';
  return new CrashcartError(`${lead}: ${e.message}${about}`, { hint, code: e.code, cause: e });
}

export { EXIT_CRASHCART };
