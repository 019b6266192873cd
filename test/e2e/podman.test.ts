// podman containers (rootful, runc, no network) in a private storage are found through
// libpod's database and grafted like any other target; `podman exec` runs what the runtime's
// execCommand builds.
import assert from 'node:assert/strict';
import { existsSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { podman as podmanRuntime, listWithCli } from '../../src/runtimes/podman.js';
import type { Container } from '../../src/runtimes/types.js';
import { attachAndCheck, runCrashcart, testImage, uniquePrefix } from '../helpers/cli.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { assertNoLeaks, onPath, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { importScratchImage, outsidePaths, startPodman, ULIMITS, type PrivatePodman } from '../helpers/podman.js';
import { until } from '../helpers/wait.js';

const MINI = 'localhost/mini:latest';
const SHELL = 'localhost/mini-busybox:latest';
const USERNS = ['--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536'];

interface Inspect { Id: string; Name: string; State: { Pid: number; Status: string } }

describe('podman', () => {
  let p: PrivatePodman | undefined;
  let image = '';
  let ipForward = '';
  let outsideBefore: string[] = [];
  let setupError: unknown;
  const timings: string[] = [];

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'podman') || !requireCommand(t, 'runc')) return false;
    if (setupError) throw setupError;
    return p !== undefined;
  };

  async function podman(args: string[]): Promise<string> {
    const r = await p!.podman(args);
    assert.equal(r.code, 0, `podman ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  /**
   * `podman rm -f`. Podman 4 has a known race (containers/podman#11594, #10454): right after
   * an exec, removing a container can fail with "unlinkat .../userdata/shm: device or resource
   * busy" while its own cleanup still holds the mount; a second try finds it done. Any other
   * failure, or that one for more than 10 s, fails the test.
   */
  async function removeContainer(name: string): Promise<void> {
    let last = '';
    const gone = await until(async () => {
      const r = await p!.podman(['rm', '-f', '-t', '0', name]);
      if (r.code === 0) return true;
      last = r.stderr;
      assert.match(r.stderr, /unlinkat .*\/userdata\/shm: device or resource busy/, `podman rm -f ${name}: ${r.stderr}`);
      return false;
    }, { ms: 10_000, every: 200 });
    assert.ok(gone, `podman rm -f ${name} kept failing: ${last}`);
  }

  const inspect = async (name: string): Promise<Inspect> => JSON.parse(await podman(['inspect', '--type', 'container', name]))[0];

  /** Starts a sleeper (read-only root unless `extra` says otherwise); its full ID and pid. */
  async function runSleeper(name: string, extra: string[] = [], tag = MINI): Promise<{ id: string; pid: number }> {
    const t0 = Date.now();
    const id = await podman(['run', '-d', ...ULIMITS, ...extra, '--name', name, tag, '/bin/sleeper', '100000']);
    timings.push(`podman run -d ${name}: ${Date.now() - t0} ms`);
    const { State } = await inspect(id);
    assert.equal(State.Status, 'running');
    return { id, pid: State.Pid };
  }

  const snap = (pid: number) => snapshotHost({ pid, rootfs: `/proc/${pid}/root` });

  /** Attaches with `args`: the target's pid 1 is the sleeper, and nothing is left behind. */
  const attach = async (pid: number, args: string[]): Promise<number> =>
    (await attachAndCheck({ image, pid, args, env: p!.env })).ms;

  /** Runs `fn` with this process pointed at the private podman, as the CLI is. */
  async function withPodmanEnv<T>(fn: () => Promise<T>): Promise<T> {
    const saved = { CONTAINERS_CONF: process.env.CONTAINERS_CONF, CONTAINERS_STORAGE_CONF: process.env.CONTAINERS_STORAGE_CONF };
    Object.assign(process.env, p!.env);
    try {
      return await fn();
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !(onPath('podman') && onPath('runc'))) return;
    try {
      ipForward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
      outsideBefore = outsidePaths();
      image = await testImage();
      p = await startPodman();
      const sleeper = await sleeperPath();
      await importScratchImage(p, MINI, sleeper);
      await importScratchImage(p, SHELL, sleeper, { busybox: true });
    } catch (err) {
      setupError = err;
    }
  });

  /** Reports the timings taken so far (start, resolution, attach) as test diagnostics. */
  const report = (t: TestContext) => {
    for (const line of timings.splice(0)) t.diagnostic(line);
  };

  after(async () => {
    if (!p) return;
    await stopAndCheck(p, 'conmon');
    assert.ok(!existsSync(p.dir), `${p.dir} is still there`);
    assert.deepEqual(outsidePaths(), outsideBefore, 'podman left directories outside its own');
    assert.equal(await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8'), ipForward, 'net.ipv4.ip_forward changed');
  });

  test('a read-only container named web: by name, full ID, unique prefix and --runtime podman', async (t) => {
    if (!ready(t)) return;
    const web = await runSleeper('web', ['--read-only']);
    // read-only root: its / is mounted ro
    const root = (await readFile(`/proc/${web.pid}/mountinfo`, 'utf8')).split('\n').find((l) => l.split(' ')[4] === '/');
    assert.match(root ?? '', /^\S+ \S+ \S+ \S+ \/ (ro,|ro$|\S*,ro\b)/, root);
    // podman runs it with runc's default state root: crashcart's runc sees the same container
    assert.ok(existsSync(`/run/runc/${web.id}`), 'no runc state for the podman container');

    const byName = await attach(web.pid, ['web']);
    timings.push(`whole attach by name (crashcart -i IMG web -- cat /proc/1/comm): ${byName} ms`);
    // the runc twin is the same container, not a second match
    await attach(web.pid, [web.id]);
    await attach(web.pid, ['--runtime', 'podman', 'web']);

    const others = (await podman(['ps', '-aq', '--no-trunc'])).split('\n').filter((id) => id && id !== web.id);
    await attach(web.pid, [uniquePrefix(web.id, others)]);

    const verbose = await runCrashcart(['-i', image, '-v', 'web', '--', 'true'], { env: p!.env });
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.match(verbose.stderr, new RegExp(`target: podman ${web.id} \\(pid ${web.pid}\\)`));

    // resolution alone, in this process: the database read and the podman CLI agree
    const found = await withPodmanEnv(async () => {
      const t0 = performance.now();
      const hit = await podmanRuntime.find!('web');
      const findMs = performance.now() - t0;
      const t1 = performance.now();
      const all = await podmanRuntime.list();
      const listMs = performance.now() - t1;
      const t2 = performance.now();
      const cli = await listWithCli();
      const cliMs = performance.now() - t2;
      timings.push(`resolution: find('web') ${findMs.toFixed(1)} ms, list() ${listMs.toFixed(1)} ms, podman ps -a --format json ${cliMs.toFixed(1)} ms`);
      return { hit, all, cli };
    });
    assert.deepEqual(found.hit, [{ runtime: 'podman', id: web.id, name: 'web', pid: web.pid, status: 'running' }]);
    const key = (c: Container) => `${c.id} ${c.name} ${c.status} ${c.pid}`;
    assert.deepEqual(found.all.map(key).sort(), found.cli.map(key).sort());
    await removeContainer('web');
    report(t);
  });

  test('an ambiguous ID prefix lists every match', async (t) => {
    if (!ready(t)) return;
    // created containers until two IDs share a first digit (17 at most)
    const made: string[] = [];
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const id = await podman(['create', ...ULIMITS, '--name', `amb-${i}`, MINI, '/bin/sleeper']);
      const twin = made.find((m) => m[0] === id[0]);
      if (twin) pair = [twin, id];
      made.push(id);
    }
    let common = 1;
    while (pair[0][common] === pair[1][common]) common++;
    const prefix = pair[0].slice(0, common);
    const sharing = (await podman(['ps', '-aq', '--no-trunc'])).split('\n').filter((id) => id.startsWith(prefix));
    assert.ok(sharing.length >= 2);
    // an all-digit prefix could be a live PID, which wins over prefixes unless podman is named
    const runtime = /^[0-9]+$/.test(prefix) ? ['--runtime', 'podman'] : [];
    const host = await snapshotHost();
    const r = await runCrashcart(['-i', image, ...runtime, prefix, '--', 'true'], { env: p!.env });
    assert.equal(r.code, 125);
    const names = await Promise.all(sharing.map(async (id) => `podman ${id} (${(await inspect(id)).Name})`));
    assert.equal(r.stderr, `crashcart: '${prefix}' matches ${sharing.length} containers: ` +
      `${names.sort().join(', ')}; give more of the ID, or the runtime with --runtime`);
    assertNoLeaks(host, await snapshotHost());
    await podman(['rm', ...made]);
  });

  test('exited and never-started containers are refused with podman\'s word for them', async (t) => {
    if (!ready(t)) return;
    const gone = await runSleeper('gone');
    await podman(['stop', '-t', '5', 'gone']);
    assert.equal((await inspect('gone')).State.Status, 'exited');
    const fresh = await podman(['create', ...ULIMITS, '--name', 'fresh', MINI, '/bin/sleeper']);
    const host = await snapshotHost();

    const r = await runCrashcart(['-i', image, 'gone', '--', 'true'], { env: p!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, 'crashcart: container gone is not running (status: exited); start it first, ' +
      `or open its files in a sandbox with crashcart --stopped gone (podman ${gone.id} (gone))`);

    const c = await runCrashcart(['-i', image, fresh.slice(0, 12), '--', 'true'], { env: p!.env });
    assert.equal(c.code, 125);
    assert.equal(c.stderr, `crashcart: container ${fresh.slice(0, 12)} is not running (status: created); start it first, ` +
      `or open its files in a sandbox with crashcart --stopped ${fresh.slice(0, 12)} (podman ${fresh} (fresh))`);
    assertNoLeaks(host, await snapshotHost());
    await podman(['rm', 'gone', 'fresh']);
  });

  test('a user-namespaced container (--uidmap 0:100000:65536) is grafted with the mount API', async (t) => {
    if (!ready(t)) return;
    const un = await runSleeper('userns', [...USERNS, '--read-only']);
    assert.match(await readFile(`/proc/${un.pid}/uid_map`, 'utf8'), /^\s*0\s+100000\s+65536\s*$/);
    const before = await snap(un.pid);
    const r = await runCrashcart(['-v', '-i', image, 'userns', '--', 'sh', '-c', 'id -u; readlink /proc/self/ns/user; cat /proc/1/comm'], { env: p!.env });
    assert.equal(r.code, 0, r.stderr);
    // chosen up front (own user namespace), not after a failed mknod
    assert.match(r.stderr, /^crashcart: grafted at \/dev\/crashcart with mountapi$/m);
    assert.doesNotMatch(r.stderr, /mknod path failed/);
    assert.deepEqual(r.stdout.split('\n'), ['0', readlinkSync(`/proc/${un.pid}/ns/user`), 'sleeper']);
    // and through podman exec: the same namespaces, the toolkit grafted by crashcart
    const viaPodman = await runCrashcart(['-i', image, '--exec', 'userns', '--', 'sh', '-c', 'readlink /proc/self/ns/user; ls /dev/crashcart/bin/busybox /dev/crashcart/bin/bash'], { env: p!.env });
    assert.equal(viaPodman.code, 0, viaPodman.stderr);
    assert.equal(viaPodman.stdout.split('\n')[0], readlinkSync(`/proc/${un.pid}/ns/user`));
    assertNoLeaks(before, await snap(un.pid));
    await removeContainer('userns');
    report(t);
  });

  test('--runtime podman does not fall back to a PID; an unknown name names podman', async (t) => {
    if (!ready(t)) return;
    const r = await runCrashcart(['-i', image, '--runtime', 'podman', 'nosuch', '--', 'true'], { env: p!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, "crashcart: no container or process matches 'nosuch' (asked: podman); " +
      'check the ID with your runtime (e.g. podman ps -a), or give a PID');
  });

  test('execCommand builds a podman exec that runs in the container', async (t) => {
    if (!ready(t)) return;
    const sh = await runSleeper('shell', [], SHELL);
    const c = await withPodmanEnv(async () => (await podmanRuntime.find!('shell'))[0]);
    assert.equal(c?.pid, sh.pid);
    const host = await snap(sh.pid);
    const cmd = withPodmanEnvSync(p!, () => podmanRuntime.execCommand!(c, {
      argv: ['/bin/busybox', 'sh', '-c', 'cat /proc/1/comm; ls /; echo "$GREETING"; id -u; pwd'],
      tty: false,
      env: { GREETING: 'hello there' },
      user: '1234',
      workdir: '/tmp',
    }));
    assert.equal(cmd.file, 'podman');
    assert.deepEqual(cmd.env, p!.env);
    const r = await execa(cmd.file, cmd.args, { env: cmd.env, reject: false, stdin: 'ignore', timeout: 60_000 });
    assert.equal(r.exitCode, 0, r.stderr);
    const [comm, ...rest] = r.stdout.split('\n');
    assert.equal(comm, 'sleeper');
    assert.deepEqual(rest.slice(-3), ['hello there', '1234', '/tmp']);
    for (const d of ['bin', 'dev', 'proc', 'sys', 'tmp', 'etc']) assert.ok(rest.includes(d), r.stdout);
    assertNoLeaks(host, await snap(sh.pid));
    await removeContainer('shell');
  });
});

/** Like withPodmanEnv, for a synchronous call (execCommand reads the environment it is built in). */
function withPodmanEnvSync<T>(p: PrivatePodman, fn: () => T): T {
  const saved = { CONTAINERS_CONF: process.env.CONTAINERS_CONF, CONTAINERS_STORAGE_CONF: process.env.CONTAINERS_STORAGE_CONF };
  Object.assign(process.env, p.env);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}
