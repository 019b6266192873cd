// Turns what the user typed into a running process: a container ID, a unique ID prefix, a
// name, or a plain PID. Every runtime that is present is asked; exact matches win over a
// PID, and a PID over prefixes.
import { existsSync } from 'node:fs';
import { CrashcartError } from '../core/errors.js';
import { processState, readComm } from '../core/proc.js';
import { crun } from './crun.js';
import { docker } from './docker.js';
import { lxc } from './lxc.js';
import { nspawn } from './nspawn.js';
import { runc } from './runc.js';
import type { Container, Runtime } from './types.js';

export type { Container, Runtime } from './types.js';

/** The registry, in the order runtimes are asked. */
export const RUNTIMES: Runtime[] = [runc, crun, docker, lxc, nspawn];

export interface Target {
  pid: number;
  /** 'runc', 'crun', ... or 'pid' for a plain process id */
  runtime: string;
  id: string;
  name?: string;
}

const describe = (c: Container) => `${c.runtime} ${c.id}${c.name ? ` (${c.name})` : ''}`;

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

function running(c: Container, query: string): Target {
  if (c.status !== 'running' || c.pid <= 0) {
    throw new CrashcartError(`container ${query} is not running (status: ${c.status})`, {
      hint: `start it first; crashcart attaches to running containers only (${describe(c)})`,
    });
  }
  return { pid: c.pid, runtime: c.runtime, id: c.id, name: c.name };
}

export async function resolveTarget(query: string, runtimeName?: string): Promise<Target> {
  if (!query) throw new CrashcartError('no target given', { hint: 'name a container ID, name or PID' });
  const runtimes = pickRuntimes(runtimeName).filter((r) => r.present());
  // A runtime that cannot answer (a daemon that is down) must not hide a match elsewhere:
  // its failure is reported only when nothing matched.
  const answers = await Promise.allSettled(runtimes.map((r) => (r.find ? r.find(query) : r.list())));
  const all = answers.flatMap((a) => (a.status === 'fulfilled' ? a.value : []));
  const failures = answers.flatMap((a, i) => (a.status === 'rejected' ? [`${runtimes[i].name}: ${(a.reason as Error).message}`] : []));

  const exact = all.filter((c) => c.id === query || c.name === query);
  if (exact.length === 1) return running(exact[0], query);
  if (exact.length > 1) throw ambiguous(query, exact);

  if (runtimeName === undefined || runtimeName === 'pid') {
    const byPid = pidTarget(query);
    if (byPid) return byPid;
  }

  const prefixed = all.filter((c) => c.id.startsWith(query));
  if (prefixed.length === 1) return running(prefixed[0], query);
  if (prefixed.length > 1) throw ambiguous(query, prefixed);

  const asked = runtimeName === 'pid' ? ['pid'] : [...runtimes.map((r) => r.name), ...(runtimeName ? [] : ['pid'])];
  if (failures.length > 0) {
    throw new CrashcartError(`no container or process matches '${query}', and not every runtime answered (${failures.join('; ')})`, {
      hint: 'is its daemon running? name another runtime with --runtime',
    });
  }
  throw new CrashcartError(`no container or process matches '${query}' (asked: ${asked.join(', ') || 'none present'})`, {
    hint: `check the ID with your runtime (e.g. ${listCommand(runtimes)}), or give a PID`,
  });
}

const LIST_COMMANDS: Record<string, string> = {
  runc: 'runc list',
  crun: 'crun list',
  docker: 'docker ps -a',
  lxc: 'lxc-ls -f',
  nspawn: 'ps -C systemd-nspawn -f',
};

/** How to list containers with the first runtime asked that has such a command. */
function listCommand(asked: Runtime[]): string {
  for (const r of asked) if (LIST_COMMANDS[r.name]) return LIST_COMMANDS[r.name];
  return LIST_COMMANDS.runc;
}

function ambiguous(query: string, matches: Container[]): CrashcartError {
  return new CrashcartError(`'${query}' matches ${matches.length} containers: ${matches.map(describe).join(', ')}`, {
    hint: 'give more of the ID, or the runtime with --runtime',
  });
}
