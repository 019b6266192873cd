// Temporary files and directories of image work carry the pid of the process that made
// them, so one left by a process that died without cleaning up (SIGKILL, power loss) can be
// told from one a concurrent crashcart is still writing, and swept.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isRunning } from '../core/proc.js';

/** Removes entries of `dir` whose name matches `pattern` (group 1: the pid) and whose
 *  process is gone. */
export async function sweepDeadTemps(dir: string, pattern: RegExp): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const pid = Number(pattern.exec(name)?.[1] ?? 0);
    if (pid > 0 && pid !== process.pid && !isRunning(pid)) await rm(join(dir, name), { recursive: true, force: true });
  }
}
