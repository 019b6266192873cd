// What a runtime says about a container that does not run: where its files are (its layers
// and volumes on the host), how it was configured, and how it ended. Each runtime module
// fills one in (describeStopped); the sandbox (sandbox.ts) opens it, knowing no runtime.
// --rootfs DIR and --from-image REF make one too.

/** A mount of the container, with its host source. */
export interface StoppedMount {
  /** absolute path inside the container */
  destination: string;
  /** the host path (absent for a tmpfs) */
  source?: string;
  /**
   * volume and bind: the container's data (read-only in the sandbox unless --rw-volumes);
   * tmpfs: a fresh empty one; runtime: a file the runtime made for it (hosts, resolv.conf),
   * always read-only
   */
  kind: 'volume' | 'bind' | 'tmpfs' | 'runtime';
  /** the container had it read-only */
  readOnly: boolean;
  /** a volume's name */
  name?: string;
}

export interface StoppedConfig {
  /** KEY=VALUE, as the container's process had them */
  env: string[];
  /** its working directory ('' for /) */
  cwd: string;
  /** uid[:gid] or name[:group], as --user takes it ('' for root) */
  user: string;
  /** supplementary groups, when the runtime gives them as numbers */
  groups?: number[];
  hostname: string;
  /** what it ran: the entrypoint, then its arguments */
  entrypoint: string[];
  cmd: string[];
}

export interface StoppedState {
  /** the runtime's word: exited, stopped, created, dead, ... */
  status: string;
  exitCode?: number;
  /** when it ended (ISO 8601) */
  finishedAt?: string;
  oomKilled?: boolean;
  /** how it ended when the runtime records nothing ('runc records no exit code') */
  unrecorded?: string;
}

export interface StoppedContainer {
  /** a container of a runtime, a directory (--rootfs) or an image (--from-image) */
  kind: 'container' | 'rootfs' | 'image';
  runtime: string;
  id: string;
  name?: string;
  namespace?: string;
  /** host directories of its files, the top first: its writable layer, then its image's */
  layers: string[];
  mounts: StoppedMount[];
  config: StoppedConfig;
  state: StoppedState;
  /** a live process whose network, IPC and UTS namespaces the sandbox joins (a pod's sandbox) */
  join?: { pid: number; what: string };
}

export const EMPTY_CONFIG: StoppedConfig = { env: [], cwd: '', user: '', hostname: '', entrypoint: [], cmd: [] };

/** How the container is called in messages: its name, else its ID (12 characters of a long hex one). */
export function displayName(c: Pick<StoppedContainer, 'id' | 'name'>): string {
  if (c.name) return c.name;
  return /^[0-9a-f]{64}$/.test(c.id) ? c.id.slice(0, 12) : c.id;
}

/** "exited 3 at 2026-12-01T17:58:22Z (OOM-killed: no)", or what is known instead. */
export function describeEnd(s: StoppedState): string {
  if (s.status === 'created') return 'was created and never started';
  const at = s.finishedAt ? ` at ${s.finishedAt.replace(/\.[0-9]+Z$/, 'Z')}` : '';
  const oom = s.oomKilled === undefined ? '' : ` (OOM-killed: ${s.oomKilled ? 'yes' : 'no'})`;
  if (s.exitCode !== undefined) return `exited ${s.exitCode}${at}${oom}`;
  return `is ${s.status}${at}${s.unrecorded ? ` (${s.unrecorded})` : ''}${oom}`;
}

/** A time the runtime gives for "never" (Go's zero time) is no time. */
export function realTime(t: unknown): string | undefined {
  if (typeof t !== 'string' || !t || t.startsWith('0001-01-01')) return undefined;
  return t;
}

/** A value that must be a list of strings: anything else is none. */
export function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** The destinations the sandbox makes itself: a container's mounts there are not taken over. */
export function ownDestination(dest: string): boolean {
  return ['/proc', '/sys', '/dev'].some((p) => dest === p || dest.startsWith(`${p}/`));
}
