// The npm tarball of `npm run package`, installed as an operator would (`npm install -g`,
// here into a private prefix): its install builds the addon and the demo's program with
// node-gyp, and the installed crashcart attaches to a real runc container.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { cliEnv, testImage } from '../helpers/cli.js';
import { assertClean, snapshot } from '../helpers/expect.js';
import { projectRoot, requireCommand, requireRoot } from '../helpers/host.js';
import { buildPackage } from '../helpers/packages.js';

describe('the npm tarball', () => {
  let tgz: Awaited<ReturnType<typeof buildPackage>> | undefined;
  let prefix = '';
  let setupError: unknown;
  let installMs = 0;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'npm')) return false;
    if (setupError) throw setupError;
    return tgz !== undefined;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      tgz = await buildPackage('npm');
      prefix = await mkdtemp(join(tmpdir(), 'crashcart-npm-prefix-'));
      // node-gyp finds Node's headers next to the binary, as scripts/setup.sh tells it
      const nodedir = dirname(dirname(process.execPath));
      const env = existsSync(join(nodedir, 'include/node/node_api.h')) ? { npm_config_nodedir: nodedir } : {};
      const t0 = performance.now();
      const r = await execa('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', tgz.file], { env, reject: false, stdin: 'ignore', cwd: prefix });
      installMs = Math.round(performance.now() - t0);
      assert.equal(r.exitCode, 0, r.stderr);
      process.stderr.write(`# npm install -g of the tarball (builds the addon): ${installMs} ms\n`);
    } catch (err) {
      setupError = err;
    }
  });

  after(async () => {
    if (prefix) await rm(prefix, { recursive: true, force: true });
    await tgz?.remove();
  });

  test('its install builds the addon and links crashcart and kubectl-crashcart', async (t) => {
    if (!ready(t)) return;
    const lib = join(prefix, 'lib/node_modules/crashcart');
    for (const f of ['build/Release/crashcart.node', 'build/Release/sleeper', 'dist/bundle/crashcart.cjs', 'dist/share/man/crashcart.1']) assert.ok(existsSync(join(lib, f)), f);
    const pkg = JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    const v = await execa(join(prefix, 'bin/crashcart'), ['--version'], { cwd: '/' });
    assert.equal(v.stdout, pkg.version);
    assert.equal(v.stderr, '', 'the installed package runs the bundle');
    const k = await execa(join(prefix, 'bin/kubectl-crashcart'), ['--help'], { cwd: '/' });
    assert.match(k.stdout, /^usage: kubectl crashcart/);
  });

  test('the installed crashcart attaches to a runc container (crashcart demo)', async (t) => {
    if (!ready(t)) return;
    const image = await testImage();
    const before = await snapshot();
    const r = await execa(join(prefix, 'bin/crashcart'), ['demo', '-i', image, '--', 'cat', '/proc/1/comm'], { cwd: '/', env: cliEnv(), reject: false, stdin: 'ignore' });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'sleeper');
    await assertClean(before);
  });
});
