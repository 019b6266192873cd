// V8's code cache of the bundle (bin/crashcart): written after an attach when none matches,
// used by the next one, and only ever read from a file and a directory that are root's
// alone. A cache that is not, or that V8 rejects, is written anew; an older bundle's goes.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, snapshot } from '../helpers/expect.js';

describe('code cache', () => {
  let image = '';
  let c: ScratchContainer | undefined;
  let root = '';

  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
    c = await createScratchContainer({ sleeperPath: await sleeperPath(), busybox: true });
    root = mkdtempSync(join(tmpdir(), 'crashcart-code-cache-'));
  });

  after(async () => {
    await c?.remove();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** An attach with this cache directory: what the timing line says of the code cache. */
  async function attach(cacheDir: string): Promise<string> {
    const r = await runCrashcart(['-i', image, c!.id, '--', 'true'], { env: { CRASHCART_CACHE_DIR: cacheDir, CRASHCART_TIMING: '1' } });
    assert.equal(r.code, 0, r.stderr);
    return /; code cache (\w+)$/m.exec(r.stderr)?.[1] ?? `no word in ${r.stderr}`;
  }
  const caches = (dir: string) => readdirSync(dir).filter((n) => n.startsWith('code-cache-'));

  test('written after the first attach (root only, 0600), used by the next; an older one goes', async (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
    const before = await snapshot(c);
    const dir = join(root, 'fresh');
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(join(dir, 'code-cache-v0.0.0-x64-1-1.v8'), 'an older build', { mode: 0o600 });
    assert.equal(await attach(dir), 'written');
    const [file, ...more] = caches(dir);
    assert.deepEqual(more, [], 'the older cache is gone');
    const st = statSync(join(dir, file!));
    assert.equal(st.uid, 0);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(await attach(dir), 'used');
    await assertClean(before, c);
  });

  test('a cache others could write, or one V8 rejects, is not used: it is written anew', async (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
    const dir = join(root, 'replaced');
    mkdirSync(dir, { mode: 0o700 });
    assert.equal(await attach(dir), 'written');
    const file = join(dir, caches(dir)[0]!);
    chmodSync(file, 0o666);
    assert.equal(await attach(dir), 'written');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    writeFileSync(file, Buffer.alloc(4096, 0x5a), { mode: 0o600 }); // not V8's
    assert.equal(await attach(dir), 'written');
    assert.equal(await attach(dir), 'used');
  });

  test("rest.cjs's cache: written after an attach that loaded it (a fan-out), used by the next; the other file's stays", async (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
    const before = await snapshot(c);
    const dir = join(root, 'two');
    mkdirSync(dir, { mode: 0o700 });
    assert.equal(await attach(dir), 'written');
    const [main] = caches(dir);
    assert.match(main!, /^code-cache-v[0-9.]+-[a-z0-9]+-crashcart-[0-9]+-[0-9]+\.v8$/);
    const fanOut = async () => {
      const r = await runCrashcart(['-i', image, `${c!.id},${c!.id}`, '--', 'true'], { env: { CRASHCART_CACHE_DIR: dir } });
      assert.equal(r.code, 0, r.stderr);
      return Object.fromEntries(caches(dir).map((n) => [n, statSync(join(dir, n)).ino]));
    };
    const first = await fanOut();
    const rest = Object.keys(first).find((n) => n !== main);
    assert.match(rest ?? 'none', /^code-cache-v[0-9.]+-[a-z0-9]+-rest-[0-9]+-[0-9]+\.v8$/);
    assert.deepEqual(Object.keys(first).sort(), [main, rest].sort());
    assert.equal(statSync(join(dir, rest!)).mode & 0o777, 0o600);
    // used, not written again (a file written anew is a new inode: it is renamed into place)
    assert.deepEqual(await fanOut(), first);
    assert.equal(await attach(dir), 'used');
    assert.deepEqual(Object.keys(await fanOut()).sort(), Object.keys(first).sort());
    await assertClean(before, c);
  });

  test('a directory others could write to is not used at all', async (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
    const dir = join(root, 'open');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    assert.equal(await attach(dir), 'off');
    assert.deepEqual(caches(dir), []);
  });
});
