// One command across many containers, from one crashcart process: 20 real runc containers,
// each line prefixed with its target, every exit code in the summary, --json, --no-prefix,
// --all with a name glob, a target that is not there, and SIGTERM and SIGINT in the middle:
// nothing may be left (no graft, loop device, mount or session record). Label filters need
// labels, which runc has none of: those run against containers of a private dockerd.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { StateStore } from '../../src/core/state.js';
import { cliEnv, privateDirs, runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { startDockerd, type PrivateDockerd } from '../helpers/dockerd.js';
import { onPath, projectRoot, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { assertClean, assertFailure, grafts, snapshot, stateRecords, waitFor } from '../helpers/expect.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { importScratchRoot } from '../helpers/rootfs.js';

const BASE = `ccfan-${randomBytes(3).toString('hex')}`;
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

/** Sessions of crashcart process `pid` whose command runs (its waiting process is recorded). */
const running = (pid: number) => new StateStore(privateDirs().state).all().flatMap((r) => r.sessions).filter((s) => s.processes[0]?.pid === pid && s.processes.length === 2).length;

/** crashcart's lines on stderr that are not the commands' own. */
const own = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('crashcart: '));

describe('fan-out', () => {
  let image = '';
  const containers: ScratchContainer[] = [];
  const ids = () => containers.map((c) => c.id);

  before(async () => {
    if (process.getuid?.() !== 0) return;
    image = await testImage();
    const sleeper = await sleeperPath();
    const made = await Promise.allSettled(Array.from({ length: N }, (_, i) =>
      createScratchContainer({ id: `${BASE}-${i}`, sleeperPath: sleeper, busybox: true, hostname: `h${i}` })));
    for (const m of made) if (m.status === 'fulfilled') containers.push(m.value);
    for (const m of made) if (m.status === 'rejected') throw m.reason;
  });

  after(async () => {
    for (const c of containers) await c.remove();
    if (process.getuid?.() !== 0) return;
    const { stdout } = await execa('runc', ['list', '-q'], { stdin: 'ignore' });
    assert.deepEqual(stdout.split('\n').filter((id) => id.startsWith(BASE)), [], 'containers left in runc list');
    assert.deepEqual(stateRecords(), [], 'session records left');
  });

  test(`${N} containers: every line prefixed and whole, every exit code, the largest is crashcart's`, async (t) => {
    if (!ready(t)) return;
    const before = await snapshot();
    // each exits with the number of its hostname: 0..19
    const r = await runCrashcart(['-i', image, ids().join(','), '--', 'sh', '-c', 'h=$(hostname); echo "out $h"; echo "err $h" >&2; printf "no newline $h"; exit ${h#h}'], { timeout: 120_000 });
    assert.equal(r.code, N - 1, r.stderr);
    const width = Math.max(...ids().map((id) => id.length));
    const outLines = r.stdout.split('\n').filter(Boolean).sort();
    const expected = containers.flatMap((c, i) => [`${c.id.padEnd(width)} | out h${i}`, `${c.id.padEnd(width)} | no newline h${i}`]).sort();
    assert.deepEqual(outLines, expected);
    const errLines = r.stderr.split('\n').filter((l) => !l.startsWith('crashcart: ') && l);
    assert.deepEqual(errLines.sort(), containers.map((c, i) => `${c.id.padEnd(width)} | err h${i}`).sort());
    assert.deepEqual(own(r.stderr), [
      ...containers.map((c, i) => `crashcart: ${c.id.padEnd(width)}  exit ${i}`),
      `crashcart: ${N} targets: 1 succeeded, ${N - 1} failed; exit ${N - 1}`,
    ]);
    for (const c of containers) assert.deepEqual(grafts(c.pid), [], `nothing left in ${c.id}`);
    await assertClean(before);
  });

  test('one process, one loop device and one graft per container while they run; a graft that was there before stays', async (t) => {
    if (!ready(t)) return;
    const [kept, ...rest] = containers.slice(0, 6) as [ScratchContainer, ...ScratchContainer[]];
    const before = await snapshot(kept);
    assert.equal((await runCrashcart(['-i', image, '-m', kept.id])).code, 0);
    let pinned = true;
    // --parallel 6: all of them at once (the default is the number of CPUs)
    const run = startCrashcart(['-i', image, '--parallel', '6', [kept, ...rest].map((c) => c.id).join(','), '--', 'sleep', '1000'], { timeout: 120_000 });
    t.after(async () => {
      // if the test failed half-way: crashcart ends and cleans up, then the graft it found goes
      await run;
      if (pinned) await runCrashcart(['-u', kept.id]);
    });
    try {
      await waitFor('every command runs', () => running(run.pid!) === 6, { ms: 60_000 });
      assert.equal(loopsOf(image).length, 1, 'one loop device for the image');
      for (const c of [kept, ...rest]) assert.equal(grafts(c.pid).length, 1, `grafted in ${c.id}`);
      // the waiting processes are forks of crashcart (the same command line): count the ones not forked from another
      const ours = new Map(readdirSync('/proc').filter((p) => /^\d+$/.test(p)).flatMap((p) => {
        try {
          if (!readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`${kept.id},`)) return [];
          return [[Number(p), Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/status`, 'utf8'))![1])] as const];
        } catch {
          return [];
        }
      }));
      assert.deepEqual([...ours].filter(([, ppid]) => !ours.has(ppid)).map(([pid]) => pid), [run.pid], 'one crashcart process for all of them');
    } finally {
      process.kill(run.pid!, 'SIGTERM');
    }
    const r = await run;
    assert.equal(r.exitCode, 143, r.stderr);
    assert.equal(grafts(kept.pid).length, 1, 'the graft that was there before stays');
    for (const c of rest) assert.deepEqual(grafts(c.pid), [], `taken out of ${c.id}`);
    assert.equal((await runCrashcart(['-u', kept.id])).code, 0);
    pinned = false;
    await assertClean(before, kept);
  });

  test('--json: one object per line; a target that is not there is named, exit 125', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot();
    const three = ids().slice(0, 3);
    const r = await runCrashcart(['-i', image, '--json', [...three, `${BASE}-nosuch`].join(','), '--', 'sh', '-c', 'echo "a \\"quoted\\" line"; echo oops >&2']);
    assert.equal(r.code, 125, r.stderr);
    const objects = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { target: string; stream: string; text: string });
    assert.deepEqual(objects.sort((a, b) => `${a.target}${a.stream}`.localeCompare(`${b.target}${b.stream}`)),
      three.flatMap((id) => [{ target: id, stream: 'stderr', text: 'oops' }, { target: id, stream: 'stdout', text: 'a "quoted" line' }]));
    const lines = own(r.stderr);
    assert.match(lines.find((l) => l.includes('nosuch'))!, new RegExp(`^crashcart: ${BASE}-nosuch +not reached \\(exit 125\\): no container or process matches '${BASE}-nosuch'`));
    assert.equal(lines.at(-1), 'crashcart: 4 targets: 3 succeeded, 0 failed, 1 not reached; exit 125');
    await assertClean(before);
  });

  test('a reader that goes away (| head -2): the commands run to their end, the summary comes, exit 0, nothing left', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot();
    // every command writes more than a pipe holds after head has gone; pipefail: crashcart's exit code, not head's
    const r = await execa('bash', ['-c', `set -o pipefail; "$0" "$@" | head -2`, process.execPath, join(projectRoot(), 'bin', 'crashcart'), '-i', image, ids().join(','), '--', 'sh', '-c', 'seq 1 20000; echo done >&2'], {
      env: cliEnv(), reject: false, timeout: 60_000,
    });
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout.split('\n').length, 2, r.stdout);
    const lines = own(r.stderr);
    assert.equal(lines.at(-1), `crashcart: ${N} targets: ${N} succeeded, 0 failed; exit 0`, r.stderr);
    assert.equal(r.stderr.split('\n').filter((l) => l.endsWith('| done')).length, N, r.stderr);
    await assertClean(before);
  });

  test('--all --filter name=GLOB picks by name; --no-prefix prints the lines as they are; --parallel 3', async (t) => {
    if (!ready(t)) return;
    const before = await snapshot();
    const r = await runCrashcart(['-i', image, '--all', '--runtime', 'runc', '--filter', `name=${BASE}-1?`, '--filter', `name=${BASE}-3`, '--no-prefix', '--parallel', '3', '--', 'hostname']);
    assert.equal(r.code, 0, r.stderr);
    const picked = [3, ...Array.from({ length: 10 }, (_, i) => 10 + i)];
    assert.deepEqual(r.stdout.split('\n').filter(Boolean).sort(), picked.map((i) => `h${i}`).sort());
    assert.equal(own(r.stderr).at(-1), `crashcart: ${picked.length} targets: ${picked.length} succeeded, 0 failed; exit 0`);
    await assertClean(before);
  });

  test('refused with one line: several targets and no command, and the options that take one target', async (t) => {
    if (!ready(t)) return;
    const two = ids().slice(0, 2).join(',');
    const before = await snapshot();
    assertFailure(await runCrashcart(['-i', image, two]), 125,
      `crashcart: several targets need a command: an interactive shell runs in one target at a time; give the command after --, e.g. crashcart ${two} -- ps`);
    assertFailure(await runCrashcart(['--all']), 125, 'crashcart: several targets need a command: an interactive shell runs in one target at a time; give the command after --, e.g. crashcart --all -- ps');
    assertFailure(await runCrashcart(['-m', two]), 125, 'crashcart: --mount-only takes one target; run it once for each target');
    assertFailure(await runCrashcart(['--filter', 'name=x', two, '--', 'true']), 125, 'crashcart: --filter applies to --all; add --all, or list the targets as t1,t2,t3');
    assertFailure(await runCrashcart(['--json', ids()[0]!, '--', 'true']), 125, 'crashcart: --json applies to several targets; name them as t1,t2,t3 or pick them with --all');
    assertFailure(await runCrashcart(['--all', '--filter', 'state=up', '--', 'true']), 125, "crashcart: --filter state=up: unknown filter 'state'; give --filter name=GLOB or --filter label=KEY[=VALUE]");
    assertFailure(await runCrashcart(['--all', '--parallel', '0', '--', 'true']), 125, 'crashcart: --parallel 0: not a positive whole number; give how many targets may run at once, e.g. --parallel 4');
    assertFailure(await runCrashcart([`${ids()[0]},`, '--', 'true']), 125, `crashcart: the target list '${ids()[0]},' has an empty name; separate the names with single commas: t1,t2,t3`);
    assertFailure(await runCrashcart(['--all', '--runtime', 'runc', '--filter', `name=${BASE}-none*`, '--', 'true']), 125,
      `crashcart: no running container matches --runtime runc --filter name=${BASE}-none*; see crashcart ps`);
    await assertClean(before);
  });

  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    test(`${signal} in the middle: the running commands end, the others never start, nothing is left`, async (t) => {
      if (!ready(t)) return;
      const before = await snapshot();
      const six = ids().slice(0, 6);
      // SIGINT as a terminal sends it, to the whole process group; SIGTERM as kill does, to crashcart alone
      const run = startCrashcart(['-i', image, '--parallel', '2', six.join(','), '--', 'sleep', '1000'], { detached: signal === 'SIGINT', timeout: 120_000 });
      t.after(async () => {
        if (run.exitCode === null && run.signalCode === null) process.kill(run.pid!, 'SIGTERM'); // the test failed before the signal
        await run;
      });
      await waitFor('two commands run', () => running(run.pid!) === 2, { ms: 60_000 });
      process.kill(signal === 'SIGINT' ? -run.pid! : run.pid!, signal);
      const r = await run;
      assert.equal(r.exitCode, code, r.stderr);
      const lines = own(r.stderr);
      assert.equal(lines.filter((l) => / exit \d+$/.test(l) && l.endsWith(`exit ${code}`) && !l.includes('targets')).length, 2, r.stderr);
      assert.equal(lines.filter((l) => l.endsWith(`not started: interrupted by ${signal}`)).length, 4, r.stderr);
      assert.equal(lines.at(-1), `crashcart: 6 targets: 0 succeeded, 6 failed; exit ${code}`);
      for (const c of containers.slice(0, 6)) assert.deepEqual(grafts(c.pid), [], `nothing left in ${c.id}`);
      await assertClean(before);
    });
  }
});

describe('fan-out by label (docker: runc containers have no labels)', () => {
  let d: PrivateDockerd | undefined;
  let image = '';

  before(async () => {
    if (process.getuid?.() !== 0 || !onPath('dockerd')) return;
    image = await testImage();
    d = await startDockerd();
    await importScratchRoot(d.docker, 'docker', d.dir, 'ccfan-scratch', await sleeperPath(), { busybox: true });
    for (const [name, tier] of [['front-a', 'front'], ['front-b', 'front'], ['back-a', 'back']]) {
      const r = await d.docker(['run', '-d', '--network', 'none', '--label', `tier=${tier}`, '--label', 'team=ops', '--name', name, 'ccfan-scratch', '/bin/sleeper', '100000']);
      if (r.code !== 0) throw new Error(`docker run ${name}: ${r.stderr}`);
    }
  });

  after(async () => {
    if (!d) return;
    const rm = await d.docker(['rm', '-f', 'front-a', 'front-b', 'back-a']);
    assert.equal(rm.code, 0, rm.stderr);
    await stopAndCheck(d, 'dockerd'); // no daemon, helper or mount of it left
  });

  test('--all --runtime docker --filter label=tier=front --filter label=team: the two front containers, by name', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd')) return;
    const before = await snapshot();
    const r = await runCrashcart(['-i', image, '--all', '--runtime', 'docker', '--filter', 'label=tier=front', '--filter', 'label=team', '--', 'echo', 'hi'], { env: d!.env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n').filter(Boolean).sort(), ['front-a | hi', 'front-b | hi']);
    assert.deepEqual(own(r.stderr), ['crashcart: front-a  exit 0', 'crashcart: front-b  exit 0', 'crashcart: 2 targets: 2 succeeded, 0 failed; exit 0']);
    const back = await runCrashcart(['-i', image, '--all', '--runtime', 'docker', '--filter', 'label=tier=back', '--', 'true'], { env: d!.env });
    assert.deepEqual(own(back.stderr), ['crashcart: back-a  exit 0', 'crashcart: 1 target: 1 succeeded, 0 failed; exit 0']);
    await assertClean(before);
  });
});
