// containerd's containers in every namespace (k8s.io for Kubernetes, moby for Docker,
// default for ctr, ...), through containerd's own gRPC API on its socket: one connection,
// two list calls per namespace, no ctr spawned. A running task named exactly is read from
// the shims' state on disk, which is faster and works while containerd hangs. A
// container's ID is its name in containerd; its status comes from its task (none: 'created').
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isFrozen, readStat } from '../core/proc.js';
import { TOOLKIT_BIN } from '../core/command.js';
import { CrashcartError } from '../core/errors.js';
import { LOOKUP_DEADLINE_MS, withDeadline } from './deadline.js';
import { bytesOf, decode, encodeStrings, GRPC_TIMEOUT_MS, grpcClient, num, str, stringMap, type GrpcClient } from './grpc.js';
import { mayMatch, type Container, type ExecCommand, type ExecRequest, type Runtime, type Scope } from './types.js';

export const DEFAULT_CONTAINERD_ADDRESS = '/run/containerd/containerd.sock';
export const DEFAULT_CONTAINERD_STATE = '/run/containerd';

/** containerd's socket: CONTAINERD_ADDRESS (as ctr reads it, unix:// optional), else the default. */
export function containerdAddress(env: NodeJS.ProcessEnv = process.env): string {
  const a = env.CONTAINERD_ADDRESS?.trim();
  if (!a) return DEFAULT_CONTAINERD_ADDRESS;
  return a.startsWith('unix://') ? a.slice('unix://'.length) : a;
}

/** containerd's state directory (its `state` setting): CRASHCART_CONTAINERD_STATE, else /run/containerd. */
export function containerdState(env: NodeJS.ProcessEnv = process.env): string {
  return env.CRASHCART_CONTAINERD_STATE?.trim() || DEFAULT_CONTAINERD_STATE;
}

/** Where the runc v2 shims keep one directory per task: <state>/io.containerd.runtime.v2.task/<ns>/<id>. */
export const taskRoot = (env: NodeJS.ProcessEnv = process.env) => join(containerdState(env), 'io.containerd.runtime.v2.task');

const NAMESPACES_LIST = '/containerd.services.namespaces.v1.Namespaces/List';
const CONTAINERS_LIST = '/containerd.services.containers.v1.Containers/List';
const TASKS_LIST = '/containerd.services.tasks.v1.Tasks/List';

// containerd.v1.types.Status
const TASK_STATUS = ['unknown', 'created', 'running', 'stopped', 'paused', 'pausing'];

/** ListNamespacesResponse: namespaces = 1 (Namespace: name = 1). */
export function parseNamespaces(msg: Buffer): string[] {
  return bytesOf(decode(msg), 1).map((n) => str(decode(n), 1)).filter(Boolean);
}

/** ListContainersResponse: containers = 1 (Container: id = 1, labels = 2; the spec is skipped). */
export function parseContainers(msg: Buffer): { id: string; labels: Record<string, string> }[] {
  return bytesOf(decode(msg), 1).map((c) => {
    const f = decode(c);
    return { id: str(f, 1), labels: stringMap(f, 2) };
  }).filter((c) => c.id);
}

/**
 * ListTasksResponse: tasks = 1 (Process: id = 2, pid = 3, status = 4). A task's id is its
 * container's; container_id = 1 is left empty for tasks, so it is only a fallback.
 */
export function parseTasks(msg: Buffer): Map<string, { pid: number; status: string }> {
  const out = new Map<string, { pid: number; status: string }>();
  for (const t of bytesOf(decode(msg), 1)) {
    const f = decode(t);
    out.set(str(f, 2) || str(f, 1), { pid: num(f, 3), status: TASK_STATUS[num(f, 4)] ?? 'unknown' });
  }
  return out;
}

/** A container and its task (if any) as crashcart sees them. */
export function toContainer(ns: string, c: { id: string; labels: Record<string, string> }, task?: { pid: number; status: string }): Container {
  const status = task ? task.status : 'created';
  const pid = task && (status === 'running' || status === 'paused') ? task.pid : 0;
  return { runtime: 'containerd', id: c.id, pid, status, namespace: ns, labels: c.labels };
}

async function listNamespace(client: GrpcClient, ns: string): Promise<Container[]> {
  const headers = { 'containerd-namespace': ns };
  const [cs, ts] = await Promise.all([
    client.call(CONTAINERS_LIST, Buffer.alloc(0), headers),
    client.call(TASKS_LIST, Buffer.alloc(0), headers),
  ]);
  const tasks = parseTasks(ts);
  return parseContainers(cs).map((c) => toContainer(ns, c, tasks.get(c.id)));
}

/**
 * Every container in `namespace`, or in every namespace. The whole listing has one
 * deadline; when it passes, or `signal` aborts, the session is destroyed.
 */
export async function listContainerd(namespace?: string, address = containerdAddress(), signal?: AbortSignal): Promise<Container[]> {
  return withDeadline(LOOKUP_DEADLINE_MS, signal, async (sig) => {
    const client = await grpcClient(address, 'containerd', GRPC_TIMEOUT_MS, sig);
    try {
      const namespaces = namespace ? [namespace] : parseNamespaces(await client.call(NAMESPACES_LIST, encodeStrings([])));
      return (await Promise.all(namespaces.map((ns) => listNamespace(client, ns)))).flat();
    } finally {
      client.close();
    }
  });
}

/** Is `pid` a live process whose parent is a containerd shim of namespace `ns`? */
function childOfShim(pid: number, ns: string): boolean {
  const stat = readStat(pid);
  if (!stat || stat.state === 'Z') return false;
  let argv: string[];
  try {
    argv = readFileSync(`/proc/${stat.ppid}/cmdline`, 'utf8').split('\0');
  } catch {
    return false;
  }
  const ni = argv.indexOf('-namespace');
  return basename(argv[0]).startsWith('containerd-shim') && ni > 0 && argv[ni + 1] === ns;
}

// The CRI plugin writes the pod's identity into the OCI spec's annotations too; on disk
// they stand in for the container labels the kubelet set (see kubernetes.ts).
const CRI_ANNOTATIONS: [string, string][] = [
  ['io.kubernetes.cri.sandbox-name', 'io.kubernetes.pod.name'],
  ['io.kubernetes.cri.sandbox-namespace', 'io.kubernetes.pod.namespace'],
  ['io.kubernetes.cri.container-name', 'io.kubernetes.container.name'],
  ['io.kubernetes.cri.container-type', 'io.cri-containerd.kind'],
];

/** The pod labels of a task, from its bundle's config.json annotations. */
export function criLabels(bundle: string): Record<string, string> {
  let annotations: Record<string, unknown> = {};
  try {
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, unknown> };
    annotations = spec.annotations ?? {};
  } catch { /* no spec: no labels */ }
  const labels: Record<string, string> = {};
  for (const [from, to] of CRI_ANNOTATIONS) if (typeof annotations[from] === 'string') labels[to] = annotations[from] as string;
  return labels;
}

/**
 * The running tasks as the shims left them on disk, for when containerd does not answer:
 * <ns>/<id>/init.pid, believed only while that process is a child of a shim of the same
 * namespace (a reused pid is not), and 'paused' when its cgroup is frozen. No containers
 * without a running task; labels (the CRI's pod annotations) only with `withLabels`.
 */
export function tasksOnDisk(root = taskRoot(), namespace?: string, id?: string, withLabels = false): Container[] {
  const out: Container[] = [];
  const dirs = (d: string) => {
    try {
      return readdirSync(d);
    } catch {
      return [];
    }
  };
  for (const ns of namespace ? [namespace] : dirs(root)) {
    for (const task of id === undefined ? dirs(join(root, ns)) : [id]) {
      const bundle = join(root, ns, task);
      let pid = 0;
      try {
        pid = Number.parseInt(readFileSync(join(bundle, 'init.pid'), 'utf8'), 10);
      } catch { /* no such task, or no task process yet */ }
      if (pid > 0 && childOfShim(pid, ns)) {
        const status = isFrozen(pid) ? 'paused' : 'running';
        out.push({ runtime: 'containerd', id: task, pid, status, namespace: ns, ...(withLabels ? { labels: criLabels(bundle) } : {}) });
      }
    }
  }
  return out;
}

/**
 * A running task whose ID is exactly `query` is read from disk: no gRPC (whose client
 * alone costs more to load than the lookup) and an answer even from a hung containerd.
 * Anything else asks the API, and falls back to the tasks on disk when containerd cannot
 * be reached; the API's error stands when those have no match either. A lookup that was
 * ended (its deadline passed, or its answer is not needed) ends there: the tasks on disk
 * are not all of containerd's containers.
 */
async function findContainerd(query: string, scope?: Scope, signal?: AbortSignal): Promise<Container[]> {
  const plain = (s: string | undefined) => s === undefined || (s !== '' && s !== '.' && s !== '..' && !s.includes('/'));
  const exact = plain(query) && plain(scope?.namespace) ? tasksOnDisk(taskRoot(), scope?.namespace, query) : [];
  if (exact.length > 0) return exact;
  try {
    return (await listContainerd(scope?.namespace, containerdAddress(), signal)).filter((c) => mayMatch(c, query));
  } catch (err) {
    if (signal?.aborted) throw err;
    const found = tasksOnDisk(taskRoot(), scope?.namespace).filter((c) => mayMatch(c, query));
    if (found.length === 0) throw err;
    return found;
  }
}

/** containerd's identifiers (its identifiers package): alphanumeric words joined by . _ -, at most 76 characters. */
export const CONTAINERD_ID = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

/** `ctr task exec` into the container's task; ctr has no --env, so `env` from the toolkit sets it. */
export function ctrExecCommand(c: Container, req: ExecRequest, address = containerdAddress()): ExecCommand {
  if (!c.namespace) throw new CrashcartError(`containerd container ${c.id} has no namespace`, { hint: 'this is a bug in crashcart' });
  const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
  return {
    file: 'ctr',
    args: [
      '--address', address, '--namespace', c.namespace, 'task', 'exec',
      '--exec-id', `crashcart-${process.pid}-${readFileSync('/proc/sys/kernel/random/uuid', 'utf8').slice(0, 8)}`,
      ...(req.tty ? ['--tty'] : []),
      ...(req.user ? ['--user', req.user] : []),
      ...(req.workdir ? ['--cwd', req.workdir] : []),
      c.id,
      ...(env.length ? [`${TOOLKIT_BIN}/env`, ...env] : []),
      ...req.argv,
    ],
  };
}

export const containerd: Runtime = {
  name: 'containerd',
  namespaced: true,
  // the socket, or task directories left by shims (containerd itself may be down)
  present: () => existsSync(containerdAddress()) || existsSync(taskRoot()),
  list: (scope?: Scope, signal?: AbortSignal) => listContainerd(scope?.namespace, containerdAddress(), signal),
  find: findContainerd,
  daemon: () => `containerd at ${containerdAddress()}`,
  couldName: (query) => query.length <= 76 && CONTAINERD_ID.test(query),
  execCommand: (c, req) => ctrExecCommand(c, req),
  describeStopped: async (c, signal) => (await import('./containerd-stopped.js')).describeContainerd(c, signal),
};
