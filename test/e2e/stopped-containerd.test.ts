// --stopped on a real containerd container that crashed (a private containerd: an imported
// image, an overlayfs snapshot, a bind mount) and `--pod NAME --stopped` on a
// Kubernetes-labelled pod whose container exited twice while its sandbox still runs: the
// newest attempt is opened, in the sandbox's network, IPC and UTS namespaces.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { makeScratchRoot, startContainerd, type PrivateContainerd } from '../helpers/containerd.js';
import { CRASHY, importCrashyImage } from '../helpers/crashy.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { assertClean, assertFailure, snapshot } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot, sleeperPath } from '../helpers/host.js';
import { checkStopped } from '../helpers/sandbox.js';
import { waitFor } from '../helpers/wait.js';

const IMAGE = 'docker.io/library/crashy:latest';
const hex = () => randomBytes(3).toString('hex');
const POD = { 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'default' };

describe('--stopped with containerd, and a Kubernetes pod in a crash loop', () => {
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

  /** Runs crashy's image in `ns` until it exits; `extra` are more `ctr run` options. */
  async function crashed(ns: string, id: string, extra: string[]): Promise<void> {
    await ctr(['-n', ns, 'run', '-d', '--null-io', ...d!.runOptions(ns, id), ...extra, IMAGE, id]);
    await waitFor(`task ${id} stopped`, async () => (await ctr(['-n', ns, 'tasks', 'ls'])).split('\n').some((l) => l.startsWith(`${id} `) && l.includes('STOPPED')));
  }

  /** The directories of a container's snapshot, as `ctr snapshots mounts` prints them. */
  async function snapshotDirs(ns: string, id: string): Promise<Record<string, string>> {
    const line = await ctr(['-n', ns, 'snapshots', 'mounts', '/mnt', id]);
    const opts = /-o (\S+)/.exec(line)?.[1]?.split(',') ?? [];
    const get = (k: string) => opts.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
    const dirs = [get('upperdir'), ...(get('lowerdir')?.split(':') ?? [])].filter((x): x is string => Boolean(x));
    assert.ok(dirs.length >= 2, line);
    return Object.fromEntries(dirs.map((dir, i) => [`layer ${i}`, dir]));
  }

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !(onPath('containerd') && onPath('ctr'))) return;
    try {
      image = await testImage();
      d = await startContainerd();
      await importCrashyImage(d.ctr, d.dir, 'default', IMAGE);
      await importCrashyImage(d.ctr, d.dir, 'k8s.io', IMAGE);
      rootfs = join(d.dir, 'pause-root');
      await makeScratchRoot(rootfs, await sleeperPath());
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    if (d) await stopAndCheck(d, 'containerd, a shim or a container');
  });

  test('a crashed container of an image: its snapshot and bind mount, exited 3, all unchanged after', async (t) => {
    if (!ready(t)) return;
    const id = `crashy-${hex()}`;
    const volume = join(d!.dir, `vol-${id}`);
    await mkdir(volume);
    await chmod(volume, 0o777); // crashy runs as uid 1000 (mkdir's mode is masked)
    await writeFile(join(volume, 'kept'), 'volume data\n');
    await crashed('default', id, ['--mount', `type=bind,src=${volume},dst=/data,options=rbind:rw`]);
    await checkStopped({
      args: ['--stopped', id],
      env: d!.env,
      image,
      unchanged: { ...(await snapshotDirs('default', id)), volume },
      // ctr sets no hostname: the container had the host's, and so does the sandbox
      expect: { hostname: hostname(), lastWords: `last words of ${hostname()}\n` },
      firstLine: new RegExp(`^crashcart: ${id} exited 3 at \\S+Z; its files are opened in a sandbox: changes are thrown away, none of its processes run, network: loopback only$`),
      also: { script: 'cat /data/kept /data/note', lines: ['volume data', `note from ${CRASHY.uid}`] },
    });
  });

  test('--pod NAME --stopped: the newest exited attempt, in the network, IPC and UTS namespaces of the running pod sandbox', async (t) => {
    if (!ready(t)) return;
    const sandbox = `sandbox-${hex()}`;
    const pid = await d!.runSleeper('k8s.io', sandbox, rootfs, { ...POD, 'io.cri-containerd.kind': 'sandbox' });
    const ns = (kind: string) => readlinkSync(`/proc/${pid}/ns/${kind}`);
    const attempts = [`app-0-${hex()}`, `app-1-${hex()}`];
    for (const [n, id] of attempts.entries()) {
      await crashed('k8s.io', id, [
        ...Object.entries({ ...POD, 'io.cri-containerd.kind': 'container', 'io.kubernetes.container.name': 'app' }).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
        '--annotation', `io.kubernetes.container.restartCount=${n}`, '--annotation', `io.kubernetes.cri.sandbox-id=${sandbox}`,
        '--env', `ATTEMPT=${n}`,
        ...['network', 'ipc', 'uts'].map((kind) => ['--with-ns', `${kind}:/proc/${pid}/ns/${kind === 'network' ? 'net' : kind}`]).flat(),
      ]);
    }
    const host = await snapshot();
    const r = await runCrashcart(['-i', image, '--pod', 'web', '--stopped', 'sh', '-c', 'echo $ATTEMPT; for n in net ipc uts; do readlink /proc/self/ns/$n; done; cat /tmp/last-words'], { env: d!.env });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.split('\n'), ['1', ns('net'), ns('ipc'), ns('uts'), `last words of ${hostname()}`]);
    assert.match(r.stderr, new RegExp(`^crashcart: default/web/app exited 3 at \\S+Z; its files are opened in a sandbox: changes are thrown away, none of its processes run, ` +
      `network: the pod's \\(joined from the sandbox ${sandbox} of pod default/web\\)$`));
    await assertClean(host);

    await checkStopped({
      args: ['--pod', 'web', '--stopped'],
      env: d!.env,
      image,
      unchanged: await snapshotDirs('k8s.io', attempts[1]!),
      expect: { hostname: hostname(), lastWords: `last words of ${hostname()}\n` },
      firstLine: /^crashcart: default\/web\/app exited 3 at /,
    });
  });

  test('a running container, a removed one, and a pod whose only attempt runs: one line, 125', async (t) => {
    if (!ready(t)) return;
    const host = await snapshot();
    const live = `live-${hex()}`;
    await d!.runSleeper('default', live, rootfs);
    assertFailure(await runCrashcart(['-i', image, '--stopped', live, '--', 'true'], { env: d!.env }), 125,
      `crashcart: container ${live} is running: --stopped opens containers that do not run (containerd ${live} in namespace default); attach to it as it runs: crashcart ${live}`);
    assertFailure(await runCrashcart(['-i', image, '--runtime', 'containerd', '--stopped', 'never-was', '--', 'true'], { env: d!.env }), 125,
      "crashcart: no container matches 'never-was' (asked: containerd); a removed container's files are gone; see the containers there are with crashcart ps -a");
    const api = `api-${hex()}`;
    await d!.runSleeper('k8s.io', api, rootfs, { 'io.kubernetes.pod.name': 'api', 'io.kubernetes.pod.namespace': 'default', 'io.cri-containerd.kind': 'container', 'io.kubernetes.container.name': 'server' });
    assertFailure(await runCrashcart(['-i', image, '--pod', 'api', '--stopped', 'true'], { env: d!.env }), 125,
      `crashcart: container server of pod default/api runs (${api}) and has no exited attempt: --stopped opens containers that do not run; attach to it as it runs: crashcart --pod api --container server`);
    await assertClean(host);
  });
});
