// Where docker keeps an exited container: the Engine API's inspect answer
// (GET /containers/ID/json) names its overlay2 directories (GraphDriver.Data: UpperDir, its
// writable layer, and LowerDir, a colon list of the image's), its volumes and binds with
// their host sources (Mounts), its config (Env, WorkingDir, User, Entrypoint, Cmd, Hostname)
// and how it ended (State). Podman's `podman container inspect` has the same shape (its
// driver is called overlay), and both describe images the same way (--from-image).
import { existsSync } from 'node:fs';
import { CrashcartError } from '../core/errors.js';
import { realTime, strings, type StoppedConfig, type StoppedContainer, type StoppedMount } from '../core/stopped.js';
import { LOOKUP_DEADLINE_MS, withDeadline } from './deadline.js';
import { ENGINE_TIMEOUT_MS, engineGet, engineMessage } from './engine-api.js';
import { containerName, dockerSocket } from './docker.js';
import type { Container } from './types.js';

/** The subset of an inspect answer (container or image) used here. */
export interface Inspected {
  Id?: unknown;
  Name?: unknown;
  Path?: unknown;
  Args?: unknown;
  RepoTags?: unknown;
  State?: { Status?: unknown; ExitCode?: unknown; OOMKilled?: unknown; FinishedAt?: unknown; StartedAt?: unknown };
  GraphDriver?: { Name?: unknown; Data?: Record<string, unknown> | null };
  Mounts?: unknown;
  HostConfig?: { Tmpfs?: unknown };
  Config?: { Env?: unknown; WorkingDir?: unknown; User?: unknown; Entrypoint?: unknown; Cmd?: unknown; Hostname?: unknown } | null;
  HostnamePath?: unknown;
  HostsPath?: unknown;
  ResolvConfPath?: unknown;
}

/** The overlay drivers whose directories the sandbox stacks: docker's overlay2, podman's overlay. */
const OVERLAY_DRIVERS = new Set(['overlay2', 'overlay']);

/** Thrown for a storage driver the sandbox cannot open. */
/** `storage`: how the runtime stores it, as a noun ("the vfs storage driver"); `hint`: how to open it anyway. */
export function unknownDriver(what: string, storage: string, known: string,
  hint = 'export its files (docker export, podman export) into a directory and open that with --rootfs DIR'): CrashcartError {
  return new CrashcartError(`${what} is stored by ${storage}, which crashcart cannot open (it opens ${known})`, { hint });
}

/** Its layers, the writable (or top) one first. */
export function overlayLayers(i: Inspected, what: string, driverWord: string): string[] {
  const driver = typeof i.GraphDriver?.Name === 'string' ? i.GraphDriver.Name : '';
  if (!OVERLAY_DRIVERS.has(driver)) throw unknownDriver(what, `the ${driver || 'unnamed'} storage driver`, `${driverWord}'s ${[...OVERLAY_DRIVERS].join(' and ')}`);
  const data = i.GraphDriver?.Data ?? {};
  const upper = typeof data.UpperDir === 'string' ? data.UpperDir : '';
  const lower = typeof data.LowerDir === 'string' ? data.LowerDir.split(':').filter(Boolean) : [];
  const layers = [upper, ...lower].filter(Boolean);
  if (layers.length === 0) throw new CrashcartError(`${what}: its ${driver} driver data names no directories`, { hint: `see ${driverWord} inspect` });
  return layers;
}

/** Mounts: volumes and binds with their host sources, tmpfs, and the runtime's own files. */
export function inspectMounts(i: Inspected, exists: (path: string) => boolean = existsSync): StoppedMount[] {
  const out: StoppedMount[] = [];
  for (const m of Array.isArray(i.Mounts) ? (i.Mounts as Record<string, unknown>[]) : []) {
    if (typeof m?.Destination !== 'string') continue;
    const readOnly = m.RW === false;
    if (m.Type === 'tmpfs') {
      out.push({ destination: m.Destination, kind: 'tmpfs', readOnly });
    } else if ((m.Type === 'volume' || m.Type === 'bind') && typeof m.Source === 'string' && m.Source.startsWith('/')) {
      out.push({ destination: m.Destination, source: m.Source, kind: m.Type, readOnly, ...(typeof m.Name === 'string' && m.Name ? { name: m.Name } : {}) });
    }
  }
  const tmpfs = i.HostConfig?.Tmpfs;
  if (tmpfs && typeof tmpfs === 'object') {
    for (const dest of Object.keys(tmpfs)) out.push({ destination: dest, kind: 'tmpfs', readOnly: false });
  }
  // /etc/hostname, /etc/hosts and /etc/resolv.conf are files the runtime bind-mounted
  const files: [unknown, string][] = [[i.HostnamePath, '/etc/hostname'], [i.HostsPath, '/etc/hosts'], [i.ResolvConfPath, '/etc/resolv.conf']];
  for (const [source, destination] of files) {
    if (typeof source !== 'string' || !source.startsWith('/') || !exists(source)) continue;
    if (out.some((m) => m.destination === destination)) continue;
    out.push({ destination, source, kind: 'runtime', readOnly: true });
  }
  return out;
}

/** A list of words, or (podman) one string of them. */
function words(v: unknown): string[] {
  if (typeof v === 'string') return v ? v.split(' ').filter(Boolean) : [];
  return strings(v);
}

export function inspectConfig(i: Inspected): StoppedConfig {
  const c = i.Config ?? {};
  // Path and Args are what was run: the entrypoint and command together, unsplit by podman
  const path = typeof i.Path === 'string' ? i.Path : '';
  const [entrypoint, cmd] = path ? [[path], strings(i.Args)] : [words(c.Entrypoint), strings(c.Cmd)];
  return {
    env: strings(c.Env),
    cwd: typeof c.WorkingDir === 'string' ? c.WorkingDir : '',
    user: typeof c.User === 'string' ? c.User : '',
    hostname: typeof c.Hostname === 'string' ? c.Hostname : '',
    entrypoint,
    cmd,
  };
}

/** A stopped container from its inspect answer (docker's or podman's). */
export function fromInspect(runtime: 'docker' | 'podman', i: Inspected, exists: (path: string) => boolean = existsSync): StoppedContainer {
  const id = typeof i.Id === 'string' ? i.Id : '';
  const name = containerName(i.Name) ?? (typeof i.Name === 'string' && i.Name ? i.Name : undefined);
  const s = i.State ?? {};
  const status = typeof s.Status === 'string' && s.Status ? s.Status : 'unknown';
  const started = realTime(s.StartedAt) !== undefined;
  return {
    kind: 'container',
    runtime,
    id,
    ...(name ? { name } : {}),
    layers: overlayLayers(i, `${runtime} container ${name ?? id}`, runtime),
    mounts: inspectMounts(i, exists),
    config: inspectConfig(i),
    state: {
      status,
      ...(started && typeof s.ExitCode === 'number' ? { exitCode: s.ExitCode } : {}),
      ...(realTime(s.FinishedAt) ? { finishedAt: realTime(s.FinishedAt) } : {}),
      ...(started && typeof s.OOMKilled === 'boolean' ? { oomKilled: s.OOMKilled } : {}),
    },
  };
}

/** An image from its inspect answer: its layers (top first) and its config; it never ran. */
export function imageFromInspect(runtime: 'docker' | 'podman', ref: string, i: Inspected): StoppedContainer {
  const id = typeof i.Id === 'string' ? i.Id.replace(/^sha256:/, '') : ref;
  return {
    kind: 'image',
    runtime,
    id,
    name: ref,
    layers: overlayLayers(i, `${runtime} image ${ref}`, runtime),
    mounts: [],
    config: { ...inspectConfig({ Config: i.Config }), hostname: '' },
    state: { status: 'image' },
  };
}

const HINT = 'check that dockerd is healthy';

/** GET `path` from the daemon, with the deadline of a lookup; 404 is undefined. */
async function inspect(path: string, what: string, signal?: AbortSignal): Promise<Inspected | undefined> {
  const socket = dockerSocket();
  const res = await withDeadline(LOOKUP_DEADLINE_MS, signal, (sig) => engineGet(socket, path, ENGINE_TIMEOUT_MS, sig));
  if (res.status === 404) return undefined;
  if (res.status !== 200 || typeof res.body !== 'object' || res.body === null) {
    throw new CrashcartError(`inspecting ${what} at ${socket} failed: ${engineMessage(res)}`, { hint: HINT });
  }
  return res.body as Inspected;
}

export async function describeDocker(c: Container, signal?: AbortSignal): Promise<StoppedContainer> {
  const i = await inspect(`/containers/${encodeURIComponent(c.id)}/json`, `docker container ${c.name ?? c.id}`, signal);
  if (!i) throw new CrashcartError(`docker container ${c.name ?? c.id} is gone (removed meanwhile)`, { hint: 'see docker ps -a' });
  return fromInspect('docker', i);
}

/** docker's image `ref` from its local layers; undefined when docker has none of that name. */
export async function describeDockerImage(ref: string, signal?: AbortSignal): Promise<StoppedContainer | undefined> {
  const i = await inspect(`/images/${encodeURI(ref)}/json`, `docker image ${ref}`, signal);
  return i && imageFromInspect('docker', ref, i);
}
