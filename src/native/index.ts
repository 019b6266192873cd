// The one module that loads the C++ addon. Everything else imports these typed wrappers.
// The addon makes the syscalls Node cannot (loop ioctls, setns, mount, fork+exec inside
// namespaces); policy, defaults and messages stay in TypeScript.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CrashcartError } from '../core/errors.js';

/** An error thrown by the addon, shaped like Node's own system errors. */
export interface NativeError extends Error {
  code: string; // 'EBUSY'
  errno: number; // 16
  syscall: string; // 'mount'
  path?: string; // '/dev/crashcart'
  dest?: string;
}

export interface LoopDevice {
  /** Open file descriptor on /dev/loopN (the caller closes it once the mount exists). */
  fd: number;
  index: number;
  path: string; // '/dev/loopN'
  major: number;
  minor: number;
}

export interface LoopStatus {
  index: number;
  backingDevice: number; // st_dev of the backing file
  backingInode: number; // st_ino of the backing file
  offset: number;
  sizeLimit: number;
  readOnly: boolean;
  autoClear: boolean;
}

export type GraftMethod = 'mknod' | 'mountapi';

/** A fault to inject in a forked child (CRASHCART_FAULT; see src/core/fault.ts). */
export interface FaultRequest {
  point: string;
  action: 'fail' | 'kill' | 'stop';
}

/** What graft, ungraft and spawn need of the target: its mount namespace and root. */
export interface TargetFds {
  /** fd of /proc/PID/ns/mnt */
  mntNsFd: number;
  /** fd of /proc/PID/root */
  rootFd: number;
  /** host uid/gid that the target's root maps to (0/0 without a user namespace) */
  fsUid: number;
  fsGid: number;
}

export interface GraftRequest extends TargetFds {
  method: GraftMethod;
  /** mount point inside the target, e.g. '/dev/crashcart'; walked without following symlinks */
  mountPoint: string;
  fsType: string; // 'ext3'
  /** mknod: the block node made (and unlinked again) next to the mount point, e.g. '.crashcart-loop3' */
  nodeName: string;
  /** mknod: loop device numbers */
  major: number;
  minor: number;
  /** mountapi: the loop device path as the host sees it */
  devicePath: string;
  fault?: FaultRequest;
}

export interface GraftResult {
  /** the mount point directory did not exist and was created */
  createdDir: boolean;
  /** /dev was read-only and was made writable for a moment */
  remountedParent: boolean;
}

export interface UngraftRequest extends TargetFds {
  mountPoint: string;
  /** unmount it (false: only sweep nodes and remove the directory, after a crash) */
  unmount: boolean;
  /** MNT_DETACH: lazy unmount when processes still use it */
  detach: boolean;
  /** remove the mount point directory afterwards, if it is an empty directory */
  removeDir: boolean;
  /** remove block device nodes with this name prefix next to the mount point */
  sweepNodes?: string;
  fault?: FaultRequest;
}

export interface UngraftResult {
  /** the mount point directory was removed */
  removedDir: boolean;
  /** stale device nodes were removed (sweepNodes) */
  removedNodes: boolean;
}

/** Capability sets as /proc/PID/status shows them (hex), for --caps target. */
export interface CapsRequest {
  bounding: string;
  permitted: string;
  effective: string;
  inheritable: string;
  ambient: string;
  /** /proc/sys/kernel/cap_last_cap */
  lastCap: number;
  noNewPrivs: boolean;
}

export interface FsOpenRequest {
  fsType: string; // 'ext3'
}

/** The command a forked child runs, for an attach and a sandbox alike. */
export interface CommandRequest {
  /** run as: after entering a user namespace the ids are those inside it */
  uid: number;
  gid: number;
  groups: number[];
  /** absolute paths tried in order with execve (a PATH search done before fork) */
  candidates: string[];
  argv: string[];
  env: string[];
  /** signals the waiting process passes on to the command */
  forwardSignals: number[];
  /** signals passed on only when a process sent them (the terminal's reach the command directly) */
  terminalSignals: number[];
}

export interface SpawnRequest extends CommandRequest {
  /** namespaces to enter, in this order: [fd, CLONE_NEW* flag] */
  namespaces: Array<[number, number]>;
  /** fds of cgroup.procs files to join (before setns of the cgroup namespace) */
  cgroupProcsFds: number[];
  /** fd of /proc/PID/root: chroot there after the namespaces */
  rootFd: number;
  /** fd of /proc/PID/cwd, or -1 to use workdir */
  cwdFd: number;
  /** path inside the target, used when cwdFd is -1 */
  workdir: string;
  /** --caps target: these sets and no_new_privs instead of full root */
  caps?: CapsRequest;
  /** fds that become the command's stdin, stdout and stderr (-1: crashcart's own) */
  stdio?: [number, number, number];
  fault?: FaultRequest;
}

/** One step of a sandbox's mount table, made inside its new root (see native/sandbox.cc). */
export interface SandboxOp {
  /** bind: the host path `source`; mount: a new filesystem; mknod, symlink, mkdir */
  op: 'bind' | 'mount' | 'mknod' | 'symlink' | 'mkdir';
  /** absolute path inside the new root; symlinks on the way resolve inside it */
  target: string;
  /** bind: a host path (opened after unshare, before anything is mounted); mount: the device or a name */
  source?: string;
  /** bind: submounts too */
  recursive?: boolean;
  /** bind: read-only afterwards (submounts too with `recursive`) */
  readOnly?: boolean;
  /** mount: its type ('tmpfs', 'proc', 'ext3', ...), MS_* flags and data */
  fsType?: string;
  flags?: number;
  data?: string;
  /** what to make at `target` when it is missing */
  create?: 'dir' | 'file';
  /** mknod: mode (type and permissions) and device numbers */
  mode?: number;
  major?: number;
  minor?: number;
  /** symlink: what it points to */
  linkTo?: string;
  /** made by the sandbox's init after pivot_root (a /proc of its PID namespace) */
  late?: boolean;
}

export interface SandboxRequest extends CommandRequest {
  /** host directories, the top layer first: the lower layers of the root overlay */
  layers: string[];
  /** namespaces to join first (a pod's): [fd, CLONE_NEW* flag] */
  join: Array<[number, number]>;
  /** CLONE_NEW* flags of the namespaces to make (CLONE_NEWNS at least) */
  unshare: number;
  /** sethostname in the new UTS namespace ('' leaves it) */
  hostname: string;
  /** bring lo up in the new network namespace */
  loopback: boolean;
  /** the mount table, in order */
  ops: SandboxOp[];
  /** working directory inside the sandbox */
  workdir: string;
  fault?: FaultRequest;
}

/** A stopped container's root alone (its layers and mount table, with no late ops: no init runs there), for crashcart cp. */
export type SandboxViewRequest = Pick<SandboxRequest, 'layers' | 'ops' | 'fault'>;

export interface SandboxView {
  /** host pid of the process that holds the view's mount namespace: its root is /proc/PID/root */
  pid: number;
  /** crashcart's end of the process's lifeline: closing it ends the process (as crashcart's death does) */
  release: number;
  /** resolves once the root is made; rejects with a ChildFailure if it could not be */
  ready: Promise<void>;
  /** resolves when the process has ended */
  exited: Promise<ExitStatus>;
}

export interface OpenInRootRequest {
  /** fd of the directory that is / for the path (/proc/PID/root) */
  rootFd: number;
  path: string;
  /** 'read': O_RDONLY|O_NONBLOCK; 'path': O_PATH; 'dir': O_RDONLY|O_DIRECTORY */
  kind: 'read' | 'path' | 'dir';
  /** a symlink as the last component is not followed (with 'path': its own fd) */
  nofollow?: boolean;
}

export interface OpenAtRequest {
  /** the directory the path is below (RESOLVE_BENEATH: no '..' out of it, no symlink on the way) */
  dirFd: number;
  path: string;
  /** 'path': O_PATH (a trailing symlink comes back itself); 'create': O_WRONLY|O_CREAT|O_EXCL */
  kind: 'read' | 'path' | 'dir' | 'create';
  /** for 'create' (default 0600) */
  mode?: number;
}

export interface DirEntry {
  name: string;
  /** d_type: f d l p s c b, '?' when the filesystem does not say */
  type: string;
}

export type Timespec = [seconds: number, nanoseconds: number];

/** What netHelper reports when it ends: its exit code (NET_EXIT_*) or signal. */
export interface NetHelperExit {
  code: number | null;
  signal: number | null;
}

export interface NetHelperRequest {
  /** fd of /proc/PID/ns/net: the helper's network namespace */
  netNsFd: number;
  /** fd of /proc/PID/root: unix socket paths are opened inside it */
  rootFd: number;
  /** the target's process: the helper ends when it exits */
  targetPid: number;
  /** connects in progress at once; netConnect beyond that waits in the socket buffer */
  capacity: number;
  connectTimeoutMs: number;
  /** a connection is open (fd, errno 0) or failed (fd -1, errno) */
  onConnect: (id: number, fd: number, errno: number) => void;
  /** the helper ended; after this nothing more comes */
  onExit: (status: NetHelperExit) => void;
}

/** The helper's exit codes. */
export const NET_EXIT_STOPPED = 0;
export const NET_EXIT_TARGET_GONE = 3;

export interface NetConnectRequest {
  /** the control socket netHelper returned */
  control: number;
  id: number;
  kind: 'tcp' | 'unix' | 'abstract';
  /** tcp: 4 or 6, and the address's 4 or 16 bytes */
  family?: 4 | 6;
  address?: Buffer;
  port?: number;
  /** unix: a path in the target's root; abstract: the name without its leading NUL */
  path?: string;
}

/** A byte range of a lock file (see native/lock.cc). */
export interface LockRange {
  fd: number;
  start: number;
  /** 0: to the end of the file */
  length: number;
}

export interface ExitStatus {
  /** exit code, or null when a signal ended the command */
  code: number | null;
  /** signal number, or null */
  signal: number | null;
}

/** A failure in the forked child before exec: which step, and its errno. */
export interface SpawnFailure extends NativeError {
  step: string; // 'execve', 'setns', 'chroot', ...
  /** which namespace (setns), cgroup file (write cgroup.procs), candidate (execve) or capability */
  detail: number;
}

export interface SpawnHandle {
  /** host pid of the process that waits for the command inside the target's PID namespace */
  pid: number;
  /** resolves when the command ends; rejects with a SpawnFailure if it never started */
  exited: Promise<ExitStatus>;
}

interface Addon {
  loopAttach(imageFd: number, readOnly: boolean): LoopDevice;
  loopStatus(loopFd: number): LoopStatus;
  loopDetach(loopFd: number): void;
  loopFree(): number;
  graft(req: GraftRequest): Promise<GraftResult>;
  ungraft(req: UngraftRequest): Promise<UngraftResult>;
  fsopen(req: FsOpenRequest): number;
  spawn(req: SpawnRequest & { helper: string }): Promise<SpawnHandle>;
  pipe(): [number, number];
  isatty(fd: number): boolean;
  openInRoot(req: OpenInRootRequest): number;
  sandbox(req: SandboxRequest): SpawnHandle;
  sandboxView(req: SandboxViewRequest): SandboxView;
  openAt(req: OpenAtRequest): number;
  reopen(req: { fd: number; kind: 'read' | 'dir' }): number;
  readDir(req: { fd: number }): DirEntry[];
  readLink(req: { fd: number }): string;
  mkdirAt(req: { dirFd: number; name: string; mode: number }): void;
  symlinkAt(req: { dirFd: number; name: string; target: string }): void;
  mkfifoAt(req: { dirFd: number; name: string; mode: number }): void;
  renameAt(req: { dirFd: number; from: string; to: string; noReplace: boolean }): void;
  unlinkAt(req: { dirFd: number; name: string; dir: boolean }): void;
  linkAt(req: { fd: number; dirFd: number; name: string }): void;
  fchown(req: { fd: number; uid: number; gid: number }): void;
  utimes(req: { dirFd: number; name?: string; atime: Timespec; mtime: Timespec }): void;
  netHelper(req: NetHelperRequest): { pid: number; control: number };
  netConnect(req: NetConnectRequest): boolean;
  netStop(req: { control: number }): void;
  tryLock(req: LockRange): boolean;
  readWhole(req: { fd: number; as: 'latin1' | 'bytes' }): string | ArrayBuffer;
  exchangePaths(req: { from: string; to: string }): void;
  /** _exit(2): bin/crashcart's end of an attach with nothing in flight */
  exitNow(req: { code: number }): never;
  constants: Record<string, number>;
}

const here = import.meta.dirname;
const projectRoot = [join(here, '..', '..'), join(here, '..', '..', '..')].find((p) =>
  existsSync(join(p, 'binding.gyp')),
) ?? join(here, '..', '..', '..');

/** A file node-gyp builds (the addon, crashcart-wait), Release before Debug. */
function builtFile(name: string): string {
  const candidates = ['Release', 'Debug'].map((kind) => join(projectRoot, 'build', kind, name));
  const found = candidates.find((file) => existsSync(file));
  if (found) return found;
  throw new CrashcartError(`${name === 'crashcart.node' ? 'the native addon' : name} is not built (looked in ${candidates.join(', ')})`, {
    code: 'ENOADDON',
    hint: `run 'npm run build:native' in ${projectRoot}`,
  });
}

function load(): Addon {
  // what require() does with a .node file, without node:module (which brings Node's ES
  // module loader along: most of a millisecond of every attach)
  const m = { exports: {} as Addon };
  process.dlopen(m, builtFile('crashcart.node'));
  return m.exports;
}

let addon: Addon | undefined;
function native(): Addon {
  return (addon ??= load());
}

/** The addon as bin/crashcart loaded it already (to read the bundle), instead of a second dlopen of the same file. */
export function provideAddon(loaded: unknown): void {
  if (loaded) addon ??= loaded as Addon;
}

export const loopAttach = (imageFd: number, readOnly = true) => native().loopAttach(imageFd, readOnly);
export const loopStatus = (loopFd: number) => native().loopStatus(loopFd);
export const loopDetach = (loopFd: number) => native().loopDetach(loopFd);
/** The index of the loop device LOOP_CTL_GET_FREE hands out; nothing is bound to it. */
export const loopFree = () => native().loopFree();
/** Starts the child that grafts (a clone sharing crashcart's memory); resolves once it has reported (the event loop runs on meanwhile). */
export const graft = (req: GraftRequest) => native().graft(req);
export const ungraft = (req: UngraftRequest) => native().ungraft(req);
/** fsopen(2) with FSOPEN_CLOEXEC: an fs context's fd (nothing mounted); the caller closes it. */
export const fsopen = (req: FsOpenRequest) => native().fsopen(req);
/**
 * A forked child's promises count as handled from the start: a fault or an error between
 * the fork and the caller's await must not end crashcart on an unhandled rejection (the
 * caller that awaits them still gets the rejection).
 */
function handled<T extends { exited: Promise<unknown>; ready?: Promise<unknown> }>(h: T): T {
  h.exited.catch(() => {});
  h.ready?.catch(() => {});
  return h;
}

/** crashcart-wait (native/wait.cc), the waiting process of a spawn, built next to the addon: looked up once. */
let helper: string | undefined;
/** Resolves once crashcart-wait runs (started from a thread of the addon's: the event loop runs on). */
export const spawn = (req: SpawnRequest) => native().spawn({ ...req, helper: (helper ??= builtFile('crashcart-wait')) }).then(handled);
/** pipe2(O_CLOEXEC): [read end, write end]; the caller closes both. */
export const pipe = () => native().pipe();
/** isatty(3) of one of crashcart's fds, without opening it as a Node stream. */
export const isatty = (fd: number) => native().isatty(fd);
export const openInRoot = (req: OpenInRootRequest) => native().openInRoot(req);
/** A command in a new sandbox; `pid` is the process that mirrors its status. */
export const sandbox = (req: SandboxRequest) => handled(native().sandbox(req));
/** A stopped container's root, held in a mount namespace of its own by a process of crashcart's. */
export const sandboxView = (req: SandboxViewRequest) => handled(native().sandboxView(req));
/** openat2 below a directory fd: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS. */
export const openAt = (req: OpenAtRequest) => native().openAt(req);
/** A new fd on the inode of an O_PATH fd, through /proc/self/fd (no name looked up again). */
export const reopen = (fd: number, kind: 'read' | 'dir') => native().reopen({ fd, kind });
export const readDir = (fd: number) => native().readDir({ fd });
export const readLink = (fd: number) => native().readLink({ fd });
/** The *At calls take one name (no '/') in a directory fd. */
export const mkdirAt = (req: { dirFd: number; name: string; mode: number }) => native().mkdirAt(req);
export const symlinkAt = (req: { dirFd: number; name: string; target: string }) => native().symlinkAt(req);
export const mkfifoAt = (req: { dirFd: number; name: string; mode: number }) => native().mkfifoAt(req);
export const renameAt = (req: { dirFd: number; from: string; to: string; noReplace: boolean }) => native().renameAt(req);
export const unlinkAt = (req: { dirFd: number; name: string; dir: boolean }) => native().unlinkAt(req);
export const linkAt = (req: { fd: number; dirFd: number; name: string }) => native().linkAt(req);
/** fchownat(fd, "", AT_EMPTY_PATH): any fd, an O_PATH one of a symlink included. */
export const fchown = (req: { fd: number; uid: number; gid: number }) => native().fchown(req);
/** utimensat of `name` in dirFd (not followed), or futimens of dirFd itself without a name. */
export const utimes = (req: { dirFd: number; name?: string; atime: Timespec; mtime: Timespec }) => native().utimes(req);
/** Starts the network helper of `crashcart forward` in a target's network namespace. */
export const netHelper = (req: NetHelperRequest) => native().netHelper(req);
export const netConnect = (req: NetConnectRequest) => native().netConnect(req);
/** Ends the helper: it sees EOF and exits; onExit follows. */
export const netStop = (control: number) => native().netStop({ control });
/** An exclusive open file description lock on a byte range (length 0: to the end); false when someone else holds it. Closing the fd unlocks. */
export const tryLock = (req: LockRange) => native().tryLock(req);
/** A whole regular file (from offset 0) as one-byte text or bytes, read once into pages populated at once; V8 uses them in place. */
export const readWhole = (fd: number, as: 'latin1' | 'bytes') => native().readWhole({ fd, as });
/** Swaps two names at once (renameat2 RENAME_EXCHANGE); both must exist. */
export const exchangePaths = (from: string, to: string) => native().exchangePaths({ from, to });
export const constants = (): Record<string, number> => native().constants;
/** The number of a signal crashcart traps or forwards (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT, ...). */
export const signalNumber = (name: string): number => {
  const n = native().constants[name];
  if (n === undefined) throw new Error(`no signal number for ${name}`);
  return n;
};

/** Where the project lives (for the demo sleeper and other built artefacts). */
export const projectDir = projectRoot;

/** A failure reported by a forked child: the step, and its detail. */
export interface ChildFailure extends NativeError {
  step: string;
  detail: number;
  /** graft: the mount point directory had been created (and was removed again) */
  createdDir?: boolean;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).code === 'string' && typeof (e as NativeError).errno === 'number';
}
