// --stopped on real runc and crun containers that crashed, and --rootfs on a directory: the
// sandbox shows their files as they were left, with their hostname, user, environment and
// working directory, changes nothing of them, and leaves nothing on the host, also when
// crashcart is SIGKILLed mid-session or fails or is killed at each step of building it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { isRunning } from '../../src/core/proc.js';
import { createScratchContainer } from '../../src/demo/scratch.js';
import { runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { buildCrashyRoot, crashedOci, CRASHY, digests, type CrashedOci } from '../helpers/crashy.js';
import { assertClean, assertFailure, snapshot } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { descendants, processes } from '../helpers/procs.js';
import { checkStopped, privateTmp, sandboxProcesses } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

const FIRST = (name: string, runtime: string) =>
  `crashcart: ${name} is stopped (${runtime} records no exit code); its files are opened in a sandbox: changes are thrown away, none of its processes run, network: loopback only`;

describe('--stopped with runc and crun, and --rootfs', { skip: !(process.getuid?.() === 0 && onPath('runc')) && 'needs root and runc' }, () => {
  const roots = mkdtempSync(join(tmpdir(), 'crashcart-stopped-roots-'));
  const env = { CRASHCART_RUNC_ROOT: join(roots, 'runc'), CRASHCART_CRUN_ROOT: join(roots, 'crun') };
  let image = '';
  let runc: CrashedOci | undefined;
  let setupError: unknown;

  before(async () => {
    try {
      image = await testImage();
      runc = await crashedOci('runc', `crashy-${randomBytes(3).toString('hex')}`, env.CRASHCART_RUNC_ROOT);
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    await runc?.remove();
    rmSync(roots, { recursive: true, force: true });
  });

  const ready = (t: TestContext) => {
    if (!requireRoot(t) || !requireCommand(t, 'runc')) return false;
    if (setupError) throw setupError;
    return runc !== undefined;
  };

  test('runc: its last words, hostname, user, environment and cwd; its files and volume unchanged; --entrypoint exits 3', async (t) => {
    if (!ready(t)) return;
    await checkStopped({
      args: ['--stopped', runc!.id],
      env,
      image,
      unchanged: { rootfs: runc!.rootfs, volume: runc!.volume },
      firstLine: FIRST(runc!.id, 'runc'),
      also: { script: 'cat /data/kept; ls -ld /data | cut -c1-10; (echo x > /data/x) 2>&1 | tail -1; grep -c " /dev/crashcart ro,nosuid,nodev" /proc/self/mountinfo', lines: ['volume data', '1'] },
    });
  });

  test('ps -a: the crashed container, openable by --stopped; runc records no exit code', async (t) => {
    if (!ready(t)) return;
    const r = await runCrashcart(['ps', '-a', '--json', '--runtime', 'runc'], { env });
    assert.equal(r.code, 0, r.stderr);
    const row = (JSON.parse(r.stdout) as Record<string, unknown>[]).find((x) => x.id === runc!.id);
    assert.deepEqual(row, { runtime: 'runc', id: runc!.id, name: null, pid: 0, status: 'stopped', grafted: false, sessions: 0, pinned: false, exitCode: null, finishedAt: null, opens: true });
    const table = await runCrashcart(['ps', '-a', '--runtime', 'runc'], { env });
    assert.match(table.stdout, new RegExp(`^runc +${runc!.id} +- +- +stopped +- +- +- +- +yes$`, 'm'));
  });

  test('crun: the same from its state directory', async (t) => {
    if (!ready(t) || !requireCommand(t, 'crun')) return;
    const crun = await crashedOci('crun', `crashy-${randomBytes(3).toString('hex')}`, env.CRASHCART_CRUN_ROOT);
    t.after(() => crun.remove());
    await checkStopped({ args: ['--stopped', crun.id], env, image, unchanged: { rootfs: crun.rootfs, volume: crun.volume }, firstLine: FIRST(crun.id, 'crun') });
  });

  test('--rootfs DIR: any directory, as root, in /', async (t) => {
    if (!ready(t)) return;
    const dir = mkdtempSync(join(tmpdir(), 'crashcart-stopped-rootfs-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const root = join(dir, 'myroot');
    await buildCrashyRoot(root);
    await writeFile(join(root, 'tmp/last-words'), CRASHY.lastWords);
    const before = await digests({ root });
    const host = await snapshot();
    const r = await runCrashcart(['-i', image, '--rootfs', root, 'sh', '-c', 'cat /tmp/last-words; hostname; pwd; id -u; rm -rf /app /etc; ls /'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `crashcart: ${root} is opened in a sandbox: changes are thrown away, network: loopback only`);
    assert.deepEqual(r.stdout.split('\n'), ['last words of crashy', 'myroot', '/', '0', 'bin', 'data', 'dev', 'proc', 'sys', 'tmp']);
    assert.deepEqual(await digests({ root }), before);
    await assertClean(host);
  });

  test('--rw-volumes writes into its volume, with a warning; its root still stays as it was', async (t) => {
    if (!ready(t)) return;
    const before = await digests({ rootfs: runc!.rootfs });
    const r = await runCrashcart(['-i', image, '--stopped', '--rw-volumes', runc!.id, '--', 'sh', '-c', 'echo written > /data/from-sandbox; echo x > /tmp/y'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stderr.split('\n').slice(1), ["crashcart: warning: --rw-volumes: writes to /data reach the container's own files"]);
    t.after(() => rmSync(join(runc!.volume, 'from-sandbox'), { force: true }));
    assert.equal(await readFile(join(runc!.volume, 'from-sandbox'), 'utf8'), 'written\n');
    assert.deepEqual(await digests({ rootfs: runc!.rootfs }), before);
  });

  test('--user, --workdir and --env as for an attach; --net host shares the host network with a warning', async (t) => {
    if (!ready(t)) return;
    const r = await runCrashcart(['-i', image, '--stopped', runc!.id, '--user', 'root', '--workdir', '/tmp', '--env', 'CRASHY=2', '--',
      'sh', '-c', 'id -u; pwd; echo $CRASHY; ip link | grep -c "^[0-9]*:"'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n'), ['0', '/tmp', '2', '1'], 'loopback only');
    const host = await runCrashcart(['-i', image, '--stopped', runc!.id, '--net', 'host', '--', 'readlink', '/proc/self/ns/net'], { env });
    assert.equal(host.code, 0, host.stderr);
    assert.equal(host.stdout, (await import('node:fs')).readlinkSync('/proc/self/ns/net'));
    assert.match(host.stderr.split('\n')[0]!, /network: the host's$/);
    assert.equal(host.stderr.split('\n')[1], "crashcart: warning: --net host: the sandbox shares the host's network; what runs there can reach and bind the host's interfaces");
  });

  test('exit codes as for an attach: the command\'s own, 126, 127, 128+N', async (t) => {
    if (!ready(t)) return;
    const code = async (args: string[]) => (await runCrashcart(['-i', image, '--stopped', runc!.id, '--user', '0', '--', ...args], { env }));
    assert.equal((await code(['sh', '-c', 'exit 42'])).code, 42);
    assert.equal((await code(['sh', '-c', 'kill -TERM $$'])).code, 143);
    const missing = await code(['no-such-tool']);
    assert.equal(missing.code, 127);
    assert.equal(missing.stderr.split('\n')[1], 'crashcart: command not found in the sandbox: no-such-tool (searched /dev/crashcart/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin); ' +
      'the toolkit is at /dev/crashcart/bin; give a full path or a tool that exists (a missing #! interpreter or ELF loader looks the same)');
    const dir = await code(['/app']);
    assert.equal(dir.code, 126);
    const noWorkdir = await runCrashcart(['-i', image, '--stopped', runc!.id, '--workdir', '/nowhere', '--', 'true'], { env });
    assert.equal(noWorkdir.code, 125);
    assert.match(noWorkdir.stderr.split('\n')[1]!, new RegExp(`^crashcart: cannot start the sandbox of ${runc!.id}: chdir '/nowhere': ENOENT \\(No such file or directory\\); check --workdir`));
  });

  test('a removed container, a running one, and a PID: one line, 125, nothing touched', async (t) => {
    if (!ready(t)) return;
    const host = await snapshot();
    const gone = await runCrashcart(['-i', image, '--runtime', 'runc', '--stopped', 'removed-long-ago', '--', 'true'], { env });
    assertFailure(gone, 125, "crashcart: no container matches 'removed-long-ago' (asked: runc); a removed container's files are gone; see the containers there are with crashcart ps -a");
    const live = await createScratchContainer({ sleeperPath: await sleeperPath(), runcRoot: env.CRASHCART_RUNC_ROOT });
    t.after(() => live.remove());
    const running = await runCrashcart(['-i', image, '--stopped', live.id, '--', 'true'], { env });
    assertFailure(running, 125, `crashcart: container ${live.id} is running: --stopped opens containers that do not run (runc ${live.id}); attach to it as it runs: crashcart ${live.id}`);
    const pid = await runCrashcart(['-i', image, '--runtime', 'pid', '--stopped', String(live.pid), '--', 'true'], { env });
    assertFailure(pid, 125, 'crashcart: --stopped opens containers, and a PID is a running process; name the container, or attach to the process');
    const attach = await runCrashcart(['-i', image, runc!.id, '--', 'true'], { env });
    assertFailure(attach, 125, `crashcart: container ${runc!.id} is not running (status: stopped); start it first, or open its files in a sandbox with crashcart --stopped ${runc!.id} (runc ${runc!.id})`);
    const notSandbox = await runCrashcart(['-i', image, '--entrypoint', runc!.id], { env });
    assertFailure(notSandbox, 125, 'crashcart: --entrypoint applies to --stopped, --rootfs and --from-image only; add one of them, or drop --entrypoint');
    const clash = await runCrashcart(['-i', image, '--stopped', '--exec', runc!.id], { env });
    assertFailure(clash, 125, "crashcart: --exec applies to an attach, not to --stopped: the sandbox runs none of the container's processes; drop --exec");
    await assertClean(host);
  });

  test('SIGKILL of crashcart mid-session: the command goes on, and once it ends nothing is left', async (t) => {
    if (!ready(t)) return;
    const host = await snapshot();
    const tmp = await privateTmp();
    t.after(() => tmp.remove());
    // cat waits on a FIFO in its volume: it ends when the test opens and closes the other side
    const fifo = join(runc!.volume, 'stop.fifo');
    await execa('mkfifo', [fifo]);
    t.after(() => rmSync(fifo, { force: true }));
    const cc = startCrashcart(['-i', image, '--stopped', runc!.id, '--', 'cat', '/data/stop.fifo'], { env: { ...env, ...tmp.env } });
    const cat = await waitFor('cat runs in the sandbox', () => descendants(cc.pid!).find((p) => p.comm === 'cat'));
    const box = sandboxProcesses();
    assert.equal(box.length, 2, 'the box and its init');
    process.kill(cc.pid!, 'SIGKILL');
    // (the run itself ends only with cat: the sandbox holds crashcart's stdout and stderr)
    await waitFor('crashcart is gone', () => !isRunning(cc.pid!));
    assert.ok(processes().some((p) => p.pid === cat.pid && p.start === cat.start && p.state !== 'Z'), 'the command outlives crashcart');
    closeSync(openSync(fifo, 'w')); // cat reads its EOF and ends, the sandbox with it
    assert.equal((await cc).signal, 'SIGKILL');
    await waitFor('the sandbox is gone', () => sandboxProcesses().length === 0 && !processes().some((p) => p.pid === cat.pid && p.start === cat.start), { ms: 10_000 });
    await assertClean(host);
    assert.deepEqual(await tmp.left(), [], 'temporary files left');
  });

  const POINTS = ['sandbox-opened', 'sandbox-unshared', 'sandbox-overlay', 'sandbox-mounted', 'sandbox-pivoted', 'sandbox-before-exec', 'sandbox-running'];

  test('a failure at each step of building the sandbox: its first line, one error line, 125, nothing left', async (t) => {
    if (!ready(t)) return;
    for (const point of POINTS) {
      const host = await snapshot();
      const r = await runCrashcart(['-i', image, '--stopped', runc!.id, '--', 'sh', '-c', 'exit 9'], { env: { ...env, CRASHCART_FAULT: point } });
      assert.equal(r.code, 125, `${point}: ${r.stderr}`);
      assert.deepEqual(r.stderr.split('\n'), [FIRST(runc!.id, 'runc'), `crashcart: fault injected at ${point} (CRASHCART_FAULT)`], point);
      await waitFor(`${point}: no sandbox process is left`, () => sandboxProcesses().length === 0, { ms: 5_000 });
      await assertClean(host);
    }
  });

  test('crashcart SIGKILLed at each step: whatever had started ends by itself, and nothing is left', async (t) => {
    if (!ready(t)) return;
    for (const point of POINTS) {
      const host = await snapshot();
      const marker = `ran-${point}`;
      const r = await runCrashcart(['-i', image, '--stopped', '--rw-volumes', runc!.id, '--', 'sh', '-c', `echo > /data/${marker}`], { env: { ...env, CRASHCART_FAULT: `${point}:kill` } });
      assert.equal(r.signal, 'SIGKILL', `${point}: ${r.stderr}`);
      await waitFor(`${point}: no sandbox process is left`, () => sandboxProcesses().length === 0, { ms: 5_000 });
      await assertClean(host);
      // the sandbox carried on to the command after crashcart was killed, unless it had not forked yet
      const ran = await readFile(join(runc!.volume, marker), 'utf8').then(() => true, () => false);
      assert.equal(ran, point !== 'sandbox-opened', point);
      rmSync(join(runc!.volume, marker), { force: true });
    }
  });
});
