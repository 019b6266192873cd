// Whether a target has the toolkit grafted, from which image, and who uses it: what
// `crashcart ps` shows. Read-only: it never takes the state lock or changes anything.
import { findToolkit } from './graft.js';
import { loopBackingFile, loopIndexOf } from './loop.js';
import { namespaceInode } from './proc.js';
import { sessionAlive, StateStore, targetKey } from './state.js';

export interface GraftStatus {
  grafted: boolean;
  /** the image file the toolkit came from, when it is known */
  image?: string;
  /** live crashcart sessions using it */
  sessions: number;
  /** kept with --mount-only or --keep until crashcart -u */
  pinned: boolean;
}

/** A process that exits meanwhile has no toolkit. */
function graftOf(pid: number): ReturnType<typeof findToolkit> {
  try {
    return findToolkit(pid);
  } catch {
    return undefined;
  }
}

export function graftStatus(pid: number, store = new StateStore()): GraftStatus {
  const mount = graftOf(pid);
  if (!mount) return { grafted: false, sessions: 0, pinned: false };
  const mntNs = namespaceInode(pid, 'mnt');
  const rec = mntNs === undefined ? undefined : store.read(targetKey(mntNs));
  const index = loopIndexOf(mount.major, mount.minor);
  const image = rec?.image || (index === undefined ? undefined : loopBackingFile(index));
  return {
    grafted: true,
    ...(image ? { image } : {}),
    sessions: rec ? rec.sessions.filter(sessionAlive).length : 0,
    pinned: rec?.pinned ?? false,
  };
}
