// Bundles the CLI into one CommonJS file, dist/bundle/crashcart.cjs (npm run build:ts runs
// this after tsc). An attach then reads one file through Node's CommonJS loader instead of
// resolving some sixty ES modules (Node's ES module loader alone cost more than the rest
// of the attach). What only other commands need (image builds, doctor, demo) is in the
// same file but runs only when imported; yargs and execa stay in node_modules, loaded on use.
// The default profiles' recipe digests are computed here, once, so an attach never reads
// and hashes images/ to tell whether the cached image is current (see image/cache.ts).
// The file is the function CommonJS would wrap it in, and ASCII (esbuild escapes the rest):
// bin/crashcart compiles the file's bytes as they are, without decoding or copying them
// into a wrapper (a copy of half a megabyte costs an attach more than a millisecond).
import { build } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { isAscii } from 'node:buffer';
import { join } from 'node:path';
import { projectDir } from '../src/native/index.js';
import { loadProfile, PROFILES, recipeDigest } from '../src/image/profile.js';

const recipes: Record<string, string> = {};
for (const name of PROFILES) recipes[name] = recipeDigest(await loadProfile(name));

/** What bin/crashcart calls the bundle with (see there). */
const WRAPPER = '(function (exports, require, module, __filename, __dirname) {';

const outdir = join(projectDir, 'dist', 'bundle');
const outfile = join(outdir, 'crashcart.cjs');
rmSync(outdir, { recursive: true, force: true }); // nothing of an older build stays
await build({
  entryPoints: [join(projectDir, 'dist', 'src', 'cli', 'main.js')],
  outfile,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // node_modules stay where npm put them (yargs and execa are loaded only off the attach path)
  packages: 'external',
  // import.meta.url of the modules (the addon's and the profiles' paths) is the bundle's own
  banner: { js: `${WRAPPER}const importMetaUrl = require('node:url').pathToFileURL(__filename).href;` },
  footer: { js: '})' },
  charset: 'ascii',
  // import() of node builtins and of execa becomes require() (Node 20.19 requires ES
  // modules): functions that V8's code cache gives back (bin/crashcart) have no callback for
  // a real import() on Node 20 (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING)
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': 'importMetaUrl', CRASHCART_RECIPES: JSON.stringify(recipes) },
  logLevel: 'warning',
});
const bytes = readFileSync(outfile);
if (!isAscii(bytes) || !bytes.subarray(0, WRAPPER.length).equals(Buffer.from(WRAPPER))) {
  throw new Error(`${outfile} is not the ASCII function bin/crashcart compiles: look at esbuild's charset and banner`);
}
