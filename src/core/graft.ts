// Putting the toolkit into a target's mount namespace and taking it out again.
//
//   mknod    (no user namespace): in the target, mknod a block node for the loop device
//            under /dev, mount it read-only at /dev/crashcart, unlink the node.
//   mountapi (own user namespace, where mknod cannot work): fsopen/fsmount in the host,
//            then move_mount the finished mount to /dev/crashcart inside the target.
import { CrashcartError, errnoCode } from './errors.js';
import type { HeldLoop } from './loop.js';
import { readMountInfo, type MountInfo } from './proc.js';
import type { TargetHandles } from './target.js';
import { graft, ungraft, isNativeError, type GraftMethod } from '../native/index.js';

export const TOOLKIT_DIR = '/dev/crashcart';
export type MethodChoice = 'auto' | GraftMethod;

/** The toolkit mount inside a target, as its mountinfo shows it (the topmost one). */
export function findGraft(pid: number, mountPoint = TOOLKIT_DIR): MountInfo | undefined {
  return readMountInfo(pid)
    .filter((m) => m.mountPoint === mountPoint)
    .at(-1);
}

export interface GraftOutcome {
  method: GraftMethod;
  createdDir: boolean;
  remountedParent: boolean;
  /** why auto moved on from mknod, when it did */
  fallbackReason?: string;
}

function graftWith(method: GraftMethod, target: TargetHandles, loop: HeldLoop) {
  return graft({
    method,
    mntNsFd: target.mntNsFd,
    rootFd: target.root,
    mountPoint: TOOLKIT_DIR,
    fsType: 'ext3',
    nodePath: `/dev/.crashcart-loop${loop.index}`,
    major: loop.major,
    minor: loop.minor,
    devicePath: loop.path,
    fsUid: target.facts.rootUid,
    fsGid: target.facts.rootGid,
  });
}

/** Grafts the loop device's filesystem at /dev/crashcart in the target. */
export function graftToolkit(target: TargetHandles, loop: HeldLoop, choice: MethodChoice): GraftOutcome {
  // With a user namespace of its own the mknod path cannot work (mkdir gives EOVERFLOW,
  // mknod EPERM, and its /dev is nodev): go straight to the mount API.
  const first: GraftMethod = choice === 'auto' ? (target.facts.ownUserNs ? 'mountapi' : 'mknod') : choice;
  try {
    return { method: first, ...graftWith(first, target, loop) };
  } catch (e) {
    if (choice !== 'auto' || first === 'mountapi' || !isNativeError(e)) throw graftError(first, e);
    try {
      return { method: 'mountapi', ...graftWith('mountapi', target, loop), fallbackReason: e.message };
    } catch (e2) {
      throw graftError('mountapi', e2, `mknod path: ${e.message}`);
    }
  }
}

function graftError(method: GraftMethod, e: unknown, earlier?: string): unknown {
  if (!isNativeError(e)) return e;
  const hints: Record<string, string> = {
    EROFS: "the container's /dev is read-only and could not be made writable",
    EOVERFLOW: 'the container has its own user namespace: try --method mountapi',
    ENOSYS: 'this kernel has no new mount API (Linux 5.2 or later): try --method mknod',
    EBUSY: 'something is already mounted there: try crashcart -u first',
    EACCES: "the container's /dev does not allow device nodes: try --method mountapi",
    EPERM: method === 'mknod' ? 'device nodes are not allowed there (a user namespace?): try --method mountapi' : 'crashcart must run as root on the host',
  };
  const why = earlier ? `${e.message}; before that, ${earlier}` : e.message;
  return new CrashcartError(`cannot graft the toolkit (${method}): ${why}`, {
    hint: hints[e.code] ?? 'run with -v for details',
    code: e.code,
    cause: e,
  });
}

export interface UngraftOutcome {
  /** the mount was still busy and was detached lazily */
  lazy: boolean;
}

/** Unmounts /dev/crashcart in the target (lazily if something still uses it) and removes
 *  the directory when crashcart created it. */
export function ungraftToolkit(target: TargetHandles, opts: { removeDir: boolean }): UngraftOutcome {
  const req = {
    mntNsFd: target.mntNsFd,
    rootFd: target.root,
    mountPoint: TOOLKIT_DIR,
    removeDir: opts.removeDir,
    fsUid: target.facts.rootUid,
    fsGid: target.facts.rootGid,
  };
  try {
    ungraft({ ...req, detach: false });
    return { lazy: false };
  } catch (e) {
    if (errnoCode(e) === 'EBUSY') {
      // A process left running from a session still has files open there. Detach now; the
      // kernel drops the mount (and autoclear the loop device) when it lets go.
      try {
        ungraft({ ...req, detach: true });
        return { lazy: true };
      } catch (e2) {
        e = e2;
      }
    }
    if (errnoCode(e) === 'ENOTEMPTY') return { lazy: false }; // someone else's directory
    throw new CrashcartError(`cannot remove the toolkit from the container: ${(e as Error).message}`, {
      hint: 'see which processes use it with: crashcart <target> -- fuser -m /dev/crashcart',
      cause: e,
    });
  }
}
