// Finds the image to graft: the one the user named, or the cached default, built on first use.
// Every attach runs this: it reads the cache's records (synchronously: node:fs/promises alone
// loads streams and readline) and hashes nothing.
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BuildResult } from './build.js';
import { cacheDir, ensureCacheDir } from './cache-dir.js';
import { imageError } from './errors.js';
import { checkExt3 } from './ext3-check.js';
import { DEFAULT_PROFILE, type ProfileName } from './profile-names.js';
import { findCached, imagesDir, trustedImage } from './store.js';

/** The profiles' recipe digests, computed when the bundle was built (scripts/bundle.ts). */
declare const CRASHCART_RECIPES: Record<string, string> | undefined;

/** recipeDigest() of a profile as it is now: from the build, else by reading its files. */
async function currentRecipe(profile: ProfileName): Promise<string> {
  const built = typeof CRASHCART_RECIPES === 'undefined' ? undefined : CRASHCART_RECIPES[profile];
  if (built !== undefined) return built;
  const { loadProfile, recipeDigest } = await import('./profile.js');
  return recipeDigest(await loadProfile(profile));
}

let tmpCount = 0;

export { cacheDir, ensureCacheDir } from './cache-dir.js';

/** The cached image of a profile: `${cacheDir()}/images/<profile>.img`; the default is full's. */
export function defaultImagePath(profile: ProfileName = DEFAULT_PROFILE): string {
  return join(cacheDir(), 'images', `${profile}.img`);
}

/** Written next to a cached image as `${image}.json`. */
export interface Sidecar {
  sha256: string;
  profile: ProfileName;
  packages: { name: string; version: string }[];
  /** Wall-clock time of the build (the files inside carry the fixed source date). */
  built: string;
  sizeBytes: number;
  /** recipeDigest() of the profile the image was made from. */
  recipe: string;
  /** The packages an image of `crashcart --add` has on top of its profile. */
  added?: string[];
}

export async function writeSidecar(image: string, profile: ProfileName, result: BuildResult, added: string[] = []): Promise<Sidecar> {
  const sidecar: Sidecar = {
    sha256: result.sha256,
    profile,
    packages: result.packages,
    built: new Date().toISOString(),
    sizeBytes: result.sizeBytes,
    recipe: result.recipe,
    ...(added.length ? { added } : {}),
  };
  const tmp = `${image}.json.${process.pid}.${Date.now()}.${tmpCount++}.tmp`;
  try {
    writeFileSync(tmp, `${JSON.stringify(sidecar, null, 2)}\n`);
    renameSync(tmp, `${image}.json`);
  } finally {
    rmSync(tmp, { force: true }); // gone after the rename; left only by a failure
  }
  return sidecar;
}

export async function readSidecar(image: string): Promise<Partial<Sidecar> | undefined> {
  try {
    return JSON.parse(readFileSync(`${image}.json`, 'utf8')) as Partial<Sidecar>;
  } catch {
    return undefined;
  }
}

export interface ResolveOptions {
  /** From -i or CRASHCART_IMAGE; the caller decides which wins. */
  image?: string;
  progress?: (line: string) => void;
  /** --insecure-image: use an image file a non-root user could change. */
  insecureImage?: boolean;
  /** --add: the default profile plus these Debian packages (not with `image`). */
  add?: string[];
}

/**
 * The image `image` names: a cached image (name or digest prefix, see findCached), else a file.
 * Both must pass the trust rule of store.ts unless `insecure`.
 */
async function userImage(image: string, insecure = false): Promise<string> {
  const cached = await findCached(image);
  const path = cached?.path ?? resolve(image);
  const hint = `build one with 'crashcart image build -o ${path}'`;
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (!image.includes('/') && err.code === 'ENOENT') {
      throw imageError('ENOIMAGE', `image '${image}' not found: no cached image of that name or digest and no file ${path}`, { hint: "see 'crashcart image ls'", cause: err });
    }
    throw imageError('ENOIMAGE', `image file ${path} not found: ${err.code ?? err.message}`, { hint, cause: err });
  }
  if (!st.isFile()) throw imageError('ENOIMAGE', `image file ${path} not found: it is not a regular file`, { hint });
  const real = insecure ? path : await trustedImage(path);
  await checkExt3(real);
  return real;
}

/** With CRASHCART_IMAGE_URL set, the default image is that one, pulled on first use. */
async function urlImage(url: string, opts: ResolveOptions): Promise<{ path: string; built: boolean; pulled: boolean }> {
  const sha = (process.env.CRASHCART_IMAGE_SHA256 ?? '').toLowerCase().replace(/^sha256:/, '');
  if (!/^[0-9a-f]{64}$/.test(sha)) {
    throw imageError('ENOIMAGE', 'CRASHCART_IMAGE_URL is set but CRASHCART_IMAGE_SHA256 is not a sha256 digest (64 hex digits)', { hint: "set it to the image's digest" });
  }
  const path = join(imagesDir(), `sha256-${sha}.img`);
  const ok = await checkExt3(path).then(() => true, () => false);
  if (ok) return { path: opts.insecureImage ? path : await trustedImage(path), built: false, pulled: false };
  opts.progress?.(`no cached image ${sha.slice(0, 12)}; pulling ${url}`);
  const { pullImage } = await import('./pull.js');
  const r = await pullImage({ url, sha256: sha });
  return { path: r.path, built: false, pulled: true };
}

/** Why a cached built image cannot be used as it is, or undefined when it can. */
async function staleReason(path: string, recipe: () => Promise<string>): Promise<string | undefined> {
  try {
    statSync(path);
  } catch {
    return 'no toolkit image yet';
  }
  try {
    await checkExt3(path);
  } catch (err) {
    return `cached image is damaged (${(err as Error).message})`;
  }
  const sidecar = await readSidecar(path);
  // no sidecar: someone put the file there by hand, use it as it is
  if (sidecar?.recipe !== undefined && sidecar.recipe !== (await recipe())) {
    return 'cached image was made by another crashcart version';
  }
  return undefined;
}

/**
 * The image to graft. Without opts.image, the cached default, built first when missing or
 * outdated. Concurrent first uses each build to a private temporary file and rename it into
 * place; the results are byte-identical, so whichever rename lands last is fine.
 */
export async function resolveImage(opts: ResolveOptions = {}): Promise<{ path: string; built: boolean; pulled?: boolean }> {
  if (opts.add?.length) return derivedImage(opts.add, opts);
  if (opts.image !== undefined && opts.image !== '') return { path: await userImage(opts.image, opts.insecureImage), built: false };
  const url = process.env.CRASHCART_IMAGE_URL;
  if (url) return urlImage(url, opts);

  const path = defaultImagePath();
  const why = await staleReason(path, () => currentRecipe(DEFAULT_PROFILE));
  // the cached default is mounted as root like any other image: the same trust rule
  if (why === undefined) return { path: opts.insecureImage ? path : await trustedImage(path), built: false };

  opts.progress?.(`${why}; building ${path}`);
  await buildCached(path, [], opts);
  return { path, built: true };
}

/**
 * `crashcart --add PACKAGE... TARGET`: the default profile plus those packages, built once
 * into the cache under its recipe (derivedImageName) and used as it is from then on: a name
 * that matches is the image, nothing is hashed or rebuilt.
 */
async function derivedImage(add: string[], opts: ResolveOptions): Promise<{ path: string; built: boolean }> {
  const { attachAdds, derivedImageName, loadProfile, recipeDigest } = await import('./profile.js');
  const profile = await loadProfile(DEFAULT_PROFILE);
  const added = attachAdds(add, profile.packages);
  if (!added.length) return resolveImage({ ...opts, add: [] }); // only the profile's own
  const name = derivedImageName(profile, added);
  const path = join(imagesDir(), `${name}.img`);
  const why = await staleReason(path, async () => recipeDigest(profile, { add: added }));
  if (why === undefined) return { path: opts.insecureImage ? path : await trustedImage(path), built: false };
  opts.progress?.(`${why}; building ${path}: the ${profile.name} toolkit plus ${added.join(', ')} (once: later runs use it)`);
  await buildCached(path, added, opts);
  return { path, built: true };
}

/** Builds the default profile (plus `add`) into the cache file `path`, with its sidecar. */
async function buildCached(path: string, add: string[], opts: ResolveOptions): Promise<void> {
  await ensureCacheDir();
  await ensureCacheDir(join(cacheDir(), 'images'));
  // Loaded only when needed: building pulls in modules an attach does not use.
  const { buildImage } = await import('./build.js');
  const result = await buildImage({ profile: DEFAULT_PROFILE, output: path, progress: opts.progress, ...(add.length ? { add } : {}) });
  await writeSidecar(path, DEFAULT_PROFILE, result, add);
}

/**
 * The sha256 of an image as its cache record says (the sidecar, or a pulled image's name),
 * or null when there is none. Never hashes the file: this runs on every attach.
 */
export async function recordedDigest(image: string): Promise<string | null> {
  const named = /sha256-([0-9a-f]{64})\.img$/.exec(image);
  if (named) return named[1]!;
  const sha = (await readSidecar(image))?.sha256;
  return typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) ? sha : null;
}
