// `crashcart image inspect`: the sidecar and the image's own /MANIFEST.json, read with debugfs
// (no mount, no loop device).
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { imageError } from './errors.js';
import { findCached } from './store.js';

export interface Inspection {
  name?: string;
  path: string;
  sizeBytes: number;
  /** `${path}.json`, when there is one. */
  sidecar: unknown;
  /** /MANIFEST.json inside the image, when debugfs can read it. */
  manifest: unknown;
}

async function readJsonFile(path: string): Promise<unknown> {
  const { readFile } = await import('node:fs/promises');
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

/** /MANIFEST.json of an ext2/3/4 image, or null when it has none or debugfs is missing. */
async function readManifest(image: string): Promise<unknown> {
  const { execa } = await import('execa');
  const r = await execa('debugfs', ['-R', 'cat /MANIFEST.json', image], { stdin: 'ignore', env: { LC_ALL: 'C' }, reject: false });
  if (r.failed || !r.stdout.trim()) return null;
  try {
    return JSON.parse(r.stdout) as unknown;
  } catch {
    return null;
  }
}

export async function inspectImage(ref: string): Promise<Inspection> {
  const cached = await findCached(ref);
  const path = cached?.path ?? resolve(ref);
  const st = await stat(path).catch(() => undefined);
  if (!st?.isFile()) {
    throw imageError('ENOIMAGE', `image inspect ${ref}: no cached image of that name or digest and no image file ${path}`, { hint: "see 'crashcart image ls'" });
  }
  return {
    ...(cached ? { name: cached.name } : {}),
    path,
    sizeBytes: st.size,
    sidecar: await readJsonFile(`${path}.json`),
    manifest: await readManifest(path),
  };
}
