// Bundles the CLI into one CommonJS file, dist/bundle/crashcart.cjs (npm run build:ts runs
// this after tsc). An attach then reads one file through Node's CommonJS loader instead of
// resolving some sixty ES modules (Node's ES module loader alone cost more than the rest
// of the attach). What only other commands need (image builds, doctor, demo) is in the
// same file but runs only when imported; yargs and execa stay in node_modules, loaded on use.
// The default profiles' recipe digests are computed here, once, so an attach never reads
// and hashes images/ to tell whether the cached image is current (see image/cache.ts).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { projectDir } from '../src/native/index.js';
import { loadProfile, PROFILES, recipeDigest } from '../src/image/profile.js';

const recipes: Record<string, string> = {};
for (const name of PROFILES) recipes[name] = recipeDigest(await loadProfile(name));

const outdir = join(projectDir, 'dist', 'bundle');
rmSync(outdir, { recursive: true, force: true }); // nothing of an older build stays
await build({
  entryPoints: [join(projectDir, 'dist', 'src', 'cli', 'main.js')],
  outfile: join(outdir, 'crashcart.cjs'),
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // node_modules stay where npm put them (yargs and execa are loaded only off the attach path)
  packages: 'external',
  // import.meta.url of the modules (the addon's and the profiles' paths) is the bundle's own
  banner: { js: "const importMetaUrl = require('node:url').pathToFileURL(__filename).href;" },
  // import() of node builtins and of execa becomes require() (Node 20.19 requires ES
  // modules): functions that V8's code cache gives back (bin/crashcart) have no callback for
  // a real import() on Node 20 (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING)
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': 'importMetaUrl', CRASHCART_RECIPES: JSON.stringify(recipes) },
  logLevel: 'warning',
});
