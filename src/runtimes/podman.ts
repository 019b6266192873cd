// Podman (rootful) containers, read from libpod's own state database instead of `podman ps`.
//
// Where podman keeps what: containers/storage's <graphroot>/overlay-containers/containers.json
// has IDs and names but no state, and also lists buildah's containers, which podman does not
// run. The conmon pidfiles under the run root survive the container (an exited one still has
// its pidfile), and the runc state dir (/run/runc/<id>) is gone once podman cleans up, so
// neither tells "exited" from "created". libpod's database (<static_dir>/bolt_state.db,
// static_dir defaulting to <graphroot>/libpod) is what `podman ps` itself reads: per
// container its name, its state (created, running, exited, ...), its pid and conmon's pid.
// Reading it takes ~0.3 ms (63 containers: ~2 ms) where `podman ps -a --format json` takes
// ~50 ms, on podman 4.3 here.
//
// The database is only as fresh as podman's last look: a container whose process died before
// conmon's cleanup ran still says running. So a running one must also have a live pid whose
// parent is its conmon (conmon is the container's subreaper); otherwise it has exited, which
// is what podman itself will say once it syncs. Podman 4.8+ can keep the state in SQLite
// (db.sql) instead: there, and if the bolt file cannot be read consistently, the podman CLI
// answers.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CrashcartError, errnoCode } from '../core/errors.js';
import { readStat } from '../core/proc.js';
import { BoltError, BoltFile } from './bolt.js';
import { LOOKUP_DEADLINE_MS, runCommand, withDeadline } from './deadline.js';
import { mayMatch, type Container, type ExecCommand, type ExecRequest, type Runtime } from './types.js';

export const DEFAULT_GRAPHROOT = '/var/lib/containers/storage';
const STORAGE_CONFS = ['/etc/containers/storage.conf', '/usr/share/containers/storage.conf'];
const CONTAINERS_CONFS = ['/usr/share/containers/containers.conf', '/etc/containers/containers.conf'];
const CONTAINERS_CONF_D = '/etc/containers/containers.conf.d';
/** The variables that point podman (and so crashcart) at other configuration. */
export const PODMAN_ENV = ['CONTAINERS_CONF', 'CONTAINERS_STORAGE_CONF'] as const;

/**
 * The string value of `key` in `[section]` of a TOML file (the only kind these settings
 * take); undefined when it is not set there.
 */
export function tomlString(text: string, section: string, key: string): string | undefined {
  // most files only mention the key in comments, if at all: one scan says so
  if (!new RegExp(`^[ \t]*${key.replace(/[.]/g, '\\.')}[ \t]*=`, 'm').test(text)) return undefined;
  let current = '';
  let found: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const header = /^\[\s*([^\]]+?)\s*\]$/.exec(line);
    if (header) {
      current = header[1];
      continue;
    }
    if (current !== section) continue;
    const m = /^([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/.exec(line);
    if (m && m[1] === key) found = m[2] !== undefined ? JSON.parse(`"${m[2]}"`) as string : m[3];
  }
  return found;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Like containers/storage: CONTAINERS_STORAGE_CONF, else the first system file that exists. */
export function graphRoot(env: NodeJS.ProcessEnv = process.env): string {
  const files = env.CONTAINERS_STORAGE_CONF ? [env.CONTAINERS_STORAGE_CONF] : STORAGE_CONFS;
  for (const f of files) {
    const text = readText(f);
    if (text !== undefined) return tomlString(text, 'storage', 'graphroot') || DEFAULT_GRAPHROOT;
  }
  return DEFAULT_GRAPHROOT;
}

/** The [engine] settings used here. */
export interface EngineConfig {
  /** where libpod keeps its database */
  staticDir: string;
  /** 'boltdb', 'sqlite', or '' (podman 4.8+: bolt when its file exists, else SQLite) */
  databaseBackend: string;
}

let lastConfig: { key: string; config: EngineConfig } | undefined;
/**
 * Like containers/common: CONTAINERS_CONF alone, else the system files in order, later wins.
 * Read once per process for the same variables (an attach asks twice, present() and then
 * find(): ~24 KB of containers.conf each time).
 */
export function engineConfig(env: NodeJS.ProcessEnv = process.env): EngineConfig {
  const key = PODMAN_ENV.map((k) => env[k] ?? '').join('\0');
  if (lastConfig?.key !== key) lastConfig = { key, config: readEngineConfig(env) };
  return lastConfig.config;
}

function readEngineConfig(env: NodeJS.ProcessEnv): EngineConfig {
  let files: string[];
  if (env.CONTAINERS_CONF) {
    files = [env.CONTAINERS_CONF];
  } else {
    let dropIns: string[] = [];
    try {
      dropIns = readdirSync(CONTAINERS_CONF_D).filter((f) => f.endsWith('.conf')).sort().map((f) => join(CONTAINERS_CONF_D, f));
    } catch { /* none */ }
    files = [...CONTAINERS_CONFS, ...dropIns];
  }
  let dir: string | undefined;
  let backend = '';
  for (const f of files) {
    const text = readText(f);
    if (text === undefined) continue;
    dir = tomlString(text, 'engine', 'static_dir') || dir;
    backend = tomlString(text, 'engine', 'database_backend') ?? backend;
  }
  return { staticDir: dir ?? join(graphRoot(env), 'libpod'), databaseBackend: backend };
}

/** libpod's ContainerStatus, as `podman ps` words it. */
const STATES = ['unknown', 'created', 'created', 'running', 'stopped', 'paused', 'exited', 'removing', 'stopping'];

/** The subset of libpod's per-container state JSON used here. */
export interface LibpodState {
  state?: unknown;
  pid?: unknown;
  conmonPid?: unknown;
}

/**
 * A container from its database entry. A running one whose pid is gone, a zombie, or not the
 * child of its conmon any more has exited (the database has not caught up yet).
 */
export function fromState(id: string, name: string | undefined, s: LibpodState, stat = readStat): Container {
  let status = typeof s.state === 'number' ? STATES[s.state] ?? 'unknown' : 'unknown';
  let pid = typeof s.pid === 'number' && s.pid > 0 ? s.pid : 0;
  if (status === 'running' || status === 'paused') {
    const st = pid > 0 ? stat(pid) : undefined;
    const conmon = typeof s.conmonPid === 'number' ? s.conmonPid : 0;
    if (!st || st.state === 'Z' || (conmon > 0 && st.ppid !== conmon)) status = 'exited';
  }
  if (status !== 'running' && status !== 'paused') pid = 0;
  return { runtime: 'podman', id, ...(name ? { name } : {}), pid, status };
}

/** Every container in a libpod bolt database. */
export function readBoltState(db: BoltFile, stat = readStat): Container[] {
  const ctrs = db.root.bucket('ctr');
  const names = db.root.bucket('all-ctrs');
  if (!ctrs) return [];
  const out: Container[] = [];
  for (const id of ctrs.buckets()) {
    const raw = ctrs.bucket(id)?.get('state');
    let state: LibpodState = {};
    try {
      if (raw) state = JSON.parse(raw.toString('utf8')) as LibpodState;
    } catch {
      throw new BoltError(`container ${id}: state is not JSON (torn read)`);
    }
    out.push(fromState(id, names?.get(id)?.toString('utf8'), state, stat));
  }
  return out;
}

/** One entry of `podman ps -a --format json`. */
export interface PsEntry {
  Id?: unknown;
  Names?: unknown;
  State?: unknown;
  Pid?: unknown;
}

export function fromPsEntry(e: PsEntry): Container | undefined {
  if (typeof e?.Id !== 'string' || !e.Id) return undefined;
  const name = Array.isArray(e.Names) && typeof e.Names[0] === 'string' ? e.Names[0] : undefined;
  const status = typeof e.State === 'string' && e.State ? e.State : 'unknown';
  const pid = status === 'running' && typeof e.Pid === 'number' && e.Pid > 0 ? e.Pid : 0;
  return { runtime: 'podman', id: e.Id, ...(name ? { name } : {}), pid, status };
}

const PS = ['ps', '-a', '--format', 'json'];
const PS_HINT = 'check that podman works (podman ps -a)';

/** The podman CLI's answer, for databases this module does not read; killed after the deadline. */
export async function listWithCli(signal?: AbortSignal): Promise<Container[]> {
  const cmd = `podman ${PS.join(' ')}`;
  // node's own spawn: execa would cost ~80 ms to load on every attach of such a host
  const r = await withDeadline(LOOKUP_DEADLINE_MS, signal, (sig) => runCommand('podman', PS, { signal: sig, what: `'${cmd}'`, hint: PS_HINT }))
    .catch((err: NodeJS.ErrnoException) => {
      if (err instanceof CrashcartError || signal?.aborted) throw err;
      throw new CrashcartError(`listing podman containers with '${cmd}' failed: ${err.code ?? err.message}`, { hint: PS_HINT });
    });
  if (r.code !== 0) {
    const why = r.stderr.trim().split('\n').pop() || (r.code === null ? 'killed by a signal' : `exit ${r.code}`);
    throw new CrashcartError(`listing podman containers with '${cmd}' failed: ${why}`, { hint: PS_HINT });
  }
  let entries: unknown;
  try {
    entries = JSON.parse(r.stdout || '[]');
  } catch {
    entries = undefined;
  }
  if (!Array.isArray(entries)) {
    throw new CrashcartError(`listing podman containers with '${cmd}' failed: its output is not a JSON array`, { hint: PS_HINT });
  }
  return entries.map((e) => fromPsEntry(e as PsEntry)).filter((c): c is Container => c !== undefined);
}

/** The database file libpod would use, and its kind; undefined when there is none. */
export function database(env: NodeJS.ProcessEnv = process.env): { kind: 'bolt' | 'sqlite'; path: string } | undefined {
  const { staticDir, databaseBackend } = engineConfig(env);
  const bolt = join(staticDir, 'bolt_state.db');
  const sqlite = join(staticDir, 'db.sql');
  if (databaseBackend !== 'sqlite' && existsSync(bolt)) return { kind: 'bolt', path: bolt };
  if (databaseBackend !== 'boltdb' && existsSync(sqlite)) return { kind: 'sqlite', path: sqlite };
  return undefined;
}

async function listAll(signal?: AbortSignal): Promise<Container[]> {
  const db = database();
  if (!db) return [];
  if (db.kind === 'sqlite') return listWithCli(signal);
  // a torn read (two commits during it) is retried once, then podman is asked
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return readBoltState(BoltFile.open(db.path));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      if (!(err instanceof BoltError)) {
        throw new CrashcartError(`reading podman's state ${db.path} failed: ${errnoCode(err) ?? (err as Error).message}`, {
          hint: errnoCode(err) === 'EACCES' ? 'run crashcart as root' : 'check it with podman ps -a',
        });
      }
    }
  }
  return listWithCli(signal);
}

/** The podman settings of this process that a podman command needs to see the same storage. */
export function podmanEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of PODMAN_ENV) if (env[k]) out[k] = env[k]!;
  return out;
}

/** `podman exec -i [-t] [--user U] [--workdir W] [-e K=V]... <id> argv...` */
export function podmanExec(c: Container, req: ExecRequest, env: NodeJS.ProcessEnv = process.env): ExecCommand {
  const args = ['exec', '-i'];
  if (req.tty) args.push('-t');
  if (req.user) args.push('--user', req.user);
  if (req.workdir) args.push('--workdir', req.workdir);
  for (const [k, v] of Object.entries(req.env)) args.push('-e', `${k}=${v}`);
  args.push(c.id, ...req.argv);
  const extra = podmanEnv(env);
  return { file: 'podman', args, ...(Object.keys(extra).length ? { env: extra } : {}) };
}

/** Podman's container names (and its 64-hex IDs): a letter or digit, then [a-zA-Z0-9_.-]. */
export const PODMAN_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export const podman: Runtime = {
  name: 'podman',
  present: () => database() !== undefined,
  list: (_scope, signal) => listAll(signal),
  async find(query: string, _scope, signal): Promise<Container[]> {
    return (await listAll(signal)).filter((c) => mayMatch(c, query));
  },
  execCommand: (c, req) => podmanExec(c, req),
  describeStopped: async (c, signal) => (await import('./podman-stopped.js')).describePodman(c, signal),
  // only its CLI (SQLite databases) takes time: ~50 ms, more on a loaded host
  daemon: () => `'podman ${PS.join(' ')}'`,
  couldName: (query) => PODMAN_NAME.test(query),
  graceMs: 300,
};
