// A toolkit profile: the Debian packages it is made of and the files under images/<name>/.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { imageError } from './errors.js';
import { PROFILES, type ProfileName } from './profile-names.js';

export { DEFAULT_PROFILE, PROFILES, type ProfileName } from './profile-names.js';

export interface Profile {
  name: ProfileName;
  /** images/<name>/ in the installed package. */
  dir: string;
  /** Debian package names, in the order of packages.txt. */
  packages: string[];
  /** Contents of images/<name>/bashrc (becomes etc/bashrc). */
  bashrc: string;
  /** Executables renamed while flattening into bin/ (Debian's name -> toolkit name). */
  renames: Record<string, string>;
  /** Every one of these must end up in bin/ or the build fails. */
  required: string[];
  /**
   * 'static': statically linked packages, executables copied as they are. 'relocated':
   * dynamic Debian binaries with their library closure, patched to load from the prefix.
   */
  kind: 'static' | 'relocated';
  /** tools.txt: the only executables kept from the packages (busybox fills the rest); all when absent. */
  tools?: string[];
  /** sha256 of every other file of images/<name>/ (wrappers, files/), by relative path. */
  files: Record<string, string>;
}

const LAYOUT: Record<ProfileName, Pick<Profile, 'renames' | 'required' | 'kind'>> = {
  static: { kind: 'static', renames: { 'bash-static': 'bash' }, required: ['bash', 'busybox'] },
  full: {
    kind: 'relocated',
    // GNU tar runs gzip, bzip2 and xz through /bin/sh, which most containers lack: busybox's
    // tar (compression built in) is `tar`, GNU tar stays as `gtar`.
    renames: { tar: 'gtar' },
    required: ['bash', 'busybox', 'strace', 'ltrace', 'gdb', 'lsof', 'ss', 'ip', 'ps', 'top', 'nsenter', 'curl', 'tcpdump', 'vi', 'vim', 'awk', 'nc', 'less', 'htop', 'file'],
  },
  minimal: { kind: 'relocated', renames: {}, required: ['bash', 'busybox', 'strace', 'lsof', 'ss', 'ip', 'ps', 'top', 'less', 'nsenter'] },
};

let root: string | undefined;

/** The directory holding crashcart's package.json; works from dist/ and from src/. */
export function projectRoot(): string {
  if (root) return root;
  for (let d = import.meta.dirname; d !== dirname(d); d = dirname(d)) {
    const pkg = join(d, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'crashcart') return (root = d);
  }
  throw imageError('EBUILD', `crashcart's package.json not found above ${import.meta.filename}`, { hint: 'reinstall crashcart: its files are incomplete' });
}

/** Package names from packages.txt: one a line, '#' starts a comment. */
export function parsePackageList(text: string): string[] {
  const names: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    // Debian policy: lowercase letters, digits, + - . ; at least two characters
    if (!/^[a-z0-9][a-z0-9+.-]+$/.test(line)) throw imageError('EBUILD', `invalid package name '${line}' in packages.txt`, { hint: 'Debian names have lowercase letters, digits, + - . only' });
    if (!names.includes(line)) names.push(line);
  }
  return names;
}

export async function loadProfile(name: ProfileName): Promise<Profile> {
  if (!PROFILES.includes(name)) throw imageError('EBUILD', `unknown image profile '${name}'`, { hint: `choose one of ${PROFILES.join(', ')}` });
  const dir = join(projectRoot(), 'images', name);
  const packages = parsePackageList(await readFile(join(dir, 'packages.txt'), 'utf8'));
  if (!packages.length) throw imageError('EBUILD', `${join(dir, 'packages.txt')} lists no packages`, { hint: 'name at least one Debian package there' });
  const bashrc = await readFile(join(dir, 'bashrc'), 'utf8');
  const files = await hashFiles(dir, ['packages.txt', 'bashrc']);
  const toolsText = await readFile(join(dir, 'tools.txt'), 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  const tools = toolsText === undefined ? undefined : parseNameList(toolsText, 'tools.txt');
  return { name, dir, packages, bashrc, files, ...(tools ? { tools } : {}), ...LAYOUT[name] };
}

/** Tool names from tools.txt: one a line, '#' starts a comment. */
export function parseNameList(text: string, file: string): string[] {
  const names: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    if (!/^[A-Za-z0-9_.+-]+$/.test(line)) throw imageError('EBUILD', `invalid name '${line}' in ${file}`, { hint: 'names have letters, digits and _ . + - only' });
    if (!names.includes(line)) names.push(line);
  }
  return names;
}

/** sha256 of every file below `dir` (symlinks by their target), except the top-level `skip`. */
export async function hashFiles(dir: string, skip: string[] = []): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      if (!rel && skip.includes(name)) continue;
      const st = await lstat(join(dir, r));
      if (st.isDirectory()) await walk(r);
      else if (st.isSymbolicLink()) out[r] = `link:${await readlink(join(dir, r))}`;
      else out[r] = `${st.mode & 0o111 ? 'x' : '-'}${createHash('sha256').update(await readFile(join(dir, r))).digest('hex')}`;
    }
  };
  await walk('');
  return out;
}

/** Bumped whenever the tree layout changes, so cached images of an older layout are rebuilt. */
export const LAYOUT_VERSION = 2;

/** What goes into an image besides its profile. */
export interface Extras {
  /** --add: more Debian packages, relocated with their libraries. */
  add?: string[];
  /** --from-dir: hashFiles() digest of a directory copied under the prefix. */
  fromDir?: string;
}

/**
 * What an image is made from: a cached image whose recipe differs is rebuilt. Keys appear
 * only when they have content, so a profile without them keeps the digest it always had.
 */
export function recipeDigest(profile: Pick<Profile, 'name' | 'packages' | 'bashrc'> & Partial<Pick<Profile, 'files' | 'tools'>>, extras: Extras = {}): string {
  const files = profile.files && Object.keys(profile.files).length ? { files: profile.files } : {};
  const tools = profile.tools ? { tools: profile.tools } : {};
  const add = extras.add?.length ? { add: extras.add } : {};
  const fromDir = extras.fromDir ? { fromDir: extras.fromDir } : {};
  return createHash('sha256')
    .update(JSON.stringify({ layout: LAYOUT_VERSION, profile: profile.name, packages: profile.packages, bashrc: profile.bashrc, ...files, ...tools, ...add, ...fromDir }))
    .digest('hex');
}

/** One digest for a directory's contents (names, types, exec bits, data). */
export async function dirDigest(dir: string): Promise<string> {
  return createHash('sha256').update(JSON.stringify(await hashFiles(dir))).digest('hex');
}

const DEBIAN_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/** --add names, checked like packages.txt lines; the profile's own are dropped. */
export function addedPackages(add: string[] | undefined, profilePackages: string[]): string[] {
  if (!add?.length) return [];
  const bad = add.find((a) => !DEBIAN_NAME.test(a.trim()));
  if (bad !== undefined) throw imageError('EBUILD', `invalid package name '${bad}' for --add`, { hint: 'Debian names have lowercase letters, digits, + - . only' });
  return parsePackageList(add.join('\n')).filter((n) => !profilePackages.includes(n));
}

/**
 * The packages of `crashcart --add A,B --add C TARGET`: split at commas, checked, the
 * profile's own dropped, sorted, so that the same set always names the same image.
 */
export function attachAdds(add: string[], profilePackages: string[]): string[] {
  return addedPackages(add.flatMap((a) => a.split(',').map((n) => n.trim())), profilePackages).sort();
}

/**
 * The cache name of the image made of `profile` plus the packages `add` (attachAdds):
 * `full+<the first 12 hex digits of its recipe digest>`. It changes with the profile's
 * recipe, so an image made by another crashcart version is never taken for this one.
 */
export function derivedImageName(profile: Parameters<typeof recipeDigest>[0], add: string[]): string {
  return `${profile.name}+${recipeDigest(profile, { add }).slice(0, 12)}`;
}
