// The command's stdin, stdout and stderr are the caller's and must behave as the caller's:
// blocking. Node marks a pipe or socket it holds as stdio O_NONBLOCK, and that flag lives in
// the open file description the command shares; a command writing into a slow pipe then
// gets EAGAIN and loses output (`crashcart web -- tar c / | ssh ...`).
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { privateDirs, testImage } from '../helpers/cli.js';
import { assertNoLeaks, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

const BYTES = 4 * 1024 * 1024;

let c: ScratchContainer | undefined;
after(async () => {
  await c?.remove();
});

for (const via of [[], ['--exec']]) test(`a slow reader gets all of the command's output${via.length ? ' (--exec)' : ''}`, async (t) => {
  if (!requireRoot(t) || !requireCommand(t, 'runc')) return;
  const image = await testImage();
  c ??= await createScratchContainer({ sleeperPath: await sleeperPath() });
  const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
  const { state, cache } = privateDirs();
  const cli = join(projectRoot(), 'bin', 'crashcart');
  // the reader starts a second late, so the pipe is full long before it reads
  const r = await execa('bash', ['-c', `"$@" | (sleep 1; wc -c)`, 'slow-reader',
    process.execPath, cli, '-i', image, ...via, c.id, '--', 'head', '-c', String(BYTES), '/dev/zero'], {
    env: { CRASHCART_STATE_DIR: state, CRASHCART_CACHE_DIR: cache },
    stdin: 'ignore',
    reject: false,
    timeout: 60_000,
  });
  assert.equal(r.stderr, '');
  assert.equal(r.stdout.trim(), String(BYTES));
  assert.equal(r.exitCode, 0);
  // the autoclear loop device goes when its last user does: give the kernel a moment
  for (let i = 0; i < 100 && (await snapshotHost()).loops.length > snap.loops.length; i++) await delay(20);
  assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
});
