// `--pod NAME --stopped`: a Kubernetes container in a crash loop. The kubelet keeps its
// exited attempts as containerd k8s.io containers (the CRI's metadata counts them); the most
// recent one that does not run is opened, and the sandbox joins the network, IPC and UTS
// namespaces of the pod's sandbox (pause) container, which still runs between attempts, so
// the crash reproduces with the pod's own network.
import { CrashcartError } from '../core/errors.js';
import type { StoppedContainer } from '../core/stopped.js';
import { containerd } from './containerd.js';
import { complete, recordsOf, withClient, type PodAttempt } from './containerd-stopped.js';
import { CONTAINER_NAME, CRI_KIND, K8S_CONTAINERD_NAMESPACE, POD_NAME, POD_NAMESPACE, type PodQuery } from './kubernetes.js';

const running = (a: PodAttempt) => a.task?.status === 'running' || a.task?.status === 'paused';

/** Newest first: by the CRI's attempt number, then by creation time. */
function newestFirst(a: PodAttempt, b: PodAttempt): number {
  return (b.attempt ?? -1) - (a.attempt ?? -1) || (b.createdAt ?? '').localeCompare(a.createdAt ?? '');
}

/** The attempt `q` means: of the named container (or the pod's only one), the newest that does not run. */
export function pickExitedAttempt(records: PodAttempt[], q: PodQuery): PodAttempt {
  const pod = `${q.namespace}/${q.pod}`;
  const inPod = records.filter((r) => r.labels[POD_NAME] === q.pod && r.labels[POD_NAMESPACE] === q.namespace && r.labels[CRI_KIND] !== 'sandbox'
    && r.labels[CONTAINER_NAME] !== undefined);
  if (inPod.length === 0) {
    throw new CrashcartError(`no pod ${q.pod} in Kubernetes namespace ${q.namespace} (searched: containerd namespace ${K8S_CONTAINERD_NAMESPACE})`, {
      hint: `check the pod with kubectl get pods -n ${q.namespace}, or name its namespace with --k8s-namespace`,
    });
  }
  const names = [...new Set(inPod.map((r) => r.labels[CONTAINER_NAME]!))].sort();
  const name = q.container ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined) throw new CrashcartError(`pod ${pod} has ${names.length} containers: ${names.join(', ')}`, { hint: 'name one with --container' });
  const attempts = inPod.filter((r) => r.labels[CONTAINER_NAME] === name).sort(newestFirst);
  if (attempts.length === 0) throw new CrashcartError(`pod ${pod} has no container '${name}' (it has: ${names.join(', ')})`, { hint: 'name one of them with --container' });
  const exited = attempts.filter((a) => !running(a));
  if (exited.length === 0) {
    throw new CrashcartError(`container ${name} of pod ${pod} runs (${attempts[0]!.id}) and has no exited attempt: --stopped opens containers that do not run`, {
      hint: `attach to it as it runs: crashcart --pod ${q.pod}${q.namespace !== 'default' ? ` --k8s-namespace ${q.namespace}` : ''} --container ${name}`,
    });
  }
  return exited[0]!;
}

/** The pod's sandbox container with a running task: by the attempt's sandbox ID, else by the pod's labels. */
export function pickSandbox(records: PodAttempt[], attempt: PodAttempt, q: PodQuery): PodAttempt | undefined {
  const live = records.filter((r) => r.labels[CRI_KIND] === 'sandbox' && r.task?.status === 'running' && r.task.pid > 0);
  return live.find((r) => r.id === attempt.sandboxId)
    ?? live.find((r) => r.labels[POD_NAME] === q.pod && r.labels[POD_NAMESPACE] === q.namespace);
}

export async function describePodStopped(q: PodQuery, opts: { containerdNamespace?: string; warn?: (line: string) => void } = {}): Promise<StoppedContainer> {
  if (!containerd.present()) {
    throw new CrashcartError(`--pod --stopped reads containerd's records, and there is no containerd here`, { hint: 'point CONTAINERD_ADDRESS at its socket' });
  }
  const ns = opts.containerdNamespace ?? K8S_CONTAINERD_NAMESPACE;
  return withClient(undefined, async (client) => {
    const records = await recordsOf(client, ns);
    const attempt = pickExitedAttempt(records, q);
    const stopped = await complete(client, ns, attempt);
    const sandbox = pickSandbox(records, attempt, q);
    const name = `${q.namespace}/${q.pod}/${attempt.labels[CONTAINER_NAME]}`;
    if (!sandbox) {
      opts.warn?.(`the sandbox of pod ${q.namespace}/${q.pod} does not run: the sandbox has its own network (loopback only)`);
      return { ...stopped, name };
    }
    return { ...stopped, name, join: { pid: sandbox.task!.pid, what: `the sandbox ${sandbox.id} of pod ${q.namespace}/${q.pod}` } };
  });
}
