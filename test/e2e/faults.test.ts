// Faults at every step of an attach, injected with CRASHCART_FAULT so that each step's
// failure, a SIGKILL of crashcart at each step, and Ctrl-C or SIGTERM during the attach are
// tested deterministically. After each: one line, the right exit code, and nothing left on
// the host or in the container once the run (or, after a kill, `crashcart gc`) is done.
// Every point runs against a container with a writable /dev and one with a read-only /dev
// (which crashcart makes writable for a moment).
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { FAULT_POINTS, type FaultPoint } from '../../src/core/fault.js';
import { runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, assertFailure, cgroupProcs, grafts, mountOptions, procState, snapshot, stateRecords, waitFor } from '../helpers/expect.js';

const BASE = `ccfault-${randomBytes(3).toString('hex')}`;

// Points of a plain attach, in the order it reaches them (mknod method: no user namespace).
const ATTACH_POINTS: FaultPoint[] = ['after-loop-attach', 'after-mknod', 'after-mount', 'after-state-write', 'before-spawn', 'in-target', 'before-exec', 'after-spawn', 'during-ungraft'];

/** What `crashcart gc` says after crashcart was killed at `point` (id and pid filled in). */
function gcLineAfterKill(point: FaultPoint, what: string): string {
  // killed before the graft began, or after the ungraft finished (its child carries on):
  // nothing of it is left in the container, only the record
  if (point === 'after-loop-attach' || point === 'during-ungraft') return `forgot an interrupted session in ${what}: it left nothing in the container`;
  return `removed the toolkit from ${what}: no session uses it any more`;
}

describe('faults', () => {
  let image = '';
  const containers: Record<'rw' | 'ro', ScratchContainer | undefined> = { rw: undefined, ro: undefined };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
    const sleeper = await sleeperPath();
    const made = await Promise.allSettled([
      createScratchContainer({ id: `${BASE}-rw`, sleeperPath: sleeper }),
      createScratchContainer({ id: `${BASE}-ro`, sleeperPath: sleeper, devReadOnly: true }),
    ]);
    [containers.rw, containers.ro] = made.map((m) => (m.status === 'fulfilled' ? m.value : undefined));
    for (const m of made) if (m.status === 'rejected') throw m.reason;
  });

  after(async () => {
    for (const c of Object.values(containers)) await c?.remove();
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc');
  const what = (c: ScratchContainer) => `runc container ${c.id} (pid ${c.pid})`;

  /** No process of a session is left in the container's cgroup (the waiting process joins it). */
  const sessionGone = (c: ScratchContainer) => waitFor('the session has left the container', () => cgroupProcs(c.pid).every((p) => p === c.pid));

  test('an unknown fault point or action is refused before anything happens', async (t) => {
    if (!ready(t)) return;
    const c = containers.rw!;
    const before = await snapshot(c);
    assertFailure(await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'after-lunch' } }), 125,
      `crashcart: CRASHCART_FAULT: unknown fault point 'after-lunch'; use one of ${Object.keys(FAULT_POINTS).join(', ')}, optionally with :fail, :kill or :stop`);
    assertFailure(await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'after-mount:explode' } }), 125,
      "crashcart: CRASHCART_FAULT: unknown action 'explode'; use fail, kill or stop");
    await assertClean(before, c);
  });

  for (const dev of ['rw', 'ro'] as const) {
    describe(`a step that fails (/dev ${dev})`, () => {
      for (const point of ATTACH_POINTS) {
        test(`${point}: one line, exit 125, everything rolled back`, async (t) => {
          if (!ready(t)) return;
          const c = containers[dev]!;
          const before = await snapshot(c);
          const r = await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: point } });
          if (point === 'during-ungraft') {
            // the command ran and its code stands; the ungraft's failure is a warning and the
            // next run, or gc, finishes the job
            assert.equal(r.code, 0, r.stderr);
            assert.equal(r.stderr, 'crashcart: warning: the toolkit could not be removed from the container: fault injected at during-ungraft (CRASHCART_FAULT)');
            assert.deepEqual(grafts(c.pid), [], 'unmounted before the fault');
            const gc = await runCrashcart(['gc']);
            assert.equal(gc.code, 0, gc.stderr);
            assert.equal(gc.stdout, `removed what an interrupted graft left in ${what(c)}: no session uses it any more`);
          } else {
            assertFailure(r, 125, `crashcart: fault injected at ${point} (CRASHCART_FAULT)`);
          }
          await sessionGone(c);
          if (dev === 'ro') assert.ok(mountOptions(c.pid, '/dev').includes('ro'), "the container's /dev is read-only again");
          await assertClean(before, c);
        });
      }
    });

    describe(`crashcart killed (/dev ${dev})`, () => {
      for (const point of ATTACH_POINTS) {
        test(`${point}: SIGKILL, then crashcart gc removes what it left`, async (t) => {
          if (!ready(t)) return;
          const c = containers[dev]!;
          const before = await snapshot(c);
          const r = await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: `${point}:kill` } });
          assert.equal(r.signal, 'SIGKILL', `crashcart was killed (exit ${r.code}): ${r.stderr}`);
          assert.equal(r.stderr, '');
          // (killed while writing it again, crashcart may also leave its .tmp: gc removes that too)
          assert.equal(stateRecords().filter((n) => n.endsWith('.json')).length, 1, 'the record of the dead session is there for gc');
          await sessionGone(c);
          const gc = await runCrashcart(['gc']);
          assert.equal(gc.code, 0, gc.stderr);
          assert.equal(gc.stderr, '');
          assert.equal(gc.stdout, gcLineAfterKill(point, what(c)));
          if (dev === 'ro') assert.ok(mountOptions(c.pid, '/dev').includes('ro'), "the container's /dev is read-only again");
          await assertClean(before, c);
        });
      }
    });
  }

  test('after-spawn with a command that cannot run: its failure, arriving after the fault, is not a crash', async (t) => {
    if (!ready(t)) return;
    const c = containers.rw!;
    const before = await snapshot(c);
    // the child reports execve's ENOENT after the fault has ended the session
    const r = await runCrashcart(['-i', image, c.id, '--', '/dev/crashcart/bin/nope'], { env: { CRASHCART_FAULT: 'after-spawn' } });
    assertFailure(r, 125, 'crashcart: fault injected at after-spawn (CRASHCART_FAULT)');
    await sessionGone(c);
    await assertClean(before, c);
  });

  test('a killed session is also cleaned up by the next attach, without gc', async (t) => {
    if (!ready(t)) return;
    const c = containers.rw!;
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'after-state-write:kill' } });
    assert.equal(r.signal, 'SIGKILL');
    assert.equal(grafts(c.pid).length, 1);
    const next = await runCrashcart(['-i', image, c.id, '--', 'cat', '/proc/1/comm']);
    assert.equal(next.code, 0, next.stderr);
    assert.equal(next.stdout, 'sleeper');
    await assertClean(before, c);
  });

  test('gc --dry-run says what it would do and changes nothing', async (t) => {
    if (!ready(t)) return;
    const c = containers.rw!;
    const before = await snapshot(c);
    assert.equal((await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'after-spawn:kill' } })).signal, 'SIGKILL');
    await sessionGone(c);
    const dry = await runCrashcart(['gc', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(dry.stdout, `would remove the toolkit from ${what(c)}: no session uses it any more`);
    assert.equal(grafts(c.pid).length, 1, 'still grafted');
    assert.equal(stateRecords().length, 1, 'still recorded');
    const gc = await runCrashcart(['gc']);
    assert.equal(gc.stdout, `removed the toolkit from ${what(c)}: no session uses it any more`);
    const again = await runCrashcart(['gc']);
    assert.equal(again.stdout, 'nothing to clean up');
    await assertClean(before, c);
  });

  test('gc forgets a target that is gone', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot();
    const c = await createScratchContainer({ id: `${BASE}-gone`, sleeperPath: await sleeperPath() });
    try {
      assert.equal((await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'after-spawn:kill' } })).signal, 'SIGKILL');
    } finally {
      await c.remove();
    }
    const gc = await runCrashcart(['gc']);
    assert.equal(gc.code, 0, gc.stderr);
    assert.equal(gc.stdout, `forgot ${what(c)}: it is gone`);
    await assertClean(before);
  });

  describe('signals during the attach', () => {
    for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]] as const) {
      test(`${signal} while the toolkit is grafted and no command runs yet: rolled back, exit ${code}`, async (t) => {
        if (!ready(t)) return;
        const c = containers.ro!;
        const before = await snapshot(c);
        const run = startCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'after-state-write:stop' } });
        await waitFor('crashcart stops at after-state-write', () => procState(run.pid!) === 'T');
        assert.equal(grafts(c.pid).length, 1, 'grafted when stopped');
        process.kill(run.pid!, signal);
        process.kill(run.pid!, 'SIGCONT');
        const r = await run;
        assertFailure({ code: r.exitCode ?? null, stdout: r.stdout, stderr: r.stderr }, code, `crashcart: interrupted by ${signal} before the command started`);
        assert.ok(mountOptions(c.pid, '/dev').includes('ro'), "the container's /dev is read-only again");
        await assertClean(before, c);
      });
    }
  });

  test("a read-only /dev that cannot be made read-only again: the error says so, and the graft is taken out", async (t) => {
    if (!ready(t)) return;
    const c = containers.ro!;
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, c.id, '--', 'true'], { env: { CRASHCART_FAULT: 'restore-dev' } });
    try {
      assertFailure(r, 125, "crashcart: cannot make the container's /dev read-only again (remount ro '/dev': EPERM (Operation not permitted)): " +
        `the toolkit was taken out, and /dev is still WRITABLE in the container; make it read-only again with: crashcart ${c.pid} -- mount -o remount,bind,ro /dev`);
      assert.ok(!mountOptions(c.pid, '/dev').includes('ro'), 'the message is true: /dev is writable');
      assert.deepEqual(grafts(c.pid), []);
    } finally {
      // what the message tells the user to do
      const fix = await runCrashcart(['-i', image, String(c.pid), '--', 'mount', '-o', 'remount,bind,ro', '/dev']);
      assert.equal(fix.code, 0, fix.stderr);
    }
    assert.ok(mountOptions(c.pid, '/dev').includes('ro'));
    await assertClean(before, c);
  });
});
