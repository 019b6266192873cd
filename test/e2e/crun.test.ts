// crun containers are found through crun's own state (/run/crun) and grafted like runc's.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { assertNoLeaks, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

describe('crun', () => {
  let c: ScratchContainer | undefined;
  let image = '';
  const id = `cccrun-${randomBytes(3).toString('hex')}`;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
  });
  after(async () => {
    await c?.remove();
  });

  test('a read-only crun container is found by ID and by prefix, the toolkit runs in it, and --exec goes through crun exec', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'crun')) return;
    c = await createScratchContainer({ id, sleeperPath: await sleeperPath(), runtime: 'crun', hostname: 'on-crun', readOnly: true });
    const snap = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });

    const byId = await runCrashcart(['-i', image, '-v', id, '--', 'sh', '-c', 'hostname; ls /bin']);
    assert.equal(byId.code, 0, byId.stderr);
    assert.deepEqual(byId.stdout.split('\n').filter(Boolean), ['on-crun', 'sleeper']);
    assert.match(byId.stderr, new RegExp(`target: crun ${id} \\(pid ${c.pid}\\)`));

    const byPrefix = await runCrashcart(['-i', image, '--runtime', 'crun', id.slice(0, -2), '--', 'cat', '/proc/1/comm']);
    assert.equal(byPrefix.code, 0, byPrefix.stderr);
    assert.equal(byPrefix.stdout, 'sleeper');

    const wrongRuntime = await runCrashcart(['-i', image, '--runtime', 'runc', id, '--', 'true']);
    assert.equal(wrongRuntime.code, 125);
    assert.equal(wrongRuntime.stderr, `crashcart: no container or process matches '${id}' (asked: runc); check the ID with your runtime (e.g. runc list), or give a PID`);

    // through crun exec: the command's own exit code, the toolkit taken out afterwards
    const viaCrun = await runCrashcart(['-i', image, '--exec', id, '--', 'sh', '-c', 'cat /proc/1/comm; exit 4']);
    assert.equal(viaCrun.code, 4, viaCrun.stderr);
    assert.equal(viaCrun.stdout, 'sleeper');

    assertNoLeaks(snap, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });

  test('a stopped crun container is refused with its status', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'crun')) return;
    const gone = await createScratchContainer({ id: `${id}-gone`, sleeperPath: await sleeperPath(), runtime: 'crun' });
    t.after(() => gone.remove());
    process.kill(gone.pid, 'SIGTERM'); // the sleeper exits 0; crun keeps the container as stopped
    let r = await runCrashcart(['-i', image, gone.id, '--', 'true']);
    for (let i = 0; i < 50 && !r.stderr.includes('not running'); i++) r = await runCrashcart(['-i', image, gone.id, '--', 'true']);
    assert.equal(r.code, 125);
    assert.equal(r.stderr, `crashcart: container ${gone.id} is not running (status: stopped); start it first, or open its files in a sandbox with crashcart --stopped ${gone.id} (crun ${gone.id})`);
  });
});
