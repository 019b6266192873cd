// crashcart image build [--profile full|minimal|static] [--add PACKAGE]... [--from-dir DIR] [-o FILE]
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { CrashcartError } from '../../core/errors.js';
import type { CachedImage } from '../../image/store.js';
import { formatTable, progress } from '../output.js';

interface BuildArgs {
  profile: 'full' | 'minimal' | 'static';
  add?: string[];
  'from-dir'?: string;
  output?: string;
  verbose: boolean;
}

// --verbose is the global option (main.ts): defined here again, yargs would list -v twice
export const imageBuildCommand: CommandModule<{ verbose: boolean }, BuildArgs> = {
  command: 'build',
  describe: 'build a toolkit image from Debian packages',
  builder: (b) =>
    b
      .option('profile', { requiresArg: true, choices: ['full', 'minimal', 'static'] as const, default: 'full' as const, describe: 'what goes into the image' })
      .option('add', { type: 'string', array: true, describe: 'another Debian package to take in, with its libraries (repeatable)' })
      .option('from-dir', { type: 'string', requiresArg: true, describe: 'directory of tools built for /dev/crashcart, copied over the profile as it is' })
      .option('output', { alias: 'o', type: 'string', requiresArg: true, describe: 'image file to write (default: the cached image of the profile)' }),
  handler: async (a) => {
    const custom = (a.add?.length ?? 0) > 0 || a['from-dir'] !== undefined;
    if (custom && !a.output) {
      // the cached <profile>.img is always the plain profile: an attach would rebuild it
      throw new CrashcartError('--add and --from-dir need -o FILE', { hint: "the cached image of a profile is always the plain profile; graft yours with 'crashcart -i FILE', or let 'crashcart --add PACKAGE TARGET' build and cache the default toolkit plus packages" });
    }
    const { buildImage } = await import('../../image/build.js');
    const { defaultImagePath, ensureCacheDir, writeSidecar } = await import('../../image/cache.js');
    const output = a.output ? resolve(a.output) : defaultImagePath(a.profile);
    if (!a.output) {
      await ensureCacheDir();
      await ensureCacheDir(dirname(output));
    }
    const result = await buildImage({
      profile: a.profile,
      output,
      progress: progress(a.verbose),
      ...(a.add?.length ? { add: a.add } : {}),
      ...(a['from-dir'] !== undefined ? { fromDir: a['from-dir'] } : {}),
    });
    if (!a.output) await writeSidecar(output, a.profile, result);
    process.stdout.write(`${result.path}\nsha256:${result.sha256}\n`);
  },
};

// The commands below load the image modules only when they run.

interface PullArgs {
  url: string;
  sha256?: string;
  insecure: boolean;
}

export const imagePullCommand: CommandModule<object, PullArgs> = {
  command: 'pull <url>',
  describe: 'download an image into the cache, checking its sha256 and ext3 superblock',
  builder: (b) =>
    b
      .positional('url', { type: 'string', demandOption: true, describe: 'http or https URL of the image' })
      .option('sha256', { type: 'string', requiresArg: true, describe: 'the image digest (64 hex digits) the download must have' })
      .option('insecure', { type: 'boolean', default: false, describe: 'do not check the digest (anyone who can alter the download gets root)' }),
  handler: async (a) => {
    const { pullImage, progressLine } = await import('../../image/pull.js');
    if (a.insecure && a.sha256 === undefined) {
      process.stderr.write(`crashcart: WARNING: --insecure: the sha256 of ${a.url} is NOT checked; whoever can alter this download can run code as root on this host\n`);
    }
    const bar = process.stderr.isTTY ? progressLine(a.url) : undefined;
    try {
      const r = await pullImage({ url: a.url, sha256: a.sha256, insecure: a.insecure, onProgress: bar?.update });
      bar?.done();
      process.stdout.write(`${r.path}\nsha256:${r.sha256}\n`);
    } catch (err) {
      bar?.done();
      throw err;
    }
  },
};

export const imageLsCommand: CommandModule<object, { json: boolean }> = {
  command: 'ls',
  describe: 'list the cached images',
  builder: (b) => b.option('json', { type: 'boolean', default: false, describe: 'print JSON (full digests)' }),
  handler: async (a) => {
    const { listImages } = await import('../../image/store.js');
    const images = await listImages();
    if (a.json) {
      process.stdout.write(`${JSON.stringify(images, null, 2)}\n`);
      return;
    }
    process.stdout.write(formatTable(await imageLsRows(images)));
  },
};

/** The table of `image ls`: a header, then one row per image. */
export async function imageLsRows(images: CachedImage[]): Promise<string[][]> {
  const [{ imageSource }, { mib }] = await Promise.all([import('../../image/store.js'), import('../../image/bytes.js')]);
  return [
    ['NAME', 'SHA256', 'SIZE', 'SOURCE', 'DATE'],
    ...images.map((i) => [i.name, i.sha256 ? i.sha256.slice(0, 12) : '-', mib(i.sizeBytes), imageSource(i), i.date.replace(/\.\d+Z$/, 'Z')]),
  ];
}

export const imageInspectCommand: CommandModule<object, { image: string }> = {
  command: 'inspect <image>',
  describe: "print a cached image's (or an image file's) sidecar and manifest as JSON",
  builder: (b) => b.positional('image', { type: 'string', demandOption: true, describe: 'cache name, digest prefix or file' }),
  handler: async (a) => {
    const { inspectImage } = await import('../../image/inspect.js');
    process.stdout.write(`${JSON.stringify(await inspectImage(a.image), null, 2)}\n`);
  },
};

export const imageRmCommand: CommandModule<object, { image: string }> = {
  command: 'rm <image>',
  describe: 'remove a cached image and its sidecar',
  builder: (b) => b.positional('image', { type: 'string', demandOption: true, describe: 'cache name or digest prefix' }),
  handler: async (a) => {
    const { removeImage } = await import('../../image/store.js');
    process.stdout.write(`${await removeImage(a.image)}\n`);
  },
};

export const imageCommands = [imageBuildCommand, imagePullCommand, imageLsCommand, imageInspectCommand, imageRmCommand] as CommandModule<object, never>[];
