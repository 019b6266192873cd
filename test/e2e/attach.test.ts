// The real CLI against real runc containers, as root: grafting, running, exit codes, the
// container's view, sessions, crash recovery. Every test checks that nothing is left
// behind: no loop device, no crashcart mount on the host or in the container, nothing new
// in the container's /dev, its rootfs unchanged.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer, type ScratchOptions } from '../../src/demo/scratch.js';
import { recordedSession, runCrashcart, startCrashcart, testImage } from '../helpers/cli.js';
import { assertClean, assertFailure, assertOk, grafts, mountOptions, snapshot, TOOLKIT } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { descendants, exists, processes, type Proc } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const BASE = `cctest-${randomBytes(3).toString('hex')}`;
const USERNS = { hostUid: 100000, hostGid: 100000, size: 65536 };

const canRun = () => process.getuid?.() === 0 && onPath('runc');

function ready(t: TestContext, ...commands: string[]): boolean {
  return requireRoot(t) && requireCommand(t, 'runc') && commands.every((c) => requireCommand(t, c));
}

let image = '';
let sleeper = '';

async function start(opts: Partial<ScratchOptions> = {}): Promise<ScratchContainer> {
  sleeper ||= await sleeperPath();
  return createScratchContainer({ sleeperPath: sleeper, ...opts });
}

/** A container for one test only, removed when it ends. */
async function startFor(t: TestContext, opts: Partial<ScratchOptions> = {}): Promise<ScratchContainer> {
  const c = await start(opts);
  t.after(() => c.remove());
  return c;
}

/** Loop devices whose backing file is the test image. */
function imageLoops(): string[] {
  const out: string[] = [];
  for (const name of readdirSync('/sys/block')) {
    if (!/^loop\d+$/.test(name)) continue;
    try {
      if (readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim() === image) out.push(name);
    } catch {
      // not bound
    }
  }
  return out;
}

const hasGraft = (pid: number) => grafts(pid).length > 0;

async function runcIds(): Promise<string[]> {
  const { stdout } = await execa('runc', ['list', '-q'], { stdin: 'ignore' });
  return stdout.split('\n').filter(Boolean).sort();
}

const lines = (s: string) => s.split('\n').filter(Boolean);

describe('crashcart attach', () => {
  // Shared targets: IDs a1 and a2 share the prefix `${BASE}-a`.
  let plain: ScratchContainer | undefined;
  let busybox: ScratchContainer | undefined;
  let userns: ScratchContainer | undefined;

  before(async () => {
    if (!canRun()) return;
    image = await testImage();
    // allSettled: when one fails, the others still get removed in after()
    const made = await Promise.allSettled([
      start({ id: `${BASE}-a1`, hostname: 'cc-plain', env: ['FOO=bar', 'PATH=/bin'], cwd: '/tmp' }),
      start({ id: `${BASE}-a2`, hostname: 'cc-busybox', busybox: onPath('/bin/busybox') }),
      start({ id: `${BASE}-userns`, userns: USERNS }),
    ]);
    [plain, busybox, userns] = made.map((m) => (m.status === 'fulfilled' ? m.value : undefined));
    for (const m of made) if (m.status === 'rejected') throw m.reason;
  });

  after(async () => {
    for (const c of [plain, busybox, userns]) await c?.remove();
  });

  /** A test body against one shared container, checked for leaks afterwards. */
  const on = (get: () => ScratchContainer | undefined, fn: (c: ScratchContainer, t: TestContext) => Promise<void>) =>
    async (t: TestContext) => {
      if (!ready(t)) return;
      const c = get();
      assert.ok(c, 'the shared container was not created');
      const snap = await snapshot(c);
      await fn(c, t);
      await assertClean(snap, c);
    };

  const cc = (c: ScratchContainer, ...args: string[]) => runCrashcart(['-i', image, c.id, ...args]);

  describe('in a scratch container with a read-only root', () => {
    test(
      'busybox from the toolkit lists the container root',
      on(() => plain, async (c) => {
        assert.ok(mountOptions(c.pid, '/').includes('ro'), 'the container root is read-only');
        const r = await cc(c, '--', '/dev/crashcart/bin/busybox', 'ls', '/');
        assertOk(r);
        assert.deepEqual(lines(r.stdout), ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp']);
        const bin = await cc(c, '--', '/dev/crashcart/bin/busybox', 'ls', '/bin');
        assertOk(bin);
        assert.equal(bin.stdout, 'sleeper');
      }),
    );

    test(
      "exits with the command's exit code",
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'sh', '-c', 'exit 7');
        assert.equal(r.code, 7, r.stderr);
        assert.equal(r.stderr, '');
      }),
    );

    test(
      'exits 128+N when the command is killed by signal N',
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'sh', '-c', 'kill -TERM $$');
        assert.equal(r.code, 143, r.stderr);
        assert.equal(r.stderr, '');
      }),
    );

    test(
      'a missing command exits 127 with one line',
      on(() => plain, async (c) => {
        assertFailure(await cc(c, '--', 'no-such-command-here'), 127, /not found.*no-such-command-here/);
      }),
    );

    test(
      'a file that is not executable exits 126 with one line',
      on(() => plain, async (c) => {
        assertFailure(await cc(c, '--', '/dev/crashcart/etc/bashrc'), 126, /cannot run \/dev\/crashcart\/etc\/bashrc: .*EACCES/);
      }),
    );

    test(
      'ps sees the container: its sleeper is PID 1, and nothing else runs',
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'ps');
        assertOk(r);
        const rows = lines(r.stdout).slice(1).map((l) => l.trim().split(/\s+/));
        assert.deepEqual(rows.map((f) => [f[0] === '1' ? '1' : 'N', f.slice(2).join(' ')]), [
          ['1', '/bin/sleeper'],
          ['N', 'ps'],
        ], r.stdout);
      }),
    );

    test(
      "hostname is the container's",
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'hostname');
        assertOk(r);
        assert.equal(r.stdout, 'cc-plain');
      }),
    );

    test(
      "the command is in the container's namespaces",
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'readlink', '/proc/self/ns/net');
        assertOk(r);
        assert.equal(r.stdout, readlinkSync(`/proc/${c.pid}/ns/net`));
        assert.notEqual(r.stdout, readlinkSync('/proc/self/ns/net'));

        const names = ['ipc', 'uts', 'net', 'pid', 'cgroup', 'mnt'];
        const all = await cc(c, '--', 'sh', '-c', `for n in ${names.join(' ')}; do readlink /proc/self/ns/$n; done`);
        assertOk(all);
        assert.deepEqual(lines(all.stdout), names.map((n) => readlinkSync(`/proc/${c.pid}/ns/${n}`)));
      }),
    );

    test(
      "the command joins the container's cgroups",
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'sh', '-c', 'cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup');
        assertOk(r);
        const [mine, init] = r.stdout.split('\n---\n');
        assert.equal(mine, init);
      }),
    );

    test(
      "the working directory is the container process's",
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'pwd');
        assertOk(r);
        assert.equal(r.stdout, '/tmp');
      }),
    );

    test(
      "the environment is the container process's, toolkit first on PATH",
      on(() => plain, async (c) => {
        const r = await cc(c, '--', 'env');
        assertOk(r);
        const env = lines(r.stdout);
        assert.ok(env.includes('FOO=bar'), r.stdout);
        assert.ok(env.includes('PATH=/dev/crashcart/bin:/bin'), r.stdout);
        assert.ok(env.includes('HOME=/'), r.stdout);
      }),
    );

    test(
      '--workdir changes the working directory',
      on(() => plain, async (c) => {
        const r = await runCrashcart(['-i', image, '--workdir', '/proc', c.id, '--', 'pwd']);
        assertOk(r);
        assert.equal(r.stdout, '/proc');
      }),
    );

    test(
      '--env adds to the environment',
      on(() => plain, async (c) => {
        const r = await runCrashcart(['-i', image, c.id, '--env', 'K=V', '--env', 'FOO=baz', '--', 'env']);
        assertOk(r);
        const env = lines(r.stdout);
        assert.ok(env.includes('K=V'), r.stdout);
        assert.ok(env.includes('FOO=baz') && !env.includes('FOO=bar'), r.stdout);
      }),
    );

    test(
      '--env before the target',
      on(() => plain, async (c) => {
        const r = await runCrashcart(['-i', image, '--env', 'K=V', c.id, '--', 'env']);
        assertOk(r);
        assert.ok(lines(r.stdout).includes('K=V'), r.stdout);
      }),
    );

    test(
      "--no-target-env leaves out the container's variables",
      on(() => plain, async (c) => {
        const r = await runCrashcart(['-i', image, '--no-target-env', c.id, '--', 'env']);
        assertOk(r);
        const env = lines(r.stdout);
        assert.ok(!env.some((kv) => kv.startsWith('FOO=')), r.stdout);
        assert.ok(env.includes('PATH=/dev/crashcart/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'), r.stdout);
      }),
    );

    test(
      '--user runs the command as that uid and gid',
      on(() => plain, async (c) => {
        const r = await runCrashcart(['-i', image, '--user', '1000:1000', c.id, '--', 'sh', '-c', 'id -u; id -g']);
        assertOk(r);
        assert.deepEqual(lines(r.stdout), ['1000', '1000']);
      }),
    );

    test(
      'without a command, bash reads commands from stdin and prints nothing of its own',
      on(() => plain, async (c) => {
        const r = await runCrashcart(['-i', image, c.id], { input: 'echo hello-from-stdin\n' });
        assertOk(r);
        assert.equal(r.stdout, 'hello-from-stdin');
      }),
    );

    test(
      "crashcart's own failures are one line, exit 125, and leave nothing",
      on(() => plain, async (c) => {
        assertFailure(
          await runCrashcart(['-i', image, '--workdir', '/no/such/dir', c.id, '--', 'pwd']),
          125,
          /chdir '\/no\/such\/dir': ENOENT/,
        );
        assertFailure(
          await runCrashcart(['-i', image, '--user', 'nobody', c.id, '--', 'id']),
          125,
          /user 'nobody' is not in the container's \/etc\/passwd/,
        );
        assertFailure(await runCrashcart(['-i', image, c.id, '--env', 'BAD', '--', 'env']), 125, /invalid --env 'BAD'/);
        assertFailure(await runCrashcart(['-i', image, '-m', c.id, '--', 'true']), 125, /--mount-only runs no command/);
        assertFailure(await runCrashcart(['-i', '/no/such.img', c.id, '--', 'true']), 125, /image file \/no\/such\.img not found/);
        assertFailure(await cc(c, '--', ''), 125, /empty command/);
      }),
    );

    test(
      '-m leaves the toolkit mounted until -u, which frees the loop device',
      on(() => plain, async (c) => {
        assertOk(await runCrashcart(['-i', image, '-m', c.id]));
        assert.equal(grafts(c.pid).length, 1, 'grafted once');
        assert.match(grafts(c.pid)[0]!, / \/dev\/crashcart ro,nosuid,nodev[, ].* - ext3 /);
        // no device node was left in the container
        const dev = readdirSync(`/proc/${c.pid}/root/dev`);
        assert.ok(dev.includes('crashcart'));
        assert.deepEqual(dev.filter((n) => lstatSync(`/proc/${c.pid}/root/dev/${n}`).isBlockDevice()), []);
        assert.equal(imageLoops().length, 1);

        // a session joins the pinned graft and leaves it there
        const r = await cc(c, '--', 'ls', '/dev/crashcart/bin/bash');
        assertOk(r);
        assert.equal(r.stdout, '/dev/crashcart/bin/bash');
        assert.equal(grafts(c.pid).length, 1, 'still grafted once after a session');
        // -m again changes nothing
        assertOk(await runCrashcart(['-i', image, '-m', c.id]));
        assert.equal(grafts(c.pid).length, 1, 'a second -m does not stack a second mount');

        assertOk(await runCrashcart(['-u', c.id]));
        assert.deepEqual(grafts(c.pid), []);
        assert.ok(!existsSync(`/proc/${c.pid}/root/dev/crashcart`), '/dev/crashcart removed');
        await waitFor('the loop device is released', () => imageLoops().length === 0, { ms: 3000 });
        // once more: nothing to do
        assertOk(await runCrashcart(['-u', c.id]));
      }),
    );
  });

  describe('targets', () => {
    test('an unknown target exits 125 with one line', async (t) => {
      if (!ready(t)) return;
      const snap = await snapshot();
      const q = `${BASE}-nothing`;
      assertFailure(
        await runCrashcart(['-i', image, q, '--', 'true']),
        125,
        new RegExp(`no container or process matches '${q}' \\(asked: [a-z, ]*\\bpid\\)`),
      );
      await assertClean(snap);
    });

    test('an ambiguous prefix exits 125 and lists both containers', async (t) => {
      if (!ready(t)) return;
      assert.ok(plain && busybox);
      const snaps = [await snapshot(plain), await snapshot(busybox)];
      const r = await runCrashcart(['-i', image, `${BASE}-a`, '--', 'true']);
      assertFailure(r, 125, new RegExp(`'${BASE}-a' matches 2 containers: `));
      assert.ok(r.stderr.includes(`runc ${plain.id}`) && r.stderr.includes(`runc ${busybox.id}`), r.stderr);
      await assertClean(snaps[0]!, plain);
      await assertClean(snaps[1]!, busybox);
    });

    test(
      'a unique prefix names the container',
      on(() => userns, async (c) => {
        const r = await runCrashcart(['-i', image, `${BASE}-use`, '--', 'readlink', '/proc/self/ns/user']);
        assertOk(r);
        assert.equal(r.stdout, readlinkSync(`/proc/${c.pid}/ns/user`));
      }),
    );

    test("a host process is refused: it is in the host's mount namespace", async (t) => {
      if (!ready(t)) return;
      const snap = await snapshot();
      const hadDir = existsSync(TOOLKIT);
      assertFailure(
        await runCrashcart(['-i', image, String(process.pid), '--', 'true']),
        125,
        new RegExp(`process ${process.pid} shares the host's mount namespace`),
      );
      assert.equal(existsSync(TOOLKIT), hadDir);
      await assertClean(snap);
    });
  });

  describe('in a user-namespaced container (0 -> 100000)', () => {
    test(
      'grafts with the mount API; root inside, and the toolkit reads and runs',
      on(() => userns, async (c) => {
        const r = await runCrashcart([
          '-v', '-i', image, c.id, '--',
          'sh', '-c', 'id -u; head -n 1 /dev/crashcart/etc/bashrc; /dev/crashcart/bin/busybox echo ran',
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, /mountapi/);
        for (const l of lines(r.stderr)) assert.match(l, /^crashcart: /);
        const out = lines(r.stdout);
        assert.equal(out[0], '0');
        assert.match(out[1]!, /^# /);
        assert.equal(out[2], 'ran');
      }),
    );

    test(
      '--method mknod cannot work there: one line, and nothing left',
      on(() => userns, async (c) => {
        assertFailure(
          await runCrashcart(['-i', image, '--method', 'mknod', c.id, '--', 'true']),
          125,
          /cannot graft the toolkit \(mknod\)/,
        );
        assert.ok(!existsSync(`/proc/${c.pid}/root/dev/crashcart`));
      }),
    );
  });

  describe('sessions', () => {
    test(
      'two sessions in one container: the second leaves the toolkit to the first',
      on(() => busybox, async (c) => {
        // session A's cat runs until its stdin ends: as long as the test needs it
        const a = startCrashcart(['-i', image, c.id, '--', 'cat'], { stdin: 'pipe' });
        try {
          await waitFor('session A grafted the toolkit', () => hasGraft(c.pid));
          const b = await runCrashcart(['-v', '-i', image, c.id, '--', 'ls', '/dev/crashcart/bin']);
          assert.equal(b.code, 0, b.stderr);
          assert.ok(lines(b.stdout).includes('busybox'), b.stdout);
          assert.match(b.stderr, /other session/);
          assert.equal(a.exitCode, null, 'session A still runs');
          assert.ok(hasGraft(c.pid), 'the toolkit is still there for session A');
          a.stdin!.end();
          const ra = await a;
          assert.equal(ra.exitCode, 0, String(ra.stderr));
          assert.equal(ra.stderr, '');
          assert.ok(!hasGraft(c.pid), 'the last session took the toolkit away');
        } finally {
          if (a.exitCode === null) a.kill('SIGTERM');
          await a;
        }
      }),
    );

    test(
      '-u while a session runs: the toolkit goes when that session ends',
      on(() => busybox, async (c) => {
        const a = startCrashcart(['-i', image, c.id, '--', 'cat'], { stdin: 'pipe' });
        try {
          await waitFor('session A grafted the toolkit', () => hasGraft(c.pid));
          const u = await runCrashcart(['-u', c.id]);
          assert.equal(u.code, 0, u.stderr);
          assert.deepEqual(lines(u.stderr), ['crashcart: 1 session(s) still use the toolkit; it goes when the last one ends']);
          assert.ok(hasGraft(c.pid), 'the running session keeps its toolkit');
          a.stdin!.end();
          assert.equal((await a).exitCode, 0);
          assert.ok(!hasGraft(c.pid));
        } finally {
          if (a.exitCode === null) a.kill('SIGTERM');
          await a;
        }
      }),
    );

    test(
      '-k keeps the toolkit after the command, until -u',
      on(() => busybox, async (c) => {
        assertOk(await runCrashcart(['-i', image, '-k', c.id, '--', 'true']));
        assert.ok(hasGraft(c.pid));
        assertOk(await cc(c, '--', 'true'));
        assert.ok(hasGraft(c.pid), 'a later session leaves a kept toolkit');
        assertOk(await runCrashcart(['-u', c.id]));
        assert.ok(!hasGraft(c.pid));
      }),
    );

    test(
      'another image is not grafted over the one that is there',
      on(() => busybox, async (c) => {
        const other = join(dirname(image), 'other.img');
        copyFileSync(image, other);
        try {
          assertOk(await runCrashcart(['-i', image, '-m', c.id]));
          const before = grafts(c.pid);
          assertFailure(
            await runCrashcart(['-i', other, c.id, '--', 'true']),
            125,
            `crashcart: runc container ${c.id} already has another toolkit image grafted at /dev/crashcart, kept by crashcart -m: ` +
              `${image} on /dev/loop${/^\d+ \d+ 7:(\d+) /.exec(before[0]!)?.[1]}; use it with -i ${image}, or take it out with crashcart -u once its sessions end`,
          );
          assert.deepEqual(grafts(c.pid), before);
        } finally {
          assertOk(await runCrashcart(['-u', c.id]));
          rmSync(other, { force: true });
        }
      }),
    );

    test('two containers share one loop device', async (t) => {
      if (!ready(t)) return;
      assert.ok(plain && userns);
      const snaps = [await snapshot(plain), await snapshot(userns)];
      assertOk(await runCrashcart(['-i', image, '-m', plain.id]));
      assertOk(await runCrashcart(['-i', image, '-m', userns.id]));
      const loops = imageLoops();
      assert.equal(loops.length, 1, `loop devices backed by the image: ${loops.join(' ')}`);
      const dev = readFileSync(`/sys/block/${loops[0]}/dev`, 'utf8').trim();
      for (const c of [plain, userns]) {
        assert.equal(grafts(c.pid).length, 1);
        assert.equal(grafts(c.pid)[0]!.split(' ')[2], dev, `${c.id} mounts ${loops[0]}`);
      }
      assertOk(await runCrashcart(['-u', plain.id]));
      assert.ok(!hasGraft(plain.pid));
      assert.deepEqual(imageLoops(), loops, 'still held by the other container');
      assertOk(await runCrashcart(['-u', userns.id]));
      assert.ok(!hasGraft(userns.pid));
      await waitFor('the loop device is released', () => imageLoops().length === 0, { ms: 3000 });
      await assertClean(snaps[0]!, plain);
      await assertClean(snaps[1]!, userns);
    });

    test(
      'SIGTERM to crashcart reaches the command, and crashcart still cleans up',
      on(() => busybox, async (c) => {
        const sub = startCrashcart(['-i', image, c.id, '--', 'sleep', '30']);
        try {
          await waitFor('the command runs', () => descendants(sub.pid!).some((p) => p.comm === 'sleep'));
          // crashcart records the waiting process, then forwards signals to it, with no turn
          // of its event loop in between: once the record is there, so is the forwarding
          await waitFor('crashcart recorded the waiting process', () => recordedSession(sub.pid!)?.processes.length === 2);
          sub.kill('SIGTERM');
          const r = await sub;
          assert.equal(r.exitCode, 143, String(r.stderr));
          assert.equal(r.stderr, '');
          assert.ok(!hasGraft(c.pid));
        } finally {
          if (sub.exitCode === null) sub.kill('SIGKILL');
          await sub;
        }
      }),
    );

    test(
      'a crashed session is cleaned up by the next run',
      on(() => busybox, async (c) => {
        const sub = startCrashcart(['-i', image, c.id, '--', 'sleep', '30'], { detached: true });
        const pgid = sub.pid!;
        let members: Proc[] = [];
        try {
          await waitFor('the command runs', () => processes().some((p) => p.pgrp === pgid && p.comm === 'sleep'));
          await waitFor('the toolkit is grafted', () => hasGraft(c.pid));
          // crashcart, the process that waits for the command, and the command
          members = processes().filter((p) => p.pgrp === pgid);
          assert.equal(members.length, 3, JSON.stringify(members));
        } finally {
          process.kill(-pgid, 'SIGKILL');
        }
        const r = await sub;
        assert.equal(r.signal, 'SIGKILL');
        await waitFor('the killed processes are gone', () => !members.some(exists));
        assert.ok(hasGraft(c.pid), 'the crash left the toolkit behind');

        const next = await cc(c, '--', 'true');
        assertOk(next);
        assert.ok(!hasGraft(c.pid), 'the next run pruned the stale session');
      }),
    );

    test("a read-only /dev is made writable for a moment and put back", async (t) => {
      if (!ready(t)) return;
      const c = await startFor(t, { busybox: true, devReadOnly: true });
      assert.ok(mountOptions(c.pid, '/dev').includes('ro'), 'the container /dev is read-only');
      const snap = await snapshot(c);

      const r = await cc(c, '--', 'sh', '-c', 'busybox echo ran; touch /dev/x 2>/dev/null || echo read-only');
      assertOk(r);
      assert.deepEqual(lines(r.stdout), ['ran', 'read-only']);
      assert.ok(mountOptions(c.pid, '/dev').includes('ro'), '/dev is read-only again');

      assertOk(await runCrashcart(['-i', image, '-m', c.id]));
      assert.ok(hasGraft(c.pid));
      assert.ok(mountOptions(c.pid, '/dev').includes('ro'), '/dev is read-only while grafted');
      assertOk(await runCrashcart(['-u', c.id]));
      assert.ok(!existsSync(`/proc/${c.pid}/root/dev/crashcart`));
      assert.ok(mountOptions(c.pid, '/dev').includes('ro'), '/dev is read-only after -u');
      await assertClean(snap, c);
    });
  });

  describe('demo', () => {
    test('runs a command in a disposable container and removes it', async (t) => {
      if (!ready(t)) return;
      const snap = await snapshot();
      const ids = await runcIds();
      const r = await runCrashcart(['demo', '-i', image, '--', 'ls', '/dev/crashcart/bin']);
      assert.equal(r.code, 0, r.stderr);
      const bin = lines(r.stdout);
      assert.ok(bin.includes('bash') && bin.includes('busybox'), r.stdout);
      const id = /demo container (\S+) /.exec(r.stderr)?.[1];
      assert.ok(id, r.stderr);
      const now = await runcIds();
      assert.ok(!now.includes(id), `${id} still exists`);
      assert.deepEqual(now, ids);
      await assertClean(snap);
    });
  });
});
