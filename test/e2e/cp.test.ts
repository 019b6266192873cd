// crashcart cp against real containers: runc (a writable root with busybox, a read-only
// root, a user-namespaced one, a stopped one, copied out of through its post-mortem view) and a private dockerd's read-only container.
// The container is hostile: symlinks planted in it name a canary directory of the host
// (absolute, and relative through '..'), a tar stream plants a symlink and writes through
// it, and a process in the container swaps a directory and a symlink in a loop while cp
// runs. Nothing outside the container's root may be read or written: the canary's secret
// must never appear in what was copied out, and the canary must stay as it was.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { encodeHeader, END_OF_ARCHIVE, padding } from '../../src/core/tar.js';
import { cliEnv, privateDirs, runCrashcart } from '../helpers/cli.js';
import { crashedOci, CRASHY, digests } from '../helpers/crashy.js';
import { dockerdForSuite } from '../helpers/dockerd.js';
import { onPath, projectRoot, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, assertFailure, snapshot } from '../helpers/expect.js';
import { processes } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const USERNS = { hostUid: 100000, hostGid: 100000, size: 65536 };
const OLD = new Date('2001-02-03T04:05:06Z');
const canRun = () => process.getuid?.() === 0;

/** The processes that hold a stopped container's view for crashcart cp (native/sandbox.cc names them). */
const viewProcesses = () => processes().filter((p) => p.comm === 'crashcart-view').map((p) => p.pid);

/** crashcart cp with a tar stream on stdin. */
async function cpFromStdin(tar: Buffer, dest: string, extra: string[] = []) {
  const r = await execa(process.execPath, [join(projectRoot(), 'bin', 'crashcart'), 'cp', ...extra, '-', dest], { env: cliEnv(), input: tar, reject: false, timeout: 60_000 });
  return { code: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function cpToStdout(src: string, env: Record<string, string> = {}): Promise<{ code: number | undefined; tar: Buffer; stderr: string }> {
  const r = await execa(process.execPath, [join(projectRoot(), 'bin', 'crashcart'), 'cp', src, '-'], { env: cliEnv(env), encoding: 'buffer', stdin: 'ignore', reject: false, timeout: 60_000 });
  return { code: r.exitCode, tar: Buffer.from(r.stdout), stderr: Buffer.from(r.stderr).toString() };
}

/** Every regular file's bytes below `dir`, concatenated (to look for the canary's secret). */
function allBytes(dir: string): string {
  let out = '';
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = lstatSync(p); // a symlink that came out of the container is not followed here either
    if (st.isDirectory()) out += allBytes(p);
    else if (st.isFile()) out += readFileSync(p, 'latin1');
  }
  return out;
}

const member = (name: string, type: 'file' | 'symlink' | 'dir', body = '', linkName = '') => {
  const h = encodeHeader({ name, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, size: type === 'file' ? body.length : 0, mtime: 1_000_000_000, linkName, devMajor: 0, devMinor: 0 });
  return type === 'file' ? Buffer.concat([h, Buffer.from(body), padding(body.length)]) : h;
};

describe('crashcart cp', () => {
  let box: ScratchContainer | undefined;
  let ro: ScratchContainer | undefined;
  let userns: ScratchContainer | undefined;
  let canary = '';
  let secret = '';
  let work = '';

  const canaryIntact = () => {
    assert.deepEqual(readdirSync(canary), ['secret'], 'nothing was written into the host canary');
    assert.equal(readFileSync(join(canary, 'secret'), 'utf8'), secret, 'the host canary is unchanged');
  };

  before(async () => {
    if (!canRun()) return;
    canary = mkdtempSync(join(tmpdir(), 'crashcart-canary-'));
    secret = `canary-${randomBytes(16).toString('hex')}`;
    writeFileSync(join(canary, 'secret'), secret);
    work = mkdtempSync(join(tmpdir(), 'crashcart-cp-test-'));
    writeFileSync(join(work, 'plain'), 'plain');
    const sleeper = await sleeperPath();
    const made = await Promise.allSettled([
      createScratchContainer({
        sleeperPath: sleeper,
        busybox: true,
        readOnly: false,
        files: [
          { path: '/data/a.txt', content: 'hello a', mode: 0o640 },
          { path: '/data/sub/b.txt', content: 'hello b' },
          { path: '/data/abs', symlink: canary },
          { path: '/data/abs2', symlink: canary },
          { path: '/data/rel', symlink: `../../../../../../../..${canary}` },
          { path: '/race/swap/inside.txt', content: 'inside' },
        ],
      }),
      createScratchContainer({ sleeperPath: sleeper, files: [{ path: '/etc/app.conf', content: 'conf' }] }),
      createScratchContainer({ sleeperPath: sleeper, readOnly: false, userns: USERNS }),
    ]);
    [box, ro, userns] = made.map((m) => (m.status === 'fulfilled' ? m.value : undefined));
    for (const m of made) if (m.status === 'rejected') throw m.reason;
    utimesSync(join(box!.rootfs, 'data/a.txt'), OLD, OLD);
  });

  after(async () => {
    for (const c of [box, ro, userns]) await c?.remove();
    if (canary) rmSync(canary, { recursive: true, force: true });
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc');
  const ok = (r: { code: number | null | undefined; stderr: string }) => assert.deepEqual([r.code, r.stderr], [0, '']);

  test('out: a file, a directory with its symlinks as symlinks, its contents; modes kept, owner and times only with -a', async (t) => {
    if (!ready(t)) return;
    const out = mkdtempSync(join(work, 'out-'));
    ok(await runCrashcart(['cp', `${box!.id}:/data/a.txt`, join(out, 'a-copy')]));
    assert.equal(readFileSync(join(out, 'a-copy'), 'utf8'), 'hello a');
    assert.equal(statSync(join(out, 'a-copy')).mode & 0o7777, 0o640);
    assert.notEqual(statSync(join(out, 'a-copy')).mtimeMs, OLD.getTime(), 'without -a the time is now');

    ok(await runCrashcart(['cp', `${box!.id}:/data`, out]));
    assert.equal(readFileSync(join(out, 'data/sub/b.txt'), 'utf8'), 'hello b');
    assert.equal(readlinkSync(join(out, 'data/abs')), canary, 'an absolute symlink is copied as one, never followed');
    assert.equal(readlinkSync(join(out, 'data/rel')), `../../../../../../../..${canary}`);
    assert.ok(!allBytes(out).includes(secret));

    mkdirSync(join(out, 'contents'));
    ok(await runCrashcart(['cp', '-a', `${box!.id}:/data/.`, join(out, 'contents')]));
    assert.deepEqual(readdirSync(join(out, 'contents')).sort(), ['a.txt', 'abs', 'abs2', 'rel', 'sub']);
    assert.equal(statSync(join(out, 'contents/a.txt')).mtimeMs, OLD.getTime(), '-a keeps the time');
    canaryIntact();
  });

  test("out as a tar stream on stdout ('-')", async (t) => {
    if (!ready(t)) return;
    const r = await cpToStdout(`${box!.id}:/data`);
    assert.deepEqual([r.code, r.stderr], [0, '']);
    const list = await execa('tar', ['-tvf', '-'], { input: r.tar });
    const names = list.stdout.split('\n').map((l) => l.split(/\s+/).slice(5).join(' ')).sort();
    assert.deepEqual(names, ['data/', 'data/a.txt', `data/abs -> ${canary}`, `data/abs2 -> ${canary}`, `data/rel -> ../../../../../../../..${canary}`, 'data/sub/', 'data/sub/b.txt']);
    const x = mkdtempSync(join(work, 'x-'));
    await execa('tar', ['-xf', '-', '-C', x], { input: r.tar });
    assert.equal(readFileSync(join(x, 'data/a.txt'), 'utf8'), 'hello a');
    assert.ok(!r.tar.toString('latin1').includes(secret));
  });

  test('in: a file, a directory, a tar stream; the files are the container root\'s', async (t) => {
    if (!ready(t)) return;
    const src = mkdtempSync(join(work, 'in-'));
    mkdirSync(join(src, 'tree/deep'), { recursive: true });
    writeFileSync(join(src, 'tree/deep/f'), 'deep');
    writeFileSync(join(src, 'one'), 'one');
    symlinkSync('deep/f', join(src, 'tree/link'));
    linkSync(join(src, 'tree/deep/f'), join(src, 'tree/hard'));
    chownSync(join(src, 'one'), 1234, 1234);
    ok(await runCrashcart(['cp', join(src, 'one'), `${box!.id}:/tmp/one-copy`]));
    ok(await runCrashcart(['cp', join(src, 'tree'), `${box!.id}:/tmp/`]));
    const inside = (p: string) => join(box!.rootfs, p);
    assert.equal(readFileSync(inside('tmp/one-copy'), 'utf8'), 'one');
    assert.equal(lstatSync(inside('tmp/one-copy')).uid, 0, 'owned by the container root, not the source owner');
    assert.equal(readFileSync(inside('tmp/tree/deep/f'), 'utf8'), 'deep');
    assert.equal(readlinkSync(inside('tmp/tree/link')), 'deep/f');
    assert.equal(lstatSync(inside('tmp/tree/hard')).ino, lstatSync(inside('tmp/tree/deep/f')).ino, 'a hard link stays one');
    // over an existing file: replaced
    writeFileSync(join(src, 'one'), 'two');
    ok(await runCrashcart(['cp', join(src, 'one'), `${box!.id}:/tmp/one-copy`]));
    assert.equal(readFileSync(inside('tmp/one-copy'), 'utf8'), 'two');

    const tar = await execa('tar', ['-C', src, '-cf', '-', 'tree'], { encoding: 'buffer' });
    mkdirSync(inside('tmp/t'));
    ok(await cpFromStdin(Buffer.from(tar.stdout), `${box!.id}:/tmp/t`));
    assert.equal(readFileSync(inside('tmp/t/tree/deep/f'), 'utf8'), 'deep');
    assert.equal(lstatSync(inside('tmp/t/tree/hard')).ino, lstatSync(inside('tmp/t/tree/deep/f')).ino, "GNU tar's hard link member");
    const r = await runCrashcart(['cp', join(src, 'tree'), `${box!.id}:/tmp/one-copy`]);
    assert.deepEqual([r.code, r.stderr], [125, `crashcart: cannot copy a directory to a file: ${box!.id}:/tmp/one-copy; give a directory, or a new name`]);
  });

  test('symlinks planted in the container never lead to the host, both ways', async (t) => {
    if (!ready(t)) return;
    const out = mkdtempSync(join(work, 'esc-'));
    for (const link of ['abs', 'rel']) {
      const r = await runCrashcart(['cp', `${box!.id}:/data/${link}/secret`, join(out, link)]);
      assert.deepEqual([r.code, r.stderr], [125, `crashcart: cannot copy ${box!.id}:/data/${link}/secret: no such file or directory; check the path`]);
      const w = await runCrashcart(['cp', join(canary, 'secret'), `${box!.id}:/data/${link}/pwned`]);
      assert.equal(w.code, 125);
      assert.match(w.stderr, new RegExp(`^crashcart: the parent directory of ${box!.id}:/data/${link}/pwned does not exist: openat2 '/data/${link}': ENOENT`));
    }
    assert.deepEqual(readdirSync(out), []);
    // a destination that is a symlink to a file elsewhere: the symlink is replaced
    ok(await runCrashcart(['cp', join(work, 'plain'), `${box!.id}:/data/abs2`]));
    assert.ok(lstatSync(join(box!.rootfs, 'data/abs2')).isFile());
    // a tar stream that plants a symlink and writes through it, and a member named with '..'
    const evil = Buffer.concat([member('esc', 'symlink', '', canary), member('esc/pwned', 'file', 'x'), END_OF_ARCHIVE]);
    mkdirSync(join(box!.rootfs, 'tmp/evil'));
    const e = await cpFromStdin(evil, `${box!.id}:/tmp/evil`);
    assert.deepEqual([e.code, e.stderr], [125, `crashcart: cannot write into ${box!.id}:/tmp/evil/esc: a symlink is in the way; crashcart never follows a symlink below the destination; copy to a path without one`]);
    const dots = Buffer.concat([member(`../../../../../../..${canary}/pwned`, 'file', 'x'), member('fine', 'file', 'fine'), END_OF_ARCHIVE]);
    const d = await cpFromStdin(dots, `${box!.id}:/tmp/evil`);
    assert.deepEqual([d.code, d.stderr], [0, `crashcart: warning: skipped '../../../../../../..${canary}/pwned' of the tar stream: its name leads out of the destination ('..')`]);
    assert.equal(readFileSync(join(box!.rootfs, 'tmp/evil/fine'), 'utf8'), 'fine');
    canaryIntact();
  });

  test('a process in the container swapping a directory and a symlink to the host while cp runs', async (t) => {
    if (!ready(t)) return;
    // busybox sh in the container: /race/swap is a directory, then a symlink to the canary
    const script = `cd /race; while :; do mv swap swap.d; ln -s ${canary} swap; rm swap; mv swap.d swap; done`;
    // detached, it keeps runc's stdio: a pipe would hold execa until the loop ends
    await execa('runc', ['exec', '-d', box!.id, '/bin/busybox', 'sh', '-c', script], { stdio: 'ignore' });
    const racer = () => processes().filter((p) => {
      try {
        return readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').includes(script);
      } catch {
        return false;
      }
    });
    await waitFor('the swapping loop runs', () => racer().length > 0);
    try {
      const codes = new Map<number | null, number>();
      for (let i = 0; i < 25; i++) {
        const out = join(work, `race-${i}`);
        mkdirSync(out);
        const runs = await Promise.all([
          runCrashcart(['cp', `${box!.id}:/race/swap`, out]),
          runCrashcart(['cp', `${box!.id}:/race`, out]),
          runCrashcart(['cp', join(work, 'plain'), `${box!.id}:/race/swap/plain-${i}`]),
          runCrashcart(['cp', join(work, 'plain'), `${box!.id}:/race/swap/`]),
        ]);
        for (const r of runs) {
          codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
          assert.ok(r.code === 0 || r.code === 125, r.stderr);
          if (r.code === 125) assert.equal(r.stderr.split('\n').length, 1, r.stderr);
          else assert.ok(!/internal error/.test(r.stderr), r.stderr);
        }
        assert.ok(!allBytes(out).includes(secret), 'the canary was never read');
        canaryIntact();
      }
      t.diagnostic(`exit codes under the race: ${[...codes].map(([c, n]) => `${c}: ${n}`).join(', ')}`);
    } finally {
      // The loop's shell forks for mv, ln and rm: a fork carries its command line until it
      // execs and may be gone by the time it is signalled. Kill until none is left.
      await waitFor('the swapping loop is gone', () => {
        for (const p of racer()) {
          try {
            process.kill(p.pid, 'SIGKILL');
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
          }
        }
        return racer().length === 0;
      });
    }
    canaryIntact();
  });

  test('into a read-only root: one line naming the mount and a writable place; out works', async (t) => {
    if (!ready(t)) return;
    const r = await runCrashcart(['cp', join(work, 'plain'), `${ro!.id}:/etc/new.conf`]);
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`^crashcart: cannot write ${ro!.id}:/etc/new.conf: it is on / \\(\\w+, read-only\\) in the container; copy to a writable place there instead: /dev/shm$`));
    ok(await runCrashcart(['cp', join(work, 'plain'), `${ro!.id}:/dev/shm/new.conf`]));
    const out = mkdtempSync(join(work, 'ro-'));
    ok(await runCrashcart(['cp', `${ro!.id}:/etc/app.conf`, out]));
    assert.equal(readFileSync(join(out, 'app.conf'), 'utf8'), 'conf');
  });

  test("a user-namespaced container: new files are its root's (mapped), -a maps the ids, out shows its ids", async (t) => {
    if (!ready(t)) return;
    const src = mkdtempSync(join(work, 'userns-'));
    writeFileSync(join(src, 'f'), 'userns');
    chownSync(join(src, 'f'), 1000, 1000);
    ok(await runCrashcart(['cp', join(src, 'f'), `${userns!.id}:/tmp/f`]));
    ok(await runCrashcart(['cp', '-a', join(src, 'f'), `${userns!.id}:/tmp/f-a`]));
    const st = lstatSync(join(userns!.rootfs, 'tmp/f'));
    assert.deepEqual([st.uid, st.gid], [USERNS.hostUid, USERNS.hostGid], 'the container root, not nobody');
    const sa = lstatSync(join(userns!.rootfs, 'tmp/f-a'));
    assert.deepEqual([sa.uid, sa.gid], [USERNS.hostUid + 1000, USERNS.hostGid + 1000]);
    const out = mkdtempSync(join(work, 'userns-out-'));
    ok(await runCrashcart(['cp', '-a', `${userns!.id}:/tmp/f-a`, join(out, 'back')]));
    const sb = lstatSync(join(out, 'back'));
    assert.deepEqual([sb.uid, sb.gid], [1000, 1000], 'ids as the container sees them');
  });

  test('a stopped runc container: out of its files (a file it wrote, a directory, its volume, a tar stream); escape symlinks stay inside; into it refused; nothing left, its files unchanged', async (t) => {
    if (!ready(t)) return;
    const roots = mkdtempSync(join(tmpdir(), 'crashcart-cp-stopped-'));
    const env = { CRASHCART_RUNC_ROOT: roots };
    const c = await crashedOci('runc', `crashy-${randomBytes(3).toString('hex')}`, roots);
    t.after(async () => {
      await c.remove();
      rmSync(roots, { recursive: true, force: true });
    });
    // planted after it stopped: they must resolve inside its root, never to the host's canary
    symlinkSync(canary, join(c.rootfs, 'app/abs'));
    symlinkSync(`../../../../../../../..${canary}`, join(c.rootfs, 'app/rel'));
    const before = await digests({ rootfs: c.rootfs, volume: c.volume });
    const host = await snapshot();
    const out = mkdtempSync(join(work, 'stopped-'));

    ok(await runCrashcart(['cp', `${c.id}:/tmp/last-words`, join(out, 'last-words')], { env }));
    assert.equal(readFileSync(join(out, 'last-words'), 'utf8'), CRASHY.lastWords, 'the file its process wrote before it stopped');
    ok(await runCrashcart(['cp', `${c.id}:/app`, out], { env }));
    assert.deepEqual(readdirSync(join(out, 'app')).sort(), ['abs', 'crash.sh', 'rel']);
    assert.equal(readlinkSync(join(out, 'app/abs')), canary, 'a symlink is copied as one');
    ok(await runCrashcart(['cp', `${c.id}:/data/.`, out], { env }));
    assert.equal(readFileSync(join(out, 'kept'), 'utf8'), 'volume data\n', 'its volume, at its destination');
    const tar = await cpToStdout(`${c.id}:/app/crash.sh`, env);
    assert.deepEqual([tar.code, tar.stderr], [0, '']);
    const x = mkdtempSync(join(work, 'stopped-x-'));
    await execa('tar', ['-xf', '-', '-C', x], { input: tar.tar });
    assert.equal(readFileSync(join(x, 'crash.sh'), 'utf8'), readFileSync(join(c.rootfs, 'app/crash.sh'), 'utf8'));

    for (const link of ['abs', 'rel']) {
      const r = await runCrashcart(['cp', `${c.id}:/app/${link}/secret`, join(out, `esc-${link}`)], { env });
      assertFailure(r, 125, `crashcart: cannot copy ${c.id}:/app/${link}/secret: no such file or directory; check the path`);
    }
    assert.ok(!allBytes(out).includes(secret), 'the canary was never read');

    const w = await runCrashcart(['cp', join(work, 'plain'), `${c.id}:/tmp/plain`], { env });
    assertFailure(w, 125, `crashcart: cannot copy into ${c.id}: it is not running (status: stopped), and its writable layer belongs to its runtime; ` +
      `start it first, copy out of it (crashcart cp ${c.id}:PATH DEST), or look at its files with crashcart --stopped ${c.id}`);

    assert.deepEqual(await digests({ rootfs: c.rootfs, volume: c.volume }), before, "the container's files and volume are byte-identical");
    canaryIntact();
    await assertClean(host);
    assert.deepEqual(viewProcesses(), [], 'no process holds a view');
  });

  test('a stopped container: crashcart SIGKILLed while its view is open leaves nothing', async (t) => {
    if (!ready(t)) return;
    const roots = mkdtempSync(join(tmpdir(), 'crashcart-cp-stopped-'));
    const c = await crashedOci('runc', `crashy-${randomBytes(3).toString('hex')}`, roots);
    t.after(async () => {
      await c.remove();
      rmSync(roots, { recursive: true, force: true });
    });
    const host = await snapshot();
    const r = await runCrashcart(['cp', `${c.id}:/tmp/last-words`, join(work, 'killed')], { env: { CRASHCART_RUNC_ROOT: roots, CRASHCART_FAULT: 'cp-view-open:kill' } });
    assert.equal(r.signal, 'SIGKILL', r.stderr);
    await waitFor('the process that held the view is gone', () => viewProcesses().length === 0, { ms: 5_000 });
    await assertClean(host);
  });

  test('a paused container: neither out nor in, one line each', async (t) => {
    if (!ready(t)) return;
    const c = await createScratchContainer({ sleeperPath: await sleeperPath() });
    t.after(async () => {
      await execa('runc', ['resume', c.id], { stdin: 'ignore', reject: false });
      await c.remove();
    });
    await execa('runc', ['pause', c.id], { stdin: 'ignore' });
    const hint = 'crashcart cp copies between the host and running containers, and out of those that do not run: resume it, or wait until it has stopped';
    assertFailure(await runCrashcart(['cp', `${c.id}:/bin/sleeper`, work]), 125, `crashcart: container ${c.id} is not running (status: paused); ${hint}`);
    assertFailure(await runCrashcart(['cp', join(work, 'plain'), `${c.id}:/tmp/`]), 125, `crashcart: container ${c.id} is not running (status: paused); ${hint}`);
  });

  test('a copy with no container is refused in one line', async (t) => {
    if (!ready(t)) return;
    const r = await runCrashcart(['cp', 'a', 'b']);
    assert.deepEqual([r.code, r.stderr], [125, "crashcart: neither 'a' nor 'b' names a container; give TARGET:PATH on one side, e.g. crashcart cp web:/etc/hosts ."]);
  });

  test('the audit log has what was copied', async (t) => {
    if (!ready(t)) return;
    ok(await runCrashcart(['cp', `${box!.id}:/data/sub`, join(work, 'audited')]));
    const lines = readFileSync(privateDirs().audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const last = lines.filter((l) => l.event === 'cp').pop();
    assert.deepEqual(last.copy, { direction: 'out', from: `${box!.id}:/data/sub`, to: join(work, 'audited'), archive: false, files: 1, dirs: 1, symlinks: 0, bytes: 7, skipped: 0 });
    assert.deepEqual([last.target.id, last.exitCode], [box!.id, 0]);
  });
});

describe('crashcart cp: docker', () => {
  const dockerd = dockerdForSuite('mini:latest', sleeperPath, () => canRun() && (!!process.env.CI || onPath('dockerd')));

  test('a read-only --network none container: out, in to /dev/shm, and a read-only root refused', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd')) return;
    const d = dockerd();
    const run = await d.docker(['run', '-d', '--read-only', '--network', 'none', '--name', 'cpd', 'mini:latest', '/bin/sleeper', '100000']);
    assert.equal(run.code, 0, run.stderr);
    const work = mkdtempSync(join(tmpdir(), 'crashcart-cp-docker-'));
    try {
      const env = d.env;
      let r = await runCrashcart(['cp', 'cpd:/bin/sleeper', join(work, 'sleeper')], { env });
      assert.deepEqual([r.code, r.stderr], [0, '']);
      assert.ok(readFileSync(join(work, 'sleeper')).equals(readFileSync(await sleeperPath())));
      r = await runCrashcart(['cp', join(work, 'sleeper'), 'cpd:/dev/shm/'], { env });
      assert.deepEqual([r.code, r.stderr], [0, '']);
      r = await runCrashcart(['cp', join(work, 'sleeper'), 'cpd:/bin/other'], { env });
      assert.equal(r.code, 125);
      assert.match(r.stderr, /^crashcart: cannot write cpd:\/bin\/other: it is on \/ \(overlay, read-only\) in the container; copy to a writable place there instead: [/\w, ]*\/dev\/shm/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
