// Small filesystem helpers the image build uses everywhere.
import { lstat, readdir } from 'node:fs/promises';

/** Is there anything at `path` (a dangling symlink counts)? */
export async function exists(path: string): Promise<boolean> {
  return lstat(path).then(() => true, () => false);
}

/** Runs `fn` on every item, at most `limit` at a time. */
export async function eachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The names in `dir`; none when it does not exist or is not a directory. */
export async function listDir(dir: string): Promise<string[]> {
  return readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
    throw err;
  });
}
