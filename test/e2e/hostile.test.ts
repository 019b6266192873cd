// A container whose contents are hostile must not steer crashcart, which runs as host root:
// a symlink where the toolkit goes, container files that point at the host's, a FIFO where
// a file is read, a process in the container with CAP_SYS_PTRACE waiting for crashcart's
// child to appear. And --caps target, which runs the
// command with the container process's own capabilities instead of full root.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer, type ScratchOptions } from '../../src/demo/scratch.js';
import { runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { projectRoot, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, assertFailure, childrenOf, grafts, mountinfo, procState, snapshot, waitFor } from '../helpers/expect.js';
import { readProc } from '../helpers/procs.js';

const BASE = `cchostile-${randomBytes(3).toString('hex')}`;
const USERNS = { hostUid: 100000, hostGid: 100000, size: 65536 };

let image = '';
let scratch = '';
const runc = (...args: string[]) => execa('runc', args, { stdin: 'ignore' });

function ready(t: TestContext): boolean {
  return requireRoot(t) && requireCommand(t, 'runc') && requireCommand(t, 'gcc');
}

async function startFor(t: TestContext, opts: Partial<ScratchOptions>): Promise<ScratchContainer> {
  const c = await createScratchContainer({ sleeperPath: await sleeperPath(), ...opts });
  t.after(() => c.remove());
  return c;
}

/** The ptrace probe (test/fixtures/ptrace-probe.c), compiled statically for the container. */
async function probe(): Promise<string> {
  const out = join(scratch, 'ptrace-probe');
  await execa('gcc', ['-static', '-O2', '-Wall', '-Wextra', '-o', out, join(projectRoot(), 'test/fixtures/ptrace-probe.c')], { stdin: 'ignore' });
  return out;
}

describe('hostile containers', () => {
  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
    scratch = mkdtempSync(join(tmpdir(), 'crashcart-hostile-'));
  });
  after(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  test('/dev/crashcart planted as a symlink to /etc: refused, never followed, nothing mounted', async (t) => {
    if (!ready(t)) return;
    const c = await startFor(t, { id: `${BASE}-link`, busybox: true });
    await runc('exec', c.id, '/bin/busybox', 'ln', '-s', '/etc', '/dev/crashcart');
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, c.id, '--', 'true']);
    assertFailure(r, 125, 'crashcart: cannot graft the toolkit: /dev/crashcart in the container is a symlink, and crashcart never follows a symlink inside a container ' +
      "(openat '/dev/crashcart': ELOOP (Too many levels of symbolic links)); remove /dev/crashcart inside the container, or look at what put it there");
    assert.deepEqual(mountinfo(c.pid).filter((l) => / \/etc /.test(l)), [], 'nothing mounted over the container\'s /etc');
    assert.deepEqual(grafts(c.pid), []);
    await assertClean(before, c);
  });

  test('a mount the container made at /dev/crashcart is its own: attach, -u, gc and ps leave it alone', async (t) => {
    if (!ready(t)) return;
    const c = await startFor(t, { id: `${BASE}-theirs`, busybox: true });
    // as the container's root could do it with CAP_SYS_ADMIN
    const inside = (...args: string[]) => execa('nsenter', ['-t', String(c.pid), '-m', '/bin/busybox', ...args], { stdin: 'ignore' });
    await inside('mkdir', '/dev/crashcart');
    await inside('mount', '-t', 'tmpfs', 'theirs', '/dev/crashcart');
    t.after(async () => {
      await inside('umount', '/dev/crashcart').catch(() => {});
      await inside('rmdir', '/dev/crashcart').catch(() => {});
    });
    const before = await snapshot(c);
    const theirs = `crashcart: runc container ${c.id} has tmpfs theirs mounted at /dev/crashcart, not a crashcart toolkit: crashcart leaves it alone; unmount it inside the container if it is yours to remove`;
    assertFailure(await runCrashcart(['-i', image, c.id, '--', 'true']), 125, theirs);
    assertFailure(await runCrashcart(['-u', c.id]), 125, theirs);
    const gc = await runCrashcart(['gc']);
    assert.equal(gc.stdout, 'nothing to clean up');
    const ps = await runCrashcart(['ps', '--json', '-r', 'runc']);
    assert.equal(ps.code, 0, ps.stderr);
    const row = (JSON.parse(ps.stdout) as { id: string; grafted: boolean }[]).find((r) => r.id === c.id);
    assert.equal(row?.grafted, false);
    assert.deepEqual(grafts(c.pid).map((l) => l.split(' - ')[1]), ['tmpfs theirs rw']);
    await assertClean(before, c);
  });

  test("a container file that is an absolute symlink resolves inside the container, never to the host's file", async (t) => {
    if (!ready(t)) return;
    // The host file the container points at, and the container's own file at that path.
    const hostFile = join(scratch, 'passwd');
    writeFileSync(hostFile, 'evil:x:4242:4242::/:/bin/sh\n');
    const escaping = await startFor(t, { id: `${BASE}-escape`, busybox: true, files: [{ path: '/etc/passwd', symlink: hostFile }] });
    const inside = await startFor(t, {
      id: `${BASE}-inside`,
      busybox: true,
      files: [{ path: '/etc/passwd', symlink: '/etc/passwd.real' }, { path: '/etc/passwd.real', content: 'app:x:1234:1234::/:/bin/sh\n' }],
    });
    const before = await snapshot(escaping);
    assertFailure(await runCrashcart(['-i', image, '--user', 'evil', escaping.id, '--', 'id', '-u']), 125,
      "crashcart: user 'evil' is not in the container's /etc/passwd; give a numeric uid[:gid]");
    await assertClean(before, escaping);
    // the same kind of symlink, to a file that is in the container: followed, inside it
    const r = await runCrashcart(['-i', image, '--user', 'app', inside.id, '--', 'id', '-u']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, '1234');
  });

  test('a FIFO planted where crashcart reads a file does not hang it', async (t) => {
    if (!ready(t)) return;
    const c = await startFor(t, { id: `${BASE}-fifo`, busybox: true, readOnly: false });
    await runc('exec', c.id, '/bin/busybox', 'mkfifo', '/etc/passwd');
    const before = await snapshot(c);
    assertFailure(await runCrashcart(['-i', image, '--user', 'nobody', c.id, '--', 'true'], { timeout: 20_000 }), 125,
      "crashcart: user 'nobody' is not in the container's /etc/passwd; give a numeric uid[:gid]");
    await assertClean(before, c);
  });

  test('a process in the container with CAP_SYS_PTRACE cannot reach crashcart\'s child before it execs', async (t) => {
    if (!ready(t)) return;
    const c = await startFor(t, { id: `${BASE}-ptrace`, userns: USERNS, files: [{ path: '/bin/probe', source: await probe() }] });
    const before = await snapshot(c);
    const asContainer = (nspid: number) => runc('exec', '--cap', 'CAP_SYS_PTRACE', c.id, '/bin/probe', String(nspid));
    // the probe can reach the container's own process: it has what it needs
    assert.equal((await asContainer(1)).stdout, 'ptrace: ok\nenviron: ok');

    // stopped where it is in the container's namespaces but still host root, with host fds
    const run = startCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'in-target:stop' } });
    let command = 0;
    await waitFor('the command stops inside the container', () => {
      // crashcart's other children (the graft's) come and go: one may be gone once listed
      const middle = childrenOf(run.pid!).find((p) => readProc(p)?.comm === 'crashcart-wait');
      command = middle ? childrenOf(middle)[0] ?? 0 : 0;
      return command > 0 && procState(command) === 'T';
    });
    try {
      const nspid = Number(/^NSpid:\s+\d+\s+(\d+)$/m.exec(readFileSync(`/proc/${command}/status`, 'utf8'))![1]);
      assert.match(readFileSync(`/proc/${command}/status`, 'utf8'), /^Uid:\s+0\s/m, 'still host root');
      const r = await asContainer(nspid);
      assert.equal(r.stdout, 'ptrace: EPERM\nenviron: EACCES');
    } finally {
      process.kill(command, 'SIGCONT');
    }
    const done = await run;
    assert.equal(done.exitCode, 0, done.stderr);
    await assertClean(before, c);
  });

  // Node opens its own files close-on-exec (and marks inherited ones so at start), and so does
  // the addon; close_range (or, before Linux 5.11, the fd-by-fd fallback) is the guard that
  // keeps it so whatever a future change opens. Both paths leave the command 0, 1 and 2.
  test('no descriptor of crashcart reaches the command, with close_range and with its fallback', async (t) => {
    if (!ready(t)) return;
    const c = await startFor(t, { id: `${BASE}-fds`, busybox: true });
    const before = await snapshot(c);
    for (const fault of [undefined, 'no-close-range']) {
      const r = await runCrashcart(['-i', image, c.id, '--', 'sh', '-c', 'ls /proc/$$/fd; true'], { env: fault ? { CRASHCART_FAULT: fault } : {} });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split(/\s+/).filter(Boolean).map(Number).sort((a, b) => a - b), [0, 1, 2], `${fault ?? 'close_range'}: ${r.stdout}`);
    }
    await assertClean(before, c);
  });

  describe('--caps target', () => {
    const caps = (status: string) => Object.fromEntries(['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs']
      .map((k) => [k, new RegExp(`^${k}:\\s+(\\S+)$`, 'm').exec(status)?.[1]]));

    test("the command has the container process's capabilities and no_new_privs, not full root", async (t) => {
      if (!ready(t)) return;
      const c = await startFor(t, { id: `${BASE}-caps`, busybox: true });
      const before = await snapshot(c);
      const target = caps(readFileSync(`/proc/${c.pid}/status`, 'utf8'));
      const r = await runCrashcart(['-i', image, '--caps', 'target', c.id, '--', 'cat', '/proc/self/status']);
      assert.equal(r.code, 0, r.stderr);
      const mine = caps(r.stdout);
      for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(mine[k], target[k], k);
      assert.equal(mine.NoNewPrivs, '1');
      assert.notEqual(target.CapBnd, caps(readFileSync('/proc/self/status', 'utf8')).CapBnd, 'the container has fewer capabilities than the host');
      // what CAP_SYS_ADMIN allows: refused with --caps target, allowed by default
      const limited = await runCrashcart(['-i', image, '--caps', 'target', c.id, '--', 'unshare', '-m', 'true']);
      assert.notEqual(limited.code, 0, 'unshare needs CAP_SYS_ADMIN');
      assert.match(limited.stderr, /Operation not permitted/);
      const full = await runCrashcart(['-i', image, c.id, '--', 'unshare', '-m', 'true']);
      assert.equal(full.code, 0, full.stderr);
      await assertClean(before, c);
    });

    test('with --user, the capabilities survive the change of ids', async (t) => {
      if (!ready(t)) return;
      const c = await startFor(t, { id: `${BASE}-capsuser`, busybox: true });
      const before = await snapshot(c);
      const r = await runCrashcart(['-i', image, '--caps', 'target', '--user', '1000:1000', c.id, '--', 'cat', '/proc/self/status']);
      assert.equal(r.code, 0, r.stderr);
      const mine = caps(r.stdout);
      assert.match(r.stdout, /^Uid:\s+1000\s+1000\s+1000\s+1000$/m);
      assert.equal(mine.CapBnd, caps(readFileSync(`/proc/${c.pid}/status`, 'utf8')).CapBnd);
      assert.equal(mine.NoNewPrivs, '1');
      await assertClean(before, c);
    });
  });
});
