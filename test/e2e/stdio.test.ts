// The command's stdin, stdout and stderr are the caller's and must behave as the caller's:
// blocking. Node marks a pipe or socket it holds as stdio O_NONBLOCK, and that flag lives in
// the open file description the command shares; a command writing into a slow pipe then
// gets EAGAIN and loses output (`crashcart web -- tar c / | ssh ...`).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
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

// crashcart ends as soon as an attach is over (bin/crashcart: _exit(2) through the addon,
// rather than Node's teardown), but not while a message of its own still waits to be
// written: here the command fills the stderr pipe, nobody reads, and crashcart's last line
// (a warning: the audit log cannot be written) is queued behind it.
test("a line crashcart writes into a stderr the command filled waits for the reader: nothing is lost to a quick exit", async (t) => {
  if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
  const image = await testImage();
  c ??= await createScratchContainer({ sleeperPath: await sleeperPath() });
  const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-stdio-'));
  const fifo = join(dir, 'stderr');
  const notADir = join(dir, 'file');
  writeFileSync(notADir, '');
  await execa('mkfifo', [fifo]);
  const early = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // so the writer's open does not block
  let w = openSync(fifo, constants.O_WRONLY);
  const r = openSync(fifo, constants.O_RDONLY); // blocking, for the end
  closeSync(early);
  let run: ReturnType<typeof spawn> | undefined;
  try {
    // 65536 bytes: a pipe's whole capacity, written before crashcart's own line
    run = spawn(process.execPath, [join(projectRoot(), 'bin', 'crashcart'), '-i', image, c.id, '--', '/dev/crashcart/bin/sh', '-c', 'head -c 65536 /dev/zero >&2'], {
      env: { ...process.env, ...cliEnv({ CRASHCART_AUDIT_LOG: join(notADir, 'audit.log') }) },
      stdio: ['ignore', 'ignore', w],
    });
    closeSync(w);
    w = -1;
    const exited = new Promise<number | null>((resolve) => run!.once('exit', (code) => resolve(code)));
    const pid = run.pid!;
    // the command and crashcart-wait are gone, and crashcart waits in epoll for its write
    let quiet = 0;
    await until(() => {
      quiet = run!.exitCode === null && descendants(pid).length === 0 && /epoll/.test(wchan(pid)) ? quiet + 1 : 0;
      return quiet >= 10 || run!.exitCode !== null;
    }, { ms: 30_000 });
    assert.equal(run.exitCode, null, 'crashcart exited with its last line unwritten');
    // now the reader: everything, then the end (crashcart and the test hold no write end any more)
    const cat = spawn('cat', [], { stdio: [r, 'pipe', 'ignore'], timeout: 30_000 });
    const chunks: Buffer[] = [];
    cat.stdout!.on('data', (d: Buffer) => chunks.push(d));
    await new Promise((resolve) => cat.once('close', resolve));
    const all = Buffer.concat(chunks);
    assert.equal(all.subarray(0, 65536).every((b) => b === 0), true);
    assert.match(all.subarray(65536).toString(), /^crashcart: warning: cannot write the audit log .*\n$/);
    assert.equal(await exited, 0);
  } finally {
    if (run?.exitCode === null) run.kill('SIGKILL');
    if (w >= 0) closeSync(w);
    closeSync(r);
    rmSync(dir, { recursive: true, force: true });
  }
  await until(async () => (await snapshotHost()).loops.length <= snap.loops.length, { ms: 2_000 });
  assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
});
