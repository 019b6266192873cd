// The image cache as a set of named images (`${cacheDir()}/images/NAME.img` plus NAME.img.json),
// how a user's --image is resolved against it, and the trust rule for image files. Loaded by
// every attach: only node: modules here, and the synchronous fs (node:fs/promises alone
// loads streams and readline).
import { readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { unsafeReason as trustReason } from '../core/trust.js';
import { cacheDir } from './cache-dir.js';
import { imageError } from './errors.js';

export function imagesDir(): string {
  return join(cacheDir(), 'images');
}

/** The sidecar of a pulled image (built images have the build sidecar of cache.ts). */
export interface PullSidecar {
  sha256: string;
  source: string;
  pulled: string;
  sizeBytes: number;
}

/** What `image ls` shows of one cached image, from its sidecar where there is one. */
export interface CachedImage {
  name: string;
  path: string;
  sha256?: string;
  sizeBytes: number;
  source?: string;
  profile?: string;
  /** The packages an image of `crashcart --add` has on top of its profile. */
  added?: string[];
  /** When it was pulled or built (ISO); the file's mtime when there is no sidecar. */
  date: string;
}

const DIGEST_NAME = /^sha256-([0-9a-f]{64})$/;
/** Shortest digest prefix accepted for --image. */
const MIN_PREFIX = 6;

async function readJson(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const strings = (v: unknown): string[] | undefined => (Array.isArray(v) && v.length && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined);

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** Where an image comes from, as `image ls` says it: its URL, `profile full`, `profile full + jq, tmux`. */
export function imageSource(i: Pick<CachedImage, 'source' | 'profile' | 'added'>): string {
  if (i.source) return i.source;
  if (!i.profile) return '-';
  return `profile ${i.profile}${i.added?.length ? ` + ${i.added.join(', ')}` : ''}`;
}

/**
 * How the image file at `path` is named in messages: its cache name and what it is made of
 * (`full+3f2a1b0c9d8e (profile full + linux-perf)`), or the path of a file outside the cache.
 * Synchronous: it is read while the state lock is held.
 */
export function imageLabel(path: string): { name: string; added: string[]; text: string } {
  const dir = dirname(path);
  const inCache = path.endsWith('.img') && (dir === imagesDir() || dir === realpathOr(imagesDir()));
  const name = inCache ? basename(path, '.img') : path;
  let side: Record<string, unknown> = {};
  try {
    const v = JSON.parse(readFileSync(`${path}.json`, 'utf8')) as unknown;
    if (v && typeof v === 'object' && !Array.isArray(v)) side = v as Record<string, unknown>;
  } catch {
    // no sidecar: the name is all there is to say
  }
  const added = strings(side['added']) ?? [];
  const source = imageSource({ source: str(side['source']), profile: str(side['profile']), added });
  return { name, added, text: source === '-' ? name : `${name} (${source})` };
}

/** The cached images, sorted by name; none when the cache does not exist yet. */
export async function listImages(): Promise<CachedImage[]> {
  const dir = imagesDir();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code !== 'ENOENT') {
      throw imageError('ECACHEDIR', `cannot read the image cache ${dir}: ${err.code ?? err.message}`, {
        hint: 'CRASHCART_CACHE_DIR (default /var/lib/crashcart) must name a directory',
        cause: err,
      });
    }
    names = [];
  }
  const out: CachedImage[] = [];
  for (const file of names.sort()) {
    if (!file.endsWith('.img') || file.startsWith('.')) continue;
    const path = join(dir, file);
    let st;
    try {
      st = statSync(path);
    } catch {
      continue;
    }
    if (!st?.isFile()) continue;
    const name = file.slice(0, -'.img'.length);
    const side = (await readJson(`${path}.json`)) ?? {};
    const sha = str(side['sha256']) ?? DIGEST_NAME.exec(name)?.[1];
    const added = strings(side['added']);
    out.push({
      name,
      path,
      sha256: sha?.toLowerCase(),
      sizeBytes: st.size,
      source: str(side['source']),
      profile: str(side['profile']),
      ...(added ? { added } : {}),
      date: str(side['pulled']) ?? str(side['built']) ?? st.mtime.toISOString(),
    });
  }
  return out;
}

/**
 * The cached image `ref` names: its cache name (`static`, `sha256-<hex>`, with or without
 * `.img`), else a digest prefix of at least MIN_PREFIX hex digits (`sha256:` allowed) that
 * exactly one cached digest starts with. Undefined when nothing matches; an error when the
 * prefix is ambiguous. Names with a '/' are files, never cache names.
 */
export async function findCached(ref: string): Promise<CachedImage | undefined> {
  if (ref.includes('/') || ref === '' || ref.startsWith('.')) return undefined;
  const images = await listImages();
  const name = ref.endsWith('.img') ? ref.slice(0, -'.img'.length) : ref;
  const byName = images.find((i) => i.name === name);
  if (byName) return byName;
  const prefix = /^(?:sha256[:-])?([0-9a-fA-F]+)$/.exec(ref)?.[1]?.toLowerCase();
  if (!prefix || prefix.length < MIN_PREFIX || prefix.length > 64) return undefined;
  const matches = images.filter((i) => i.sha256?.startsWith(prefix));
  if (!matches.length) return undefined;
  // the same digest under two names (say static and sha256-<hex>) is the same image
  if (new Set(matches.map((i) => i.sha256)).size > 1) {
    throw imageError(
      'EAMBIGUOUS',
      `image digest prefix ${prefix} matches ${matches.length} cached images: ${matches.map((i) => `${i.name} (sha256:${i.sha256!.slice(0, 12)})`).join(', ')}`,
      { hint: 'give more digits' },
    );
  }
  return matches.find((i) => DIGEST_NAME.test(i.name)) ?? matches[0];
}

/** Why a non-root user could change what root mounts at `path` (the rule: core/trust.ts). */
export async function unsafeReason(path: string): Promise<{ real: string; reason?: string }> {
  return trustReason(path);
}

/** The real path of `path`, or EUNSAFEIMAGE when a non-root user could change it. */
export async function trustedImage(path: string): Promise<string> {
  const { real, reason } = await unsafeReason(path);
  if (reason) {
    throw imageError('EUNSAFEIMAGE', `refusing image ${path}: ${reason}, so a non-root user could change what root mounts`, {
      hint: 'make it and its directories root-owned and not writable by others, or pass --insecure-image to use it anyway',
    });
  }
  return real;
}

/** Loop devices (`loop3`) whose backing file is `path`, from sysfs. */
export async function loopsBacking(path: string, sysBlock = '/sys/block'): Promise<string[]> {
  const attempt = <T>(fn: () => T, otherwise: T): T => {
    try {
      return fn();
    } catch {
      return otherwise;
    }
  };
  const real = attempt(() => realpathSync(path), path);
  const out: string[] = [];
  for (const dev of attempt(() => readdirSync(sysBlock), [] as string[]).sort()) {
    if (!dev.startsWith('loop')) continue;
    const backing = attempt(() => readFileSync(join(sysBlock, dev, 'loop', 'backing_file'), 'utf8'), '');
    const file = backing.trim().replace(/ \(deleted\)$/, '');
    if (file && (file === real || file === path)) out.push(dev);
  }
  return out;
}

/** Removes a cached image and its sidecar; refuses one a loop device is backed by. */
export async function removeImage(ref: string, sysBlock?: string): Promise<string> {
  const img = await findCached(ref);
  if (!img) throw imageError('ENOIMAGE', `image rm ${ref}: no cached image of that name or digest`, { hint: "see 'crashcart image ls'" });
  const loops = await loopsBacking(img.path, sysBlock);
  if (loops.length) {
    throw imageError(
      'EBUSY',
      `image rm ${ref}: ${img.path} backs ${loops.map((l) => `/dev/${l}`).join(', ')} (grafted in a container)`,
      { hint: "take it out with 'crashcart -u TARGET' first" },
    );
  }
  rmSync(img.path, { force: true });
  rmSync(`${img.path}.json`, { force: true });
  return img.path;
}
