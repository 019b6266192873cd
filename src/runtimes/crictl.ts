// crictl, the CRI's command-line client: where Kubernetes runs on CRI-O (or any CRI
// runtime without containerd's API), pods are found and exec'd through it.
import { TOOLKIT_BIN } from '../core/command.js';
import { CrashcartError } from '../core/errors.js';
import { LOOKUP_DEADLINE_MS, runCommand, withDeadline } from './deadline.js';
import type { Container, ExecCommand, ExecRequest } from './types.js';

const CRI_STATES: Record<string, string> = {
  CONTAINER_CREATED: 'created', CONTAINER_RUNNING: 'running', CONTAINER_EXITED: 'exited', CONTAINER_UNKNOWN: 'unknown',
};

/** `crictl ps -a -o json`: {"containers": [{id, metadata: {name}, state, labels}]}; pids come from inspect. */
export function parseCrictlPs(json: string): Container[] {
  const doc = JSON.parse(json) as { containers?: unknown };
  if (!Array.isArray(doc.containers)) throw new Error('no "containers" array');
  return doc.containers.flatMap((c: { id?: unknown; metadata?: { name?: unknown }; state?: unknown; labels?: unknown }) => {
    if (typeof c?.id !== 'string' || !c.id) return [];
    const labels = c.labels && typeof c.labels === 'object' ? Object.fromEntries(
      Object.entries(c.labels as Record<string, unknown>).filter((e): e is [string, string] => typeof e[1] === 'string')) : {};
    const name = typeof c.metadata?.name === 'string' ? c.metadata.name : undefined;
    const status = typeof c.state === 'string' ? CRI_STATES[c.state] ?? c.state.toLowerCase() : 'unknown';
    return [{ runtime: 'crictl', id: c.id, ...(name ? { name } : {}), pid: 0, status, labels }];
  });
}

/** `crictl inspect -o json ID`: the pid is in .info.pid (verbose runtime info). */
export function parseCrictlInspectPid(json: string): number {
  const pid = (JSON.parse(json) as { info?: { pid?: unknown } }).info?.pid;
  return typeof pid === 'number' && pid > 0 ? pid : 0;
}

const lastLine = (text: string) => text.trim().split('\n').pop() ?? '';

const CRICTL_HINT = 'check that crictl reaches the CRI runtime (crictl info)';

/** crictl's output; it is killed when its deadline passes or `signal` aborts. */
export async function crictl(args: string[], signal?: AbortSignal): Promise<string> {
  const what = `crictl ${args.join(' ')}`;
  const r = await withDeadline(LOOKUP_DEADLINE_MS, signal, (sig) => runCommand('crictl', args, { signal: sig, what, hint: CRICTL_HINT }))
    .catch((err: NodeJS.ErrnoException) => {
      if (err instanceof CrashcartError || signal?.aborted) throw err;
      throw new CrashcartError(`${what} failed: ${err.code ?? err.message}`, { hint: CRICTL_HINT });
    });
  if (r.code !== 0) throw new CrashcartError(`${what} failed: ${lastLine(r.stderr) || `exit ${r.code}`}`, { hint: CRICTL_HINT });
  return r.stdout;
}

/** `crictl exec -i [-t] ID argv...`; crictl exec has no user, workdir or environment options. */
export function crictlExecCommand(c: Container, req: ExecRequest): ExecCommand {
  if (req.user) throw new CrashcartError(`crictl exec cannot run as another user (--user ${req.user})`, { hint: 'drop --user' });
  if (req.workdir) throw new CrashcartError(`crictl exec cannot set the working directory (--workdir ${req.workdir})`, { hint: 'drop --workdir' });
  const env = Object.entries(req.env).map(([k, v]) => `${k}=${v}`);
  return {
    file: 'crictl',
    args: ['exec', '-i', ...(req.tty ? ['-t'] : []), c.id, ...(env.length ? [`${TOOLKIT_BIN}/env`, ...env] : []), ...req.argv],
  };
}
