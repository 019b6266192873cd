// What root may trust on the host: a file that only root can change. Images (the kernel
// parses them as root) and session state (it says what to unmount where) both follow it.
import { lstatSync, realpathSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Why a non-root user could change `path`, or undefined when none can.
 *
 * The rule, applied to the real path (symlinks resolved, so the returned path is the one
 * checked): the file and every directory above it up to / must be owned by root; the file
 * must not be group- or other-writable; a directory must not be group- or other-writable
 * unless it has the sticky bit (like /tmp). A root-owned entry of a sticky directory cannot
 * be renamed, removed or replaced by anyone but root, and as everything below it must be
 * root-owned and not writable by others, a root-owned 0700 directory made by mkdtemp in /tmp
 * is safe while a file a user left directly in /tmp is not (it is not root's). Group write
 * counts as unsafe whatever the group. ACLs are not looked at.
 */
export function unsafeReason(path: string): { real: string; reason?: string } {
  const real = realpathSync(path);
  const st = lstatSync(real);
  if (st.uid !== 0) return { real, reason: `it is owned by uid ${st.uid}, not root` };
  if (st.mode & 0o022) return { real, reason: `it is writable by group or others (mode ${(st.mode & 0o7777).toString(8)})` };
  const reason = dirsReason(dirname(real));
  return reason ? { real, reason } : { real };
}

/**
 * Why a non-root user could change what is made in the directory `dir` (an existing one):
 * the directory rule of unsafeReason, for `dir` and every directory above it.
 */
export function unsafeDirReason(dir: string): string | undefined {
  return dirsReason(realpathSync(dir));
}

function dirsReason(real: string): string | undefined {
  for (let dir = real; ; dir = dirname(dir)) {
    const d = lstatSync(dir);
    if (d.uid !== 0) return `directory ${dir} is owned by uid ${d.uid}, not root`;
    if (d.mode & 0o022 && !(d.mode & 0o1000)) return `directory ${dir} is writable by group or others (mode ${(d.mode & 0o7777).toString(8)})`;
    if (dir === dirname(dir)) return undefined;
  }
}
