// docker containers are found through the Engine API of a private dockerd (its own data
// root and socket, no iptables or bridge) and grafted like any other target.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test, type TestContext } from 'node:test';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { attachAndCheck, runCrashcart, testImage, uniquePrefix } from '../helpers/cli.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { importScratchImage, startDockerd, type PrivateDockerd } from '../helpers/dockerd.js';
import { addLineFor, assertNoLeaks, CONTAINERD_RUN_DIRS, onPath, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

const IMAGE_TAG = 'mini:latest';

describe('docker', () => {
  let d: PrivateDockerd | undefined;
  let image = '';
  let ipForward = '';
  let setupError: unknown;
  let runcTwin: ScratchContainer | undefined;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd') || !requireCommand(t, 'docker')) return false;
    if (setupError) throw setupError;
    return d !== undefined;
  };

  async function docker(args: string[]): Promise<string> {
    const r = await d!.docker(args);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  async function inspect(name: string): Promise<{ Id: string; Name: string; State: { Pid: number; Status: string } }> {
    return JSON.parse(await docker(['inspect', '--type', 'container', name]))[0];
  }

  /** Starts a read-only, networkless sleeper; returns its full ID and pid. */
  async function runSleeper(name: string): Promise<{ id: string; pid: number }> {
    const id = await docker(['run', '-d', '--read-only', '--network', 'none', '--name', name, IMAGE_TAG, '/bin/sleeper', '100000']);
    const { State } = await inspect(id);
    assert.equal(State.Status, 'running');
    return { id, pid: State.Pid };
  }

  const snap = (pid: number) => snapshotHost({ pid, rootfs: `/proc/${pid}/root` });

  /** Attaches with `args`: the target's pid 1 is the sleeper, and nothing is left behind. */
  const attach = async (pid: number, args: string[]): Promise<number> =>
    (await attachAndCheck({ image, pid, args, env: d!.env })).ms;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !onPath('dockerd')) return;
    try {
      ipForward = await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8');
      image = await testImage();
      d = await startDockerd();
      await importScratchImage(d, IMAGE_TAG, await sleeperPath());
    } catch (err) {
      setupError = err;
    }
  });

  const runDirsBefore = CONTAINERD_RUN_DIRS.filter((dir) => existsSync(dir));

  after(async () => {
    try {
      if (runcTwin) await runcTwin.remove();
    } finally {
      await stopDaemon();
    }
  });

  async function stopDaemon(): Promise<void> {
    if (!d) return;
    const ids = (await d.docker(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
    if (ids.length) await d.docker(['rm', '-f', ...ids]);
    await stopAndCheck(d, 'dockerd or containerd');
    assert.equal(await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8'), ipForward, 'net.ipv4.ip_forward changed');
    assert.deepEqual(CONTAINERD_RUN_DIRS.filter((dir) => existsSync(dir)), runDirsBefore, 'directories left under /run/containerd');
  }

  test('a container named web: by name, full ID, unique prefix and --runtime docker', async (t) => {
    if (!ready(t)) return;
    const web = await runSleeper('web');
    const byName = await attach(web.pid, ['web']);
    t.diagnostic(`attach by name: ${byName} ms`);
    await attach(web.pid, [web.id]);
    await attach(web.pid, ['--runtime', 'docker', 'web']);

    // the shortest prefix no other container shares
    const others = (await docker(['ps', '-aq', '--no-trunc'])).split('\n').filter((id) => id && id !== web.id);
    await attach(web.pid, [uniquePrefix(web.id, others)]);

    const verbose = await runCrashcart(['-i', image, '-v', 'web', '--', 'true'], { env: d!.env });
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.match(verbose.stderr, new RegExp(`target: docker ${web.id} \\(pid ${web.pid}\\)`));
  });

  test('an ambiguous ID prefix lists every match', async (t) => {
    if (!ready(t)) return;
    // created containers until two IDs share a first digit (17 at most)
    const made: string[] = [];
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const id = await docker(['create', '--network', 'none', '--name', `amb-${i}`, IMAGE_TAG, '/bin/sleeper']);
      const twin = made.find((m) => m[0] === id[0]);
      if (twin) pair = [twin, id];
      made.push(id);
    }
    let common = 1;
    while (pair[0][common] === pair[1][common]) common++;
    const prefix = pair[0].slice(0, common);
    const sharing = (await docker(['ps', '-aq', '--no-trunc'])).split('\n').filter((id) => id.startsWith(prefix));
    // an all-digit prefix could be a live PID, which wins over prefixes unless docker is named
    const runtime = /^[0-9]+$/.test(prefix) ? ['--runtime', 'docker'] : [];
    const r = await runCrashcart(['-i', image, ...runtime, prefix, '--', 'true'], { env: d!.env });
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`^crashcart: '${prefix}' matches ${sharing.length} containers: `));
    for (const id of sharing) {
      const name = (await inspect(id)).Name.slice(1);
      assert.ok(r.stderr.includes(`docker ${id} (${name})`), r.stderr);
    }
    await docker(['rm', ...made]);
  });

  test('a name used by both docker and runc is ambiguous across runtimes', async (t) => {
    if (!ready(t) || !requireCommand(t, 'runc')) return;
    const name = `ccdk-${randomBytes(3).toString('hex')}`;
    const dk = await runSleeper(name);
    runcTwin = await createScratchContainer({ id: name, sleeperPath: await sleeperPath() });
    const r = await runCrashcart(['-i', image, name, '--', 'true'], { env: d!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, `crashcart: '${name}' matches 2 containers: runc ${name}, docker ${dk.id} (${name}); ` +
      'give more of the ID, or the runtime with --runtime');
    await attach(dk.pid, ['--runtime', 'docker', name]);
    await attach(runcTwin.pid, ['--runtime', 'runc', name]);
    await runcTwin.remove();
    runcTwin = undefined;
    await docker(['rm', '-f', name]);
  });

  test('stopped and never-started containers are refused with their status', async (t) => {
    if (!ready(t)) return;
    const gone = await runSleeper('gone');
    await docker(['stop', '-t', '5', 'gone']);
    const fresh = await docker(['create', '--network', 'none', '--name', 'fresh', IMAGE_TAG, '/bin/sleeper']);
    const host = await snapshotHost();

    const r = await runCrashcart(['-i', image, 'gone', '--', 'true'], { env: d!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, `crashcart: container gone is not running (status: exited); start it first, ` +
      `or open its files in a sandbox with crashcart --stopped gone (docker ${gone.id} (gone))`);

    const c = await runCrashcart(['-i', image, fresh.slice(0, 12), '--', 'true'], { env: d!.env });
    assert.equal(c.code, 125);
    assert.equal(c.stderr, `crashcart: container ${fresh.slice(0, 12)} is not running (status: created); start it first, ` +
      `or open its files in a sandbox with crashcart --stopped ${fresh.slice(0, 12)} (docker ${fresh} (fresh))`);
    assertNoLeaks(host, await snapshotHost());
    await docker(['rm', 'gone', 'fresh']);
  });

  test("--exec runs through docker exec: the container's user and capabilities", async (t) => {
    if (!ready(t)) return;
    const id = await docker(['run', '-d', '--read-only', '--network', 'none', '--user', '65532:65532', '--cap-drop', 'ALL', '--name', 'nonroot', IMAGE_TAG, '/bin/sleeper', '100000']);
    const { State } = await inspect(id);
    const host = await snap(State.Pid);
    const own = (await readFile(`/proc/${State.Pid}/status`, 'utf8')).split('\n').filter((l) => /^(Uid|Gid|CapEff|CapBnd):/.test(l)).join('\n');
    const viaDocker = await runCrashcart(['-i', image, '-e', 'nonroot', '--', 'grep', '-E', '^(Uid|Gid|CapEff|CapBnd):', '/proc/self/status'], { env: d!.env });
    assert.equal(viaDocker.code, 0, viaDocker.stderr);
    assert.equal(viaDocker.stdout, own);
    const seven = await runCrashcart(['-i', image, '-e', 'nonroot', '--', 'sh', '-c', 'exit 7'], { env: d!.env });
    assert.equal(seven.code, 7, seven.stderr);
    assertNoLeaks(host, await snap(State.Pid));
    await docker(['rm', '-f', 'nonroot']);
  });

  test('--runtime docker does not fall back to a PID; an unknown name names docker', async (t) => {
    if (!ready(t)) return;
    const r = await runCrashcart(['-i', image, '--runtime', 'docker', 'nosuch', '--', 'true'], { env: d!.env });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, "crashcart: no container or process matches 'nosuch' (asked: docker); " +
      'check the ID with your runtime (e.g. docker ps -a), or give a PID');
  });
});

// dockerd --userns-remap: containers run in a user namespace (root inside is uid 200000
// outside), so the toolkit goes in through the mount API. The subordinate id ranges it needs
// are added to /etc/subuid and /etc/subgid for the test and the files restored afterwards.
describe('docker with --userns-remap', () => {
  const REMAP = 'nobody:200000:65536';
  let d: PrivateDockerd | undefined;
  let image = '';
  let setupError: unknown;
  const added: { undo(): void }[] = [];

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !onPath('dockerd')) return;
    try {
      for (const f of ['/etc/subuid', '/etc/subgid']) added.push(addLineFor(f, REMAP));
      image = await testImage();
      d = await startDockerd(['--userns-remap=nobody:nogroup']);
      await importScratchImage(d, IMAGE_TAG, await sleeperPath());
    } catch (err) {
      setupError = err;
    }
  });

  after(async () => {
    try {
      if (d) {
        const ids = (await d.docker(['ps', '-aq', '--no-trunc'])).stdout.split('\n').filter(Boolean);
        if (ids.length) await d.docker(['rm', '-f', ...ids]);
        await stopAndCheck(d, 'dockerd or containerd');
      }
    } finally {
      for (const a of added) a.undo();
    }
  });

  test('a remapped container is attached through the mount API, by name and with --exec', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd') || !requireCommand(t, 'docker')) return;
    if (setupError) throw setupError;
    const run = await d!.docker(['run', '-d', '--read-only', '--network', 'none', '--name', 'remapped', IMAGE_TAG, '/bin/sleeper', '100000']);
    assert.equal(run.code, 0, run.stderr);
    const pid = (JSON.parse((await d!.docker(['inspect', 'remapped'])).stdout)[0] as { State: { Pid: number } }).State.Pid;
    assert.match(await readFile(`/proc/${pid}/uid_map`, 'utf8'), /^\s*0\s+200000\s+65536\s*$/);
    const host = await snapshotHost({ pid, rootfs: `/proc/${pid}/root` });

    const r = await runCrashcart(['-i', image, '-v', 'remapped', '--', 'cat', '/proc/1/comm', '/proc/self/uid_map'], { env: d!.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^sleeper\n\s*0\s+200000\s+65536$/);
    assert.match(r.stderr, /grafted at \/dev\/crashcart with mountapi/);

    const viaDocker = await runCrashcart(['-i', image, '-e', 'remapped', '--', 'id', '-u'], { env: d!.env });
    assert.equal(viaDocker.code, 0, viaDocker.stderr);
    assert.equal(viaDocker.stdout, '0');
    assertNoLeaks(host, await snapshotHost({ pid, rootfs: `/proc/${pid}/root` }));
  });
});
