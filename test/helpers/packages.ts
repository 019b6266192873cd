// The packages of `npm run package`, built once per test file from this checkout into a
// temporary directory; and the host directories an installed package owns at run time, set
// aside while a test installs it and put back exactly after.
import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { execa } from 'execa';
import { projectRoot } from './host.js';

/**
 * Builds one kind of package ('deb', 'npm' or 'oci') with the script behind `npm run package`
 * (the checkout is built already: `npm run package` only adds `npm run build`); returns its
 * path and a remover of the directory it is in.
 */
export async function buildPackage(kind: 'deb' | 'npm' | 'oci', env: Record<string, string> = {}): Promise<{ file: string; ms: number; remove(): Promise<void> }> {
  const out = await mkdtemp(join(tmpdir(), `crashcart-package-${kind}-`));
  const remove = () => rm(out, { recursive: true, force: true });
  const t0 = performance.now();
  const r = await execa(process.execPath, [join(projectRoot(), 'dist/scripts/package.js'), kind, '-o', out], { cwd: projectRoot(), env, reject: false, stdin: 'ignore' });
  const ms = Math.round(performance.now() - t0);
  if (r.exitCode !== 0) {
    await remove();
    throw new Error(`npm run package -- ${kind} failed (exit ${r.exitCode}):\n${r.stderr}`);
  }
  const made = /^package: (\S+) \(/m.exec(r.stderr)?.[1];
  if (!made) {
    await remove();
    throw new Error(`npm run package -- ${kind} did not say what it made:\n${r.stderr}`);
  }
  return { file: made, ms, remove };
}

/**
 * Renames each of `paths` that exists to a hidden sibling, so that what a test's install and
 * purge do there starts from nothing and touches nothing of the host's; restore() removes
 * whatever is at the paths then and renames the originals back.
 */
export async function setAside(paths: string[]): Promise<{ restore(): Promise<void> }> {
  const saved: [string, string][] = [];
  const restore = async () => {
    for (const path of paths) await rm(path, { recursive: true, force: true });
    for (const [path, aside] of saved.splice(0)) await rename(aside, path);
  };
  try {
    for (const path of paths) {
      const aside = join(dirname(path), `.${basename(path)}.set-aside-by-test`);
      if (existsSync(aside)) throw new Error(`${aside} exists: a test that set ${path} aside did not put it back; move it back to ${path} by hand`);
      if (!existsSync(path)) continue;
      await rename(path, aside);
      saved.push([path, aside]);
    }
  } catch (err) {
    await restore();
    throw err;
  }
  return { restore };
}
