// Putting the toolkit into a target's mount namespace and taking it out again.
//
//   mknod    (no user namespace): in the target, mknod a block node for the loop device
//            under /dev, mount it read-only at /dev/crashcart, unlink the node.
//   mountapi (own user namespace, where mknod cannot work): fsopen/fsmount in the host,
//            then move_mount the finished mount to /dev/crashcart inside the target.
//
// Either way the addon walks the target's paths without following symlinks and works on
// the directories it opened, so the target cannot redirect the mount (see native/graft.cc).
import { CrashcartError, errnoCode } from './errors.js';
import { injectedFault, nativeFault } from './fault.js';
import { loopIndexOf, type HeldLoop } from './loop.js';
import { readMountInfo, type MountInfo } from './proc.js';
import type { TargetHandles } from './target.js';
import { graft, ungraft, isNativeError, type ChildFailure, type GraftMethod } from '../native/index.js';

export const TOOLKIT_DIR = '/dev/crashcart';
/** The device node the mknod method makes next to the mount point for a moment. */
export const NODE_PREFIX = '.crashcart-loop';
export type MethodChoice = 'auto' | GraftMethod;

/** The toolkit mount inside a target, as its mountinfo shows it (the topmost one). */
export function findGraft(pid: number, mountPoint = TOOLKIT_DIR): MountInfo | undefined {
  return readMountInfo(pid)
    .filter((m) => m.mountPoint === mountPoint)
    .at(-1);
}

/** Is this mount at /dev/crashcart a toolkit (a loop device), not something of the container's own? */
export const isToolkitMount = (m: MountInfo) => loopIndexOf(m.major, m.minor) !== undefined;

/** The toolkit mount inside a target, if what is mounted at /dev/crashcart is one. */
export function findToolkit(pid: number): MountInfo | undefined {
  const m = findGraft(pid);
  return m && isToolkitMount(m) ? m : undefined;
}

export interface GraftOutcome {
  method: GraftMethod;
  createdDir: boolean;
  remountedParent: boolean;
  /** why auto moved on from mknod, when it did */
  fallbackReason?: string;
}

const targetFds = (target: TargetHandles) => ({
  mntNsFd: target.mntNsFd,
  rootFd: target.root,
  fsUid: target.facts.rootUid,
  fsGid: target.facts.rootGid,
});

function graftWith(method: GraftMethod, target: TargetHandles, loop: HeldLoop) {
  return graft({
    ...targetFds(target),
    method,
    mountPoint: TOOLKIT_DIR,
    fsType: 'ext3',
    nodeName: `${NODE_PREFIX}${loop.index}`,
    major: loop.major,
    minor: loop.minor,
    devicePath: loop.path,
    ...nativeFault(),
  });
}

// Failures that say something about the target, not about the method: another method
// would meet the same symlink, file or read-only root.
const TARGET_STEPS = new Set(['openat', 'remount rw', 'remount ro', 'fault']);
const isTargetProblem = (e: ChildFailure) => TARGET_STEPS.has(e.step) || e.code === 'ECHILDDIED';

/** Grafts the loop device's filesystem at /dev/crashcart in the target. */
export async function graftToolkit(target: TargetHandles, loop: HeldLoop, choice: MethodChoice): Promise<GraftOutcome> {
  // With a user namespace of its own the mknod path cannot work (mkdir gives EOVERFLOW,
  // mknod EPERM, and its /dev is nodev): go straight to the mount API.
  const first: GraftMethod = choice === 'auto' ? (target.facts.ownUserNs ? 'mountapi' : 'mknod') : choice;
  let outcome: GraftOutcome;
  try {
    outcome = { method: first, ...(await graftWith(first, target, loop)) };
  } catch (e) {
    if (choice !== 'auto' || first === 'mountapi' || !isNativeError(e) || isTargetProblem(e as ChildFailure)) throw graftError(first, e, target.facts.pid);
    try {
      outcome = { method: 'mountapi', ...(await graftWith('mountapi', target, loop)), fallbackReason: e.message };
    } catch (e2) {
      throw graftError('mountapi', e2, target.facts.pid, `mknod path: ${e.message}`);
    }
  }
  await checkGraftFlags(target, outcome);
  return outcome;
}

/** The graft must be where it was meant to go, and read-only, nosuid and nodev. */
async function checkGraftFlags(target: TargetHandles, outcome: GraftOutcome): Promise<void> {
  const m = findGraft(target.facts.pid);
  const opts = m?.options.split(',') ?? [];
  const missing = ['ro', 'nosuid', 'nodev'].filter((o) => !opts.includes(o));
  if (m && missing.length === 0) return;
  try {
    await ungraftToolkit(target, { removeDir: outcome.createdDir });
  } catch {
    // the error below says what is wrong; the next run's cleanup retries
  }
  throw new CrashcartError(
    m ? `the toolkit was mounted without ${missing.join(', ')} (${m.options}): taken out again` : `the toolkit mount did not appear at ${TOOLKIT_DIR} in the container`,
    { hint: 'this is a bug in crashcart or the kernel; run with -v and report it' },
  );
}

/** How to put a writable /dev back to read-only: with crashcart itself (a scratch container
 *  has no mount of its own, and the host's would act on the host's /dev). */
const restoreHint = (pid: number) => `make it read-only again with: crashcart ${pid} -- mount -o remount,bind,ro /dev`;

function graftError(method: GraftMethod, e: unknown, pid: number, earlier?: string): unknown {
  if (!isNativeError(e)) return e;
  const f = e as ChildFailure;
  const why = earlier ? `${e.message}; before that, ${earlier}` : e.message;
  const opts = { code: e.code, cause: e };
  if (f.step === 'fault') return injectedFault(e);
  if (f.step === 'openat') {
    const what = f.path === TOOLKIT_DIR ? TOOLKIT_DIR : `${f.path ?? '/dev'}`;
    const problems: Record<string, string> = {
      ELOOP: `${what} in the container is a symlink, and crashcart never follows a symlink inside a container`,
      ENOTDIR: `${what} in the container is not a directory`,
      ENOENT: `the container has no ${what} directory`,
    };
    const problem = problems[e.code];
    if (problem) {
      return new CrashcartError(`cannot graft the toolkit: ${problem} (${e.message})`, {
        ...opts,
        hint: f.path === TOOLKIT_DIR ? `remove ${TOOLKIT_DIR} inside the container, or look at what put it there` : "the container's /dev must be a directory",
      });
    }
  }
  if (f.step === 'remount rw') {
    if (e.code === 'EINVAL') {
      // /dev is no mount of its own: lifting read-only would mean the container's whole root
      return new CrashcartError(`cannot graft the toolkit: the container's /dev is part of its read-only root, so there is nowhere to put it (${e.message})`, {
        ...opts,
        hint: 'give the container a tmpfs /dev (every runtime does by default)',
      });
    }
    return new CrashcartError(`cannot graft the toolkit: the container's /dev is read-only and could not be made writable for a moment (${e.message})`, { ...opts, hint: 'run with -v for details' });
  }
  if (f.step === 'remount ro') {
    const state = f.detail === 1 ? 'and /dev is still WRITABLE in the container' : 'and /dev is read-only again';
    return new CrashcartError(`cannot make the container's /dev read-only again (${e.message}): the toolkit was taken out, ${state}`, {
      ...opts,
      hint: f.detail === 1 ? restoreHint(pid) : 'run with -v for details',
    });
  }
  const hints: Record<string, string> = {
    EROFS: "the container's /dev is read-only and could not be made writable",
    EOVERFLOW: 'the container has its own user namespace: try --method mountapi',
    ENOSYS: 'this kernel has no new mount API (Linux 5.2 or later): try --method mknod',
    EBUSY: 'something is already mounted there: try crashcart -u first',
    EACCES: "the container's /dev does not allow device nodes: try --method mountapi",
    EPERM: method === 'mknod' ? 'device nodes are not allowed there (a user namespace?): try --method mountapi' : 'crashcart must run as root on the host',
  };
  return new CrashcartError(`cannot graft the toolkit (${method}): ${why}`, { ...opts, hint: hints[e.code] ?? 'run with -v for details' });
}

export interface UngraftOutcome {
  /** the mount was still busy and was detached lazily */
  lazy: boolean;
}

/** Unmounts /dev/crashcart in the target (lazily if something still uses it) and removes
 *  the directory when crashcart created it. */
export async function ungraftToolkit(target: TargetHandles, opts: { removeDir: boolean }): Promise<UngraftOutcome> {
  const req = { ...targetFds(target), mountPoint: TOOLKIT_DIR, unmount: true, removeDir: opts.removeDir, ...nativeFault() };
  try {
    await ungraft({ ...req, detach: false });
    return { lazy: false };
  } catch (e) {
    if (errnoCode(e) === 'EBUSY') {
      // A process left running from a session still has files open there. Detach now; the
      // kernel drops the mount (and autoclear the loop device) when it lets go.
      try {
        await ungraft({ ...req, detach: true });
        return { lazy: true };
      } catch (e2) {
        e = e2;
      }
    }
    if (errnoCode(e) === 'ENOTEMPTY') return { lazy: false }; // someone else's directory
    throw ungraftError(e, target.facts.pid);
  }
}

/**
 * After a crash part-way through a graft: the device node the mknod method makes for a
 * moment, and the mount point directory if it is empty. No unmount (there is no graft).
 * Returns whether anything was there to remove.
 */
export async function sweepLeftovers(target: TargetHandles): Promise<boolean> {
  try {
    const r = await ungraft({ ...targetFds(target), mountPoint: TOOLKIT_DIR, unmount: false, detach: false, removeDir: true, sweepNodes: NODE_PREFIX });
    return r.removedDir || r.removedNodes;
  } catch (e) {
    if (errnoCode(e) === 'ENOTEMPTY' || errnoCode(e) === 'ENOENT') return false;
    throw ungraftError(e, target.facts.pid);
  }
}

function ungraftError(e: unknown, pid: number): CrashcartError {
  const f = e as Partial<ChildFailure>;
  if (f.step === 'fault') return injectedFault(e);
  if (f.step === 'remount ro') {
    return new CrashcartError(`cannot make the container's /dev read-only again after removing the toolkit (${(e as Error).message}): /dev is still WRITABLE in the container`, {
      cause: e,
      hint: restoreHint(pid),
    });
  }
  return new CrashcartError(`cannot remove the toolkit from the container: ${(e as Error).message}`, {
    hint: 'see which processes use it with: crashcart <target> -- fuser -m /dev/crashcart',
    cause: e,
  });
}
