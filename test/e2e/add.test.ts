// Tools on demand: `crashcart --add PACKAGE TARGET` builds the default toolkit plus Debian's
// linux-perf once, into the cache under its recipe, grafts it into a real runc container and
// runs perf there; a second run uses the cached image as it is (not rebuilt: the same file,
// the same mtime, no build line). `image ls` lists it with what it adds, and a plain attach
// while a session holds it is refused with one line naming it. The cached image then goes
// into a user-namespaced runc container and a private dockerd's container as it is.
// CRASHCART_TEST_CACHE_DIR=DIR keeps the .deb downloads between runs (as the matrix does).
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { derivedImageName, loadProfile } from '../../src/image/profile.js';
import { privateDirs, recordedSession, runCrashcart, startCrashcart, testImage, type CliResult } from '../helpers/cli.js';
import { assertClean, assertFailure, grafts, snapshot } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { waitFor } from '../helpers/wait.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { importScratchImage, startDockerd } from '../helpers/dockerd.js';

const USERNS = { hostUid: 100000, hostGid: 100000, size: 65536 };

/** `s` as a regular expression that matches it literally. */
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const canRun = () => process.getuid?.() === 0 && ['runc', 'apt-get', 'dpkg', 'patchelf', 'mke2fs'].every(onPath);

function ready(t: TestContext): boolean {
  return requireRoot(t) && ['runc', 'apt-get', 'dpkg', 'patchelf', 'mke2fs'].every((c) => requireCommand(t, c));
}

/**
 * The private cache (helpers/cli.ts), made here with its debs/ pointing at
 * CRASHCART_TEST_CACHE_DIR's when that is set: the image is built into the private cache,
 * the downloads are shared.
 */
function prepareCache(): string {
  const { cache } = privateDirs();
  mkdirSync(cache, { recursive: true, mode: 0o700 });
  const shared = process.env.CRASHCART_TEST_CACHE_DIR;
  if (shared) {
    mkdirSync(join(shared, 'debs'), { recursive: true, mode: 0o700 });
    symlinkSync(join(shared, 'debs'), join(cache, 'debs'));
  }
  return join(cache, 'images');
}

describe('crashcart --add', () => {
  let c: ScratchContainer | undefined;
  let images = '';
  let name = '';

  before(async () => {
    if (!canRun()) return;
    images = prepareCache();
    name = derivedImageName(await loadProfile('full'), ['linux-perf']);
    c = await createScratchContainer({ sleeperPath: await sleeperPath(), hostname: 'cc-add' });
  });

  after(async () => {
    await c?.remove();
  });

  test('wrong --add input: one line, nothing built or grafted', async (t) => {
    if (!ready(t)) return;
    assert.ok(c);
    const before = await snapshot(c);
    const cached = () => readdirSync(images, { withFileTypes: true }).map((e) => e.name).sort();
    const had = existsSync(images) ? cached() : [];
    const cases: [string[], string][] = [
      [['--add', 'Perf'], "crashcart: invalid package name 'Perf' for --add; Debian names have lowercase letters, digits, + - . only"],
      [['--add', 'linux-perf,'], "crashcart: invalid package name '' for --add; Debian names have lowercase letters, digits, + - . only"],
      [['--add', 'linux-perf', '-i', 'static'], 'crashcart: --add and --image exclude each other; --add builds on the default toolkit; to add to your image, build it with crashcart image build --add ... -o FILE'],
      [['--add', 'linux-perf', '-u'], 'crashcart: --add applies to grafting, and --unmount takes the toolkit out; drop --add'],
    ];
    for (const [args, line] of cases) assertFailure(await runCrashcart([...args, c.id]), 125, line);
    assert.deepEqual(existsSync(images) ? cached() : [], had);
    await assertClean(before, c);
  });

  test('builds the default toolkit plus linux-perf once, then uses it as it is; perf runs', { timeout: 900_000 }, async (t) => {
    if (!ready(t)) return;
    assert.ok(c);
    const image = join(images, `${name}.img`);
    const before = await snapshot(c);

    const first = await runCrashcart(['-v', '--add', 'linux-perf', c.id, '--', 'perf', '--version'], { timeout: 900_000 });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^perf version 6\.\d+\.\d+/);
    assert.match(first.stderr, new RegExp(`^crashcart: no toolkit image yet; building ${literal(image)}: the full toolkit plus linux-perf \\(once: later runs use it\\)$`, 'm'));
    assert.match(first.stderr, new RegExp(`^crashcart: image: ${literal(image)} \\(built now\\)$`, 'm'));
    const sidecar = JSON.parse(readFileSync(`${image}.json`, 'utf8')) as { profile: string; added: string[]; packages: { name: string }[] };
    assert.equal(sidecar.profile, 'full');
    assert.deepEqual(sidecar.added, ['linux-perf']);
    assert.ok(sidecar.packages.some((p) => p.name === 'linux-perf'));
    await assertClean(before, c);
    const built = statSync(image);

    // the same packages, written another way: the same image, used as it is
    const t0 = performance.now();
    const second = await runCrashcart(['-v', '--add', 'linux-perf', c.id, '--', 'perf', 'stat', '-e', 'task-clock', 'true']);
    const ms = performance.now() - t0;
    assert.equal(second.code, 0, second.stderr);
    t.diagnostic(`second run with the cached image: ${ms.toFixed(0)} ms`);
    // perf stat's report goes to stderr: a software counter, which works without hardware ones
    assert.match(second.stderr, /^\s+[\d.]+ msec task-clock\b/m);
    assert.match(second.stderr, /^\s+[\d.]+ seconds time elapsed$/m);
    assert.match(second.stderr, new RegExp(`^crashcart: image: ${literal(image)}$`, 'm'));
    assert.doesNotMatch(second.stderr, /building|downloading|using cached/);
    const reused = statSync(image);
    assert.equal(reused.ino, built.ino, 'the image was replaced');
    assert.equal(reused.mtimeMs, built.mtimeMs, 'the image was rewritten');
    await assertClean(before, c);

    // image ls: the image, and what it adds
    const ls = await runCrashcart(['image', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^NAME\s+SHA256\s+SIZE\s+SOURCE\s+DATE$/m);
    assert.match(ls.stdout, new RegExp(`^${literal(name)}\\s+[0-9a-f]{12}\\s+[\\d.]+ MiB\\s+profile full \\+ linux-perf\\s+\\d{4}-\\d\\d-\\d\\dT[\\d:]+Z$`, 'm'));
    const json = JSON.parse((await runCrashcart(['image', 'ls', '--json'])).stdout) as { name: string; added?: string[] }[];
    assert.deepEqual(json.find((i) => i.name === name)?.added, ['linux-perf']);
  });

  test('another session holding the --add image: a plain attach is refused with one line naming it', { timeout: 120_000 }, async (t) => {
    if (!ready(t)) return;
    assert.ok(c);
    const image = join(images, `${name}.img`);
    assert.ok(statSync(image, { throwIfNoEntry: false }), 'the image of the test before is missing');
    const other = await testImage();
    const before = await snapshot(c);
    // a session that lasts until its stdin closes
    const holder = startCrashcart(['--add', 'linux-perf', c.id, '--', 'cat'], { stdin: 'pipe' });
    try {
      await waitFor('the --add session has grafted the toolkit', () => recordedSession(holder.pid!) !== undefined && grafts(c!.pid).length > 0);
      const loop = /^\d+ \d+ 7:(\d+) /.exec(grafts(c.pid)[0]!)?.[1];
      const r = await runCrashcart(['-i', other, c.id, '--', 'true']);
      assertFailure(
        r,
        125,
        `crashcart: runc container ${c.id} already has another toolkit image grafted at /dev/crashcart, held by 1 other session: ` +
          `${name} (profile full + linux-perf) on /dev/loop${loop}; ` +
          `use it with --add linux-perf or -i ${name}, or take it out with crashcart -u once its sessions end`,
      );
      // the default image would be refused the same way; --add joins the session's graft
      const joined = await runCrashcart(['--add', 'linux-perf', c.id, '--', 'perf', '--version']);
      assert.equal(joined.code, 0, joined.stderr);
      assert.match(joined.stdout, /^perf version /);
    } finally {
      holder.stdin?.end();
      const done = await holder;
      assert.equal(done.exitCode, 0, done.stderr);
    }
    await assertClean(before, c);
  });

  test('the cached --add image in a user-namespaced container and a docker container: perf runs, nothing rebuilt', { timeout: 300_000 }, async (t) => {
    if (!ready(t) || !requireCommand(t, 'dockerd')) return;
    const image = join(images, `${name}.img`);
    const built = statSync(image, { throwIfNoEntry: false });
    assert.ok(built, 'the image of the tests before is missing');
    const perfStat = ['--', 'perf', 'stat', '-e', 'task-clock', 'true'];
    const check = (r: CliResult) => {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^\s+[\d.]+ msec task-clock\b/m);
      assert.doesNotMatch(r.stderr, /building|downloading/);
    };

    const u = await createScratchContainer({ sleeperPath: await sleeperPath(), hostname: 'cc-add-userns', userns: USERNS });
    try {
      const before = await snapshot(u);
      check(await runCrashcart(['--add', 'linux-perf', u.id, ...perfStat]));
      await assertClean(before, u);
    } finally {
      await u.remove();
    }

    const hostBefore = await snapshot();
    const d = await startDockerd();
    try {
      await importScratchImage(d, 'mini:latest', await sleeperPath());
      const run = await d.docker(['run', '-d', '--network', 'none', '--name', 'addd', 'mini:latest', '/bin/sleeper', '100000']);
      assert.equal(run.code, 0, run.stderr);
      check(await runCrashcart(['--add', 'linux-perf', 'addd', ...perfStat], { env: d.env }));
      const pid = Number((await d.docker(['inspect', '-f', '{{.State.Pid}}', 'addd'])).stdout.trim());
      assert.deepEqual(grafts(pid), [], 'the graft stayed in the docker container');
    } finally {
      const ids = (await d.docker(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
      if (ids.length) await d.docker(['rm', '-f', ...ids]);
      await stopAndCheck(d, 'dockerd or containerd');
    }
    await assertClean(hostBefore);
    const after = statSync(image);
    assert.deepEqual([after.ino, after.mtimeMs], [built.ino, built.mtimeMs], 'the image was rebuilt');
  });
});
