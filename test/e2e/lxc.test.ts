// Real LXC containers (lxc-start under a private lxcpath, configs written by hand, a
// scratch root) are found by name and grafted like any other target.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { lxcAttachCommand } from '../../src/runtimes/lxc.js';
import { attachAndCheck, runCrashcart, testImage } from '../helpers/cli.js';
import { assertNoLeaks, onPath, requireCommand, requireRoot, snapshotHost } from '../helpers/host.js';
import { createPrivateLxc, type PrivateLxc } from '../helpers/lxc.js';

const unique = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

describe('lxc', () => {
  let lxc: PrivateLxc | undefined;
  let image = '';
  let setupError: unknown;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'lxc-start') || !requireCommand(t, 'lxc-attach')) return false;
    if (setupError) throw setupError;
    return lxc !== undefined;
  };

  const snap = (pid: number) => snapshotHost({ pid, rootfs: `/proc/${pid}/root` });

  /** Attaches with `args`: the target's pid 1 is the sleeper, and nothing is left behind. */
  const attach = async (pid: number, args: string[]): Promise<number> =>
    (await attachAndCheck({ image, pid, args, env: lxc!.env })).ms;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !onPath('lxc-start')) return;
    try {
      image = await testImage();
      lxc = await createPrivateLxc();
    } catch (err) {
      setupError = err;
    }
  });

  after(async () => {
    if (!lxc) return;
    assert.deepEqual(await lxc.destroy(), [], 'LXC left something behind');
  });

  test('a running container: by name and with --runtime lxc, its read-only root untouched', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccweb');
    await lxc!.define(name, { readOnly: true });
    const t0 = performance.now();
    const pid = await lxc!.start(name);
    t.diagnostic(`lxc-start until running: ${Math.round(performance.now() - t0)} ms`);
    const root = (await readFile(`/proc/${pid}/mountinfo`, 'utf8')).split('\n').find((l) => l.split(' ')[4] === '/');
    assert.match(root ?? '', /^\S+ \S+ \S+ \S+ \/ ro[, ]/, 'the container\'s root is mounted read-only');

    t.diagnostic(`attach by name: ${await attach(pid, [name])} ms`);
    t.diagnostic(`attach with --runtime lxc: ${await attach(pid, ['--runtime', 'lxc', name])} ms`);

    const verbose = await runCrashcart(['-i', image, '-v', name, '--', 'true'], { env: lxc!.env });
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.match(verbose.stderr, new RegExp(`target: lxc ${name} \\(pid ${pid}\\)`));
    await lxc!.stop(name);
  });

  test('a unique name prefix attaches; a prefix two containers share is refused with both', async (t) => {
    if (!ready(t)) return;
    const base = unique('ccpre');
    for (const n of ['one', 'two']) await lxc!.define(`${base}-${n}`);
    const one = await lxc!.start(`${base}-one`);
    await lxc!.start(`${base}-two`);
    await attach(one, [`${base}-o`]);
    const host = await snapshotHost();
    const r = await runCrashcart(['-i', image, `${base}-`, '--', 'true'], { env: lxc!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, `crashcart: '${base}-' matches 2 containers: lxc ${base}-one, lxc ${base}-two; give more of the ID, or the runtime with --runtime`);
    assertNoLeaks(host, await snapshotHost());
    for (const n of ['one', 'two']) await lxc!.stop(`${base}-${n}`);
  });

  test('a defined container that never ran, and one that was stopped, are refused with their status', async (t) => {
    if (!ready(t)) return;
    const fresh = unique('ccnew');
    const gone = unique('ccgone');
    await lxc!.define(fresh);
    await lxc!.define(gone);
    await lxc!.start(gone);
    await lxc!.stop(gone);
    const host = await snapshotHost();
    for (const name of [fresh, gone]) {
      for (const runtime of [[], ['--runtime', 'lxc']]) {
        const r = await runCrashcart(['-i', image, ...runtime, name, '--', 'true'], { env: lxc!.env });
        assert.equal(r.code, 125);
        assert.equal(r.stderr, `crashcart: container ${name} is not running (status: stopped); start it first, ` +
          `or open its files in a sandbox with crashcart --stopped ${name} (lxc ${name})`);
      }
    }
    assertNoLeaks(host, await snapshotHost());
  });

  test('--runtime lxc does not fall back to a PID; an unknown name names lxc', async (t) => {
    if (!ready(t)) return;
    const host = await snapshotHost();
    const r = await runCrashcart(['-i', image, '--runtime', 'lxc', 'nosuch', '--', 'true'], { env: lxc!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, "crashcart: no container or process matches 'nosuch' (asked: lxc); " +
      'check the ID with your runtime (e.g. lxc-ls -f), or give a PID');
    const byPid = await runCrashcart(['-i', image, '--runtime', 'lxc', String(process.pid), '--', 'true'], { env: lxc!.env });
    assert.equal(byPid.code, 125);
    assert.equal(byPid.stderr, `crashcart: no container or process matches '${process.pid}' (asked: lxc); ` +
      'check the ID with your runtime (e.g. lxc-ls -f), or give a PID');
    assertNoLeaks(host, await snapshotHost());
  });

  test('the runtime\'s exec: lxc-attach runs the command in the container, with only the given environment', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccexec');
    await lxc!.define(name, { readOnly: true, busybox: true });
    const pid = await lxc!.start(name);
    const before = await snap(pid);
    const cmd = lxcAttachCommand(lxc!.path, name, {
      argv: ['/bin/busybox', 'sh', '-c', 'cat /proc/1/comm; hostname; id -u; id -g; echo "$FOO"; echo "${HOST_ONLY-unset}"'],
      tty: false,
      env: { FOO: 'bar baz' },
      user: '1000:1001',
    });
    const t0 = performance.now();
    const r = await execa(cmd.file, cmd.args, { env: { ...cmd.env, HOST_ONLY: 'leaked' }, reject: false, stdin: 'ignore' });
    t.diagnostic(`lxc-attach: ${Math.round(performance.now() - t0)} ms`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, ['sleeper', name, '1000', '1001', 'bar baz', 'unset'].join('\n'));
    assertNoLeaks(before, await snap(pid));
    await lxc!.stop(name);
  });

  test('the runtime\'s exec runs the grafted toolkit', async (t) => {
    if (!ready(t)) return;
    const name = unique('cctool');
    await lxc!.define(name, { readOnly: true });
    const pid = await lxc!.start(name);
    const before = await snap(pid);
    const graft = await runCrashcart(['-i', image, '-m', name], { env: lxc!.env });
    assert.equal(graft.code, 0, graft.stderr);
    const cmd = lxcAttachCommand(lxc!.path, name, {
      argv: ['/dev/crashcart/bin/bash', '-c', 'echo "$FOO"; cat /proc/1/comm'],
      tty: false,
      env: { FOO: 'from lxc-attach', PATH: '/dev/crashcart/bin' },
    });
    const r = await execa(cmd.file, cmd.args, { env: cmd.env, reject: false, stdin: 'ignore' });
    const ungraft = await runCrashcart(['-i', image, '-u', name], { env: lxc!.env });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'from lxc-attach\nsleeper');
    assert.equal(ungraft.code, 0, ungraft.stderr);
    assertNoLeaks(before, await snap(pid));
    await lxc!.stop(name);
  });

  test('crashcart --exec goes through lxc-attach: the toolkit grafted, the exit code passed on, then ungrafted', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccexec');
    await lxc!.define(name, { readOnly: true });
    const pid = await lxc!.start(name);
    const before = await snap(pid);
    const r = await runCrashcart(['-i', image, '--exec', name, '--', 'sh', '-c', 'cat /proc/1/comm; echo "$PATH"; exit 5'], { env: lxc!.env });
    assert.equal(r.code, 5, r.stderr);
    const [comm, path] = r.stdout.split('\n');
    assert.equal(comm, 'sleeper');
    assert.match(path!, /^\/dev\/crashcart\/bin:/);
    assertNoLeaks(before, await snap(pid));
    await lxc!.stop(name);
  });
});
