// Lays out a relocated toolkit: Debian's dynamic binaries and their libraries under the
// prefix, each executable patched to load the prefix's ld.so and libraries (RPATH), so
// nothing is loaded from the container's /lib, /usr or /etc.
import { copyFile, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, join, posix } from 'node:path';
import { execa } from 'execa';
import { causeLine, imageError } from './errors.js';
import { copyData, patchSearchPaths } from './data.js';
import { readElf, symbolExtent, type ElfInfo } from './elf.js';
import { INTERP, PREFIX, RPATH } from './prefix.js';
import type { Profile } from './profile.js';
import { eachLimit, exists, listDir } from './files.js';

/**
 * Dependencies never taken into the tree: tools' own packages never depend on them for a
 * library (a library they do need fails the DT_NEEDED check instead). Perl and Python are
 * big and would need their own relocation; PAM and the login stack make no sense in a
 * debugging shell; libelogind0 collides with libsystemd0; the rest are packaging machinery.
 * The embeddable interpreters themselves (libperl5.36, libpython3.11: one shared object
 * each) are allowed: perf links both, and starts neither unless asked to run a script.
 */
const EXCLUDED = [
  /^perl(-base|-modules-.*)?$/, /^libperl(?!5\.\d+$)/, /-perl$/, /^python/, /^libpython(?!3\.\d+$)/,
  /^libpam/, /^passwd$/, /^login$/, /^adduser$/, /^libelogind/,
  /^c?debconf$/, /^dpkg$/, /^install-info$/, /^init-system-helpers$/, /^ucf$/, /^usrmerge$/, /^usr-is-merged$/,
  /^base-files$/, /^debianutils$/, /^sensible-utils$/, /^readline-common$/, /^libdebuginfod-common$/,
  /^libsemanage/, /^libsepol/, /^gcc-\d+-base$/, /^openssl$/, /^tzdata$/, /^lsb-base$/, /^sysvinit-utils$/,
];

export function excludedDependency(name: string): boolean {
  return EXCLUDED.some((re) => re.test(name));
}

/**
 * Libraries loaded with dlopen(), so no DT_NEEDED names them: libgcc_s (thread
 * cancellation), libthread_db (gdb), libresolv and the NSS modules (name lookups).
 */
const DLOPENED = ['libgcc_s.so.1', 'libthread_db.so.1', 'libresolv.so.2', 'libnss_files.so.2', 'libnss_dns.so.2', 'libnuma.so.1'];

/**
 * Development names that programs dlopen() first: procps' libproc2 tries libnuma.so before
 * libnuma.so.1, and a miss would be looked up in the container's library path.
 */
const DLOPEN_ALIASES: Record<string, string> = { 'libnuma.so': 'libnuma.so.1' };

/** Executables that make no sense or do harm in the toolkit. */
const DROPPED = new Set([
  // the system loader's paths are compiled in
  'ldd', 'ldconfig', 'ld.so', 'iconvconfig', 'localedef', 'sotruss', 'xtrace', 'catchsegv', 'memusage', 'memusagestat', 'mtrace',
  'tzselect', 'zic', 'update-ca-certificates', 'helpztags',
  // PAM, logins and terminals
  'login', 'su', 'sulogin', 'nologin', 'runuser', 'newgrp', 'sg', 'chfn', 'chsh', 'passwd', 'vipw', 'vigr', 'agetty', 'getty',
  'chpasswd', 'chage', 'expiry', 'ctrlaltdel',
  // daemons
  'arpd', 'rtmon', 'rtacct', 'uuidd', 'ldattach',
  // busybox applets: daemons, init and power, package managers, filesystem makers
  'init', 'linuxrc', 'halt', 'poweroff', 'reboot', 'run-init', 'switch_root', 'start-stop-daemon',
  'httpd', 'telnetd', 'udhcpd', 'dhcprelay', 'dumpleases', 'crond', 'crontab', 'syslogd', 'klogd', 'acpid', 'inetd',
  'ntpd', 'watchdog', 'svc', 'svok', 'mdev', 'uevent', 'dpkg', 'dpkg-deb', 'rpm', 'rpm2cpio', 'mkdosfs', 'mke2fs',
  'mkpasswd', 'bashbug',
]);
const DROPPED_PATTERN = /^(mkfs|fsck|mkswap|swaplabel)(\.|$)/;

export function droppedTool(name: string): boolean {
  return DROPPED.has(name) || DROPPED_PATTERN.test(name);
}

/** Names Debian makes with update-alternatives (dpkg -x makes none): name -> candidates. */
const ALTERNATIVES: [string, string[]][] = [
  ['awk', ['mawk', 'gawk']],
  ['vi', ['vim.tiny', 'vim.basic', 'nvi']],
  ['vim', ['vim.tiny', 'vim.basic']],
  ['view', ['vim.tiny', 'vim.basic']],
  ['nc', ['nc.openbsd', 'nc.traditional']],
  ['netcat', ['nc.openbsd', 'nc.traditional']],
  ['editor', ['nano', 'vim.tiny']],
  ['pager', ['less']],
  ['sh', ['bash']],
  // iptables' nf_tables flavour, as Debian chooses it (the legacy one when that is all there is)
  ...['iptables', 'ip6tables', 'arptables', 'ebtables'].flatMap((t) =>
    ['', '-save', '-restore'].map((s): [string, string[]] => [`${t}${s}`, [`${t}-nft${s}`, `${t}-legacy${s}`]])),
  // traceroute names its programs *.db; busybox would otherwise fill traceroute in
  ...['traceroute', 'traceroute6', 'lft', 'traceproto', 'tcptraceroute'].map((t): [string, string[]] => [t, [`${t}.db`]]),
  ['sar', ['sar.sysstat']],
];

/**
 * Libraries Debian puts in a subdirectory and links from lib/ with update-alternatives
 * (libblas3 for nmap's liblinear): name in lib/ -> candidates below the library directory.
 */
const LIB_ALTERNATIVES: [string, string[]][] = [
  ['libblas.so.3', ['blas/libblas.so.3', 'openblas-pthread/libblas.so.3', 'atlas/libblas.so.3']],
  ['liblapack.so.3', ['lapack/liblapack.so.3', 'openblas-pthread/liblapack.so.3', 'atlas/liblapack.so.3']],
];

/**
 * Directories of plugins a library loads with dlopen() from a path compiled into it (which
 * data.ts points into the prefix): lib/<name>/, kept when `loader` is. iptables' and
 * nft's extensions; OpenSSL's providers (legacy) and engines.
 */
export const MODULE_DIRS = [
  { name: 'xtables', loader: 'libxtables.so.12' },
  { name: 'ossl-modules', loader: 'libcrypto.so.3' },
  { name: 'engines-3', loader: 'libcrypto.so.3' },
] as const;

/** Helper programs outside bin/ that a tool runs by a compiled-in path (data.ts points it here). */
const HELPERS = [{ pkg: 'sysstat', path: 'usr/lib/sysstat/sadc' }];

const BIN_DIRS = ['bin', 'sbin', 'usr/bin', 'usr/sbin'];
const LIB_DIRS = ['lib/x86_64-linux-gnu', 'usr/lib/x86_64-linux-gnu'];

export interface Extracted {
  name: string;
  /** The result of `dpkg -x`. */
  dir: string;
  /** Whether its executables go into bin/ (the profile's and --add packages), or only its libraries. */
  tools: boolean;
  /** An --add package: all its executables are kept, whatever the profile's tools.txt says. */
  added?: boolean;
}

/** Where a symlink at `path` (package-relative, '/'-separated) points, package-relative. */
function linkTarget(path: string, target: string): string {
  return posix.normalize(target.startsWith('/') ? target.slice(1) : posix.join(posix.dirname(path), target));
}

/**
 * bin/: every executable of the tool packages under one flat directory, first package wins a
 * name. Symlinks to other executables become relative links within bin/; others are dropped.
 */
async function flattenBin(pkgs: Extracted[], bin: string, keep: (name: string, pkg: Extracted) => boolean): Promise<void> {
  const links: [string, string][] = [];
  const binPaths = new Map<string, string>(); // package-relative path -> bin name
  for (const pkg of pkgs.filter((p) => p.tools)) {
    for (const sub of BIN_DIRS) {
      for (const name of (await listDir(join(pkg.dir, sub))).sort()) {
        if (!keep(name, pkg)) continue;
        const st = await lstat(join(pkg.dir, sub, name));
        binPaths.set(`${sub}/${name}`, name);
        if (await exists(join(bin, name))) continue;
        if (st.isSymbolicLink()) links.push([name, linkTarget(`${sub}/${name}`, await readlink(join(pkg.dir, sub, name)))]);
        else if (st.isFile() && st.mode & 0o111) await copyFile(join(pkg.dir, sub, name), join(bin, name));
      }
    }
  }
  for (const [name, target] of links) {
    // /usr/bin and /bin are one directory on a merged-/usr system
    const to = binPaths.get(target) ?? binPaths.get(target.replace(/^usr\//, '')) ?? binPaths.get(`usr/${target}`);
    if (to === undefined || to === name || (await exists(join(bin, name)))) continue;
    if (await exists(join(bin, to))) await symlink(to, join(bin, name));
  }
}

/**
 * lib/: every shared object of every package (pruned to what is used later), the libraries
 * of LIB_ALTERNATIVES, and the plugin directories of MODULE_DIRS.
 */
async function flattenLib(pkgs: Extracted[], lib: string): Promise<void> {
  for (const pkg of pkgs) {
    for (const sub of LIB_DIRS) {
      for (const name of (await listDir(join(pkg.dir, sub))).sort()) {
        if (!/\.so(\.|$)/.test(name) || (await exists(join(lib, name)))) continue;
        const src = join(pkg.dir, sub, name);
        const st = await lstat(src);
        if (st.isSymbolicLink()) {
          const target = await readlink(src);
          // links between libraries stay within lib/
          await symlink(basename(target), join(lib, name));
        } else if (st.isFile()) {
          await copyFile(src, join(lib, name));
        }
      }
    }
  }
  for (const [name, candidates] of LIB_ALTERNATIVES) {
    if (await exists(join(lib, name))) continue;
    const found = await firstExisting(pkgs.flatMap((p) => LIB_DIRS.flatMap((sub) => candidates.map((c) => join(p.dir, sub, c)))));
    if (found) await copyFile(found, join(lib, name)); // through the package's own links
  }
  for (const { name } of MODULE_DIRS) {
    for (const pkg of pkgs) {
      for (const sub of LIB_DIRS) {
        const dir = join(pkg.dir, sub, name);
        for (const f of (await listDir(dir)).sort()) {
          if (!f.endsWith('.so') || (await exists(join(lib, name, f)))) continue;
          const st = await lstat(join(dir, f));
          if (!st.isFile()) continue;
          await mkdir(join(lib, name), { recursive: true });
          await copyFile(join(dir, f), join(lib, name, f));
        }
      }
    }
  }
}

async function firstExisting(paths: string[]): Promise<string | undefined> {
  for (const p of paths) if (await exists(p)) return p;
  return undefined;
}

/** The interpreter line of a script, or undefined. */
function shebang(head: Buffer): string | undefined {
  if (head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  const end = head.indexOf(0x0a);
  return head.toString('latin1', 2, end === -1 ? head.length : end).trim();
}

const SHELL_SHEBANG = /^(\/bin\/sh|\/bin\/bash|\/usr\/bin\/env\s+(?:bash|sh))(\s|$)/;

/**
 * Scripts: sh and bash ones run the toolkit's shell; others (perl, python, ...) cannot run
 * from the toolkit and are dropped.
 */
async function fixScripts(bin: string): Promise<void> {
  for (const name of (await readdir(bin)).sort()) {
    const path = join(bin, name);
    const st = await lstat(path);
    if (!st.isFile()) continue;
    const buf = await readFile(path);
    const line = shebang(buf);
    if (line === undefined) continue;
    const m = SHELL_SHEBANG.exec(line);
    if (!m) {
      await rm(path);
      continue;
    }
    const shell = m[1]!.endsWith('bash') ? 'bash' : 'sh';
    const rest = line.slice(m[1]!.length);
    const nl = buf.indexOf(0x0a);
    const body = nl === -1 ? Buffer.alloc(0) : buf.subarray(nl);
    await writeFile(path, Buffer.concat([Buffer.from(`#!${PREFIX}/bin/${shell}${rest}`), body]));
  }
}

async function elfOf(path: string): Promise<ElfInfo | undefined> {
  const st = await lstat(path);
  if (!st.isFile()) return undefined;
  return readElf(await readFile(path), path);
}

/** Runs `fn` over `items`, a few at a time. */
/**
 * Keeps in lib/ only what the ELF files of `dirs` need (DT_NEEDED, transitively, through
 * symlinks) plus DLOPENED and the loader; fails when a needed library is not there.
 */
async function pruneLib(root: string, dirs: string[]): Promise<void> {
  const lib = join(root, 'lib');
  const keep = new Set<string>(['ld-linux-x86-64.so.2']);
  const queue: { name: string; by: string }[] = [];
  const need = (name: string, by: string) => {
    if (!keep.has(name)) {
      keep.add(name);
      queue.push({ name, by });
    }
  };
  for (const dir of dirs) {
    for (const name of (await listDir(join(root, dir))).sort()) {
      const info = await elfOf(join(root, dir, name));
      for (const n of info?.needed ?? []) need(n, `${dir}/${name}`);
    }
  }
  for (const [alias, target] of Object.entries(DLOPEN_ALIASES)) {
    if ((await exists(join(lib, target))) && !(await exists(join(lib, alias)))) await symlink(target, join(lib, alias));
  }
  for (const n of [...DLOPENED, ...Object.keys(DLOPEN_ALIASES)]) if (await exists(join(lib, n))) need(n, 'dlopen');
  const follow = async () => {
    while (queue.length) {
      const { name, by } = queue.shift()!;
      const path = join(lib, name);
      if (!(await exists(path))) {
        throw imageError('EBUILD', `${by} needs ${name}, which no package of the image provides`, { hint: 'add its package with --add or to packages.txt' });
      }
      const st = await lstat(path);
      if (st.isSymbolicLink()) {
        need(await readlink(path), `lib/${name}`);
        continue;
      }
      for (const n of (await elfOf(path))?.needed ?? []) need(n, `lib/${name}`);
    }
  };
  await follow();
  // a plugin directory stays with the library that loads it, and brings what its plugins need
  for (const { name, loader } of MODULE_DIRS) {
    if (!keep.has(loader) || !(await exists(join(lib, name)))) continue;
    keep.add(name);
    for (const f of (await listDir(join(lib, name))).sort()) {
      for (const n of (await elfOf(join(lib, name, f)))?.needed ?? []) need(n, `lib/${name}/${f}`);
    }
    await follow();
  }
  for (const name of await readdir(lib)) {
    if (!keep.has(name)) await rm(join(lib, name), { recursive: true });
  }
}

/**
 * Fails unless every DT_NEEDED of every ELF file in bin/, libexec/ and lib/ is in lib/, so no
 * tool can fall back to the container's libraries.
 */
export async function checkNeeded(root: string): Promise<void> {
  const lib = join(root, 'lib');
  for (const dir of ['bin', 'libexec', 'lib', ...MODULE_DIRS.map((m) => `lib/${m.name}`)]) {
    for (const name of (await listDir(join(root, dir))).sort()) {
      const info = await elfOf(join(root, dir, name));
      if (info?.interp !== undefined && dir !== 'lib' && info.interp !== INTERP) {
        throw imageError('EBUILD', `${dir}/${name} loads ${info.interp}, not the toolkit's ${INTERP}`, { hint: 'programs of --from-dir must be built for the /dev/crashcart prefix (its loader and lib/)' });
      }
      if (info?.interp === INTERP && !(await exists(join(lib, 'ld-linux-x86-64.so.2')))) {
        throw imageError('EBUILD', `${dir}/${name} needs lib/ld-linux-x86-64.so.2, which is not in the image`, { hint: 'programs of --from-dir must be built for the /dev/crashcart prefix (its loader and lib/)' });
      }
      for (const n of info?.needed ?? []) {
        if (!(await exists(join(lib, n)))) throw imageError('EBUILD', `${dir}/${name} needs ${n}, which is not in lib/`, { hint: 'add the package that has it with --add, or put it into lib/ of --from-dir' });
      }
    }
  }
}

async function patchelf(paths: string[]): Promise<void> {
  try {
    await execa('patchelf', ['--set-interpreter', INTERP, '--force-rpath', '--set-rpath', RPATH, ...paths], { stdin: 'ignore' });
  } catch (err) {
    throw imageError('EBUILD', `patchelf ${paths.length === 1 ? paths[0] : `${paths[0]} (and ${paths.length - 1} more)`} failed: ${causeLine(err)}`, { hint: 'run with -v for the whole output', cause: err });
  }
}

/** Patches every dynamic executable of bin/ and libexec/ (static ones and libraries stay). */
async function relocateExecutables(root: string): Promise<number> {
  const targets: string[] = [];
  for (const dir of ['bin', 'libexec']) {
    for (const name of (await listDir(join(root, dir))).sort()) {
      const info = await elfOf(join(root, dir, name));
      if (info?.interp !== undefined) targets.push(join(root, dir, name));
    }
  }
  // one patchelf per batch: a process per file costs seconds on a busy machine
  const batches: string[][] = [];
  for (let i = 0; i < targets.length; i += 40) batches.push(targets.slice(i, i + 40));
  await eachLimit(batches, Math.min(8, availableParallelism()), patchelf);
  return targets.length;
}

/** Copies a tree as it is (files, directories, symlinks), replacing what is in the way. */
export async function overlay(src: string, dest: string): Promise<void> {
  const st = await lstat(src);
  if (st.isDirectory()) {
    const d = await lstat(dest).catch(() => undefined);
    if (d && !d.isDirectory()) await rm(dest, { force: true });
    await mkdir(dest, { recursive: true });
    for (const n of (await readdir(src)).sort()) await overlay(join(src, n), join(dest, n));
    return;
  }
  await rm(dest, { recursive: true, force: true });
  if (st.isSymbolicLink()) await symlink(await readlink(src), dest);
  else if (st.isFile()) await copyFile(src, dest);
  else throw imageError('EBUILD', `unsupported file type at ${src}`, { hint: 'an image holds files, directories and symlinks only' });
}

/**
 * First half of a relocated layout: the tool packages' executables in bin/ (renamed, with
 * alternatives links and the profile's wrappers), every library in lib/. bin/ and etc/ exist.
 */
export async function flattenRelocated(root: string, pkgs: Extracted[], profile: Profile): Promise<void> {
  const bin = join(root, 'bin');
  const lib = join(root, 'lib');
  const libexec = join(root, 'libexec');
  for (const d of [lib, libexec]) await mkdir(d, { recursive: true });

  const allowed = profile.tools ? new Set(profile.tools) : undefined;
  const keep = (name: string, pkg: Extracted) =>
    !droppedTool(name) && (allowed === undefined || pkg.added === true || allowed.has(name) || name === 'busybox' || name === 'bash');
  await flattenBin(pkgs, bin, keep);
  for (const [from, to] of Object.entries(profile.renames)) {
    if ((await exists(join(bin, from))) && !(await exists(join(bin, to)))) await rename(join(bin, from), join(bin, to));
  }
  await flattenLib(pkgs, lib);
  await fixScripts(bin);
  for (const [name, candidates] of ALTERNATIVES) {
    if (await exists(join(bin, name))) continue;
    for (const c of candidates) {
      if (await exists(join(bin, c))) {
        await symlink(c, join(bin, name));
        break;
      }
    }
  }

  // Programs other programs start from a directory of their own, into libexec/
  for (const { pkg, path } of HELPERS) {
    const from = pkgs.find((p) => p.name === pkg && p.tools);
    if (from && (await exists(join(from.dir, path))) && !(await exists(join(libexec, basename(path))))) await copyFile(join(from.dir, path), join(libexec, basename(path)));
  }

  // Wrappers: images/<profile>/wrap/NAME replaces bin/NAME, which moves to libexec/NAME.
  const wrapDir = join(profile.dir, 'wrap');
  for (const name of (await listDir(wrapDir)).sort()) {
    if (!(await exists(join(bin, name)))) continue;
    await rename(join(bin, name), join(libexec, name));
    await copyFile(join(wrapDir, name), join(bin, name));
  }
}

/**
 * Data that no program of the toolkit reads, zeroed in place: mke2fs stores no blocks for
 * zeros, so it costs nothing in the image. bind's libisc (dig, host, nslookup) starts
 * libxml2, which links ICU, whose 30 MB of tables only libxml2's conversion of unusual
 * character sets would open; without them ICU says its data is missing.
 */
const HOLLOWED = [{ file: /^libicudata\.so\.\d+\.\d+$/, symbol: /^icudt\d+_dat$/ }];

async function hollowData(lib: string): Promise<void> {
  for (const name of (await listDir(lib)).sort()) {
    const h = HOLLOWED.find((x) => x.file.test(name));
    if (!h || !(await lstat(join(lib, name))).isFile()) continue;
    const buf = await readFile(join(lib, name));
    const extent = symbolExtent(buf, h.symbol);
    if (!extent) throw imageError('EBUILD', `lib/${name} has no symbol matching ${h.symbol}, so its data cannot be left out`, { hint: 'its package changed: report it' });
    buf.fill(0, extent.offset, extent.offset + extent.size);
    await writeSparse(join(lib, name), buf);
  }
}

/** Writes `buf` to `path` leaving holes where whole 64 KiB chunks are zero. */
async function writeSparse(path: string, buf: Buffer): Promise<void> {
  const zero = Buffer.alloc(65536);
  const fh = await open(path, 'w');
  try {
    for (let at = 0; at < buf.length; at += zero.length) {
      const part = buf.subarray(at, at + zero.length);
      if (!part.equals(zero.subarray(0, part.length))) await fh.write(part, 0, part.length, at);
    }
    await fh.truncate(buf.length);
  } finally {
    await fh.close();
  }
}

/**
 * Second half, once bin/ is complete: lib/ pruned to what bin/ and libexec/ load, every
 * dynamic executable pointed at the prefix's loader and libraries, the data they read.
 */
export async function finishRelocated(root: string, pkgs: Extracted[], say: (line: string) => void): Promise<void> {
  say('pruning libraries to what the tools load');
  await pruneLib(root, ['bin', 'libexec']);
  await hollowData(join(root, 'lib'));
  say('relocating executables into the prefix');
  await relocateExecutables(root);
  await copyData(pkgs, root);
  await patchSearchPaths(root);
}
