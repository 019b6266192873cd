// crashcart image build [--profile static] [-o FILE]
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { progress } from '../output.js';

interface BuildArgs {
  profile: 'static';
  output?: string;
  verbose: boolean;
}

export const imageBuildCommand: CommandModule<object, BuildArgs> = {
  command: 'build',
  describe: 'build a toolkit image from Debian packages',
  builder: (b) =>
    b
      .option('profile', { choices: ['static'] as const, default: 'static' as const, describe: 'what goes into the image' })
      .option('output', { alias: 'o', type: 'string', describe: 'image file to write (default: the cached default image)' })
      .option('verbose', { alias: 'v', type: 'boolean', default: false }),
  handler: async (a) => {
    const { buildImage } = await import('../../image/build.js');
    const { defaultImagePath, ensureCacheDir, writeSidecar } = await import('../../image/cache.js');
    const output = a.output ? resolve(a.output) : defaultImagePath();
    if (!a.output) {
      await ensureCacheDir();
      await ensureCacheDir(dirname(output));
    }
    const result = await buildImage({ profile: a.profile, output, progress: progress(a.verbose) });
    if (!a.output) await writeSidecar(output, a.profile, result);
    process.stdout.write(`${result.path}\nsha256:${result.sha256}\n`);
  },
};
