// Loop devices through the addon: read-only with autoclear, found again by the image's
// device and inode, freed by the kernel when the last user goes, detached on request.
import assert from 'node:assert/strict';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { acquireLoop, findLoop, releaseLoop } from '../../src/core/loop.js';
import { loopAttach, loopDetach, loopStatus } from '../../src/native/index.js';
import { testImage } from '../helpers/cli.js';
import { requireRoot } from '../helpers/host.js';

const bound = (index: number) => existsSync(`/sys/block/loop${index}/loop/backing_file`);

async function waitUnbound(index: number): Promise<void> {
  for (let i = 0; i < 100 && bound(index); i++) await delay(10);
  assert.ok(!bound(index), `/dev/loop${index} is still bound`);
}

describe('loop devices', () => {
  test('attach read-only with autoclear; status names the backing file; closing frees it', async (t) => {
    if (!requireRoot(t)) return;
    const image = await testImage();
    const st = statSync(image);
    const fd = openSync(image, 'r');
    const loop = loopAttach(fd, true);
    closeSync(fd);
    try {
      assert.equal(loop.path, `/dev/loop${loop.index}`);
      assert.equal(loop.major, 7);
      assert.equal(readFileSync(`/sys/block/loop${loop.index}/ro`, 'utf8').trim(), '1');
      const status = loopStatus(loop.fd);
      assert.deepEqual(
        { dev: status.backingDevice, ino: status.backingInode, ro: status.readOnly, autoClear: status.autoClear, offset: status.offset },
        { dev: st.dev, ino: st.ino, ro: true, autoClear: true, offset: 0 },
      );
    } finally {
      closeSync(loop.fd);
    }
    await waitUnbound(loop.index); // autoclear: our fd was the only user
  });

  test('one device per image: acquireLoop reuses the device that backs it', async (t) => {
    if (!requireRoot(t)) return;
    const image = await testImage();
    const first = acquireLoop(image);
    try {
      assert.equal(first.attached, true);
      const again = acquireLoop(image);
      assert.equal(again.attached, false);
      assert.equal(again.index, first.index);
      releaseLoop(again);
      const st = statSync(image);
      const found = findLoop({ dev: st.dev, ino: st.ino });
      assert.equal(found?.index, first.index);
      if (found) releaseLoop(found);
    } finally {
      releaseLoop(first);
    }
    await waitUnbound(first.index);
  });

  test('detach unbinds a device (autoclear alone would keep it while our fd is open)', async (t) => {
    if (!requireRoot(t)) return;
    const image = await testImage();
    const fd = openSync(image, 'r');
    const loop = loopAttach(fd, true);
    closeSync(fd);
    try {
      loopDetach(loop.fd);
      // Being torn down: no longer reports a backing file, though our fd is still open.
      assert.throws(() => loopStatus(loop.fd), { code: 'ENXIO', syscall: 'ioctl LOOP_GET_STATUS64' });
    } finally {
      closeSync(loop.fd);
    }
    await waitUnbound(loop.index);
  });

  test('errors name the ioctl, the device and the errno', (t) => {
    if (!requireRoot(t)) return;
    assert.throws(() => loopAttach(-1, true), (e: Error & { code: string; syscall: string }) =>
      /^ioctl LOOP_CONFIGURE '\/dev\/loop\d+': EBADF \(Bad file descriptor\)$/.test(e.message) && e.code === 'EBADF' && e.syscall === 'ioctl LOOP_CONFIGURE');
    assert.throws(() => loopStatus(0), { code: 'ENOTTY', syscall: 'ioctl LOOP_GET_STATUS64' });
  });
});
