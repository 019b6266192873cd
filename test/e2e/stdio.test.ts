// The command's stdin, stdout and stderr are the caller's and must behave as the caller's:
// blocking. Node marks a pipe or socket it holds as stdio O_NONBLOCK, and that flag lives in
// the open file description the command shares; a command writing into a slow pipe then
// gets EAGAIN and loses output (`crashcart web -- tar c / | ssh ...`).
import assert from 'node:assert/strict';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { after, test } from 'node:test';
import { join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { cliEnv, testImage } from '../helpers/cli.js';
import { assertNoLeaks, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { descendants } from '../helpers/procs.js';
import { until } from '../helpers/wait.js';

const BYTES = 4 * 1024 * 1024;

let c: ScratchContainer | undefined;
after(async () => {
  await c?.remove();
});

/** The kernel function a sleeping process waits in (pipe_write, anon_pipe_write...). */
function wchan(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/wchan`, 'utf8');
  } catch {
    return '';
  }
}

for (const via of [[], ['--exec']]) test(`a slow reader gets all of the command's output${via.length ? ' (--exec)' : ''}`, async (t) => {
  if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
  const image = await testImage();
  c ??= await createScratchContainer({ sleeperPath: await sleeperPath() });
  const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
  const cli = join(projectRoot(), 'bin', 'crashcart');
  // the reader starts once the command is blocked on the full pipe (it waits on a fifo for
  // the go, for 30 s at most)
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-stdio-'));
  const go = join(dir, 'go');
  await execa('mkfifo', [go]);
  try {
    const run = execa('bash', ['-c', `"$@" | { read -r -t 30 _ <> "$GO" || echo "no go for the reader" >&2; wc -c; }`, 'slow-reader',
      process.execPath, cli, '-i', image, ...via, c.id, '--', 'head', '-c', String(BYTES), '/dev/zero'], {
      env: cliEnv({ GO: go }),
      stdin: 'ignore',
      reject: false,
      timeout: 60_000,
    });
    const blocked = await until(() => descendants(run.pid!).some((p) => p.comm === 'head' && /pipe_write/.test(wchan(p.pid))), { ms: 20_000 });
    try {
      const fd = openSync(go, constants.O_WRONLY | constants.O_NONBLOCK);
      writeSync(fd, 'go\n');
      closeSync(fd);
    } catch {
      // ENXIO: the reader is gone already; its output says why
    }
    const r = await run;
    assert.ok(blocked, 'the command never blocked on the full pipe');
    assert.equal(r.stderr, '');
    assert.equal(r.stdout.trim(), String(BYTES));
    assert.equal(r.exitCode, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // the autoclear loop device goes when its last user does: give the kernel a moment
  await until(async () => (await snapshotHost()).loops.length <= snap.loops.length, { ms: 2_000 });
  assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
});
