// Containers at their limits, for real: a pids cgroup limit the container already fills, a
// memory limit with no room for a debugger, and a target that dies while a session runs.
// crashcart notices the limits before it forks, says so in one warning line, and runs the
// session outside the container's cgroup instead of failing.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createScratchContainer, type ScratchContainer, type ScratchOptions } from '../../src/demo/scratch.js';
import { cgroupDirs, readCgroups, readMountInfo } from '../../src/core/proc.js';
import { runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, cgroupProcs, snapshot, waitFor } from '../helpers/expect.js';

const BASE = `cclimit-${randomBytes(3).toString('hex')}`;

function ready(t: TestContext): boolean {
  return requireRoot(t) && requireCommand(t, 'runc');
}

async function startFor(t: TestContext, opts: Partial<ScratchOptions>): Promise<ScratchContainer> {
  const c = await createScratchContainer({ sleeperPath: await sleeperPath(), ...opts });
  t.after(() => c.remove());
  return c;
}

/** The container's cgroup directory of one controller (v1) or of the unified hierarchy. */
function cgroupDir(pid: number, controller: string): string {
  const mounts = readMountInfo('self');
  const dirs = cgroupDirs(readCgroups(pid), mounts);
  const dir = dirs.find((d) => d.split('/').includes(controller)) ?? dirs.find((d) => d.includes('/unified')) ?? dirs[0];
  assert.ok(dir, `no ${controller} cgroup for pid ${pid}`);
  return dir;
}

/** The cgroup line of a controller in /proc/PID/cgroup text ("8:pids:/path"). */
const cgroupLine = (text: string, controller: string) => text.split('\n').find((l) => l.split(':')[1]?.split(',').includes(controller));
/** The container's own line, to tell whether the command joined its cgroup. */
const targetLine = (c: ScratchContainer, controller: string) => cgroupLine(readFileSync(`/proc/${c.pid}/cgroup`, 'utf8'), controller);

describe('containers at their limits', () => {
  test('at its pids limit: one warning, and the session runs outside the cgroup instead of failing', async (t) => {
    if (!ready(t)) return;
    const image = await testImage();
    const c = await startFor(t, { id: `${BASE}-pids`, busybox: true, resources: { pids: { limit: 1 } } });
    const dir = cgroupDir(c.pid, 'pids');
    assert.equal(readFileSync(`${dir}/pids.current`, 'utf8').trim(), '1');
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, c.id, '--', 'sh', '-c', 'cat /proc/1/comm; cat /proc/self/cgroup']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `crashcart: warning: the container (pid ${c.pid}) is at its pids 1 of 1 (${dir}): the session runs outside its cgroup (as --no-cgroup)`);
    const [comm, ...cgroups] = r.stdout.split('\n');
    assert.equal(comm, 'sleeper');
    assert.notEqual(cgroupLine(cgroups.join('\n'), 'pids'), targetLine(c, 'pids'), "outside the container's cgroup");
    assert.equal(readFileSync(`${dir}/pids.current`, 'utf8').trim(), '1', 'nothing was added to its cgroup');

    const v = await runCrashcart(['-v', '-i', image, c.id, '--', 'true']);
    assert.equal(v.code, 0, v.stderr);
    assert.ok(v.stderr.split('\n').includes(`crashcart: cgroup limit: ${dir}/pids.current = 1, ${dir}/pids.max = 1`), v.stderr);
    await assertClean(before, c);
  });

  test('with room left under its pids limit the session joins the cgroup, and says nothing', async (t) => {
    if (!ready(t)) return;
    const image = await testImage();
    const c = await startFor(t, { id: `${BASE}-room`, busybox: true, resources: { pids: { limit: 64 } } });
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, c.id, '--', 'cat', '/proc/self/cgroup']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(cgroupLine(r.stdout, 'pids'), targetLine(c, 'pids'), "in the container's own cgroup");
    await assertClean(before, c);
  });

  test('without room under its memory limit: one warning, and the tools are not charged to it', async (t) => {
    if (!ready(t)) return;
    const image = await testImage();
    const limit = 16 << 20;
    const c = await startFor(t, { id: `${BASE}-mem`, busybox: true, resources: { memory: { limit } } });
    const dir = cgroupDir(c.pid, 'memory');
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, c.id, '--', 'cat', '/proc/self/cgroup']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^crashcart: warning: the container \\(pid ${c.pid}\\) is at its memory \\d+ MiB of 16 MiB \\(${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\): the session runs outside its cgroup \\(as --no-cgroup\\)$`));
    assert.notEqual(cgroupLine(r.stdout, 'memory'), targetLine(c, 'memory'), "outside the container's cgroup");
    await assertClean(before, c);
  });

  test('--no-cgroup says nothing about limits it does not need', async (t) => {
    if (!ready(t)) return;
    const image = await testImage();
    const c = await startFor(t, { id: `${BASE}-nocg`, resources: { pids: { limit: 1 } } });
    const before = await snapshot(c);
    const r = await runCrashcart(['-i', image, '--no-cgroup', c.id, '--', 'true']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    await assertClean(before, c);
  });

  test('the target dying mid-session ends it with the command\'s status and leaves nothing', async (t) => {
    if (!ready(t)) return;
    const image = await testImage();
    const before = await snapshot();
    const c = await startFor(t, { id: `${BASE}-dies`, busybox: true });
    const run = startCrashcart(['-i', image, c.id, '--', 'sleep', '1000']);
    // the sleeper, crashcart's waiting process and the command
    await waitFor('the command runs in the container', () => cgroupProcs(c.pid).length >= 3);
    process.kill(c.pid, 'SIGKILL'); // its PID 1: the kernel ends every process of its PID namespace
    const r = await run;
    assert.equal(r.exitCode, 137, r.stderr);
    assert.equal(r.stderr, '');
    await c.remove();
    await assertClean(before);
  });
});
