// Scratch roots for every runtime the tests start (one builder, src/demo/scratch.ts's): as a
// directory for runtimes that take one (containerd's --rootfs, LXC, systemd-nspawn), as a tar
// for `docker import` and `podman import`, as an image layer for `ctr images import`; and the
// removal of the host directories such runtimes leave behind for their own bookkeeping.
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { buildScratchRoot } from '../../src/demo/scratch.js';

export interface ScratchRootOptions {
  /** bin/busybox and bin/sh */
  busybox?: boolean;
  /** more empty directories */
  dirs?: string[];
}

/** bin/sleeper and the empty directories runtimes mount on (bin/busybox and bin/sh when asked). */
export async function makeScratchRoot(root: string, sleeperPath: string, opts: ScratchRootOptions = {}): Promise<void> {
  await buildScratchRoot(root, { sleeperPath, busybox: opts.busybox });
  for (const d of opts.dirs ?? []) await mkdir(join(root, d), { recursive: true });
}

/** A scratch root for LXC and systemd-nspawn: nspawn wants /usr to call it an OS tree and /run for its tmpfs. */
export const makeRootfs = (root: string, sleeperPath: string, opts: { busybox?: boolean } = {}): Promise<void> =>
  makeScratchRoot(root, sleeperPath, { ...opts, dirs: ['run', 'usr'] });

/**
 * A scratch root as a tar (numeric owners, paths from `.`), made in a temporary directory
 * under `workDir` and given to `use`; everything is removed afterwards.
 */
export async function withScratchTar<T>(workDir: string, sleeperPath: string, opts: ScratchRootOptions, use: (tar: string) => Promise<T>): Promise<T> {
  const work = await mkdtemp(join(workDir, 'image-'));
  try {
    const root = join(work, 'root');
    await makeScratchRoot(root, sleeperPath, opts);
    const tar = join(work, 'root.tar');
    await execa('tar', ['--numeric-owner', '-C', root, '-cf', tar, '.'], { stdin: 'ignore' });
    return await use(tar);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** `docker import` or `podman import` (`cli` runs the one named `what`) of a scratch root as image `tag`. */
export async function importScratchRoot(cli: (args: string[]) => Promise<{ code: number; stderr: string }>, what: string,
  workDir: string, tag: string, sleeperPath: string, opts: ScratchRootOptions = {}): Promise<void> {
  await withScratchTar(workDir, sleeperPath, opts, async (tar) => {
    const r = await cli(['import', tar, tag]);
    if (r.code !== 0) throw new Error(`${what} import ${tar} ${tag} failed: ${r.stderr}`);
  });
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
