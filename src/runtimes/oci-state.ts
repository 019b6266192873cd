// runc and crun keep one directory per container under a state root; reading it directly
// is much faster than spawning the runtime's CLI.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, isFrozen, processState, startTime } from '../core/proc.js';
import type { Container, ExecCommand, ExecRequest, Runtime } from './types.js';

export interface StateReader {
  /** the container's init pid and start time (clock ticks) from its state directory */
  (dir: string): { pid: number; start?: number } | undefined;
}

/** runc and crun write no status: it follows from the process, the fifo and the freezer. */
function statusOf(pid: number, start: number | undefined, createdMarker: boolean): string {
  if (pid <= 0) return 'stopped';
  const alive = start === undefined ? startTime(pid) !== undefined : isAlive(pid, start);
  if (!alive || processState(pid) === 'Z') return 'stopped';
  if (createdMarker) return 'created';
  return isFrozen(pid) ? 'paused' : 'running';
}

/**
 * `runc exec` and `crun exec` take the same flags: -t only for a terminal (stdin is passed
 * through either way), --env, --user uid[:gid], --cwd.
 */
export function ociExec(binary: string, root: string, id: string, req: ExecRequest): ExecCommand {
  const args = ['--root', root, 'exec'];
  if (req.tty) args.push('--tty');
  for (const [k, v] of Object.entries(req.env)) args.push('--env', `${k}=${v}`);
  if (req.user !== undefined) args.push('--user', req.user);
  if (req.workdir !== undefined) args.push('--cwd', req.workdir);
  return { file: binary, args: [...args, id, ...req.argv] };
}

export function ociStateRuntime(name: string, root: () => string, read: StateReader, createdFile: string): Runtime {
  return {
    name,
    present: () => existsSync(root()),
    execCommand: (c, req) => ociExec(name, root(), c.id, req),
    list: async () => containers(),
    // IDs are the only names: only the directories the word could be (an ID, or a prefix of
    // one) are read, so an attach costs the same among 2 containers or 200
    find: async (query) => containers((id) => id.startsWith(query)),
  };

  function containers(wanted: (id: string) => boolean = () => true): Container[] {
    const dir = root();
    let ids: string[];
    try {
      ids = readdirSync(dir).filter(wanted);
    } catch {
      return [];
    }
    const out: Container[] = [];
    for (const id of ids) {
      const state = read(join(dir, id));
      if (!state) continue;
      const created = existsSync(join(dir, id, createdFile));
      const status = statusOf(state.pid, state.start, created);
      // a stopped container's recorded pid is gone, or someone else's now (runc says 0 too)
      out.push({ runtime: name, id, pid: status === 'stopped' ? 0 : state.pid, status });
    }
    return out;
  }
}

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** runc: <root>/<id>/state.json with init_process_pid and init_process_start. */
export const readRuncState: StateReader = (dir) => {
  const s = readJson(join(dir, 'state.json'));
  if (!s || typeof s.init_process_pid !== 'number') return undefined;
  const start = Number(s.init_process_start);
  return { pid: s.init_process_pid, start: Number.isFinite(start) && start > 0 ? start : undefined };
};

/** crun: <root>/<id>/status with pid and process-start-time. */
export const readCrunState: StateReader = (dir) => {
  const s = readJson(join(dir, 'status'));
  if (!s || typeof s.pid !== 'number') return undefined;
  const start = Number(s['process-start-time']);
  return { pid: s.pid, start: Number.isFinite(start) && start > 0 ? start : undefined };
};
