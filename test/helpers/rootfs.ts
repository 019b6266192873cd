// A scratch root for runtimes that take a directory (LXC, systemd-nspawn), and the removal
// of the host directories such runtimes leave behind for their own bookkeeping.
import { existsSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, rmdir, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * bin/sleeper (plus bin/busybox and bin/sh when asked) and the empty directories runtimes
 * mount on; nspawn wants /usr to call it an OS tree and /run for its tmpfs.
 */
export async function makeRootfs(root: string, sleeperPath: string, opts: { busybox?: boolean } = {}): Promise<void> {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc', 'run', 'usr']) await mkdir(join(root, d), { recursive: true });
  await chmod(join(root, 'tmp'), 0o1777);
  await copyFile(sleeperPath, join(root, 'bin/sleeper'));
  await chmod(join(root, 'bin/sleeper'), 0o755);
  if (opts.busybox) {
    if (!existsSync('/bin/busybox')) throw new Error('/bin/busybox not found: install busybox-static');
    await copyFile('/bin/busybox', join(root, 'bin/busybox'));
    await chmod(join(root, 'bin/busybox'), 0o755);
    await symlink('busybox', join(root, 'bin/sh'));
  }
}

/** `path` and those of its ancestors below `stop` that do not exist yet. */
export function missingDirs(path: string, stop = '/'): string[] {
  const out: string[] = [];
  for (let d = path; d !== stop && d !== dirname(d); d = dirname(d)) {
    if (existsSync(d)) break;
    out.push(d);
  }
  return out;
}

/**
 * Removes directories a runtime made (listed deepest first, as missingDirs gives them) when
 * they hold nothing but empty directories; returns those that still hold something.
 */
export async function removeEmptyDirs(dirs: string[]): Promise<string[]> {
  const kept: string[] = [];
  const prune = async (d: string): Promise<boolean> => {
    const st = await lstat(d).catch(() => undefined);
    if (!st) return true; // gone already
    if (!st.isDirectory()) return false;
    const names = await readdir(d);
    let empty = true;
    for (const n of names) {
      if (!(await prune(join(d, n)).catch(() => false))) empty = false;
    }
    if (!empty) return false;
    try {
      await rmdir(d);
      return true;
    } catch {
      return false;
    }
  };
  for (const d of dirs) if (!(await prune(d))) kept.push(d);
  return kept;
}
