// Kubernetes pods: --pod NAME [--container NAME] [--k8s-namespace NS] finds a container by
// the labels the kubelet puts on it, in containerd's k8s.io namespace, or through crictl
// where it is installed (CRI-O nodes). Sandbox (pause) containers are never targets.
import { onPath } from '../core/host-path.js';
import { CrashcartError } from '../core/errors.js';
import { containerd, listContainerd, taskRoot, tasksOnDisk } from './containerd.js';
import { crictl, parseCrictlInspectPid, parseCrictlPs } from './crictl.js';
import { LOOKUP_DEADLINE_MS, withDeadline } from './deadline.js';
import { running, type Target } from './index.js';
import type { Container } from './types.js';

export const POD_NAME = 'io.kubernetes.pod.name';
export const POD_NAMESPACE = 'io.kubernetes.pod.namespace';
export const CONTAINER_NAME = 'io.kubernetes.container.name';
/** containerd's CRI plugin marks pause containers with kind=sandbox */
export const CRI_KIND = 'io.cri-containerd.kind';
/** the containerd namespace of the CRI plugin */
export const K8S_CONTAINERD_NAMESPACE = 'k8s.io';

export interface PodQuery {
  pod: string;
  /** the container's name in the pod spec */
  container?: string;
  /** the Kubernetes namespace (default "default") */
  namespace: string;
}

const RUNTIMES = ['containerd', 'crictl'];

/** The pod's own containers (no sandbox), by their labels. */
export function podContainers(cs: Container[], q: PodQuery): Container[] {
  return cs.filter((c) => c.labels?.[POD_NAME] === q.pod && c.labels[POD_NAMESPACE] === q.namespace
    && c.labels[CRI_KIND] !== 'sandbox' && c.labels[CONTAINER_NAME] !== undefined);
}

/**
 * The one container `q` means among the pod's containers: the named one, or the only one.
 * The kubelet keeps a restarted container's exited attempts, so a running one wins.
 */
export function pickPodContainer(inPod: Container[], q: PodQuery): Target {
  const pod = `${q.namespace}/${q.pod}`;
  const names = [...new Set(inPod.map((c) => c.labels![CONTAINER_NAME]))].sort();
  const name = q.container ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) {
    throw new CrashcartError(`pod ${pod} has ${names.length} containers: ${names.join(', ')}`, { hint: 'name one with --container' });
  }
  const attempts = inPod.filter((c) => c.labels![CONTAINER_NAME] === name);
  if (attempts.length === 0) {
    throw new CrashcartError(`pod ${pod} has no container '${name}' (it has: ${names.join(', ')})`, { hint: 'name one of them with --container' });
  }
  const live = attempts.filter((c) => c.status === 'running' && c.pid > 0);
  if (live.length > 1) {
    throw new CrashcartError(`container ${name} of pod ${pod} runs ${live.length} times: ${live.map((c) => `${c.runtime} ${c.id}`).join(', ')}`, {
      hint: 'give the container ID instead of --pod',
    });
  }
  const target = running(live[0] ?? attempts[0], `${pod}/${name}`);
  return { ...target, name: `${pod}/${name}` };
}


// --- crictl ------------------------------------------------------------------------------

/** The pod's containers through crictl, with pids for the running ones: one deadline for all of it. */
function crictlPodContainers(q: PodQuery): Promise<Container[]> {
  return withDeadline(LOOKUP_DEADLINE_MS, undefined, async (signal) => {
    const out = await crictl(['ps', '-a', '-o', 'json', '--label', `${POD_NAME}=${q.pod}`, '--label', `${POD_NAMESPACE}=${q.namespace}`], signal);
    let cs: Container[];
    try {
      cs = podContainers(parseCrictlPs(out), q);
    } catch (err) {
      throw new CrashcartError(`crictl ps -o json printed something unexpected: ${(err as Error).message}`, { hint: 'is crictl recent enough?' });
    }
    return Promise.all(cs.map(async (c) => (c.status === 'running' ? { ...c, pid: parseCrictlInspectPid(await crictl(['inspect', '-o', 'json', c.id], signal)) } : c)));
  });
}

/**
 * The pod's containers in containerd's namespace `ns`; when containerd does not answer, its
 * running tasks on disk, labelled from the CRI's annotations (the API's error stands if
 * none of them is the pod's).
 */
async function containerdPodContainers(ns: string, q: PodQuery): Promise<Container[]> {
  try {
    return podContainers(await listContainerd(ns), q);
  } catch (err) {
    const found = podContainers(tasksOnDisk(taskRoot(), ns, undefined, true), q);
    if (found.length === 0) throw err;
    return found;
  }
}

// --- lookup ------------------------------------------------------------------------------

export interface PodLookup {
  /** containerd or crictl only */
  runtime?: string;
  /** containerd's namespace for Kubernetes (default k8s.io) */
  containerdNamespace?: string;
}

/** Finds the container `q` means: containerd first, then crictl where it is installed. */
export async function findPod(q: PodQuery, opts: PodLookup = {}): Promise<Target> {
  if (opts.runtime !== undefined && !RUNTIMES.includes(opts.runtime)) {
    throw new CrashcartError(`--pod looks in ${RUNTIMES.join(' and ')}, not in ${opts.runtime}`, { hint: `drop --runtime, or name one of: ${RUNTIMES.join(', ')}` });
  }
  const ns = opts.containerdNamespace ?? K8S_CONTAINERD_NAMESPACE;
  const searched: string[] = [];
  const failures: string[] = [];
  const sources: [string, boolean, () => Promise<Container[]>][] = [
    [`containerd namespace ${ns}`, (opts.runtime ?? 'containerd') === 'containerd' && containerd.present(),
      () => containerdPodContainers(ns, q)],
    ['crictl', (opts.runtime ?? 'crictl') === 'crictl' && onPath('crictl'), () => crictlPodContainers(q)],
  ];
  for (const [what, present, list] of sources) {
    if (!present) continue;
    searched.push(what);
    let found: Container[];
    try {
      found = await list();
    } catch (err) {
      failures.push(`${what}: ${(err as Error).message}`);
      continue;
    }
    if (found.length > 0) return pickPodContainer(found, q);
  }
  const pod = `pod ${q.pod} in Kubernetes namespace ${q.namespace}`;
  if (failures.length > 0) {
    throw new CrashcartError(`no ${pod} found, and not every source answered (${failures.join('; ')})`, {
      hint: 'is containerd (or the CRI runtime crictl talks to) running?',
    });
  }
  throw new CrashcartError(`no ${pod} (searched: ${searched.join(', ') || 'nothing: no containerd socket, no crictl'})`, {
    hint: `check the pod with kubectl get pods -n ${q.namespace}, or name its namespace with --k8s-namespace`,
  });
}
