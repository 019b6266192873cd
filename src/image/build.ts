// Builds a toolkit image: .deb files from the host's apt, a tree laid out for
// /dev/crashcart, an ext3 filesystem made without mounting anything.
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { execa } from 'execa';
import { candidates, dependencyClosure, fetchDebs, sha256File, type DebInfo } from './apt.js';
import { cacheDir, ensureCacheDir } from './cache-dir.js';
import { interruptible } from '../core/signals.js';
import { causeLine, imageError } from './errors.js';
import { CrashcartError } from '../core/errors.js';
import { ext3Geometry, measureTree, writeExt3 } from './ext3.js';
import { layoutTree, normalizeTree } from './layout.js';
import { sweepDeadTemps } from './temp.js';
import { mib } from './bytes.js';
import { eachLimit } from './files.js';
import { addedPackages, hashFiles, loadProfile, recipeDigest, type Extras, type ProfileName } from './profile.js';
import { excludedDependency } from './relocate.js';

export { addedPackages, recipeDigest } from './profile.js';

/** Used when neither the caller nor SOURCE_DATE_EPOCH gives a time (2023-11-14T22:13:20Z). */
export const DEFAULT_EPOCH = 1700000000;

export interface BuildOptions {
  profile: ProfileName;
  output: string;
  /** Where .deb files are kept between builds; default `${cacheDir()}/debs`. */
  debCache?: string;
  progress?: (line: string) => void;
  /** Timestamp of every file in the image; default SOURCE_DATE_EPOCH, else DEFAULT_EPOCH. */
  sourceDateEpoch?: number;
  /** More Debian packages: their executables, and their libraries when relocated. */
  add?: string[];
  /** A directory of tools built for the prefix, copied as it is over the profile's tree. */
  fromDir?: string;
}

/** The digest and file count of a --from-dir directory; it must exist and be a directory. */
export async function fromDirInfo(dir: string): Promise<{ path: string; sha256: string; files: number }> {
  const path = resolve(dir);
  const st = await stat(path).catch(() => undefined);
  if (!st?.isDirectory()) throw imageError('EBUILD', `--from-dir ${path} is not a directory`, { hint: 'give the directory of tools built for /dev/crashcart' });
  const files = await hashFiles(path);
  // the same digest as dirDigest(path), without walking the directory twice
  return { path, sha256: createHash('sha256').update(JSON.stringify(files)).digest('hex'), files: Object.keys(files).length };
}

export interface BuildResult {
  path: string;
  sha256: string;
  sizeBytes: number;
  packages: { name: string; version: string }[];
  /** recipeDigest() of what the image was made from. */
  recipe: string;
}

export function resolveEpoch(explicit?: number, env = process.env.SOURCE_DATE_EPOCH): number {
  if (explicit !== undefined) {
    if (!Number.isSafeInteger(explicit) || explicit < 0) throw new CrashcartError(`Expected a non-negative integer for sourceDateEpoch but received ${explicit}`, { code: 'EBUILD' });
    return explicit;
  }
  if (env === undefined || env === '') return DEFAULT_EPOCH;
  if (!/^\d+$/.test(env) || !Number.isSafeInteger(Number(env))) {
    throw new CrashcartError(`SOURCE_DATE_EPOCH '${env}' is not a time in seconds since 1970`, {
      code: 'EBUILD',
      hint: 'set it to a whole number of seconds (date +%s), or unset it',
    });
  }
  return Number(env);
}

async function extract(deb: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  try {
    await execa('dpkg', ['-x', deb, dir], { stdin: 'ignore', env: { LC_ALL: 'C' } });
  } catch (err) {
    throw imageError('EBUILD', `dpkg -x ${deb} failed: ${causeLine(err)}`, { hint: 'the download may be damaged: remove it and build again', cause: err });
  }
}

/** What no image takes from a package: dropped when it is unpacked into the cache. */
const UNUSED = ['usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/lintian', 'usr/share/bug', 'usr/share/locale'];
const UNPACK_TMP = /^\.unpack-(\d+)-/;

/** The unpacked tree of `deb` in the cache, or undefined when it is not there yet. */
async function unpackedDir(deb: DebInfo, debDir: string): Promise<string | undefined> {
  const dir = join(debDir, '.unpacked', deb.sha256);
  return (await stat(dir).then((st) => st.isDirectory(), () => false)) ? dir : undefined;
}

/**
 * The unpacked contents of a .deb, kept in `${debDir}/.unpacked/<sha256>` so that the next
 * build skips dpkg (the slowest step of a warm build). Made in a private directory and
 * renamed into place: concurrent builds never see a partial tree. Only ever read afterwards.
 */
async function unpacked(deb: DebInfo, file: string, debDir: string): Promise<string> {
  const dir = join(debDir, '.unpacked', deb.sha256);
  if (await unpackedDir(deb, debDir)) return dir;
  const tmp = await mkdtemp(join(debDir, '.unpacked', `.unpack-${process.pid}-`));
  try {
    await extract(file, tmp);
    for (const sub of UNUSED) await rm(join(tmp, sub), { recursive: true, force: true });
    await rename(tmp, dir).catch(async (err: NodeJS.ErrnoException) => {
      // another build put the same tree there first
      if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
    });
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

export async function buildImage(opts: BuildOptions): Promise<BuildResult> {
  const say = opts.progress ?? (() => {});
  const output = resolve(opts.output);
  const outDir = dirname(output);
  const epoch = resolveEpoch(opts.sourceDateEpoch);
  const profile = await loadProfile(opts.profile);
  const add = addedPackages(opts.add, profile.packages);
  const fromDir = opts.fromDir === undefined ? undefined : await fromDirInfo(opts.fromDir);
  const extras: Extras = { add, ...(fromDir ? { fromDir: fromDir.sha256 } : {}) };

  const st = await stat(outDir).catch(() => undefined);
  if (!st?.isDirectory()) throw imageError('EBUILD', `output directory ${outDir} does not exist`, { hint: 'create it first' });

  if (!opts.debCache) await ensureCacheDir();
  const debDir = await ensureCacheDir(opts.debCache ? resolve(opts.debCache) : join(cacheDir(), 'debs'));

  // Staging next to the output keeps it on a filesystem known to be writable and roomy.
  // Both temporaries carry our pid: a build that died (SIGKILL) is swept by the next one.
  await sweepDeadTemps(outDir, STAGING_NAME);
  await sweepDeadTemps(outDir, tmpName(basename(output)));
  const staging = await mkdtemp(join(outDir, `.crashcart-staging-${process.pid}-`)).catch((err: unknown) => {
    throw fileError(`cannot write into ${outDir}`, err);
  });
  // A name of our own: concurrent builds of the same output each rename a complete file.
  const tmp = `${output}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  return interruptible(async (interrupted) => {
    // Each step's programs die with the terminal's Ctrl-C; a signal sent to crashcart alone
    // stops the build between steps. Either way the finally below removes what was made.
    const step = () => {
      if (interrupted.aborted) throw imageError('EBUILD', `image build ${interrupted.reason}`, { hint: 'nothing was kept' });
    };
    try {
      const roots = [...profile.packages, ...add];
      let names = roots;
      if (profile.kind === 'relocated') {
        say(`resolving the dependencies of ${roots.length} packages`);
        names = await dependencyClosure(roots, excludedDependency);
      }
      const debs = await candidates(names);
      // A package already unpacked (under the checksum its .deb was verified against) needs
      // neither its .deb nor another sha256 of it: hashing them was most of a warm build.
      const ready = await Promise.all(debs.map((deb) => unpackedDir(deb, debDir)));
      for (const [i, deb] of debs.entries()) if (ready[i]) say(`using unpacked ${deb.name} ${deb.version}`);
      const fetch = debs.filter((_, i) => !ready[i]);
      const fetched = await fetchDebs(fetch, debDir, (deb, cached) => say(`${cached ? 'using cached' : 'downloading'} ${deb.name} ${deb.version}`));

      step();
      await mkdir(join(debDir, '.unpacked'), { recursive: true, mode: 0o700 });
      await sweepDeadTemps(join(debDir, '.unpacked'), UNPACK_TMP);
      const extracted: { deb: DebInfo; dir: string }[] = debs.map((deb, i) => ({ deb, dir: ready[i] ?? '' }));
      // a few dpkg at a time: a full toolkit is over a hundred packages
      await eachLimit([...fetch.keys()], 8, async (i) => {
        extracted[debs.indexOf(fetch[i]!)]!.dir = await unpacked(fetch[i]!, fetched[i]!, debDir);
      });

      step();
      const root = join(staging, 'root');
      await mkdir(root);
      say(`laying out ${profile.name} toolkit`);
      const manifest = await layoutTree({ root, extracted, profile, epoch, toolPackages: roots, added: add, fromDir, progress: say });
      await normalizeTree(root, epoch);

      const size = await measureTree(root);
      const recipe = recipeDigest(profile, extras);
      const seed = JSON.stringify({ recipe, packages: manifest.packages, epoch });
      say(`writing ext3 image (${mib(ext3Geometry(size).blocks * 1024)}, ${manifest.tools.length} tools)`);
      step();
      await (await open(tmp, 'wx', 0o644)).close();
      await writeExt3({ tree: root, output: tmp, scratch: staging, size, epoch, seed });
      step();

      const sha256 = await sha256File(tmp);
      const sizeBytes = (await stat(tmp)).size;
      await rename(tmp, output);
      say(`image ready: ${output} (sha256 ${sha256.slice(0, 12)})`);
      return { path: output, sha256, sizeBytes, packages: manifest.packages, recipe };
    } catch (err) {
      await rm(tmp, { force: true });
      step(); // an interruption explains the failure better than the step it broke
      throw fileError('image build failed', err);
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  });
}

/** A file system's refusal (ENOSPC, EACCES, ...) as the build's own error; others as they are. */
function fileError(what: string, err: unknown): unknown {
  if (err instanceof CrashcartError || typeof (err as NodeJS.ErrnoException).code !== 'string') return err;
  return imageError('EBUILD', `${what}: ${(err as Error).message}`, { hint: 'check the free space and the permissions there; nothing was kept', cause: err });
}

const STAGING_NAME = /^\.crashcart-staging-(\d+)-/;
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
/** `<output>.<pid>.<hex>.tmp`, the image being written. */
const tmpName = (output: string) => new RegExp(`^${escape(output)}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`);
