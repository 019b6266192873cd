// The installed `crashcart` command (scripts/launcher.ts): bin/crashcart run by the Node.js
// the addon was built for, by its absolute path, with the arguments, exit code and streams
// passed through; written over an older command (a symlink) in one rename.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { writeLauncher } from '../../scripts/launcher.js';

/** Runs fn with a scratch directory holding a target like bin/crashcart (CommonJS, a #! line, no extension); removes it after. */
async function withScratch(fn: (dir: string, target: string) => void | Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-launcher-'));
  const target = join(dir, 'target');
  writeFileSync(target, '#!/usr/bin/env node\nprocess.stdout.write(JSON.stringify(process.argv.slice(2)));\nprocess.stderr.write(__dirname);\nprocess.exitCode = 7;\n');
  try {
    await fn(dir, target);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the command starts its target with this Node, by absolute path, passing arguments and the exit code', () => withScratch(async (dir, target) => {
  const cmd = join(dir, 'crashcart');
  writeLauncher(target, cmd);
  assert.equal(readFileSync(cmd, 'utf8').split('\n')[0], `#!${process.execPath}`);
  assert.equal(lstatSync(cmd).mode & 0o777, 0o755);
  // no PATH at all: nothing is searched for
  const r = await execa(cmd, ['-i', 'x y', '--', 'true'], { env: { PATH: '' }, extendEnv: false, reject: false });
  assert.equal(r.exitCode, 7);
  assert.equal(r.stdout, JSON.stringify(['-i', 'x y', '--', 'true']));
  assert.equal(r.stderr, dir); // the target's own __dirname: it finds its files as when run itself
}));

test('below a package.json of "type": "module" the command runs its target all the same', () => withScratch(async (dir, target) => {
  // the target is CommonJS by its own package.json, as bin/crashcart is by bin/package.json
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  renameSync(target, join(bin, 'target'));
  writeFileSync(join(bin, 'package.json'), '{"type": "commonjs"}\n');
  writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n');
  const cmd = join(dir, 'crashcart');
  writeLauncher(join(bin, 'target'), cmd);
  const r = await execa(cmd, ['a'], { reject: false });
  assert.equal(r.exitCode, 7, r.stderr);
  assert.equal(r.stdout, JSON.stringify(['a']));
}));

test('an older command (a symlink) is replaced, and nothing is left beside it', () => withScratch((dir, target) => {
  const cmd = join(dir, 'crashcart');
  symlinkSync('/nonexistent', cmd);
  writeLauncher(target, cmd);
  assert.ok(lstatSync(cmd).isFile());
  assert.deepEqual(readdirSync(dir).sort(), ['crashcart', 'target']);
}));

test('a Node whose path a #! line cannot hold gets a symlink to the target instead', () => withScratch((dir, target) => {
  const cmd = join(dir, 'crashcart');
  writeLauncher(target, cmd, '/opt/my node/bin/node');
  assert.equal(readlinkSync(cmd), target);
}));
