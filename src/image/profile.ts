// A toolkit profile: the Debian packages it is made of and the files under images/<name>/.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type ProfileName = 'static';

export const PROFILES: readonly ProfileName[] = ['static'];

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
}

const LAYOUT: Record<ProfileName, Pick<Profile, 'renames' | 'required'>> = {
  static: { renames: { 'bash-static': 'bash' }, required: ['bash', 'busybox'] },
};

let root: string | undefined;

/** The directory holding crashcart's package.json; works from dist/ and from src/. */
export function projectRoot(): string {
  if (root) return root;
  for (let d = dirname(fileURLToPath(import.meta.url)); d !== dirname(d); d = dirname(d)) {
    const pkg = join(d, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'crashcart') return (root = d);
  }
  throw new Error(`crashcart package.json not found above ${fileURLToPath(import.meta.url)}`);
}

/** Package names from packages.txt: one a line, '#' starts a comment. */
export function parsePackageList(text: string): string[] {
  const names: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    // Debian policy: lowercase letters, digits, + - . ; at least two characters
    if (!/^[a-z0-9][a-z0-9+.-]+$/.test(line)) throw new Error(`invalid package name '${line}' in packages.txt`);
    if (!names.includes(line)) names.push(line);
  }
  return names;
}

export async function loadProfile(name: ProfileName): Promise<Profile> {
  if (!PROFILES.includes(name)) throw new Error(`unknown image profile '${name}' (known: ${PROFILES.join(', ')})`);
  const dir = join(projectRoot(), 'images', name);
  const packages = parsePackageList(await readFile(join(dir, 'packages.txt'), 'utf8'));
  if (!packages.length) throw new Error(`${join(dir, 'packages.txt')} lists no packages`);
  const bashrc = await readFile(join(dir, 'bashrc'), 'utf8');
  return { name, dir, packages, bashrc, ...LAYOUT[name] };
}

/** Bumped whenever the tree layout changes, so cached images of an older layout are rebuilt. */
export const LAYOUT_VERSION = 1;

/** What an image is made from: a cached image whose recipe differs is rebuilt. */
export function recipeDigest(profile: Pick<Profile, 'name' | 'packages' | 'bashrc'>): string {
  return createHash('sha256')
    .update(JSON.stringify({ layout: LAYOUT_VERSION, profile: profile.name, packages: profile.packages, bashrc: profile.bashrc }))
    .digest('hex');
}
