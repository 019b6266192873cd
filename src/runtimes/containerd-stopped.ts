// Where containerd keeps a container that does not run: its record (Containers Get) has the
// OCI spec and the snapshot that is its root filesystem; the Snapshots API's Mounts call
// says which directories that snapshot stacks (overlayfs: lowerdir and upperdir; native: one
// bind); its task, while it is kept (ctr), says how the process ended. Kubernetes' CRI
// deletes the task and keeps the end in its own status file instead. `--pod NAME --stopped`
// picks the pod container's most recent exited attempt, and the sandbox joins the network,
// IPC and UTS namespaces of the pod's sandbox (pause) container, which still runs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashcartError } from '../core/errors.js';
import { EMPTY_CONFIG, type StoppedContainer } from '../core/stopped.js';
import { containerdAddress } from './containerd.js';
import { LOOKUP_DEADLINE_MS, withDeadline } from './deadline.js';
import { bytesOf, decode, encodeStrings, GRPC_TIMEOUT_MS, grpcClient, num, str, stringMap, type Fields, type GrpcClient } from './grpc.js';
import { unknownDriver } from './docker-stopped.js';
import { fromOciSpec, type OciSpec } from './oci-stopped.js';
import type { Container } from './types.js';

const CONTAINERS_GET = '/containerd.services.containers.v1.Containers/Get';
const CONTAINERS_LIST = '/containerd.services.containers.v1.Containers/List';
const TASKS_LIST = '/containerd.services.tasks.v1.Tasks/List';
const SNAPSHOT_MOUNTS = '/containerd.services.snapshots.v1.Snapshots/Mounts';

export const DEFAULT_CONTAINERD_ROOT = '/var/lib/containerd';
/** containerd's root directory (its `root` setting), where the CRI plugin keeps container status. */
export const containerdRoot = (env: NodeJS.ProcessEnv = process.env) => env.CRASHCART_CONTAINERD_ROOT?.trim() || DEFAULT_CONTAINERD_ROOT;

/** The CRI's record of a container, an extension of the containerd container (JSON). */
const CRI_METADATA = ['io.cri-containerd.container.metadata', 'io.containerd.cri.container.metadata'];

export interface ContainerRecord {
  id: string;
  labels: Record<string, string>;
  image: string;
  spec?: OciSpec & { annotations?: Record<string, unknown> };
  snapshotter: string;
  snapshotKey: string;
  /** ISO time */
  createdAt?: string;
  /** the CRI's attempt number (Kubernetes restarts count up) */
  attempt?: number;
  /** the pod sandbox it belongs to (CRI) */
  sandboxId?: string;
}

/** The end of year 9999, as Timestamp allows it. */
const MAX_SECONDS = 253_402_300_799;

/** google.protobuf.Timestamp (seconds = 1, nanos = 2) as ISO 8601; undefined when unset. */
export function timestamp(msg: Buffer | undefined): string | undefined {
  if (!msg) return undefined;
  const f = decode(msg);
  const seconds = num(f, 1);
  // unset, or Go's zero time (year 1: negative seconds, read back as a varint near 2^64)
  if (seconds <= 0 || seconds > MAX_SECONDS) return undefined;
  return new Date(seconds * 1000 + Math.floor(num(f, 2) / 1e6)).toISOString();
}

/** google.protobuf.Any's value (= 2), JSON-decoded; undefined when it is not JSON. */
function anyJson(msg: Buffer | undefined): unknown {
  if (!msg) return undefined;
  try {
    return JSON.parse(bytesOf(decode(msg), 2).at(-1)?.toString('utf8') ?? '');
  } catch {
    return undefined;
  }
}

/**
 * containerd.services.containers.v1.Container: id = 1, labels = 2, image = 3, spec = 5 (Any
 * of JSON), snapshotter = 6, snapshot_key = 7, created_at = 8, extensions = 10 (map of Any).
 */
export function parseContainerRecord(f: Fields): ContainerRecord {
  const spec = anyJson(bytesOf(f, 5).at(-1)) as ContainerRecord['spec'];
  let meta: { Metadata?: { SandboxID?: unknown; Config?: { metadata?: { attempt?: unknown } } } } | undefined;
  for (const e of bytesOf(f, 10)) {
    const entry = decode(e);
    if (CRI_METADATA.includes(str(entry, 1))) meta = anyJson(bytesOf(entry, 2).at(-1)) as typeof meta;
  }
  const annotations = spec?.annotations ?? {};
  const attempt = meta?.Metadata?.Config?.metadata?.attempt ?? Number(annotations['io.kubernetes.container.restartCount'] ?? Number.NaN);
  const sandboxId = meta?.Metadata?.SandboxID ?? annotations['io.kubernetes.cri.sandbox-id'];
  const createdAt = timestamp(bytesOf(f, 8).at(-1));
  return {
    id: str(f, 1),
    labels: stringMap(f, 2),
    image: str(f, 3),
    ...(spec && typeof spec === 'object' ? { spec } : {}),
    snapshotter: str(f, 6),
    snapshotKey: str(f, 7),
    ...(createdAt ? { createdAt } : {}),
    // a CRI attempt of 0 is left out of its JSON
    ...(typeof attempt === 'number' && Number.isInteger(attempt) ? { attempt } : meta ? { attempt: 0 } : {}),
    ...(typeof sandboxId === 'string' && sandboxId ? { sandboxId } : {}),
  };
}

/** GetContainerResponse: container = 1. */
export const parseGetContainer = (msg: Buffer): ContainerRecord => parseContainerRecord(decode(bytesOf(decode(msg), 1).at(-1) ?? Buffer.alloc(0)));

/** ListContainersResponse: containers = 1. */
export const parseListContainers = (msg: Buffer): ContainerRecord[] => bytesOf(decode(msg), 1).map((c) => parseContainerRecord(decode(c)));

export interface TaskEnd {
  pid: number;
  /** containerd.v1.types.Status: created, running, stopped, ... */
  status: string;
  exitStatus: number;
  exitedAt?: string;
  /** exit_reason (containerd 2.x): OOMKILLED */
  oomKilled?: boolean;
}

const TASK_STATUS = ['unknown', 'created', 'running', 'stopped', 'paused', 'pausing'];

/** ListTasksResponse: tasks = 1 (Process: id = 2, pid = 3, status = 4, exit_status = 9, exited_at = 10, exit_reason = 11). */
export function parseTaskEnds(msg: Buffer): Map<string, TaskEnd> {
  const out = new Map<string, TaskEnd>();
  for (const t of bytesOf(decode(msg), 1)) {
    const f = decode(t);
    const exitedAt = timestamp(bytesOf(f, 10).at(-1));
    out.set(str(f, 2) || str(f, 1), {
      pid: num(f, 3),
      status: TASK_STATUS[num(f, 4)] ?? 'unknown',
      exitStatus: num(f, 9),
      ...(exitedAt ? { exitedAt } : {}),
      ...(f.has(11) ? { oomKilled: num(f, 11) === 1 } : {}),
    });
  }
  return out;
}

/** MountsResponse: mounts = 1 (Mount: type = 1, source = 2, options = 4). */
export function parseMounts(msg: Buffer): { type: string; source: string; options: string[] }[] {
  return bytesOf(decode(msg), 1).map((m) => {
    const f = decode(m);
    return { type: str(f, 1), source: str(f, 2), options: bytesOf(f, 4).map((o) => o.toString('utf8')) };
  });
}

/** The directories a snapshot's mounts stack, the top first; undefined for a kind the sandbox cannot open. */
export function snapshotLayers(mounts: { type: string; source: string; options: string[] }[]): string[] | undefined {
  if (mounts.length !== 1) return undefined;
  const [m] = mounts;
  if (m!.type === 'bind' || m!.type === 'rbind') return m!.source.startsWith('/') ? [m!.source] : undefined;
  if (m!.type !== 'overlay') return undefined;
  const opt = (k: string) => m!.options.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
  const lower = opt('lowerdir')?.split(':').filter(Boolean) ?? [];
  const upper = opt('upperdir');
  return [...(upper ? [upper] : []), ...lower];
}

/** The CRI's status file of a container whose task it deleted: {Status: {ExitCode, FinishedAt (ns), Reason}}. */
export function parseCriStatus(text: string): { exitCode?: number; finishedAt?: string; oomKilled?: boolean } {
  const s = (JSON.parse(text) as { Status?: { ExitCode?: unknown; FinishedAt?: unknown; Reason?: unknown } }).Status ?? {};
  const finished = typeof s.FinishedAt === 'number' && s.FinishedAt > 0 ? new Date(Math.floor(s.FinishedAt / 1e6)).toISOString() : undefined;
  return {
    ...(typeof s.ExitCode === 'number' && finished ? { exitCode: s.ExitCode } : {}),
    ...(finished ? { finishedAt: finished } : {}),
    ...(finished && typeof s.Reason === 'string' ? { oomKilled: s.Reason === 'OOMKilled' } : {}),
  };
}

function criStatus(id: string): ReturnType<typeof parseCriStatus> | undefined {
  try {
    return parseCriStatus(readFileSync(join(containerdRoot(), 'io.containerd.grpc.v1.cri', 'containers', id, 'status'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** The stopped container of a record, its task (if kept) and its snapshot's mounts. */
export function stoppedFromRecord(ns: string, rec: ContainerRecord, task: TaskEnd | undefined, mounts: { type: string; source: string; options: string[] }[] | undefined,
  cri: ReturnType<typeof parseCriStatus> | undefined): StoppedContainer {
  const what = `containerd container ${rec.id} in namespace ${ns}`;
  let layers: string[] | undefined;
  if (rec.snapshotKey) {
    layers = snapshotLayers(mounts ?? []);
    if (!layers) throw unknownDriver(what, `the ${rec.snapshotter} snapshotter (${(mounts ?? []).map((m) => m.type).join(', ') || 'no'} mounts)`, 'overlayfs and native snapshots',
        `mount its snapshot read-only (ctr -n ${ns} snapshots mounts) and open that with --rootfs DIR`);
  } else {
    const path = rec.spec?.root?.path;
    if (typeof path !== 'string' || !path.startsWith('/')) throw new CrashcartError(`${what} has neither a snapshot nor an absolute root path in its spec`, { hint: 'see ctr containers info' });
    layers = [path];
  }
  const { config, mounts: specMounts } = fromOciSpec(rec.spec ?? {});
  const ended = task && task.status === 'stopped';
  const state = ended
    ? { status: 'stopped', exitCode: task.exitStatus, ...(task.exitedAt ? { finishedAt: task.exitedAt } : {}), ...(task.oomKilled !== undefined ? { oomKilled: task.oomKilled } : {}) }
    : cri?.finishedAt ? { status: 'exited', ...cri }
      : { status: task?.status ?? 'created', ...(task ? {} : { unrecorded: 'no task: it never ran, or its end was not kept' }) };
  return { kind: 'container', runtime: 'containerd', id: rec.id, namespace: ns, layers, mounts: specMounts, config: { ...EMPTY_CONFIG, ...config }, state };
}

/** The rest of what a record needs to become a stopped container: its task and its snapshot's mounts. */
async function complete(client: GrpcClient, ns: string, rec: ContainerRecord): Promise<StoppedContainer> {
  const headers = { 'containerd-namespace': ns };
  const [tasks, mounts] = await Promise.all([
    client.call(TASKS_LIST, Buffer.alloc(0), headers).then(parseTaskEnds),
    rec.snapshotKey ? client.call(SNAPSHOT_MOUNTS, encodeStrings([[1, rec.snapshotter], [2, rec.snapshotKey]]), headers).then(parseMounts) : Promise.resolve(undefined),
  ]);
  return stoppedFromRecord(ns, rec, tasks.get(rec.id), mounts, tasks.has(rec.id) ? undefined : criStatus(rec.id));
}

/** One deadline for every call; the session ends when the work does. */
function withClient<T>(signal: AbortSignal | undefined, work: (client: GrpcClient) => Promise<T>): Promise<T> {
  return withDeadline(LOOKUP_DEADLINE_MS * 2, signal, async (sig) => {
    const client = await grpcClient(containerdAddress(), 'containerd', GRPC_TIMEOUT_MS, sig);
    try {
      return await work(client);
    } finally {
      client.close();
    }
  });
}

export async function describeContainerd(c: Container, signal?: AbortSignal): Promise<StoppedContainer> {
  const ns = c.namespace ?? 'default';
  return withClient(signal, async (client) => {
    const rec = parseGetContainer(await client.call(CONTAINERS_GET, encodeStrings([[1, c.id]]), { 'containerd-namespace': ns }));
    return complete(client, ns, rec);
  });
}

export interface PodAttempt extends ContainerRecord {
  task?: TaskEnd;
}

/** Every container record of namespace `ns`, with its task. */
export async function recordsOf(client: GrpcClient, ns: string): Promise<PodAttempt[]> {
  const headers = { 'containerd-namespace': ns };
  const [cs, ts] = await Promise.all([client.call(CONTAINERS_LIST, Buffer.alloc(0), headers), client.call(TASKS_LIST, Buffer.alloc(0), headers)]);
  const tasks = parseTaskEnds(ts);
  return parseListContainers(cs).map((r) => ({ ...r, ...(tasks.has(r.id) ? { task: tasks.get(r.id)! } : {}) }));
}

export { complete, withClient };
