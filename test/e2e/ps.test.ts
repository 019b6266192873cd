// crashcart ps against real runc containers: which run, which have the toolkit, from which
// image, kept or in use.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { PsRow } from '../../src/cli/commands/ps.js';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { assertNoLeaks, onPath, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

describe('crashcart ps', { skip: !(process.getuid?.() === 0 && onPath('runc')) && 'needs root and runc' }, () => {
  const runcRoot = mkdtempSync(join(tmpdir(), 'crashcart-ps-runc-'));
  const env = { CRASHCART_RUNC_ROOT: runcRoot };
  let image = '';
  let grafted: ScratchContainer | undefined;
  let plain: ScratchContainer | undefined;

  before(async () => {
    image = await testImage();
    const sleeper = await sleeperPath();
    grafted = await createScratchContainer({ sleeperPath: sleeper, runcRoot });
    plain = await createScratchContainer({ sleeperPath: sleeper, runcRoot });
  });
  after(async () => {
    await grafted?.remove();
    await plain?.remove();
    rmSync(runcRoot, { recursive: true, force: true });
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc') && plain !== undefined;

  async function ps(): Promise<PsRow[]> {
    const r = await runCrashcart(['ps', '--json', '--runtime', 'runc'], { env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    return JSON.parse(r.stdout) as PsRow[];
  }

  test('shows both containers, the toolkit in the one it was kept in, and nothing after -u', async (t) => {
    if (!ready(t)) return;
    const before = await snapshotHost();
    const kept = await runCrashcart(['-i', image, '--mount-only', grafted!.id], { env });
    assert.equal(kept.code, 0, kept.stderr);

    const rows = await ps();
    assert.deepEqual(rows.map((r) => r.id).sort(), [grafted!.id, plain!.id].sort());
    assert.deepEqual(rows.find((r) => r.id === grafted!.id), {
      runtime: 'runc', id: grafted!.id, name: null, pid: grafted!.pid, status: 'running', grafted: true, image, sessions: 0, pinned: true,
    });
    assert.deepEqual(rows.find((r) => r.id === plain!.id), {
      runtime: 'runc', id: plain!.id, name: null, pid: plain!.pid, status: 'running', grafted: false, sessions: 0, pinned: false,
    });

    const table = await runCrashcart(['ps'], { env });
    assert.equal(table.code, 0, table.stderr);
    const line = table.stdout.split('\n').find((l) => l.includes(grafted!.id.slice(0, 12)));
    assert.match(line ?? '', new RegExp(`^runc +${grafted!.id.slice(0, 12)}\\S* +- +${grafted!.pid} +running +${image.split('/').pop()} \\(kept\\) +0$`));

    const gone = await runCrashcart(['-u', grafted!.id], { env });
    assert.equal(gone.code, 0, gone.stderr);
    assert.equal((await ps()).find((r) => r.id === grafted!.id)?.grafted, false);
    assertNoLeaks(before, await snapshotHost());
  });

  test('a stopped container shows only with --all', async (t) => {
    if (!ready(t)) return;
    const stopped = await createScratchContainer({ sleeperPath: await sleeperPath(), runcRoot });
    t.after(() => stopped.remove());
    process.kill(stopped.pid, 'SIGTERM'); // the sleeper exits 0; runc keeps the container as stopped
    for (let i = 0; i < 100 && (await ps()).some((r) => r.id === stopped.id); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!(await ps()).some((r) => r.id === stopped.id));
    const all = await runCrashcart(['ps', '--json', '--all', '--runtime', 'runc'], { env });
    assert.equal(all.code, 0, all.stderr);
    assert.equal((JSON.parse(all.stdout) as PsRow[]).find((r) => r.id === stopped.id)?.status, 'stopped');
  });

  test('a paused container is refused with its status instead of hanging in its frozen cgroup', async (t) => {
    if (!ready(t)) return;
    const paused = await createScratchContainer({ sleeperPath: await sleeperPath(), runcRoot });
    t.after(() => paused.remove());
    await execa('runc', ['--root', runcRoot, 'pause', paused.id]);
    try {
      const host = await snapshotHost();
      const r = await runCrashcart(['-i', image, paused.id, '--', 'true'], { env, timeout: 20_000 });
      assert.equal(r.code, 125);
      assert.equal(r.stderr, `crashcart: container ${paused.id} is not running (status: paused); start it first; crashcart attaches to running containers only (runc ${paused.id})`);
      const all = await runCrashcart(['ps', '--json', '--all', '--runtime', 'runc'], { env });
      assert.equal((JSON.parse(all.stdout) as PsRow[]).find((row) => row.id === paused.id)?.status, 'paused');
      assertNoLeaks(host, await snapshotHost());
    } finally {
      await execa('runc', ['--root', runcRoot, 'resume', paused.id]);
    }
  });
});
