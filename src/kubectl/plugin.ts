// kubectl-crashcart: `kubectl crashcart --pod NAME [--container NAME] [-n NS] [-- command]`.
// Finds the pod's node and container with kubectl, then runs the crashcart image on that node
// in a privileged pod with the host's PID namespace and the host directories crashcart reads
// (/run, /dev, /sys/fs/cgroup, its cache and audit log), where crashcart attaches with --pod,
// --container and --k8s-namespace exactly as on the host. stdin is passed through, and the
// terminal when stdin is one; the exit code is crashcart's (kubectl run gives it back).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export class PluginError extends Error {}

export interface PluginArgs {
  pod: string;
  container?: string;
  /** the pod's namespace (-n, --namespace, --k8s-namespace) */
  namespace?: string;
  /** where the crashcart pod runs (default: the pod's namespace) */
  runNamespace?: string;
  image: string;
  /** kubectl's own connection options, passed to every call */
  kubectl: string[];
  /** crashcart options for the attach (-v, --image-file...) */
  crashcart: string[];
  command: string[];
  timeout: string;
}

export const USAGE = `usage: kubectl crashcart --pod NAME [--container NAME] [-n NAMESPACE] [options] [-- command args...]
  --pod NAME             the pod to debug (also: the first word)
  --container NAME       its container (needed when it has several)
  -n, --namespace NS     the pod's namespace (also --k8s-namespace; default: kubectl's)
  --run-namespace NS     where the privileged crashcart pod runs (default: the pod's namespace)
  --image REF            the crashcart image on the node (default: $CRASHCART_KUBE_IMAGE, else crashcart:VERSION)
  --pod-running-timeout  how long to wait for the crashcart pod to start (default 1m)
  --context, --kubeconfig, --cluster, --user, -s/--server, --as: passed to kubectl
  -v, --verbose, -k, --keep, --no-target-env, --no-cgroup, --no-audit, --caps, --method, --workdir DIR,
  --env N=V, --user-id UID[:GID] (crashcart's --user): passed to crashcart
The command and its arguments run in the container with the toolkit (default: an interactive bash).`;

const KUBECTL_VALUE = new Set(['--context', '--kubeconfig', '--cluster', '--user', '-s', '--server', '--as', '--token', '--request-timeout']);
const CRASHCART_FLAG = new Set(['-v', '--verbose', '-k', '--keep', '--no-target-env', '--no-cgroup', '--no-audit']);
// crashcart's --user is kubectl's --user (the kubeconfig user): --user-id is crashcart's
const CRASHCART_VALUE: Record<string, string> = { '--user-id': '--user', '--workdir': '--workdir', '-w': '--workdir', '--env': '--env', '--caps': '--caps', '--method': '--method' };

export function version(): string {
  const dir = import.meta.dirname;
  return (JSON.parse(readFileSync(join(dir, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): PluginArgs | 'help' {
  const a: Partial<PluginArgs> & { kubectl: string[]; crashcart: string[]; command: string[] } = { kubectl: [], crashcart: [], command: [] };
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    if (raw === '--') {
      a.command = argv.slice(i + 1);
      break;
    }
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const value = (): string => {
      const v = eq > 0 ? raw.slice(eq + 1) : argv[++i];
      if (v === undefined || v === '') throw new PluginError(`${flag} needs a value`);
      return v;
    };
    if (flag === '-h' || flag === '--help') return 'help';
    else if (flag === '--pod') a.pod = value();
    else if (flag === '-c' || flag === '--container') a.container = value();
    else if (flag === '-n' || flag === '--namespace' || flag === '--k8s-namespace') a.namespace = value();
    else if (flag === '--run-namespace') a.runNamespace = value();
    else if (flag === '--image') a.image = value();
    else if (flag === '--pod-running-timeout') a.timeout = value();
    else if (KUBECTL_VALUE.has(flag)) a.kubectl.push(`${flag}=${value()}`);
    else if (CRASHCART_FLAG.has(flag)) a.crashcart.push(flag);
    else if (flag in CRASHCART_VALUE) a.crashcart.push(CRASHCART_VALUE[flag]!, value());
    else if (raw.startsWith('-')) throw new PluginError(`unknown option ${flag}`);
    else if (a.pod === undefined) a.pod = raw;
    else {
      a.command = argv.slice(i);
      break;
    }
  }
  if (a.pod === undefined) throw new PluginError('no pod given');
  return {
    pod: a.pod,
    ...(a.container !== undefined ? { container: a.container } : {}),
    ...(a.namespace !== undefined ? { namespace: a.namespace } : {}),
    ...(a.runNamespace !== undefined ? { runNamespace: a.runNamespace } : {}),
    image: a.image ?? (env.CRASHCART_KUBE_IMAGE || `crashcart:${version()}`),
    kubectl: a.kubectl,
    crashcart: a.crashcart,
    command: a.command,
    timeout: a.timeout ?? '1m',
  };
}

/** What `kubectl get pod -o json` says that matters here. */
interface PodJson {
  metadata?: { name?: string; namespace?: string };
  spec?: { nodeName?: string; containers?: { name: string }[] };
  status?: { phase?: string; containerStatuses?: { name: string; containerID?: string; state?: { running?: object; waiting?: { reason?: string }; terminated?: { reason?: string } } }[] };
}

export interface PodTarget {
  node: string;
  namespace: string;
  container: string;
  /** containerd://..., cri-o://... */
  containerID?: string;
}

/** The node and the container of the pod, or why it cannot be debugged. */
export function podTarget(pod: PodJson, want: { pod: string; container?: string }): PodTarget {
  const name = `pod ${pod.metadata?.namespace ?? '?'}/${pod.metadata?.name ?? want.pod}`;
  const node = pod.spec?.nodeName;
  if (!node) throw new PluginError(`${name} is not scheduled on a node (phase ${pod.status?.phase ?? 'unknown'})`);
  const names = (pod.spec?.containers ?? []).map((c) => c.name);
  let container = want.container;
  if (container === undefined) {
    if (names.length !== 1) throw new PluginError(`${name} has ${names.length} containers (${names.join(', ')}): choose one with --container`);
    container = names[0]!;
  } else if (!names.includes(container)) {
    throw new PluginError(`${name} has no container ${container} (it has ${names.join(', ')})`);
  }
  const status = pod.status?.containerStatuses?.find((s) => s.name === container);
  if (!status?.state?.running) {
    const why = status?.state?.waiting?.reason ?? status?.state?.terminated?.reason ?? pod.status?.phase ?? 'unknown';
    throw new PluginError(`container ${container} of ${name} is not running (${why})`);
  }
  return { node, namespace: pod.metadata?.namespace ?? 'default', container, ...(status.containerID ? { containerID: status.containerID } : {}) };
}

/** The host directories crashcart needs on the node, mounted at the same paths. */
export const HOST_MOUNTS: { name: string; path: string; create?: boolean }[] = [
  { name: 'run', path: '/run' },
  { name: 'dev', path: '/dev' },
  { name: 'cgroup', path: '/sys/fs/cgroup' },
  { name: 'cache', path: '/var/lib/crashcart', create: true },
  { name: 'log', path: '/var/log/crashcart', create: true },
];

/** The crashcart pod's spec, as `kubectl run --overrides`. */
export function podOverrides(t: PodTarget, args: PluginArgs, tty: boolean): object {
  const crashcartArgs = ['--pod', args.pod, '--container', t.container, '--k8s-namespace', t.namespace, ...args.crashcart, ...(args.command.length ? ['--', ...args.command] : [])];
  return {
    apiVersion: 'v1',
    spec: {
      nodeName: t.node,
      hostPID: true,
      restartPolicy: 'Never',
      // a node that is cordoned or tainted is where debugging is most needed
      tolerations: [{ operator: 'Exists' }],
      containers: [{
        name: 'crashcart',
        image: args.image,
        imagePullPolicy: 'IfNotPresent',
        args: crashcartArgs,
        stdin: true,
        stdinOnce: true,
        tty,
        securityContext: { privileged: true },
        volumeMounts: HOST_MOUNTS.map((m) => ({ name: m.name, mountPath: m.path })),
      }],
      volumes: HOST_MOUNTS.map((m) => ({ name: m.name, hostPath: { path: m.path, ...(m.create ? { type: 'DirectoryOrCreate' } : {}) } })),
    },
  };
}

export function getPodArgs(args: PluginArgs): string[] {
  return [...args.kubectl, 'get', 'pod', args.pod, ...(args.namespace ? ['--namespace', args.namespace] : []), '--output', 'json'];
}

export function runArgs(t: PodTarget, args: PluginArgs, tty: boolean, suffix = randomBytes(3).toString('hex')): string[] {
  const node = t.node.toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 40).replace(/-+$/, '');
  return [
    ...args.kubectl, 'run', `crashcart-${node}-${suffix}`,
    '--namespace', args.runNamespace ?? t.namespace,
    `--image=${args.image}`, '--restart=Never', '--rm', '--quiet', '--stdin', ...(tty ? ['--tty'] : []),
    `--pod-running-timeout=${args.timeout}`,
    `--overrides=${JSON.stringify(podOverrides(t, args, tty))}`,
  ];
}

function kubectl(): string {
  return process.env.KUBECTL || 'kubectl';
}

function capture(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(kubectl(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', (e: NodeJS.ErrnoException) => reject(new PluginError(e.code === 'ENOENT' ? `${kubectl()} not found: install kubectl, or set KUBECTL` : `cannot run ${kubectl()}: ${e.message}`)));
    p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

/** Runs kubectl with our stdio; resolves to its exit code (128+N for a signal). */
function attached(args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(kubectl(), args, { stdio: 'inherit' });
    // the terminal's signals reach kubectl directly; we only wait for it
    const ignore = () => undefined;
    for (const s of ['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, ignore);
    p.on('error', (e) => reject(new PluginError(`cannot run ${kubectl()}: ${e.message}`)));
    p.on('close', (code, signal) => resolve(code ?? 128 + (signal ? ({ SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 } as Record<string, number>)[signal] ?? 1 : 1)));
  });
}

export async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const got = await capture(getPodArgs(args));
  if (got.code !== 0) throw new PluginError(`kubectl get pod ${args.pod} failed: ${got.stderr.trim().split('\n').pop() ?? `exit ${got.code}`}`);
  let pod: PodJson;
  try {
    pod = JSON.parse(got.stdout) as PodJson;
  } catch {
    throw new PluginError(`kubectl get pod ${args.pod} did not print JSON`);
  }
  const target = podTarget(pod, args);
  return attached(runArgs(target, args, Boolean(process.stdin.isTTY)));
}

export async function run(): Promise<void> {
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (e) {
    const internal = e instanceof PluginError ? '' : 'internal error: ';
    process.stderr.write(`kubectl-crashcart: ${internal}${(e as Error).message}\n`);
    process.exitCode = 125;
  }
}
