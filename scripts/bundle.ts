// Bundles the CLI into two CommonJS files (npm run build:ts runs this after tsc):
//
//   dist/bundle/crashcart.cjs  main.js and everything it imports statically: what an attach runs
//   dist/bundle/rest.cjs       what is reached only through a dynamic import(): the other
//                              commands, image builds and pulls, fan-out, --stopped, --pod
//
// An attach reads one file instead of resolving some sixty ES modules (Node's ES module
// loader alone cost more than the rest of the attach), and only the code it can run: V8
// makes a closure for every function a script declares at its top level, and its code
// cache holds every one of them, so the other commands' code in the same file cost an
// attach about 6 ms. A dynamic import of a module of rest.cjs becomes
// require('crashcart-rest:<module>'), which bin/crashcart answers by loading rest.cjs once;
// rest.cjs takes the modules it shares with the attach from crashcart.cjs, by
// require('crashcart-main:<module>'), through link() (generated here: getters of each such
// module's exports, made on first use), so every module exists once in a process (one
// CrashcartError class, one addon). yargs and execa stay in node_modules, loaded on use.
// The default profiles' recipe digests are computed here, once, so an attach never reads
// and hashes images/ to tell whether the cached image is current (see image/cache.ts).
// Each file is the function CommonJS would wrap it in, and ASCII (esbuild escapes the rest):
// bin/crashcart compiles the file's bytes as they are, without decoding or copying them
// into a wrapper (a copy of half a megabyte costs an attach more than a millisecond).
import { build, type BuildOptions, type Metafile, type Plugin } from 'esbuild';
import { readFileSync, rmSync } from 'node:fs';
import { isAscii } from 'node:buffer';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectDir } from '../src/native/index.js';
import { loadProfile, PROFILES, recipeDigest } from '../src/image/profile.js';

/** The prefixes of the two files' requires of each other's modules (bin/crashcart answers them). */
const REST = 'crashcart-rest:';
const MAIN = 'crashcart-main:';

const recipes: Record<string, string> = {};
for (const name of PROFILES) recipes[name] = recipeDigest(await loadProfile(name));

/** What bin/crashcart calls each file with (see there). */
const WRAPPER = '(function (exports, require, module, __filename, __dirname) {';

const outdir = join(projectDir, 'dist', 'bundle');
const mainFile = join(outdir, 'crashcart.cjs');
const restFile = join(outdir, 'rest.cjs');
const entry = join(projectDir, 'dist', 'src', 'cli', 'main.js');
const rel = (abs: string) => relative(projectDir, abs);

const common: BuildOptions = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // node_modules stay where npm put them (yargs and execa are loaded only off the attach path)
  packages: 'external',
  banner: { js: WRAPPER },
  footer: { js: '})' },
  charset: 'ascii',
  // import() of node builtins and of execa becomes require() (Node 20.19 requires ES
  // modules): functions that V8's code cache gives back (bin/crashcart) have no callback for
  // a real import() on Node 20 (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING)
  supported: { 'dynamic-import': false },
  // the modules' own paths are the file's (the addon's and the profiles' are found from there)
  define: { 'import.meta.dirname': '__dirname', 'import.meta.filename': '__filename', CRASHCART_RECIPES: JSON.stringify(recipes) },
  metafile: true,
  logLevel: 'warning',
};

/** A relative import of one of crashcart's modules, as an absolute path (else undefined: a builtin or a package). */
const ours = (path: string, resolveDir: string) => (path.startsWith('.') || isAbsolute(path) ? resolve(resolveDir, path) : undefined);
/** The files of crashcart's that a build took in (metafile is on in every build here). */
const inputs = (m: Metafile | undefined) => new Set(Object.keys(m!.inputs).filter((k) => !k.includes(':')).map((k) => resolve(projectDir, k)));

/**
 * The main file: main.js, its static imports, and `link`. A dynamic import of one of
 * crashcart's modules outside `inMain` (every one, while that set is not known yet) is left
 * to rest.cjs; `dynamic` collects them.
 */
function mainPlugin(inMain: Set<string> | undefined, dynamic: Set<string>, links: string): Plugin {
  return {
    name: 'crashcart-main',
    setup(b) {
      b.onResolve({ filter: /^crashcart-entry$/ }, () => ({ path: 'entry', namespace: 'crashcart' }));
      b.onResolve({ filter: /^crashcart-links$/ }, () => ({ path: 'links', namespace: 'crashcart' }));
      b.onLoad({ filter: /.*/, namespace: 'crashcart' }, (a) => ({
        contents: a.path === 'entry' ? `export * from ${JSON.stringify(entry)};\nexport { link } from 'crashcart-links';\n` : links,
        resolveDir: projectDir,
        loader: 'js',
      }));
      b.onResolve({ filter: /.*/ }, (a) => {
        const abs = a.kind === 'dynamic-import' ? ours(a.path, a.resolveDir) : undefined;
        if (!abs || inMain?.has(abs)) return undefined;
        dynamic.add(abs);
        return { path: REST + rel(abs), external: true };
      });
    },
  };
}

/**
 * rest.cjs: the modules `lazy` names and what they import, except what is in `inMain` (taken
 * from crashcart.cjs); it exports `modules`, a function per module that gives its exports.
 */
function restPlugin(inMain: Set<string>, lazy: Set<string>, linked: Set<string>): Plugin {
  return {
    name: 'crashcart-rest',
    setup(b) {
      b.onResolve({ filter: /^crashcart-rest-entry$/ }, () => ({ path: 'entry', namespace: 'crashcart' }));
      b.onLoad({ filter: /.*/, namespace: 'crashcart' }, () => {
        // require(), not import: each module is initialised when it is first asked for, as
        // in one file (a command's modules do not load execa for another command)
        const mods = [...lazy].sort().map((m) => `  ${JSON.stringify(rel(m))}: () => require(${JSON.stringify(m)}),`);
        return { contents: `export const modules = {\n${mods.join('\n')}\n};\n`, resolveDir: projectDir, loader: 'js' };
      });
      b.onResolve({ filter: /.*/ }, (a) => {
        const abs = ours(a.path, a.resolveDir);
        if (!abs || !inMain.has(abs)) return undefined;
        linked.add(abs);
        return { path: MAIN + rel(abs), external: true };
      });
    },
  };
}

/**
 * link(module): getters of each export of a module of crashcart.cjs that rest.cjs imports,
 * made on its first use (nothing of it runs in an attach). Getters, so that a `let` export
 * reads as it is now. The exports are the modules' own, imported here at build time.
 */
async function linksSource(linked: Set<string>): Promise<string> {
  const mods = [...linked].sort();
  const lines: string[] = [];
  const cases: string[] = [];
  for (const [i, m] of mods.entries()) {
    const names = Object.keys(await import(pathToFileURL(m).href)).sort();
    // a module imported for what it does, not for a name: nothing to get
    if (names.length > 0) lines.push(`import { ${names.map((n, j) => `${n} as l${i}_${j}`).join(', ')} } from ${JSON.stringify(m)};`);
    cases.push(`    case ${JSON.stringify(rel(m))}: return { ${names.map((n, j) => `get ${n}() { return l${i}_${j}; }`).join(', ')} };`);
  }
  return `${lines.join('\n')}
const linked = new Map();
function make(path) {
  switch (path) {
${cases.join('\n')}
  }
  throw new Error(\`crashcart.cjs has no module \${path} for rest.cjs: run 'npm run build'\`);
}
export function link(path) {
  let m = linked.get(path);
  if (!m) linked.set(path, (m = make(path)));
  return m;
}
`;
}

rmSync(outdir, { recursive: true, force: true }); // nothing of an older build stays
// 1. which modules an attach loads (the static graph of main.js), and which are left for rest.cjs
const dynamic = new Set<string>();
const probe = await build({ ...common, entryPoints: [entry], write: false, plugins: [mainPlugin(undefined, dynamic, '')] });
const inMain = inputs(probe.metafile);
const lazy = new Set([...dynamic].filter((m) => !inMain.has(m)));
// 2. rest.cjs, and what of crashcart.cjs it takes
const linked = new Set<string>();
const rest = await build({ ...common, entryPoints: ['crashcart-rest-entry'], outfile: restFile, plugins: [restPlugin(inMain, lazy, linked)] });
// 3. crashcart.cjs with link()
const main = await build({ ...common, entryPoints: ['crashcart-entry'], outfile: mainFile, plugins: [mainPlugin(inMain, new Set(), await linksSource(linked))] });

const inRest = inputs(rest.metafile);
const both = [...inputs(main.metafile)].filter((m) => inRest.has(m));
if (both.length > 0) throw new Error(`modules in both bundle files (each must exist once in a process): ${both.map(rel).join(', ')}`);
for (const file of [mainFile, restFile]) {
  const bytes = readFileSync(file);
  if (!isAscii(bytes) || !bytes.subarray(0, WRAPPER.length).equals(Buffer.from(WRAPPER))) {
    throw new Error(`${file} is not the ASCII function bin/crashcart compiles: look at esbuild's charset and banner`);
  }
}
