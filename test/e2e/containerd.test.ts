// containerd containers in every namespace, and Kubernetes pods by their kubelet labels, on a
// private containerd (its own root, state and socket; no CRI plugin): real tasks started
// with `ctr run --rootfs` from a scratch root, grafted like any other target.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { ctrExecCommand, listContainerd } from '../../src/runtimes/containerd.js';
import type { Container } from '../../src/runtimes/types.js';
import { attachAndCheck, runCrashcart, testImage } from '../helpers/cli.js';
import { importScratchImage, makeScratchRoot, startContainerd, type PrivateContainerd } from '../helpers/containerd.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { importScratchImage as importDockerImage, startDockerd } from '../helpers/dockerd.js';
import { assertNoLeaks, CONTAINERD_RUN_DIRS, onPath, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { waitFor } from '../helpers/wait.js';

const hex = (n: number) => randomBytes(n).toString('hex');

describe('containerd', () => {
  let d: PrivateContainerd | undefined;
  let image = '';
  let rootfs = '';
  let setupError: unknown;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'containerd') || !requireCommand(t, 'ctr')) return false;
    if (setupError) throw setupError;
    return d !== undefined;
  };

  async function ctr(args: string[]): Promise<string> {
    const r = await d!.ctr(args);
    assert.equal(r.code, 0, `ctr ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  const snap = (pid: number) => snapshotHost({ pid, rootfs: `/proc/${pid}/root` });

  /** Attaches with `args`: it ran in `pid`'s container (its cgroup too), leaving nothing behind. */
  async function attach(pid: number, args: string[], env: Record<string, string> = d!.env): Promise<number> {
    const { ms, rest } = await attachAndCheck({ image, pid, args, env, also: ['/proc/self/cgroup'] });
    // its own cgroup: which of the sleepers it ran beside
    assert.equal(rest, (await readFile(`/proc/${pid}/cgroup`, 'utf8')).trim());
    return ms;
  }

  /** crashcart must fail with exactly `stderr` (exit 125) and change nothing. */
  async function refused(args: string[], stderr: string): Promise<void> {
    const host = await snapshotHost();
    const r = await runCrashcart(['-i', image, ...args, '--', 'true'], { env: d!.env });
    assert.equal(r.stderr, stderr);
    assert.equal(r.code, 125);
    assertNoLeaks(host, await snapshotHost());
  }

  async function taskStatus(ns: string, id: string): Promise<string | undefined> {
    const line = (await ctr(['-n', ns, 'tasks', 'ls'])).split('\n').slice(1).find((l) => l.split(/\s+/)[0] === id);
    return line?.split(/\s+/)[2];
  }

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !(onPath('containerd') && onPath('ctr'))) return;
    try {
      image = await testImage();
      d = await startContainerd();
      rootfs = join(d.dir, 'rootfs');
      await makeScratchRoot(rootfs, await sleeperPath());
    } catch (err) {
      setupError = err;
    }
  });

  const runDirsBefore = CONTAINERD_RUN_DIRS.filter((dir) => existsSync(dir));

  after(async () => {
    if (!d) return;
    await stopAndCheck(d, 'containerd, a shim or a container');
    assert.ok(!existsSync(`/sys/fs/cgroup/memory${d.cgroupParent}`) && !existsSync(`/sys/fs/cgroup${d.cgroupParent}`), 'cgroups left');
    assert.deepEqual(CONTAINERD_RUN_DIRS.filter((dir) => existsSync(dir)), runDirsBefore, 'directories left under /run/containerd');
  });

  test('a container in namespace default: by name, unique prefix, --runtime containerd, --namespace', async (t) => {
    if (!ready(t)) return;
    const id = `web-${hex(4)}`;
    const pid = await d!.runSleeper('default', id, rootfs);
    // ctr run --read-only: the container's root is mounted read-only
    const rootMount = (await readFile(`/proc/${pid}/mountinfo`, 'utf8')).split('\n').find((l) => l.split(' ')[4] === '/');
    assert.match(rootMount ?? '', /^\S+ \S+ \S+ \S+ \/ ro[, ]/, rootMount);

    const ms = await attach(pid, [id]);
    t.diagnostic(`attach by name: ${ms} ms`);
    await attach(pid, [id.slice(0, -2)]);
    await attach(pid, ['--runtime', 'containerd', id]);
    await attach(pid, ['--namespace', 'default', id]);
    await attach(pid, ['-r', 'containerd', '--namespace', 'default', id.slice(0, 6)]);

    const verbose = await runCrashcart(['-i', image, '-v', id, '--', 'true'], { env: d!.env });
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.match(verbose.stderr, new RegExp(`target: containerd ${id} \\(pid ${pid}\\)`));

    await refused(['--namespace', 'nosuch', id], `crashcart: no container or process matches '${id}' in namespace nosuch (asked: containerd); ` +
      'check the ID with your runtime (e.g. ctr -n nosuch containers ls)');
    await refused(['--runtime', 'containerd', 'nosuch'], "crashcart: no container or process matches 'nosuch' (asked: containerd); " +
      'check the ID with your runtime (e.g. ctr -n NAMESPACE containers ls), or give a PID');
  });

  test('the same ID in two namespaces is ambiguous; --namespace resolves it', async (t) => {
    if (!ready(t)) return;
    const id = `twin-${hex(4)}`;
    const inDefault = await d!.runSleeper('default', id, rootfs);
    const inOther = await d!.runSleeper('other', id, rootfs);
    await refused([id], `crashcart: '${id}' matches 2 containers: containerd ${id} in namespace default, containerd ${id} in namespace other; ` +
      'give more of the ID, the runtime with --runtime, or the namespace with --namespace');
    await attach(inDefault, ['--namespace', 'default', id]);
    await attach(inOther, ['--namespace', 'other', id]);
  });

  test('a stopped task, a paused one and a container without a task are not running', async (t) => {
    if (!ready(t)) return;
    const stopped = `stopped-${hex(4)}`;
    await d!.runSleeper('default', stopped, rootfs);
    await ctr(['-n', 'default', 'tasks', 'kill', '-s', 'SIGKILL', stopped]);
    await waitFor(`task ${stopped} stopped`, async () => (await taskStatus('default', stopped)) === 'STOPPED', { every: 25 });
    await refused([stopped], `crashcart: container ${stopped} is not running (status: stopped); start it first, ` +
      `or open its files in a sandbox with crashcart --stopped ${stopped} (containerd ${stopped} in namespace default)`);

    // a paused task: from the API, and from disk (an exact ID) while containerd is down
    const paused = `paused-${hex(4)}`;
    await d!.runSleeper('default', paused, rootfs);
    await ctr(['-n', 'default', 'tasks', 'pause', paused]);
    const pausedMsg = (q: string) => `crashcart: container ${q} is not running (status: paused); start it first; ` +
      `crashcart attaches to running containers only (containerd ${paused} in namespace default)`;
    await refused([paused.slice(0, 9)], pausedMsg(paused.slice(0, 9)));
    const host = await snapshotHost();
    const down = await runCrashcart(['-i', image, paused, '--', 'true'], { env: { ...d!.env, CONTAINERD_ADDRESS: join(d!.dir, 'no-such.sock') } });
    assert.equal(down.stderr, pausedMsg(paused));
    assert.equal(down.code, 125);
    assertNoLeaks(host, await snapshotHost());
    await ctr(['-n', 'default', 'tasks', 'resume', paused]);

    const created = `created-${hex(4)}`;
    await ctr(['-n', 'default', 'containers', 'create', '--rootfs', rootfs, created, '/bin/sleeper']);
    await refused([created.slice(0, 10)], `crashcart: container ${created.slice(0, 10)} is not running (status: created); start it first, ` +
      `or open its files in a sandbox with crashcart --stopped ${created.slice(0, 10)} (containerd ${created} in namespace default)`);
    await ctr(['-n', 'default', 'tasks', 'delete', stopped]);
    await ctr(['-n', 'default', 'containers', 'delete', stopped, created]);
  });

  test('a 64-digit ID (as Kubernetes makes them) by full ID and 12-digit prefix; pods by kubelet labels', async (t) => {
    if (!ready(t)) return;
    const pod = `web-${hex(3)}`;
    const labels = (name: string | undefined, kind: string, ns = 'default') => ({
      'io.kubernetes.pod.name': pod,
      'io.kubernetes.pod.namespace': ns,
      'io.cri-containerd.kind': kind,
      ...(name ? { 'io.kubernetes.container.name': name } : {}),
    });
    const sandboxId = hex(32);
    const sandbox = await d!.runSleeper('k8s.io', sandboxId, rootfs, labels(undefined, 'sandbox'));
    // the CRI plugin also writes the pod's identity into the spec's annotations
    const annotations = (name: string) => ({
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.container-name': name,
      'io.kubernetes.cri.sandbox-id': sandboxId,
      'io.kubernetes.cri.sandbox-name': pod,
      'io.kubernetes.cri.sandbox-namespace': 'default',
    });
    const appId = hex(32);
    const app = await d!.runSleeper('k8s.io', appId, rootfs, labels('app', 'container'), annotations('app'));

    await attach(app, [appId]);
    await attach(app, [appId.slice(0, 12)]);
    await attach(app, ['--namespace', 'k8s.io', appId.slice(0, 12)]);

    // the only container (the sandbox is no candidate), with the command after the options
    const before = await snap(app);
    const r = await runCrashcart(['-i', image, '-v', '--pod', pod, 'cat', '/proc/1/comm'], { env: d!.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'sleeper');
    assert.match(r.stderr, new RegExp(`target: containerd ${appId} \\(pid ${app}\\)`));
    assertNoLeaks(before, await snap(app));

    const sideId = hex(32);
    const side = await d!.runSleeper('k8s.io', sideId, rootfs, labels('sidecar', 'container'), annotations('sidecar'));
    await refused(['--pod', pod], `crashcart: pod default/${pod} has 2 containers: app, sidecar; name one with --container`);
    await refused(['--pod', pod, '--container', 'nosuch'], `crashcart: pod default/${pod} has no container 'nosuch' (it has: app, sidecar); ` +
      'name one of them with --container');
    await attach(app, ['--pod', pod, '--container', 'app']);
    await attach(side, ['--pod', pod, '--container', 'sidecar', '--k8s-namespace', 'default']);
    await attach(side, ['--pod', pod, '--container', 'sidecar', '--runtime', 'containerd', '--namespace', 'k8s.io']);

    // a pod of the same name in another Kubernetes namespace
    const prodId = hex(32);
    const prod = await d!.runSleeper('k8s.io', prodId, rootfs, labels('app', 'container', 'prod'));
    await attach(prod, ['--k8s-namespace', 'prod', '--pod', pod]);

    await refused(['--pod', 'nosuch'], 'crashcart: no pod nosuch in Kubernetes namespace default (searched: containerd namespace k8s.io); ' +
      'check the pod with kubectl get pods -n default, or name its namespace with --k8s-namespace');
    await refused(['--pod', pod, '--namespace', 'default'], `crashcart: no pod ${pod} in Kubernetes namespace default (searched: containerd namespace default); ` +
      'check the pod with kubectl get pods -n default, or name its namespace with --k8s-namespace');
    await refused(['--pod', pod, '--runtime', 'runc'], 'crashcart: --pod looks in containerd and crictl, not in runc; drop --runtime, or name one of: containerd, crictl');
    await refused(['web', '--pod', pod], `crashcart: --pod ${pod} and the target web exclude each other; give one; with --pod, the words after the options are the command`);
    await refused(['--container', 'app', appId], 'crashcart: --container applies to --pod only; add --pod NAME, or drop it');
    assert.ok(sandbox > 0);

    // containerd not answering: the running tasks on disk, by their CRI annotations
    const down = { ...d!.env, CONTAINERD_ADDRESS: join(d!.dir, 'no-such.sock') };
    await attach(side, ['--pod', pod, '--container', 'sidecar'], down);
    const host = await snapshotHost();
    const r2 = await runCrashcart(['-i', image, '--pod', pod, '--', 'true'], { env: down });
    assert.equal(r2.stderr, `crashcart: pod default/${pod} has 2 containers: app, sidecar; name one with --container`);
    assert.equal(r2.code, 125);
    assertNoLeaks(host, await snapshotHost());
  });

  test('the ctr exec command of a container runs in it (user, workdir, environment)', async (t) => {
    if (!ready(t)) return;
    const id = `exec-${hex(4)}`;
    const pid = await d!.runSleeper('default', id, rootfs);
    const before = await snap(pid);
    const mounted = await runCrashcart(['-i', image, '--mount-only', id], { env: d!.env });
    assert.equal(mounted.code, 0, mounted.stderr);
    try {
      const c = (await listContainerd('default', d!.socket)).find((x) => x.id === id) as Container;
      assert.equal(c.pid, pid);
      const t0 = performance.now();
      const cmd = ctrExecCommand(c, {
        argv: ['/dev/crashcart/bin/sh', '-c', 'echo "$GREETING"; id -u; pwd; cat /proc/1/comm'],
        tty: false, env: { GREETING: 'hello there', PATH: '/dev/crashcart/bin' }, user: '1000:1000', workdir: '/tmp',
      }, d!.socket);
      const r = await execa(cmd.file, cmd.args, { env: cmd.env, reject: false, stdin: 'ignore', timeout: 30_000 });
      t.diagnostic(`ctr task exec: ${(performance.now() - t0).toFixed(0)} ms`);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, 'hello there\n1000\n/tmp\nsleeper');
      // the exec process is gone with its command
      assert.equal((await ctr(['-n', 'default', 'tasks', 'ps', id])).split('\n').length, 2);
    } finally {
      const u = await runCrashcart(['-i', image, '--unmount', id], { env: d!.env });
      assert.equal(u.code, 0, u.stderr);
    }
    assertNoLeaks(before, await snap(pid));
  });

  test('crashcart --exec goes through ctr task exec, and takes the toolkit out afterwards', async (t) => {
    if (!ready(t)) return;
    const id = `cli-exec-${hex(4)}`;
    const pid = await d!.runSleeper('default', id, rootfs);
    const before = await snap(pid);
    const r = await runCrashcart(['-i', image, '--exec', id, '--', 'sh', '-c', 'cat /proc/1/comm; echo "$PATH"; exit 6'], { env: d!.env });
    assert.equal(r.code, 6, r.stderr);
    const [comm, path] = r.stdout.split('\n');
    assert.equal(comm, 'sleeper');
    assert.match(path!, /^\/dev\/crashcart\/bin:/);
    assertNoLeaks(before, await snap(pid));
  });

  test('containerd down: running tasks are still found on disk', async (t) => {
    if (!ready(t)) return;
    const id = `ondisk-${hex(4)}`;
    const pid = await d!.runSleeper('default', id, rootfs);
    const gone = join(d!.dir, 'no-such.sock');
    await attach(pid, [id], { ...d!.env, CONTAINERD_ADDRESS: gone });
    await attach(pid, ['--namespace', 'default', id.slice(0, 9)], { ...d!.env, CONTAINERD_ADDRESS: gone });
    // no match on disk: the unreachable daemon is the answer
    const r = await runCrashcart(['-i', image, '--runtime', 'containerd', 'nosuch', '--', 'true'], { env: { ...d!.env, CONTAINERD_ADDRESS: gone } });
    assert.equal(r.code, 125);
    assert.equal(r.stderr, "crashcart: no container or process matches 'nosuch', and not every runtime answered " +
      `(containerd: cannot reach containerd at ${gone}: no such socket); is its daemon running? name another runtime with --runtime`);
  });

  test('a user-namespaced container from an imported image', async (t) => {
    if (!ready(t)) return;
    await importScratchImage(d!, 'default', 'localhost/mini:latest', await sleeperPath());
    const id = `userns-${hex(4)}`;
    const r = await d!.ctr(['-n', 'default', 'run', '-d', '--null-io', '--read-only', ...d!.runOptions('default', id),
      '--uidmap', '0:100000:65536', '--gidmap', '0:100000:65536', 'localhost/mini:latest', id, '/bin/sleeper', '100000']);
    assert.equal(r.code, 0, r.stderr);
    const [task] = (await listContainerd('default', d!.socket)).filter((c) => c.id === id);
    assert.equal(task?.status, 'running');
    assert.equal((await readFile(`/proc/${task.pid}/uid_map`, 'utf8')).trim().split(/\s+/).join(' '), '0 100000 65536');
    await attach(task.pid, [id]);
    await attach(task.pid, ['--namespace', 'default', '--runtime', 'containerd', id]);
  });

  test('timings: containerd list, ctr spawn, attach', async (t) => {
    if (!ready(t)) return;
    const id = `time-${hex(4)}`;
    const pid = await d!.runSleeper('default', id, rootfs);
    const times = async (f: () => Promise<unknown>, n = 10) => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await f();
        out.push(performance.now() - t0);
      }
      out.sort((a, b) => a - b);
      return `median ${out[Math.floor(n / 2)].toFixed(1)} ms, min ${out[0].toFixed(1)} ms`;
    };
    const n = (await listContainerd(undefined, d!.socket)).length;
    t.diagnostic(`containerd list over gRPC (${n} containers): ${await times(() => listContainerd(undefined, d!.socket))}`);
    t.diagnostic(`ctr version (spawn + one call): ${await times(() => d!.ctr(['version']))}`);
    t.diagnostic(`ctr namespaces ls: ${await times(() => d!.ctr(['namespaces', 'ls', '-q']))}`);
    t.diagnostic(`ctr -n default containers ls: ${await times(() => d!.ctr(['-n', 'default', 'containers', 'ls']))}`);
    t.diagnostic(`crashcart attach by name: ${await times(() => attach(pid, [id]), 5)}`);
  });
});


// Docker's containers are containerd's too (namespace moby): one container, not two matches.
describe('containerd under docker', () => {
  test('a docker container is one match, and containerd finds it in namespace moby', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd') || !requireCommand(t, 'docker')) return;
    const image = await testImage();
    const dk = await startDockerd();
    try {
      await importDockerImage(dk, 'mini:latest', await sleeperPath());
      const run = await dk.docker(['run', '-d', '--read-only', '--network', 'none', '--name', 'dkweb', 'mini:latest', '/bin/sleeper', '100000']);
      assert.equal(run.code, 0, run.stderr);
      const id = run.stdout.trim();
      const pid = Number((await dk.docker(['inspect', '-f', '{{.State.Pid}}', id])).stdout.trim());
      // dockerd started its own containerd, with its socket in the exec root
      const env = { ...dk.env, CONTAINERD_ADDRESS: join(dk.dir, 'exec/containerd/containerd.sock') };
      const moby = (await listContainerd('moby', env.CONTAINERD_ADDRESS)).find((c) => c.id === id);
      assert.equal(moby?.pid, pid);
      for (const args of [[id], [id.slice(0, 12)], ['--runtime', 'containerd', '--namespace', 'moby', id], ['--runtime', 'docker', 'dkweb']]) {
        const before = await snapshotHost({ pid, rootfs: `/proc/${pid}/root` });
        const r = await runCrashcart(['-i', image, '-v', ...args, '--', 'cat', '/proc/1/comm'], { env });
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, 'sleeper');
        assert.match(r.stderr, new RegExp(`target: (docker|containerd) ${id} \\(pid ${pid}\\)`));
        assertNoLeaks(before, await snapshotHost({ pid, rootfs: `/proc/${pid}/root` }));
      }
      await dk.docker(['rm', '-f', id]);
    } finally {
      await stopAndCheck(dk, 'dockerd or containerd');
    }
  });
});
