// The bundle's two files (scripts/bundle.ts, bin/crashcart): an attach runs from
// dist/bundle/crashcart.cjs alone; the other commands load dist/bundle/rest.cjs, which takes
// the modules the two share from crashcart.cjs (one CrashcartError class for both); a build
// without rest.cjs runs the plain build after one line that names the missing file. Each case
// runs a copy of bin/ and dist/bundle/ whose rest.cjs the test replaces or removes.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { cliEnv, testImage } from '../helpers/cli.js';
import { projectRoot, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, snapshot } from '../helpers/expect.js';

/** A rest.cjs that fails the moment it is run. */
const TRAP = "(function (exports, require, module, __filename, __dirname) { throw new Error('rest.cjs was loaded'); })";

describe('the bundle: crashcart.cjs for an attach, rest.cjs for the rest', () => {
  let image = '';
  let c: ScratchContainer | undefined;
  let tree = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
    c = await createScratchContainer({ sleeperPath: await sleeperPath(), busybox: true });
    // the files bin/crashcart and the bundle look for; the rest is the checkout's own
    const root = projectRoot();
    tree = mkdtempSync(join(tmpdir(), 'crashcart-bundle-'));
    cpSync(join(root, 'bin'), join(tree, 'bin'), { recursive: true });
    cpSync(join(root, 'dist', 'bundle'), join(tree, 'dist', 'bundle'), { recursive: true });
    for (const f of ['package.json', 'binding.gyp']) copyFileSync(join(root, f), join(tree, f));
    for (const d of ['build', 'node_modules', 'images', 'dist/src']) symlinkSync(join(root, d), join(tree, d));
  });

  after(async () => {
    await c?.remove();
    if (tree) rmSync(tree, { recursive: true, force: true });
  });

  const crashcart = (args: string[]) => execa(process.execPath, [join(tree, 'bin', 'crashcart'), ...args], { env: cliEnv(), reject: false, stdin: 'ignore' });
  const restFile = () => join(tree, 'dist', 'bundle', 'rest.cjs');

  test('an attach never loads rest.cjs; another command does, and its errors are crashcart\'s own', async (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
    const before = await snapshot(c);
    const real = join(tree, 'rest.cjs.real');
    copyFileSync(restFile(), real);
    writeFileSync(restFile(), TRAP);
    const a = await crashcart(['-i', image, c!.id, '--', 'cat', '/proc/1/comm']);
    assert.equal(a.exitCode, 0, a.stderr);
    assert.equal(a.stdout, 'sleeper');
    assert.equal(a.stderr, '');
    // the trap is sprung by a command whose module is in rest.cjs: the case above could fail
    const trapped = await crashcart(['image', 'inspect', '/nonexistent']);
    assert.match(trapped.stderr, /rest\.cjs was loaded/);
    copyFileSync(real, restFile());
    const r = await crashcart(['image', 'inspect', '/nonexistent']);
    assert.equal(r.exitCode, 125);
    // a CrashcartError of a module of rest.cjs, told by the reporter of crashcart.cjs: one line, no "internal error"
    assert.match(r.stderr, /^crashcart: image inspect \/nonexistent: no cached image of that name or digest and no image file \/nonexistent; see 'crashcart image ls'\n?$/);
    await assertClean(before, c);
  });

  test('--version loads no yargs', async () => {
    // a preload that makes any require of yargs fail
    const trap = join(tree, 'no-yargs.cjs');
    writeFileSync(trap, "const M = require('node:module'); const resolve = M._resolveFilename;\n" +
      "M._resolveFilename = function (id, ...rest) { if (/^yargs/.test(id)) throw new Error('yargs was loaded'); return resolve.call(this, id, ...rest); };\n");
    const run = (args: string[]) => execa(process.execPath, ['-r', trap, join(tree, 'bin', 'crashcart'), ...args], { env: cliEnv(), reject: false, stdin: 'ignore' });
    const { version } = JSON.parse(readFileSync(join(tree, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const v = await run([flag]);
      assert.equal(v.exitCode, 0, v.stderr);
      assert.equal(v.stdout, version);
      assert.equal(v.stderr, '');
    }
    // the trap is sprung by a command that does need yargs: the case above could fail
    const help = await run(['--help']);
    assert.match(help.stderr, /yargs was loaded/);
  });

  test('without rest.cjs, one line names it and the plain build runs', async (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
    rmSync(restFile());
    const r = await crashcart(['-i', image, c!.id, '--', 'cat', '/proc/1/comm']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'sleeper');
    assert.equal(r.stderr, `crashcart: warning: the bundle ${restFile()} is missing: running the plain build (slower to start); run 'npm run build' in the project directory`);
  });
});
