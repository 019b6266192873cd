// crashcart image build [--profile static] [-o FILE]
import { dirname, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { buildImage } from '../../image/build.js';
import { defaultImagePath, ensureCacheDir, writeSidecar } from '../../image/cache.js';
import { progress } from '../output.js';

export function imageCommands(y: Argv) {
  return y
    .command(
      'build',
      'build a toolkit image from Debian packages',
      (b) =>
        b
          .option('profile', { choices: ['static'] as const, default: 'static' as const, describe: 'what goes into the image' })
          .option('output', { alias: 'o', type: 'string', describe: 'image file to write (default: the cached default image)' })
          .option('verbose', { alias: 'v', type: 'boolean', default: false }),
      async (a) => {
        const output = a.output ? resolve(a.output) : defaultImagePath();
        if (!a.output) {
          await ensureCacheDir();
          await ensureCacheDir(dirname(output));
        }
        const result = await buildImage({ profile: a.profile, output, progress: progress(a.verbose) });
        if (!a.output) await writeSidecar(output, a.profile, result);
        process.stdout.write(`${result.path}\nsha256:${result.sha256}\n`);
      },
    )
    .demandCommand(1, 'name an image command: build');
}
