// crashcart demo [-- command]: a disposable scratch container (one static program, a
// read-only root, no shell), crashcart attached to it, and the container removed after.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { CrashcartError } from '../../core/errors.js';
import { runSession } from '../../core/session.js';
import { inspectTarget } from '../../core/target.js';
import { createScratchContainer } from '../../demo/scratch.js';
import { recordedDigest, resolveImage } from '../../image/cache.js';
import { projectDir } from '../../native/index.js';
import { logger, progress, requireRoot, warn } from '../output.js';

export interface DemoArgs {
  image?: string;
  verbose: boolean;
}

export async function demo(args: DemoArgs, command: string[]): Promise<number> {
  requireRoot('crashcart demo');
  const sleeper = join(projectDir, 'build', 'Release', 'sleeper');
  if (!existsSync(sleeper)) {
    throw new CrashcartError(`the demo program is not built (${sleeper})`, { hint: "run 'npm run build:native'" });
  }
  try {
    await execa('runc', ['--version']);
  } catch {
    throw new CrashcartError('crashcart demo needs runc', { hint: 'install it with: apt-get install runc' });
  }
  const log = logger(args.verbose);
  // The image first: a first build can take a while, and the container should not wait.
  const image = await resolveImage({ image: args.image ?? process.env.CRASHCART_IMAGE, progress: progress(args.verbose) });
  const container = await createScratchContainer({ sleeperPath: sleeper, hostname: 'crashcart-demo' }).catch((e: unknown) => {
    throw new CrashcartError(`cannot start the demo container: ${(e as Error).message}`, {
      hint: 'check that runc works here (crashcart doctor)',
      cause: e,
    });
  });
  try {
    process.stderr.write(
      `crashcart: demo container ${container.id} (pid ${container.pid}): a static program, a read-only root, no shell\n`,
    );
    const target = { pid: container.pid, runtime: 'runc', id: container.id };
    return await runSession(target, inspectTarget(target.pid, { what: `demo container ${container.id}` }), {
      image: image.path,
      method: 'auto',
      allowHost: false,
      log,
      warn,
      command,
      interactive: Boolean(process.stdin.isTTY),
      keep: false,
      env: [],
      targetEnv: true,
      joinCgroup: true,
      targetCaps: false,
      imageSha256: await recordedDigest(image.path),
      audit: true,
    });
  } finally {
    await container.remove();
    log(`removed demo container ${container.id}`);
  }
}
