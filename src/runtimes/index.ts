// Turns what the user typed into a running process: a container ID, a unique ID prefix, a
// name, or a plain PID. Every runtime that is present is asked; exact matches win over a
// PID, and a PID over prefixes. A daemon that hangs holds nothing up for long: see
// resolveAmong.
import { existsSync } from 'node:fs';
import { CrashcartError } from '../core/errors.js';
import { processState, readComm } from '../core/proc.js';
import { containerd } from './containerd.js';
import { LOOKUP_DEADLINE_MS, seconds } from './deadline.js';
import { now as clock } from '../core/timing.js';
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

/** Statuses whose processes still exist: neither an attach nor --stopped opens them. */
const PAUSED = new Set(['paused', 'pausing', 'frozen', 'stopping', 'restarting']);

export function running(c: Container, query: string): Target {
  if (c.status !== 'running' || c.pid <= 0) {
    throw new CrashcartError(`container ${query} is not running (status: ${c.status})`, {
      code: 'ENOTRUNNING',
      hint: PAUSED.has(c.status) ? `start it first; crashcart attaches to running containers only (${describe(c)})`
        : `start it first, or open its files in a sandbox with crashcart --stopped ${query} (${describe(c)})`,
    });
  }
  return { pid: c.pid, runtime: c.runtime, id: c.id, name: c.name, ...(c.namespace ? { namespace: c.namespace } : {}), container: c };
}

/**
 * How long runtimes that ask a daemon get once a match on disk is known: healthy ones
 * answer in 5-45 ms after the disk (docker's list, containerd's three calls; see README).
 */
export const DAEMON_GRACE_MS = 60;

export interface LookupOptions {
  /** where a warning goes: one line, without the 'crashcart: warning: ' prefix */
  warn?: (line: string) => void;
  /** a daemon's grace (DAEMON_GRACE_MS), unless the runtime has its own */
  graceMs?: number;
  /** when every runtime's answer is given up on (LOOKUP_DEADLINE_MS) */
  deadlineMs?: number;
  /** what a match becomes (default: running(), which refuses a container that does not run) */
  accept?: (c: Container, query: string) => Target;
}

export async function resolveTarget(query: string, runtimeName?: string, scope: Scope = {}, opts: LookupOptions = {}): Promise<Target> {
  if (!query) throw new CrashcartError('no target given', { hint: 'name a container ID, name or PID' });
  const ns = scope.namespace;
  // --namespace: only runtimes with namespaces, and no PIDs
  const runtimes = pickRuntimes(runtimeName).filter((r) => (ns === undefined || r.namespaced) && r.present());
  if (ns !== undefined && runtimeName !== undefined && !pickRuntimes(runtimeName).some((r) => r.namespaced)) {
    throw new CrashcartError(`--namespace applies to ${RUNTIMES.filter((r) => r.namespaced).map((r) => r.name).join(', ')}, not to ${runtimeName}`, {
      hint: 'drop --namespace, or --runtime',
    });
  }
  const pids = (runtimeName === undefined || runtimeName === 'pid') && ns === undefined;
  return resolveAmong(query, runtimes, { ...opts, scope, pids });
}

/** What the user's word matched: an exact ID or name, or a PID (which may have exited). */
type Match = { container: Container } | { pid: () => Target };

const daemonOf = (r: Runtime) => r.daemon?.() ?? r.name;

/**
 * Resolution among `runtimes` (and PIDs, with `pids`). Every runtime is asked at once;
 * with every answer in, an exact ID or name wins over a PID, a PID over a unique ID prefix,
 * and several matches are refused. Runtimes that answer from disk answer at once; a
 * runtime that waits on a daemon must not hold up an exact match or a PID found without
 * it: once every runtime that could still change that match (couldName) had its grace,
 * the match is used, with a warning naming each of them. Anything else waits for every
 * answer until the deadline; a daemon that has not answered by then is hung, and a
 * unique ID prefix is then refused (a container of the hung daemon could share it). A
 * runtime that failed (a daemon that is down: nothing listens on its socket) hides no
 * match elsewhere; its failure is reported only when nothing matched. Whatever is still
 * asking when the choice is made is ended.
 */
export async function resolveAmong(query: string, runtimes: Runtime[], o: LookupOptions & { scope?: Scope; pids: boolean }): Promise<Target> {
  const ns = o.scope?.namespace;
  const graceMs = o.graceMs ?? DAEMON_GRACE_MS;
  const deadlineMs = o.deadlineMs ?? LOOKUP_DEADLINE_MS;
  const controller = new AbortController();
  let wake = () => {};
  const answers = runtimes.map((runtime) => {
    const a: { runtime: Runtime; done: boolean; containers?: Container[]; error?: Error } = { runtime, done: false };
    new Promise<Container[]>((resolve) => resolve(runtime.find ? runtime.find(query, o.scope, controller.signal) : runtime.list(o.scope, controller.signal)))
      .then((cs) => {
        a.containers = cs;
      }, (e: unknown) => {
        a.error = e instanceof Error ? e : new Error(String(e));
      })
      .finally(() => {
        a.done = true;
        wake();
      });
    return a;
  });
  let byPid: Match | undefined;
  const pidMatch = (): Match | undefined => {
    if (!byPid) {
      try {
        const t = pidTarget(query);
        if (t) byPid = { pid: () => t };
      } catch (e) {
        byPid = { pid: () => { throw e; } };
      }
    }
    return byPid;
  };
  /** Uses `m`, warning about each runtime in `unanswered` whose answer could have changed it. */
  const use = (m: Match, unanswered: Runtime[], waited: number): Target => {
    // a match that cannot be used (not running, a zombie) fails alone, without warnings
    const target = 'container' in m ? (o.accept ?? running)(m.container, query) : m.pid();
    for (const r of unanswered.filter((u) => u.couldName?.(query) ?? true)) {
      o.warn?.(`${daemonOf(r)} did not answer within ${seconds(waited)}; going on with ${'container' in m ? describe(m.container) : `process ${query}`} ` +
        `without it (a ${r.name} container with the ID or name '${query}' would have ${'container' in m ? 'made it ambiguous' : 'come first'})`);
    }
    return target;
  };

  const start = clock();
  let matchedAt: number | undefined;
  try {
    for (;;) {
      const known = distinctContainers(answers.flatMap((a) => a.containers ?? [])).filter((c) => ns === undefined || c.namespace === ns);
      const exact = known.filter((c) => c.id === query || c.name === query);
      // no later answer can undo that
      if (exact.length > 1) throw ambiguous(query, exact);
      const pending = answers.filter((a) => !a.done).map((a) => a.runtime);
      const now = clock();
      if (pending.length === 0 || now - start >= deadlineMs) return decide(query, known, answers, pending, o.pids, ns, deadlineMs, use, o.accept ?? running);

      let until = start + deadlineMs;
      const match: Match | undefined = exact.length === 1 ? { container: exact[0] } : o.pids ? pidMatch() : undefined;
      if (match) {
        matchedAt ??= now;
        const could = pending.filter((r) => r.couldName?.(query) ?? true);
        const graceEnd = Math.max(matchedAt, ...could.map((r) => matchedAt! + (r.graceMs ?? graceMs)));
        if (now >= graceEnd) return use(match, could, graceEnd - matchedAt);
        until = Math.min(until, graceEnd);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, until - now);
        function done() {
          clearTimeout(timer);
          wake = () => {};
          resolve();
        }
        wake = done;
      });
    }
  } finally {
    // what is still asking ends; runtimes that answered closed what they opened (and an
    // abort's event and reason cost an attach that waited on nothing a third of a millisecond)
    if (answers.some((a) => !a.done)) controller.abort(new Error('the target is chosen'));
  }
}

/** The choice once every runtime has answered, or the deadline has passed for those in `hung`. */
function decide(query: string, known: Container[], answers: { runtime: Runtime; error?: Error }[], pending: Runtime[], pids: boolean, ns: string | undefined,
  deadlineMs: number, use: (m: Match, unanswered: Runtime[], waited: number) => Target, accept: (c: Container, query: string) => Target): Target {
  // hung: still waited for at the deadline, or ended by a deadline of its own
  const timedOut = (a: { error?: Error }) => (a.error as CrashcartError | undefined)?.code === 'ETIMEDOUT';
  const hung = answers.filter((a) => pending.includes(a.runtime) || timedOut(a)).map((a) => a.runtime);
  const exact = known.filter((c) => c.id === query || c.name === query);
  if (exact.length === 1) return use({ container: exact[0] }, hung, deadlineMs);
  if (pids) {
    const byPid = pidTarget(query);
    if (byPid) return use({ pid: () => byPid }, hung, deadlineMs);
  }
  const why = (a: { runtime: Runtime; error?: Error }) => `${a.runtime.name}: ${a.error ? a.error.message : `${daemonOf(a.runtime)} did not answer within ${seconds(deadlineMs)}`}`;
  const prefixed = known.filter((c) => c.id.startsWith(query));
  if (prefixed.length > 1) throw ambiguous(query, prefixed);
  if (prefixed.length === 1) {
    if (hung.length === 0) return accept(prefixed[0], query);
    throw new CrashcartError(`'${query}' starts the ID of ${describe(prefixed[0])}, but not every runtime answered ` +
      `(${answers.filter((a) => hung.includes(a.runtime)).map(why).join('; ')}), and a container of theirs may start the same way`, {
      hint: 'give the whole ID or the name, or the runtime with --runtime',
    });
  }

  const runtimes = answers.map((a) => a.runtime);
  const asked = [...runtimes.map((r) => r.name), ...(pids ? ['pid'] : [])];
  const where = ns === undefined ? '' : ` in namespace ${ns}`;
  const failures = answers.filter((a) => a.error || pending.includes(a.runtime)).map(why);
  if (failures.length > 0) {
    throw new CrashcartError(`no container or process matches '${query}'${where}, and not every runtime answered (${failures.join('; ')})`, {
      hint: hung.length > 0 ? 'a daemon that accepts connections and sends nothing hangs: check it, restart it, or name another runtime with --runtime'
        : 'is its daemon running? name another runtime with --runtime',
    });
  }
  throw new CrashcartError(`no container or process matches '${query}'${where} (asked: ${asked.join(', ') || 'none present'})`, {
    code: 'ENOMATCH',
    hint: `check the ID with your runtime (e.g. ${listCommand(runtimes, ns)})${ns === undefined ? (pids && /^[0-9]+$/.test(query) ? `; no process has pid ${query} either` : ', or give a PID') : ''}`,
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

/**
 * The containers of every runtime present (or of one), running or not. A runtime that has
 * not answered by the deadline is a failure, and whatever it opened is ended.
 */
export function listContainers(runtimeName?: string): Promise<Listing> {
  return listAmong(pickRuntimes(runtimeName).filter((r) => r.present()));
}

export async function listAmong(runtimes: Runtime[], deadlineMs = LOOKUP_DEADLINE_MS): Promise<Listing> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<{ late: true }>((resolve) => {
    timer = setTimeout(() => resolve({ late: true }), deadlineMs);
  });
  try {
    const answers = await Promise.all(runtimes.map((r) => Promise.race([
      new Promise<Container[]>((resolve) => resolve(r.list(undefined, controller.signal)))
        .then((containers) => ({ containers }), (e: unknown) => ({ error: e instanceof Error ? e : new Error(String(e)) })),
      late,
    ])));
    return {
      containers: distinctContainers(answers.flatMap((a) => ('containers' in a ? a.containers : []))),
      failures: answers.flatMap((a, i) => ('error' in a ? [{ runtime: runtimes[i].name, message: a.error.message }]
        : 'late' in a ? [{ runtime: runtimes[i].name, message: `${daemonOf(runtimes[i])} did not answer within ${seconds(deadlineMs)}` }] : [])),
    };
  } finally {
    clearTimeout(timer);
    controller.abort(new Error('the listing is done'));
  }
}
