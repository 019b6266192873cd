// Where crashcart keeps downloads and built images. Root runs what is in there inside
// containers, so the directory must not be writable by anyone else.
import { chmodSync, chownSync, mkdirSync, statSync } from 'node:fs';
import { CrashcartError, errnoCode } from '../core/errors.js';

export const DEFAULT_CACHE_DIR = '/var/lib/crashcart';

/** CRASHCART_CACHE_DIR, else /var/lib/crashcart. Only computes the path. */
export function cacheDir(): string {
  return process.env.CRASHCART_CACHE_DIR || DEFAULT_CACHE_DIR;
}

/**
 * Creates `dir` (default: the cache directory) with mode 0700, owned by root when we are
 * root, and refuses one that others could write to.
 */
export async function ensureCacheDir(dir = cacheDir()): Promise<string> {
  const hint = 'set CRASHCART_CACHE_DIR to a directory only root can write, or unset it';
  let made: string | undefined;
  try {
    const before = statSync(dir, { throwIfNoEntry: false });
    if (before && !before.isDirectory()) throw new CrashcartError(`cache directory ${dir} is not a directory`, { code: 'ECACHEDIR', hint });
    made = mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (made !== undefined) {
      chmodSync(dir, 0o700); // mkdir's mode is filtered by the umask
      if (process.getuid?.() === 0) chownSync(dir, 0, 0);
    }
  } catch (err) {
    if (err instanceof CrashcartError) throw err;
    throw new CrashcartError(`cannot create the cache directory ${dir}: ${errnoCode(err) ?? (err as Error).message}`, { code: 'ECACHEDIR', hint, cause: err });
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new CrashcartError(`cache directory ${dir} is not a directory`, { code: 'ECACHEDIR', hint });
  if (st.mode & 0o022 || st.uid !== process.getuid?.()) {
    throw new CrashcartError(`cache directory ${dir} is writable by others or not ours (mode ${(st.mode & 0o7777).toString(8)}, uid ${st.uid})`, {
      code: 'ECACHEDIR',
      hint: `run 'chown root: ${dir} && chmod 700 ${dir}'`,
    });
  }
  return dir;
}
