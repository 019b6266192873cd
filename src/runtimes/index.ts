// Turns what the user typed into a running process: a container ID, a unique ID prefix, a
// name, or a plain PID. Every runtime that is present is asked; exact matches win over a
// PID, and a PID over prefixes.
import { existsSync } from 'node:fs';
import { CrashcartError } from '../core/errors.js';
import { processState, readComm } from '../core/proc.js';
import { containerd } from './containerd.js';
import { crictlExecCommand } from './crictl.js';
import { crun } from './crun.js';
import { docker } from './docker.js';
import { podman } from './podman.js';
import { lxc } from './lxc.js';
import { nspawn } from './nspawn.js';
import { runc } from './runc.js';
import type { Target } from '../core/target.js';
import type { Container, ExecCommand, ExecRequest, Runtime, Scope } from './types.js';

export type { Container, ExecCommand, ExecRequest, Runtime, Scope } from './types.js';
export type { Target } from '../core/target.js';

/** The registry, in the order runtimes are asked. */
export const RUNTIMES: Runtime[] = [runc, crun, docker, podman, containerd, lxc, nspawn];

const LOW_LEVEL = new Set(['runc', 'crun']);

/**
 * One container seen through two runtimes is one match. Podman's containers are also in
 * runc's state root, docker's in containerd's moby namespace, under the same ID. runc's and
 * crun's entry gives way to the manager's (which has the name); otherwise the runtime asked
 * first wins when the process is the same.
 */
export function distinctContainers(cs: Container[]): Container[] {
  const low = (c: Container) => LOW_LEVEL.has(c.runtime);
  return cs.filter((c, i) => !cs.some((o, j) => j !== i && o.runtime !== c.runtime && o.id === c.id &&
    ((low(c) && !low(o)) || (low(c) === low(o) && j < i && o.pid > 0 && o.pid === c.pid))));
}

export const describe = (c: Container) =>
  `${c.runtime} ${c.id}${c.name ? ` (${c.name})` : ''}${c.namespace ? ` in namespace ${c.namespace}` : ''}`;

export function pickRuntimes(name?: string): Runtime[] {
  if (!name || name === 'pid') return name === 'pid' ? [] : RUNTIMES;
  const rt = RUNTIMES.find((r) => r.name === name);
  if (!rt) {
    throw new CrashcartError(`unknown runtime '${name}'`, {
      hint: `choose one of: ${[...RUNTIMES.map((r) => r.name), 'pid'].join(', ')}`,
    });
  }
  return [rt];
}

function pidTarget(query: string): Target | undefined {
  if (!/^[1-9][0-9]*$/.test(query)) return undefined;
  const pid = Number(query);
  if (!existsSync(`/proc/${pid}`)) return undefined;
  if (processState(pid) === 'Z') {
    throw new CrashcartError(`process ${pid} has exited (zombie)`, { hint: 'pick a running process' });
  }
  return { pid, runtime: 'pid', id: String(pid), name: readComm(pid) };
}

export function running(c: Container, query: string): Target {
  if (c.status !== 'running' || c.pid <= 0) {
    throw new CrashcartError(`container ${query} is not running (status: ${c.status})`, {
      hint: `start it first; crashcart attaches to running containers only (${describe(c)})`,
    });
  }
  return { pid: c.pid, runtime: c.runtime, id: c.id, name: c.name, ...(c.namespace ? { namespace: c.namespace } : {}), container: c };
}

export async function resolveTarget(query: string, runtimeName?: string, scope: Scope = {}): Promise<Target> {
  if (!query) throw new CrashcartError('no target given', { hint: 'name a container ID, name or PID' });
  const ns = scope.namespace;
  // --namespace: only runtimes with namespaces, and no PIDs
  const runtimes = pickRuntimes(runtimeName).filter((r) => (ns === undefined || r.namespaced) && r.present());
  if (ns !== undefined && runtimeName !== undefined && !pickRuntimes(runtimeName).some((r) => r.namespaced)) {
    throw new CrashcartError(`--namespace applies to ${RUNTIMES.filter((r) => r.namespaced).map((r) => r.name).join(', ')}, not to ${runtimeName}`, {
      hint: 'drop --namespace, or --runtime',
    });
  }
  // A runtime that cannot answer (a daemon that is down) must not hide a match elsewhere:
  // its failure is reported only when nothing matched.
  const answers = await Promise.allSettled(runtimes.map((r) => (r.find ? r.find(query, scope) : r.list(scope))));
  const all = distinctContainers(answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : [])))
    .filter((c) => ns === undefined || c.namespace === ns);
  const failures = answers.flatMap((a, i) => (a.status === 'rejected' ? [`${runtimes[i].name}: ${(a.reason as Error).message}`] : []));

  const exact = all.filter((c) => c.id === query || c.name === query);
  if (exact.length === 1) return running(exact[0], query);
  if (exact.length > 1) throw ambiguous(query, exact);

  if ((runtimeName === undefined || runtimeName === 'pid') && ns === undefined) {
    const byPid = pidTarget(query);
    if (byPid) return byPid;
  }

  const prefixed = all.filter((c) => c.id.startsWith(query));
  if (prefixed.length === 1) return running(prefixed[0], query);
  if (prefixed.length > 1) throw ambiguous(query, prefixed);

  const asked = runtimeName === 'pid' ? ['pid'] : [...runtimes.map((r) => r.name), ...(runtimeName || ns !== undefined ? [] : ['pid'])];
  const where = ns === undefined ? '' : ` in namespace ${ns}`;
  if (failures.length > 0) {
    throw new CrashcartError(`no container or process matches '${query}'${where}, and not every runtime answered (${failures.join('; ')})`, {
      hint: 'is its daemon running? name another runtime with --runtime',
    });
  }
  throw new CrashcartError(`no container or process matches '${query}'${where} (asked: ${asked.join(', ') || 'none present'})`, {
    hint: `check the ID with your runtime (e.g. ${listCommand(runtimes, ns)})${ns === undefined ? ', or give a PID' : ''}`,
  });
}

export const LIST_COMMANDS: Record<string, string> = {
  runc: 'runc list',
  crun: 'crun list',
  docker: 'docker ps -a',
  podman: 'podman ps -a',
  containerd: 'ctr -n NAMESPACE containers ls',
  lxc: 'lxc-ls -f',
  nspawn: 'ps -C systemd-nspawn -f',
};

/** How to list containers with the first runtime asked that has such a command. */
function listCommand(asked: Runtime[], ns?: string): string {
  for (const r of asked) if (LIST_COMMANDS[r.name]) return LIST_COMMANDS[r.name].replace('NAMESPACE', ns ?? 'NAMESPACE');
  return LIST_COMMANDS.runc;
}

function ambiguous(query: string, matches: Container[]): CrashcartError {
  const namespaced = matches.some((c) => c.namespace);
  return new CrashcartError(`'${query}' matches ${matches.length} containers: ${matches.map(describe).join(', ')}`, {
    hint: namespaced ? 'give more of the ID, the runtime with --runtime, or the namespace with --namespace'
      : 'give more of the ID, or the runtime with --runtime',
  });
}

/** The target runtime's own exec (--exec), checked before anything is grafted. */
export function runtimeExecutor(target: Target): (req: ExecRequest) => ExecCommand {
  if (!target.container) {
    throw new CrashcartError(`--exec needs a container runtime, but process ${target.pid} was given as a plain PID`, {
      hint: 'name the container instead, or attach without --exec',
    });
  }
  // crictl is no runtime of its own for lookups (pods only), but it has an exec
  const rt = target.runtime === 'crictl' ? { execCommand: crictlExecCommand } : RUNTIMES.find((r) => r.name === target.runtime);
  if (!rt?.execCommand) {
    throw new CrashcartError(`--exec is not supported for ${target.runtime} containers: ${target.runtime} has no exec of its own`, {
      hint: 'attach without --exec',
    });
  }
  const { container } = target;
  const build = rt.execCommand;
  return (req) => build.call(rt, container, req);
}

export interface Listing {
  containers: Container[];
  /** runtimes that did not answer, with why */
  failures: { runtime: string; message: string }[];
}

/** The containers of every runtime present (or of one), running or not. */
export async function listContainers(runtimeName?: string): Promise<Listing> {
  const runtimes = pickRuntimes(runtimeName).filter((r) => r.present());
  const answers = await Promise.allSettled(runtimes.map((r) => r.list()));
  return {
    containers: distinctContainers(answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []))),
    failures: answers.flatMap((a, i) => (a.status === 'rejected' ? [{ runtime: runtimes[i].name, message: (a.reason as Error).message }] : [])),
  };
}
