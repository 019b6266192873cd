// Load: 20 sessions into one container at once, and one session into each of 20 containers
// at once. All of them share one loop device for the image (and the first case one graft),
// every exit code is each command's own, and everything is gone at the end.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { recordedSession, startCrashcart, testImage } from '../helpers/cli.js';
import { requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, grafts, snapshot, waitFor } from '../helpers/expect.js';

const BASE = `ccload-${randomBytes(3).toString('hex')}`;
const N = 20;

function ready(t: TestContext): boolean {
  return requireRoot(t) && requireCommand(t, 'runc');
}

/** Loop devices bound to the image file. */
function loopsOf(image: string): string[] {
  return readdirSync('/sys/block').filter((n) => {
    try {
      return readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim() === image;
    } catch {
      return false;
    }
  });
}

type Run = ReturnType<typeof startCrashcart>;

/**
 * Starts a session per target that waits for a line on stdin and then exits with its own
 * code (its index + 1): the sessions overlap for sure, and every exit code is told apart.
 */
function startSessions(image: string, targets: string[]): Run[] {
  return targets.map((id, i) => startCrashcart(['-i', image, id, '--', 'sh', '-c', `read line; exit ${i + 1}`], { stdin: 'pipe', timeout: 120_000 }));
}

/** Lets every session end, and checks each exit code. */
async function finish(runs: Run[]): Promise<void> {
  for (const r of runs) r.stdin!.end('go\n');
  const results = await Promise.all(runs);
  results.forEach((r, i) => assert.equal(r.exitCode, i + 1, `session ${i}: ${r.stderr}`));
  for (const r of results) assert.equal(r.stderr, '');
}

describe('load', () => {
  let image = '';
  const containers: ScratchContainer[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
    const sleeper = await sleeperPath();
    const made = await Promise.allSettled(Array.from({ length: N }, (_, i) =>
      createScratchContainer({ id: `${BASE}-${i}`, sleeperPath: sleeper, busybox: true })));
    for (const m of made) if (m.status === 'fulfilled') containers.push(m.value);
    for (const m of made) if (m.status === 'rejected') throw m.reason;
  });

  after(async () => {
    for (const c of containers) await c.remove();
  });

  test(`${N} sessions into one container at once: one loop device, one graft, every exit code`, async (t) => {
    if (!ready(t)) return;
    const c = containers[0]!;
    const before = await snapshot(c);
    const runs = startSessions(image, Array.from({ length: N }, () => c.id));
    try {
      await waitFor(`all ${N} sessions are recorded`, () => runs.every((r) => (recordedSession(r.pid!)?.processes.length ?? 0) === 2), { ms: 60_000 });
      assert.equal(grafts(c.pid).length, 1, 'one graft for every session');
      assert.equal(loopsOf(image).length, 1, 'one loop device for the image');
    } finally {
      await finish(runs);
    }
    await assertClean(before, c);
  });

  test(`one session into each of ${N} containers at once: one loop device, every exit code`, async (t) => {
    if (!ready(t)) return;
    const before = await snapshot();
    const runs = startSessions(image, containers.map((c) => c.id));
    try {
      await waitFor(`all ${N} sessions are recorded`, () => runs.every((r) => (recordedSession(r.pid!)?.processes.length ?? 0) === 2), { ms: 60_000 });
      for (const c of containers) assert.equal(grafts(c.pid).length, 1, `grafted in ${c.id}`);
      assert.equal(loopsOf(image).length, 1, 'one loop device for the image');
    } finally {
      await finish(runs);
    }
    for (const c of containers) assert.deepEqual(grafts(c.pid), [], `nothing left in ${c.id}`);
    await assertClean(before);
  });
});
