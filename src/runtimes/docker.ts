// Docker containers, through the Engine API on the daemon's unix socket (no docker CLI).
// The list endpoint has no pids, so only running containers that may match are inspected.
import { existsSync } from 'node:fs';
import { CrashcartError } from '../core/errors.js';
import { LOOKUP_DEADLINE_MS, withDeadline } from './deadline.js';
import { ENGINE_TIMEOUT_MS, engineGet, engineMessage } from './engine-api.js';
import { mayMatch, type Container, type ExecCommand, type ExecRequest, type Runtime } from './types.js';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

/** The daemon's socket: DOCKER_HOST when it is unix://PATH, else /var/run/docker.sock. */
export function dockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST?.trim();
  if (host?.startsWith('unix://')) {
    const path = host.slice('unix://'.length);
    if (path) return path;
  }
  return DEFAULT_DOCKER_SOCKET;
}

/** One entry of GET /containers/json. */
export interface ListEntry {
  Id?: unknown;
  Names?: unknown;
  State?: unknown;
  Labels?: unknown;
}

/** The subset of GET /containers/{id}/json used here. */
export interface InspectEntry {
  Id?: unknown;
  Name?: unknown;
  State?: { Status?: unknown; Pid?: unknown; Running?: unknown; Paused?: unknown };
}

/**
 * The container's own name: '/web' -> 'web'. Names of links ('/app/db') belong to another
 * container's view of it and are skipped.
 */
export function containerName(names: unknown): string | undefined {
  if (typeof names === 'string') names = [names];
  if (!Array.isArray(names)) return undefined;
  for (const n of names) {
    if (typeof n !== 'string') continue;
    const bare = n.startsWith('/') ? n.slice(1) : n;
    if (bare && !bare.includes('/')) return bare;
  }
  return undefined;
}

/** A list entry as a Container (pid 0: the list endpoint has none); undefined if malformed. */
export function fromListEntry(e: ListEntry): Container | undefined {
  if (typeof e?.Id !== 'string' || !e.Id) return undefined;
  const name = containerName(e.Names);
  const status = typeof e.State === 'string' && e.State ? e.State : 'unknown';
  // the labels, for --all --filter label=K=V
  const labels = e.Labels && typeof e.Labels === 'object' && !Array.isArray(e.Labels)
    ? Object.fromEntries(Object.entries(e.Labels as Record<string, unknown>).filter((kv): kv is [string, string] => typeof kv[1] === 'string'))
    : {};
  return { runtime: 'docker', id: e.Id, ...(name ? { name } : {}), pid: 0, status, ...(Object.keys(labels).length ? { labels } : {}) };
}

/** Refines a listed container with its inspect answer: the pid, and the current status. */
export function withInspect(c: Container, i: InspectEntry): Container {
  const s = i?.State ?? {};
  const status = typeof s.Status === 'string' && s.Status ? s.Status : c.status;
  const pid = typeof s.Pid === 'number' && s.Pid > 0 ? s.Pid : 0;
  return { ...c, pid: status === 'running' || status === 'paused' ? pid : 0, status };
}

async function listAll(socket: string, signal: AbortSignal): Promise<Container[]> {
  const res = await engineGet(socket, '/containers/json?all=1', ENGINE_TIMEOUT_MS, signal);
  if (res.status !== 200 || !Array.isArray(res.body)) {
    throw new CrashcartError(`listing containers from the docker daemon at ${socket} failed: ${engineMessage(res)}`, {
      hint: 'check that dockerd is healthy',
    });
  }
  return (res.body as ListEntry[]).map(fromListEntry).filter((c): c is Container => c !== undefined);
}

/** Adds pids to the running (and paused) ones; a container removed meanwhile is dropped. */
async function addPids(socket: string, cs: Container[], signal: AbortSignal): Promise<Container[]> {
  const out = await Promise.all(cs.map(async (c): Promise<Container | undefined> => {
    if (c.status !== 'running' && c.status !== 'paused') return c;
    const res = await engineGet(socket, `/containers/${encodeURIComponent(c.id)}/json`, ENGINE_TIMEOUT_MS, signal);
    if (res.status === 404) return undefined;
    if (res.status !== 200) {
      throw new CrashcartError(`inspecting docker container ${c.id} at ${socket} failed: ${engineMessage(res)}`, {
        hint: 'check that dockerd is healthy',
      });
    }
    return withInspect(c, res.body as InspectEntry);
  }));
  return out.filter((c): c is Container => c !== undefined);
}

/** `docker exec`: the docker CLI talks to the same daemon (DOCKER_HOST is passed on). */
export function dockerExec(id: string, req: ExecRequest): ExecCommand {
  const args = ['exec', '--interactive'];
  if (req.tty) args.push('--tty');
  for (const [k, v] of Object.entries(req.env)) args.push('--env', `${k}=${v}`);
  if (req.user !== undefined) args.push('--user', req.user);
  if (req.workdir !== undefined) args.push('--workdir', req.workdir);
  return { file: 'docker', args: [...args, id, ...req.argv] };
}

/** The containers that pass `keep`, with pids: one deadline for the list and the inspects. */
function lookup(keep: (c: Container) => boolean, signal?: AbortSignal): Promise<Container[]> {
  const socket = dockerSocket();
  return withDeadline(LOOKUP_DEADLINE_MS, signal, async (sig) => addPids(socket, (await listAll(socket, sig)).filter(keep), sig));
}

/** Docker's container names (and its 64-hex IDs): a letter or digit, then at least one of [a-zA-Z0-9_.-]. */
export const DOCKER_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export const docker: Runtime = {
  name: 'docker',
  execCommand: (c, req) => dockerExec(c.id, req),
  describeStopped: async (c, signal) => (await import('./docker-stopped.js')).describeDocker(c, signal),
  present: () => existsSync(dockerSocket()),
  list: (_scope, signal) => lookup(() => true, signal),
  find: (query, _scope, signal) => lookup((c) => mayMatch(c, query), signal),
  daemon: () => `the docker daemon at ${dockerSocket()}`,
  couldName: (query) => DOCKER_NAME.test(query),
};
