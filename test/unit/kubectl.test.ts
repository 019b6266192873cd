// kubectl-crashcart against recorded `kubectl get pod -o json` answers: a kubectl stand-in
// (test/fixtures/kubectl/kubectl) first on PATH checks every argument it gets the way real
// kubectl would take it, answers `get pod` from the recording and acts out `run --stdin`
// (stdin copied to stdout, a chosen exit code). The plugin runs as operators run it,
// bin/kubectl-crashcart in a process of its own.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { parseArgs, podTarget } from '../../src/kubectl/plugin.js';
import { projectRoot } from '../helpers/host.js';

const fixtures = join(projectRoot(), 'test/fixtures/kubectl');
const plugin = join(projectRoot(), 'bin/kubectl-crashcart');
const version = (JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;

interface Call {
  args: string[];
  tty: boolean;
}

let dir: string;
let bin: string;
let n = 0;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'crashcart-kubectl-'));
  bin = join(dir, 'bin');
  await mkdir(bin);
  // kubectl is found on PATH, as an operator's would be
  await symlink(join(fixtures, 'kubectl'), join(bin, 'kubectl'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the plugin with the stand-in answering `pod` (a fixture name); returns its result and kubectl's calls. */
async function kubectlCrashcart(pod: string, args: string[], opts: { input?: string; exit?: number; terminal?: boolean } = {}) {
  const log = join(dir, `calls-${++n}.jsonl`);
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:/usr/bin:/bin`,
    KUBECTL_STANDIN_POD: join(fixtures, `${pod}.json`),
    KUBECTL_STANDIN_LOG: log,
    KUBECTL_STANDIN_EXIT: String(opts.exit ?? 0),
  };
  const r = opts.terminal
    ? // script(1) gives the plugin a terminal on stdin; -e passes its exit code back
      await execa('script', ['-qefc', [process.execPath, plugin, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' '), '/dev/null'], { env, extendEnv: false, reject: false, stdin: 'ignore' })
    : await execa(process.execPath, [plugin, ...args], { env, extendEnv: false, reject: false, input: opts.input ?? '' });
  const text = await readFile(log, 'utf8').catch(() => '');
  const calls = text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Call);
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr, calls };
}

interface Overrides {
  apiVersion: string;
  spec: {
    nodeName: string;
    hostPID: boolean;
    restartPolicy: string;
    tolerations: object[];
    containers: { name: string; image: string; args: string[]; stdin: boolean; stdinOnce: boolean; tty: boolean; securityContext: { privileged: boolean }; volumeMounts: { name: string; mountPath: string }[] }[];
    volumes: { name: string; hostPath: { path: string; type?: string } }[];
  };
}

/** The `kubectl run` call, split into its flags and the pod spec of --overrides. */
function runCall(call: Call): { name: string; flags: string[]; overrides: Overrides } {
  assert.equal(call.args[0], 'run');
  const flags = call.args.slice(2).filter((a) => !a.startsWith('--overrides='));
  const o = call.args.find((a) => a.startsWith('--overrides='));
  assert.ok(o, 'kubectl run without --overrides');
  return { name: call.args[1]!, flags, overrides: JSON.parse(o.slice('--overrides='.length)) as Overrides };
}

describe('kubectl crashcart', () => {
  test('finds the node and the container of a pod, and runs crashcart there with the command and stdin passed through', async () => {
    const r = await kubectlCrashcart('pod-web', ['web-7d9f8c6b5-x2x9q', '-n', 'prod', '--', 'ps', '-ef'], { input: 'typed into the session\n', exit: 3 });
    assert.equal(r.stderr, '');
    // stdin reaches the session and its output comes back; the exit code is crashcart's
    assert.equal(r.stdout, 'typed into the session');
    assert.equal(r.code, 3);
    assert.equal(r.calls.length, 2);
    assert.deepEqual(r.calls[0]!.args, ['get', 'pod', 'web-7d9f8c6b5-x2x9q', '--namespace', 'prod', '--output', 'json']);
    const run = runCall(r.calls[1]!);
    // a pod name of its own, on the pod's node
    assert.match(run.name, /^crashcart-worker-2-cluster-local-[0-9a-f]{6}$/);
    assert.deepEqual(run.flags, ['--namespace', 'prod', `--image=crashcart:${version}`, '--restart=Never', '--rm', '--quiet', '--stdin', '--pod-running-timeout=1m']);
    assert.equal(r.calls[1]!.tty, false);
    const spec = run.overrides.spec;
    assert.equal(spec.nodeName, 'worker-2.cluster.local');
    assert.equal(spec.hostPID, true);
    assert.equal(spec.restartPolicy, 'Never');
    const [c] = spec.containers;
    assert.equal(spec.containers.length, 1);
    assert.equal(c!.image, `crashcart:${version}`);
    assert.deepEqual(c!.securityContext, { privileged: true });
    assert.equal(c!.stdin, true);
    assert.equal(c!.tty, false);
    // the attach crashcart makes on the node: pod, container and namespace, then the command
    assert.deepEqual(c!.args, ['--pod', 'web-7d9f8c6b5-x2x9q', '--container', 'app', '--k8s-namespace', 'prod', '--', 'ps', '-ef']);
    // the host directories crashcart reads, each at its own path
    const mounts = Object.fromEntries(c!.volumeMounts.map((m) => [m.name, m.mountPath]));
    const volumes = Object.fromEntries(spec.volumes.map((v) => [v.name, v.hostPath.path]));
    assert.deepEqual(mounts, { run: '/run', dev: '/dev', cgroup: '/sys/fs/cgroup', cache: '/var/lib/crashcart', log: '/var/log/crashcart' });
    assert.deepEqual(volumes, mounts);
  });

  test('a terminal on stdin is passed through (--tty and the container tty), and no command means crashcart\'s shell', async () => {
    const r = await kubectlCrashcart('pod-web', ['--pod', 'web-7d9f8c6b5-x2x9q', '--namespace=prod'], { terminal: true, exit: 0 });
    assert.equal(r.code, 0, r.stdout);
    assert.equal(r.calls.length, 2);
    assert.equal(r.calls[1]!.tty, true);
    const run = runCall(r.calls[1]!);
    assert.ok(run.flags.includes('--tty'), run.flags.join(' '));
    assert.equal(run.overrides.spec.containers[0]!.tty, true);
    assert.deepEqual(run.overrides.spec.containers[0]!.args, ['--pod', 'web-7d9f8c6b5-x2x9q', '--container', 'app', '--k8s-namespace', 'prod']);
  });

  test('kubectl\'s connection options go to every call, crashcart\'s options to crashcart, --user-id as crashcart\'s --user', async () => {
    const r = await kubectlCrashcart('pod-two-containers', [
      '--context', 'staging', '--kubeconfig=/etc/kube/config', 'api-5c4b8d7f9-k8s2m', '--container', 'app',
      '-v', '--no-cgroup', '--user-id', '1000:1000', '--image', 'registry.local/crashcart:1', '--run-namespace', 'debug', '--', 'id',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.calls[0]!.args, ['--context=staging', '--kubeconfig=/etc/kube/config', 'get', 'pod', 'api-5c4b8d7f9-k8s2m', '--output', 'json']);
    assert.deepEqual(r.calls[1]!.args.slice(0, 3), ['--context=staging', '--kubeconfig=/etc/kube/config', 'run']);
    const run = runCall({ ...r.calls[1]!, args: r.calls[1]!.args.slice(2) });
    assert.deepEqual(run.flags.slice(0, 3), ['--namespace', 'debug', '--image=registry.local/crashcart:1']);
    assert.equal(run.overrides.spec.nodeName, 'worker-1');
    assert.deepEqual(run.overrides.spec.containers[0]!.args, ['--pod', 'api-5c4b8d7f9-k8s2m', '--container', 'app', '--k8s-namespace', 'default', '-v', '--no-cgroup', '--user', '1000:1000', '--', 'id']);
  });

  test('errors are one line, exit 125, and nothing is run', async () => {
    const cases: { pod: string; args: string[]; line: RegExp; calls: number }[] = [
      { pod: 'pod-pending', args: ['batch-8x7q2'], line: /^kubectl-crashcart: pod default\/batch-8x7q2 is not scheduled on a node \(phase Pending\)$/, calls: 1 },
      { pod: 'pod-two-containers', args: ['api-5c4b8d7f9-k8s2m'], line: /^kubectl-crashcart: pod default\/api-5c4b8d7f9-k8s2m has 2 containers \(app, proxy\): choose one with --container$/, calls: 1 },
      { pod: 'pod-two-containers', args: ['api-5c4b8d7f9-k8s2m', '-c', 'proxy'], line: /^kubectl-crashcart: container proxy of pod default\/api-5c4b8d7f9-k8s2m is not running \(CrashLoopBackOff\)$/, calls: 1 },
      { pod: 'pod-two-containers', args: ['api-5c4b8d7f9-k8s2m', '-c', 'db'], line: /^kubectl-crashcart: pod default\/api-5c4b8d7f9-k8s2m has no container db \(it has app, proxy\)$/, calls: 1 },
      // kubectl's own error, its last line
      { pod: 'pod-web', args: ['web-7d9f8c6b5-x2x9q'], line: /^kubectl-crashcart: kubectl get pod web-7d9f8c6b5-x2x9q failed: Error from server \(NotFound\): pods "web-7d9f8c6b5-x2x9q" not found$/, calls: 1 },
      { pod: 'pod-web', args: [], line: /^kubectl-crashcart: no pod given$/, calls: 0 },
      { pod: 'pod-web', args: ['web', '--image'], line: /^kubectl-crashcart: --image needs a value$/, calls: 0 },
      { pod: 'pod-web', args: ['web', '--frobnicate'], line: /^kubectl-crashcart: unknown option --frobnicate$/, calls: 0 },
    ];
    for (const c of cases) {
      const r = await kubectlCrashcart(c.pod, c.args);
      assert.equal(r.code, 125, `${c.args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').length, 1, r.stderr);
      assert.match(r.stderr, c.line);
      assert.equal(r.calls.length, c.calls, `${c.args.join(' ')}: kubectl calls ${JSON.stringify(r.calls)}`);
      assert.ok(r.calls.every((call) => !call.args.includes('run')));
    }
  });

  test('no kubectl on PATH: one line that says what to do', async () => {
    const r = await execa(process.execPath, [plugin, 'web'], { env: { PATH: '/nonexistent' }, extendEnv: false, reject: false, input: '' });
    assert.equal(r.exitCode, 125);
    assert.equal(r.stderr, 'kubectl-crashcart: kubectl not found: install kubectl, or set KUBECTL');
  });

  test('--help prints the usage and exits 0 without asking kubectl', async () => {
    const r = await kubectlCrashcart('pod-web', ['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^usage: kubectl crashcart --pod NAME/);
    assert.equal(r.calls.length, 0);
  });
});

describe('kubectl crashcart: parsing and the pod', () => {
  test('the first word is the pod, later words the command; the default image follows CRASHCART_KUBE_IMAGE', () => {
    const a = parseArgs(['web', 'ls', '-l', '/'], { CRASHCART_KUBE_IMAGE: 'mirror/crashcart:x' });
    assert.ok(a !== 'help');
    assert.equal(a.pod, 'web');
    assert.deepEqual(a.command, ['ls', '-l', '/']);
    assert.equal(a.image, 'mirror/crashcart:x');
  });

  test('a container named but not running is refused with its reason', () => {
    const pod = { metadata: { name: 'p', namespace: 'ns' }, spec: { nodeName: 'n', containers: [{ name: 'a' }] }, status: { containerStatuses: [{ name: 'a', state: { terminated: { reason: 'OOMKilled' } } }] } };
    assert.throws(() => podTarget(pod, { pod: 'p' }), /^Error: container a of pod ns\/p is not running \(OOMKilled\)$/);
  });
});
