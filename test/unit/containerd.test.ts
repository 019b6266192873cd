// containerd and Kubernetes lookups without a daemon: the protobuf answers, the task
// directories on disk, pod selection by labels, crictl's JSON and the exec commands.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Http2Server } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrashcartError } from '../../src/core/errors.js';
import {
  containerdAddress, containerdState, ctrExecCommand, parseContainers, parseNamespaces, parseTasks, tasksOnDisk, toContainer,
} from '../../src/runtimes/containerd.js';
import { decode, grpcClient } from '../../src/runtimes/grpc.js';
import { resolveTarget } from '../../src/runtimes/index.js';
import { crictlExecCommand, parseCrictlInspectPid, parseCrictlPs } from '../../src/runtimes/crictl.js';
import { findPod, pickPodContainer, podContainers } from '../../src/runtimes/kubernetes.js';
import type { Container } from '../../src/runtimes/types.js';

// --- a tiny protobuf writer for the fixtures ----------------------------------------------
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
const bytes = (field: number, b: Buffer | string) => {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b);
  return Buffer.concat([varint(field * 8 + 2), varint(buf.length), buf]);
};
const uint = (field: number, n: number) => Buffer.concat([varint(field * 8), varint(n)]);
const msg = (...parts: Buffer[]) => Buffer.concat(parts);

describe('containerd API answers', () => {
  test('namespaces', () => {
    const m = msg(bytes(1, msg(bytes(1, 'default'))), bytes(1, msg(bytes(1, 'k8s.io'), bytes(2, msg(bytes(1, 'k'), bytes(2, 'v'))))));
    assert.deepEqual(parseNamespaces(m), ['default', 'k8s.io']);
  });

  test('containers: id and labels; the spec and other fields are skipped', () => {
    const spec = msg(bytes(1, 'types.containerd.io/opencontainers/runtime-spec/1/Spec'), bytes(2, '{"ociVersion":"1.0.2"}'));
    const c = msg(
      bytes(1, 'web'),
      bytes(2, msg(bytes(1, 'io.kubernetes.pod.name'), bytes(2, 'web'))),
      bytes(2, msg(bytes(1, 'empty'), bytes(2, ''))),
      bytes(3, 'docker.io/library/nginx:latest'),
      bytes(4, msg(bytes(1, 'io.containerd.runc.v2'))),
      bytes(5, spec),
      // created_at: a Timestamp, with a 64-bit fixed field thrown in for the wire types
      bytes(8, msg(uint(1, 1_700_000_000), uint(2, 5))),
      Buffer.concat([varint(12 * 8 + 1), Buffer.alloc(8)]),
      Buffer.concat([varint(13 * 8 + 5), Buffer.alloc(4)]),
    );
    assert.deepEqual(parseContainers(msg(bytes(1, c), bytes(1, msg(bytes(1, 'plain'))))), [
      { id: 'web', labels: { 'io.kubernetes.pod.name': 'web', empty: '' } },
      { id: 'plain', labels: {} },
    ]);
  });

  test('tasks: id (2), pid (3) and status (4); a container_id (1) only when set', () => {
    const running = msg(bytes(2, 'web'), uint(3, 4242), uint(4, 2), bytes(10, msg(uint(1, 1))));
    const stopped = msg(bytes(2, 'old'), uint(3, 77), uint(4, 3), uint(9, 137));
    const created = msg(bytes(2, 'new'), uint(3, 99), uint(4, 1));
    const tasks = parseTasks(msg(bytes(1, running), bytes(1, stopped), bytes(1, created)));
    assert.deepEqual(Object.fromEntries(tasks), {
      web: { pid: 4242, status: 'running' },
      old: { pid: 77, status: 'stopped' },
      new: { pid: 99, status: 'created' },
    });
  });

  test('a container is running only with a running task; without one it is created', () => {
    const c = { id: 'web', labels: {} };
    assert.deepEqual(toContainer('default', c, { pid: 4242, status: 'running' }),
      { runtime: 'containerd', id: 'web', pid: 4242, status: 'running', namespace: 'default', labels: {} });
    assert.equal(toContainer('default', c, { pid: 77, status: 'stopped' }).pid, 0);
    assert.equal(toContainer('default', c).status, 'created');
  });

  test('malformed protobuf is refused', () => {
    assert.throws(() => decode(Buffer.from([0x0a, 0x05, 0x61])), /truncated field/);
    assert.throws(() => decode(Buffer.from([0x0b])), /wire type 3/);
    assert.throws(() => decode(Buffer.from([0x08, 0xff])), /bad varint/);
    // a daemon's garbage is the user's problem to look at, not a crashcart bug
    assert.throws(() => decode(Buffer.from([0x0b])), {
      name: 'CrashcartError',
      code: 'EPROTO',
      message: 'malformed protobuf: wire type 3',
      hint: "is CONTAINERD_ADDRESS containerd's gRPC socket?",
    });
  });

  test('the socket and state directory come from the environment', () => {
    assert.equal(containerdAddress({}), '/run/containerd/containerd.sock');
    assert.equal(containerdAddress({ CONTAINERD_ADDRESS: 'unix:///tmp/c.sock' }), '/tmp/c.sock');
    assert.equal(containerdAddress({ CONTAINERD_ADDRESS: '/tmp/c.sock' }), '/tmp/c.sock');
    assert.equal(containerdState({}), '/run/containerd');
    assert.equal(containerdState({ CRASHCART_CONTAINERD_STATE: '/tmp/st' }), '/tmp/st');
  });
});

describe('containerd without its daemon: the tasks on disk', () => {
  let root = '';
  const saved: Record<string, string | undefined> = {};
  const keys = ['CONTAINERD_ADDRESS', 'CRASHCART_CONTAINERD_STATE', 'CRASHCART_RUNC_ROOT', 'CRASHCART_CRUN_ROOT', 'DOCKER_HOST'];

  const fakes: ChildProcess[] = [];
  const sleepers: number[] = [];

  /** A task directory whose init.pid is `pid`. */
  function task(ns: string, id: string, pid: number | string): void {
    const dir = join(root, 'state/io.containerd.runtime.v2.task', ns, id);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'init.pid'), String(pid));
  }

  /** A process that looks like a shim of `ns` (by its command line), with a child; the child's pid. */
  async function fakeShim(ns: string): Promise<number> {
    const shim = spawn('sh', ['-c', 'sleep 1000 & echo $!; wait', 'sh', '-namespace', ns, '-id', 'x'], {
      argv0: '/usr/bin/containerd-shim-runc-v2', stdio: ['ignore', 'pipe', 'ignore'],
    });
    fakes.push(shim);
    const [line] = (await once(shim.stdout!, 'data')) as [Buffer];
    const pid = Number.parseInt(line.toString(), 10);
    sleepers.push(pid);
    return pid;
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'crashcart-unit-containerd-'));
    for (const k of keys) saved[k] = process.env[k];
    process.env.CONTAINERD_ADDRESS = join(root, 'no-containerd.sock');
    process.env.CRASHCART_CONTAINERD_STATE = join(root, 'state');
    process.env.CRASHCART_RUNC_ROOT = join(root, 'no-runc');
    process.env.CRASHCART_CRUN_ROOT = join(root, 'no-crun');
    process.env.DOCKER_HOST = `unix://${join(root, 'no-docker.sock')}`;
    const inDefault = await fakeShim('default');
    const inK8s = await fakeShim('k8s.io');
    task('default', 'web', inDefault);
    task('k8s.io', 'web', inK8s);
    writeFileSync(join(root, 'state/io.containerd.runtime.v2.task/k8s.io/web/config.json'), JSON.stringify({
      ociVersion: '1.0.2-dev',
      annotations: {
        'io.kubernetes.cri.container-type': 'container',
        'io.kubernetes.cri.container-name': 'app',
        'io.kubernetes.cri.sandbox-id': 'a2b3c4',
        'io.kubernetes.cri.sandbox-name': 'shop',
        'io.kubernetes.cri.sandbox-namespace': 'prod',
        'io.kubernetes.cri.image-name': 'nginx:1.25',
      },
    }));
    task('default', 'db-1', inDefault);
    // a shim of another namespace, or no shim at all, as parent: a reused pid
    task('default', 'other-ns', inK8s);
    task('default', 'not-a-shim', process.pid);
    task('default', 'gone', 999_999_999);
    task('default', 'nopid', '');
  });

  after(() => {
    for (const pid of sleepers) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
    for (const f of fakes) f.kill('SIGKILL');
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(root, { recursive: true, force: true });
  });

  test('running tasks whose process is a child of a shim of their namespace', () => {
    const found = tasksOnDisk(join(root, 'state/io.containerd.runtime.v2.task'));
    assert.deepEqual(found.map((c) => `${c.namespace}/${c.id}`).sort(), ['default/db-1', 'default/web', 'k8s.io/web']);
    assert.deepEqual(tasksOnDisk(join(root, 'state/io.containerd.runtime.v2.task'), 'k8s.io'),
      [{ runtime: 'containerd', id: 'web', pid: sleepers[1], status: 'running', namespace: 'k8s.io' }]);
  });

  test('with labels: the CRI annotations of the spec as the kubelet\'s labels', () => {
    const [web] = tasksOnDisk(join(root, 'state/io.containerd.runtime.v2.task'), 'k8s.io', 'web', true);
    assert.deepEqual(web.labels, {
      'io.kubernetes.pod.name': 'shop',
      'io.kubernetes.pod.namespace': 'prod',
      'io.kubernetes.container.name': 'app',
      'io.cri-containerd.kind': 'container',
    });
    assert.deepEqual(tasksOnDisk(join(root, 'state/io.containerd.runtime.v2.task'), 'default', 'web', true)[0].labels, {});
  });

  test('a pod while containerd does not answer: its running tasks on disk', async () => {
    const path = process.env.PATH;
    process.env.PATH = root; // a crictl of this host stays out
    try {
      assert.equal((await findPod({ pod: 'shop', namespace: 'prod' })).pid, sleepers[1]);
      await assert.rejects(findPod({ pod: 'shop', namespace: 'default' }), (e: CrashcartError) => {
        assert.equal(e.message, 'no pod shop in Kubernetes namespace default found, and not every source answered ' +
          `(containerd namespace k8s.io: cannot reach containerd at ${join(root, 'no-containerd.sock')}: no such socket)`);
        return true;
      });
    } finally {
      process.env.PATH = path;
    }
  });

  test('the same ID in two namespaces is ambiguous; --namespace picks one', async () => {
    await assert.rejects(resolveTarget('web'), (e: CrashcartError) => {
      assert.equal(e.message, "'web' matches 2 containers: containerd web in namespace default, containerd web in namespace k8s.io");
      assert.equal(e.hint, 'give more of the ID, the runtime with --runtime, or the namespace with --namespace');
      return true;
    });
    const { container, ...target } = await resolveTarget('web', undefined, { namespace: 'k8s.io' });
    assert.deepEqual(target, { pid: sleepers[1], runtime: 'containerd', id: 'web', name: undefined, namespace: 'k8s.io' });
    assert.equal(container?.namespace, 'k8s.io');
    assert.equal((await resolveTarget('db', 'containerd', { namespace: 'default' })).id, 'db-1');
  });

  test('--namespace: no PIDs, and the error names the namespace', async () => {
    await assert.rejects(resolveTarget(String(process.pid), undefined, { namespace: 'default' }), (e: CrashcartError) => {
      // nothing matches on disk, so the daemon's absence is the answer
      assert.match(e.message, new RegExp(`^no container or process matches '${process.pid}' in namespace default, and not every runtime ` +
        `answered \\(containerd: cannot reach containerd at ${join(root, 'no-containerd.sock')}: no such socket\\)$`));
      return true;
    });
    for (const runtime of ['pid', 'runc']) {
      await assert.rejects(resolveTarget('web', runtime, { namespace: 'default' }), (e: CrashcartError) => {
        assert.equal(e.message, `--namespace applies to containerd, not to ${runtime}`);
        assert.equal(e.hint, 'drop --namespace, or --runtime');
        return true;
      });
    }
  });
});

// --- Kubernetes -------------------------------------------------------------------------

const k8s = (id: string, pod: string, container: string | undefined, status = 'running', extra: Record<string, string> = {}): Container => ({
  runtime: 'containerd', id, pid: status === 'running' ? 1000 + id.length : 0, status, namespace: 'k8s.io',
  labels: {
    'io.kubernetes.pod.name': pod, 'io.kubernetes.pod.namespace': 'default',
    ...(container ? { 'io.kubernetes.container.name': container } : {}), ...extra,
  },
});

describe('pods', () => {
  const node = [
    k8s('sandbox-web', 'web', undefined, 'running', { 'io.cri-containerd.kind': 'sandbox' }),
    k8s('app-1', 'web', 'app', 'stopped', { 'io.cri-containerd.kind': 'container' }),
    k8s('app-22', 'web', 'app', 'running', { 'io.cri-containerd.kind': 'container' }),
    k8s('side', 'web', 'sidecar'),
    k8s('solo', 'db', 'postgres'),
    { ...k8s('prod-db', 'db', 'postgres'), labels: { ...k8s('x', 'db', 'postgres').labels, 'io.kubernetes.pod.namespace': 'prod' } },
    { runtime: 'containerd', id: 'plain', pid: 5, status: 'running', namespace: 'default', labels: {} },
  ];

  test('the pod\'s containers by labels, without its sandbox', () => {
    assert.deepEqual(podContainers(node, { pod: 'web', namespace: 'default' }).map((c) => c.id), ['app-1', 'app-22', 'side']);
    assert.deepEqual(podContainers(node, { pod: 'db', namespace: 'prod' }).map((c) => c.id), ['prod-db']);
  });

  test('the only container, or the named one; a running attempt wins over an exited one', () => {
    const pick = (pod: string, namespace: string, container?: string) =>
      pickPodContainer(podContainers(node, { pod, namespace, container }), { pod, namespace, container });
    assert.deepEqual(pick('db', 'default'), {
      pid: 1004, runtime: 'containerd', id: 'solo', name: 'default/db/postgres', namespace: 'k8s.io', container: node.find((c) => c.id === 'solo'),
    });
    assert.equal(pick('db', 'prod').id, 'prod-db');
    assert.equal(pick('web', 'default', 'app').id, 'app-22');
    assert.equal(pick('web', 'default', 'sidecar').id, 'side');
  });

  test('several containers and no --container: one line listing their names', () => {
    const q = { pod: 'web', namespace: 'default' };
    assert.throws(() => pickPodContainer(podContainers(node, q), q), (e: CrashcartError) => {
      assert.equal(e.message, 'pod default/web has 2 containers: app, sidecar');
      assert.equal(e.hint, 'name one with --container');
      return true;
    });
  });

  test('an unknown container name, and a container that is not running', () => {
    const q = { pod: 'web', namespace: 'default', container: 'nosuch' };
    assert.throws(() => pickPodContainer(podContainers(node, q), q), (e: CrashcartError) => {
      assert.equal(e.message, "pod default/web has no container 'nosuch' (it has: app, sidecar)");
      return true;
    });
    const stopped = [k8s('old', 'job', 'work', 'stopped')];
    assert.throws(() => pickPodContainer(stopped, { pod: 'job', namespace: 'default' }), (e: CrashcartError) => {
      assert.equal(e.message, 'container default/job/work is not running (status: stopped)');
      return true;
    });
  });

  test('--pod with another runtime, and a host with neither containerd nor crictl', async () => {
    await assert.rejects(findPod({ pod: 'web', namespace: 'default' }, { runtime: 'docker' }), (e: CrashcartError) => {
      assert.equal(e.message, '--pod looks in containerd and crictl, not in docker');
      return true;
    });
    const saved = { a: process.env.CONTAINERD_ADDRESS, s: process.env.CRASHCART_CONTAINERD_STATE, p: process.env.PATH };
    const dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-pod-'));
    process.env.CONTAINERD_ADDRESS = join(dir, 'none.sock');
    process.env.CRASHCART_CONTAINERD_STATE = join(dir, 'none');
    process.env.PATH = dir;
    try {
      await assert.rejects(findPod({ pod: 'web', namespace: 'default' }), (e: CrashcartError) => {
        assert.equal(e.message, 'no pod web in Kubernetes namespace default (searched: nothing: no containerd socket, no crictl)');
        assert.equal(e.hint, 'check the pod with kubectl get pods -n default, or name its namespace with --k8s-namespace');
        return true;
      });
    } finally {
      for (const [k, v] of [['CONTAINERD_ADDRESS', saved.a], ['CRASHCART_CONTAINERD_STATE', saved.s], ['PATH', saved.p]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// What `crictl ps -a -o json` prints on a CRI-O node (crictl 1.28; IDs shortened).
const CRICTL_PS = JSON.stringify({
  containers: [
    {
      id: '6c1f2b9d0e4a7b3c5d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c',
      podSandboxId: 'a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3',
      metadata: { name: 'app', attempt: 1 },
      image: { image: 'docker.io/library/nginx:1.25', annotations: {}, userSpecifiedImage: '' },
      imageRef: 'docker.io/library/nginx@sha256:4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac',
      state: 'CONTAINER_RUNNING',
      createdAt: '1700000000123456789',
      labels: {
        'io.kubernetes.container.name': 'app',
        'io.kubernetes.pod.name': 'web',
        'io.kubernetes.pod.namespace': 'default',
        'io.kubernetes.pod.uid': '5f0e1d2c-3b4a-5968-7a8b-9c0d1e2f3a4b',
      },
      annotations: {
        'io.kubernetes.container.hash': 'c3a5e8f1',
        'io.kubernetes.container.restartCount': '1',
        'io.kubernetes.container.terminationMessagePath': '/dev/termination-log',
        'io.kubernetes.pod.terminationGracePeriod': '30',
      },
    },
    {
      id: '0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e',
      podSandboxId: 'a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3',
      metadata: { name: 'app', attempt: 0 },
      image: { image: 'docker.io/library/nginx:1.25', annotations: {} },
      imageRef: 'docker.io/library/nginx@sha256:4c0fdaa8b6341bfdeca5f18f7837462c80cff90527ee35ef185571e1c327beac',
      state: 'CONTAINER_EXITED',
      createdAt: '1699999000123456789',
      labels: {
        'io.kubernetes.container.name': 'app',
        'io.kubernetes.pod.name': 'web',
        'io.kubernetes.pod.namespace': 'default',
        'io.kubernetes.pod.uid': '5f0e1d2c-3b4a-5968-7a8b-9c0d1e2f3a4b',
      },
      annotations: { 'io.kubernetes.container.restartCount': '0' },
    },
  ],
}, null, 2);

describe('crictl', () => {
  test('crictl ps -o json: IDs, names, states and labels', () => {
    const cs = parseCrictlPs(CRICTL_PS);
    assert.deepEqual(cs.map((c) => [c.id.slice(0, 4), c.name, c.status, c.pid]), [['6c1f', 'app', 'running', 0], ['0d9e', 'app', 'exited', 0]]);
    assert.equal(cs[0].labels?.['io.kubernetes.pod.name'], 'web');
    assert.deepEqual(parseCrictlPs('{"containers":[]}'), []);
    assert.throws(() => parseCrictlPs('{}'), /no "containers" array/);
  });

  test('crictl inspect -o json: the pid from .info', () => {
    const inspect = {
      status: { id: '6c1f', state: 'CONTAINER_RUNNING', metadata: { name: 'app', attempt: 1 } },
      info: { sandboxID: 'a2b3', pid: 31337, runtimeSpec: { ociVersion: '1.0.2-dev' }, privileged: false },
    };
    assert.equal(parseCrictlInspectPid(JSON.stringify(inspect)), 31337);
    assert.equal(parseCrictlInspectPid(JSON.stringify({ status: {}, info: {} })), 0);
  });

  test('crictl exec -i [-t] ID argv, the environment through the toolkit\'s env', () => {
    const c = parseCrictlPs(CRICTL_PS)[0];
    assert.deepEqual(crictlExecCommand(c, { argv: ['/dev/crashcart/bin/bash', '-i'], tty: true, env: {} }),
      { file: 'crictl', args: ['exec', '-i', '-t', c.id, '/dev/crashcart/bin/bash', '-i'] });
    assert.deepEqual(crictlExecCommand(c, { argv: ['/dev/crashcart/bin/ps'], tty: false, env: { A: '1' } }),
      { file: 'crictl', args: ['exec', '-i', c.id, '/dev/crashcart/bin/env', 'A=1', '/dev/crashcart/bin/ps'] });
    assert.throws(() => crictlExecCommand(c, { argv: ['/bin/x'], tty: false, env: {}, user: '1000' }),
      /^CrashcartError: crictl exec cannot run as another user \(--user 1000\)$/);
    assert.throws(() => crictlExecCommand(c, { argv: ['/bin/x'], tty: false, env: {}, workdir: '/tmp' }),
      /^CrashcartError: crictl exec cannot set the working directory \(--workdir \/tmp\)$/);
  });
});

describe('ctr exec', () => {
  test('ctr task exec with a fresh exec id, its options, then the ID and argv', () => {
    const c: Container = { runtime: 'containerd', id: 'web', pid: 1, status: 'running', namespace: 'k8s.io' };
    const cmd = ctrExecCommand(c, { argv: ['/dev/crashcart/bin/bash', '-i'], tty: true, env: { TERM: 'xterm', A: 'b c' }, user: '0:0', workdir: '/tmp' }, '/run/c.sock');
    assert.equal(cmd.file, 'ctr');
    const id = cmd.args[7];
    assert.match(id, new RegExp(`^crashcart-${process.pid}-[0-9a-f]{8}$`));
    assert.deepEqual(cmd.args, [
      '--address', '/run/c.sock', '--namespace', 'k8s.io', 'task', 'exec', '--exec-id', id,
      '--tty', '--user', '0:0', '--cwd', '/tmp', 'web', '/dev/crashcart/bin/env', 'TERM=xterm', 'A=b c', '/dev/crashcart/bin/bash', '-i',
    ]);
    const plain = ctrExecCommand(c, { argv: ['/dev/crashcart/bin/ps'], tty: false, env: {} }, '/run/c.sock');
    assert.deepEqual(plain.args.slice(8), ['web', '/dev/crashcart/bin/ps']);
    assert.notEqual(plain.args[7], id, 'every exec gets its own id');
  });
});

describe('the gRPC client', () => {
  let dir = '';
  let server: Http2Server | undefined;
  const seen: { path: string; ns: string | undefined; body: Buffer }[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-grpc-'));
    server = createServer();
    server.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const path = String(headers[':path']);
        seen.push({ path, ns: headers['containerd-namespace'] as string | undefined, body: Buffer.concat(chunks) });
        if (path.endsWith('/Unimplemented')) {
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12', 'grpc-message': 'unknown%20service' }, { endStream: true });
          return;
        }
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        const reply = path.endsWith('/Garbage') ? Buffer.from('not a frame') : msg(bytes(1, msg(bytes(1, 'default'))), bytes(1, msg(bytes(1, 'k8s.io'))));
        const frame = Buffer.alloc(5);
        frame.writeUInt32BE(reply.length, 1);
        stream.end(path.endsWith('/Garbage') ? reply : Buffer.concat([frame, reply]));
      });
    });
    await new Promise<void>((resolve) => server!.listen(join(dir, 'grpc.sock'), resolve));
  });

  after(async () => {
    await new Promise((resolve) => server?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  test('a unary call: framed request, namespace header, framed answer', async () => {
    const c = await grpcClient(join(dir, 'grpc.sock'), 'containerd');
    try {
      const answer = await c.call('/containerd.services.namespaces.v1.Namespaces/List', Buffer.from([0x0a, 0x01, 0x78]), { 'containerd-namespace': 'k8s.io' });
      assert.deepEqual(parseNamespaces(answer), ['default', 'k8s.io']);
      assert.deepEqual(seen.at(-1), {
        path: '/containerd.services.namespaces.v1.Namespaces/List', ns: 'k8s.io', body: Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x01, 0x78]),
      });
    } finally {
      c.close();
    }
  });

  test('a gRPC error status and a malformed answer are one-line errors', async () => {
    const sock = join(dir, 'grpc.sock');
    const c = await grpcClient(sock, 'containerd');
    try {
      await assert.rejects(c.call('/x.Y/Unimplemented', Buffer.alloc(0)), new RegExp(`^CrashcartError: containerd at ${sock} refused Unimplemented: unknown service$`));
      await assert.rejects(c.call('/x.Y/Garbage', Buffer.alloc(0)), new RegExp(`^CrashcartError: containerd at ${sock} sent a malformed answer to Garbage$`));
    } finally {
      c.close();
    }
  });

  test('no daemon: the socket and why', async () => {
    const gone = join(dir, 'gone.sock');
    await assert.rejects(grpcClient(gone, 'containerd'), (e: CrashcartError) => {
      assert.equal(e.message, `cannot reach containerd at ${gone}: no such socket`);
      assert.equal(e.hint, 'start containerd, or point CONTAINERD_ADDRESS at its socket');
      return true;
    });
  });
});
