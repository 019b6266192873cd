// Lays out the toolkit tree that becomes /dev/crashcart from extracted Debian packages.
import assert from 'node:assert/strict';
import { chmod, copyFile, lstat, lutimes, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import type { DebInfo } from './apt.js';
import { imageError, causeLine } from './errors.js';
import type { Profile } from './profile.js';
import { replaceBytes } from './bytes.js';
import { exists, listDir } from './files.js';
import { PREFIX } from './prefix.js';
import { checkNeeded, droppedTool, finishRelocated, flattenRelocated, overlay } from './relocate.js';

/**
 * Debian's bash reads its compiled-in /etc/bash.bashrc and /etc/bash.bash_logout, i.e. the
 * container's files, even with --rcfile. The strings are replaced in the binary by paths of
 * the same length inside the prefix, which are symlinks at the tree's root.
 */
export const BASH_PATCHES = [
  { from: '/etc/bash.bashrc', to: `${PREFIX}/r`, target: 'etc/bashrc', required: true },
  { from: '/etc/bash.bash_logout', to: `${PREFIX}/logout`, target: 'etc/bash_logout', required: false },
] as const;

for (const p of BASH_PATCHES) {
  // a different length would shift every later byte of the binary
  assert.equal(Buffer.byteLength(p.to), Buffer.byteLength(p.from), `bash patch ${p.from} -> ${p.to}: lengths differ`);
  assert.ok(p.to.startsWith(`${PREFIX}/`) && !p.to.slice(PREFIX.length + 1).includes('/'));
}

async function patchBash(path: string): Promise<void> {
  const buf = await readFile(path);
  for (const p of BASH_PATCHES) {
    const n = replaceBytes(buf, p.from, p.to);
    if (p.required && n < 1) {
      throw imageError('EBUILD', `bash binary ${path} does not contain ${p.from}, so its system bashrc cannot be redirected`, { hint: "the profile's bash package changed: report it" });
    }
  }
  await writeFile(path, buf);
}

/** Applet names are file names in bin/; anything odd means the output was not a list. */
const APPLET = /^[A-Za-z0-9_.+[\]-]+$/;

async function busyboxApplets(busybox: string): Promise<string[]> {
  let out: string;
  try {
    ({ stdout: out } = await execa(busybox, ['--list'], { stdin: 'ignore' }));
  } catch (err) {
    throw imageError('EBUILD', `${busybox} --list failed: ${causeLine(err)}`, { hint: 'run with -v for the whole output', cause: err });
  }
  const names = out.split('\n').map((l) => l.trim()).filter(Boolean);
  const bad = names.find((n) => !APPLET.test(n) || n === '.' || n === '..');
  if (bad !== undefined || names.length < 10) throw imageError('EBUILD', `unexpected output from ${busybox} --list: '${bad ?? out}'`, { hint: "the profile's busybox package changed: report it" });
  return names;
}

/** Executables of one extracted package, flattened into bin/ under the profile's names. */
async function copyExecutables(pkgRoot: string, bin: string, profile: Profile): Promise<void> {
  for (const sub of ['bin', 'sbin', 'usr/bin', 'usr/sbin']) {
    const dir = join(pkgRoot, sub);
    for (const name of (await listDir(dir)).sort()) {
      const st = await lstat(join(dir, name));
      // symlinks would need rewriting into the prefix; the static profile ships none
      if (!st.isFile() || !(st.mode & 0o111)) continue;
      const dest = join(bin, profile.renames[name] ?? name);
      if (await exists(dest)) throw imageError('EBUILD', `two packages provide bin/${profile.renames[name] ?? name}`, { hint: 'leave one of them out of --add or packages.txt' });
      await copyFile(join(dir, name), dest);
    }
  }
}

export interface Manifest {
  profile: string;
  packages: { name: string; version: string }[];
  tools: string[];
  built: string;
  /** --add packages, when there were some. */
  added?: string[];
  /** --from-dir, when used: the digest of its contents (dirDigest) and its file count. */
  fromDir?: { sha256: string; files: number };
}

export interface LayoutOptions {
  /** Empty directory that becomes /dev/crashcart. */
  root: string;
  /** One directory per package, each the result of `dpkg -x`. */
  extracted: { deb: DebInfo; dir: string }[];
  profile: Profile;
  epoch: number;
  /** Packages whose executables go into bin/ (the profile's and --add); default all. */
  toolPackages?: string[];
  /** --add packages (for the manifest). */
  added?: string[];
  /** --from-dir: copied as it is over the profile's tree. */
  fromDir?: { path: string; sha256: string; files: number };
  progress?: (line: string) => void;
}

/** Runs bin/bash of the tree on the host: through the tree's own loader when relocated. */
async function checkBash(root: string, relocated: boolean): Promise<void> {
  const bash = join(root, 'bin', 'bash');
  const [file, args] = relocated
    ? [join(root, 'lib', 'ld-linux-x86-64.so.2'), ['--library-path', join(root, 'lib'), bash, '--norc', '--noprofile', '-c', 'echo ok']]
    : [bash, ['--norc', '--noprofile', '-c', 'echo ok']];
  try {
    await execa(file, args, { stdin: 'ignore', env: { PATH: '/usr/bin:/bin' }, extendEnv: false });
  } catch (err) {
    throw imageError('EBUILD', `patched bash does not run: ${causeLine(err)}`, { hint: 'run with -v for the whole output', cause: err });
  }
}

/** Builds the tree and returns its manifest (also written to MANIFEST.json). */
export async function layoutTree(opts: LayoutOptions): Promise<Manifest> {
  const { root, profile } = opts;
  const bin = join(root, 'bin');
  const etc = join(root, 'etc');
  await mkdir(bin, { recursive: true });
  await mkdir(etc, { recursive: true });

  const relocated = profile.kind === 'relocated';
  const tools = opts.toolPackages ?? opts.extracted.map(({ deb }) => deb.name);
  const pkgs = opts.extracted.map(({ deb, dir }) => ({ name: deb.name, dir, tools: tools.includes(deb.name), added: opts.added?.includes(deb.name) ?? false }));
  if (relocated) await flattenRelocated(root, pkgs, profile);
  else for (const { dir } of opts.extracted) await copyExecutables(dir, bin, profile);
  for (const name of profile.required) {
    if (!(await exists(join(bin, name)))) throw imageError('EBUILD', `no package of profile '${profile.name}' provides bin/${name}`, { hint: "run 'apt-get update': the host's package lists may be out of date" });
  }

  await patchBash(join(bin, 'bash'));
  if (!(await exists(join(bin, 'sh')))) await symlink('bash', join(bin, 'sh'));
  // every name still missing is a busybox applet, except those no toolkit should have
  for (const name of await busyboxApplets(join(bin, 'busybox'))) {
    if (!(await exists(join(bin, name))) && !droppedTool(name)) await symlink('busybox', join(bin, name));
  }
  if (relocated) await finishRelocated(root, pkgs, opts.progress ?? (() => {}));

  await writeFile(join(etc, 'bashrc'), profile.bashrc);
  await writeFile(join(etc, 'bash_logout'), '');
  for (const p of BASH_PATCHES) await symlink(p.target, join(root, p.to.slice(PREFIX.length + 1)));
  // the profile's own files (images/<name>/files/), then --from-dir, over everything else
  const files = join(profile.dir, 'files');
  if (await exists(files)) await overlay(files, root);
  if (opts.fromDir) await overlay(opts.fromDir.path, root);
  await checkNeeded(root);

  // the binary must run at all; the patched paths do not exist on the host, which is fine
  await checkBash(root, relocated);

  const manifest: Manifest = {
    profile: profile.name,
    packages: opts.extracted.map(({ deb }) => ({ name: deb.name, version: deb.version })),
    tools: (await readdir(bin)).sort(),
    built: new Date(opts.epoch * 1000).toISOString(),
    ...(opts.added?.length ? { added: opts.added } : {}),
    ...(opts.fromDir ? { fromDir: { sha256: opts.fromDir.sha256, files: opts.fromDir.files } } : {}),
  };
  await writeFile(join(root, 'MANIFEST.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/**
 * Fixed modes (independent of umask and of the packages' own) and mtimes/atimes clamped to
 * `epoch`, so the same inputs make the same image.
 */
export async function normalizeTree(root: string, epoch: number): Promise<void> {
  const walk = async (path: string): Promise<void> => {
    const st = await lstat(path);
    if (st.isDirectory()) {
      for (const name of await readdir(path)) await walk(join(path, name));
      await chmod(path, 0o755);
    } else if (st.isFile()) {
      await chmod(path, st.mode & 0o111 ? 0o755 : 0o644);
    }
    // after the children: writing into a directory updates its mtime
    await lutimes(path, epoch, epoch);
  };
  await walk(root);
}
