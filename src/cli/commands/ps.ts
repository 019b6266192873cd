// crashcart ps [--json]: the running containers of every runtime present, and where the
// toolkit is grafted; with -a also those that do not run: how they ended, and whether
// --stopped can open their files.
import { basename } from 'node:path';
import type { CommandModule } from 'yargs';
import { graftStatus, type GraftStatus } from '../../core/graft-status.js';
import { listContainers, RUNTIMES, type Container } from '../../runtimes/index.js';
import { LOOKUP_DEADLINE_MS, withDeadline } from '../../runtimes/deadline.js';
import { formatTable, requireRoot, warn } from '../output.js';

interface PsArgs {
  json: boolean;
  all: boolean;
  runtime?: string;
}

export interface PsRow extends GraftStatus {
  runtime: string;
  id: string;
  name: string | null;
  namespace?: string;
  pid: number;
  status: string;
  /** a container that does not run (-a): its exit code and finish time (null: not recorded) */
  exitCode?: number | null;
  finishedAt?: string | null;
  /** whether crashcart --stopped can open its files, and if not, why */
  opens?: boolean;
  why?: string;
}

/** How a container that does not run ended, and whether --stopped can open it. */
export interface StoppedFacts {
  exitCode: number | null;
  finishedAt: string | null;
  opens: boolean;
  why?: string;
}

const live = (c: Container) => c.status === 'running' && c.pid > 0;

/** One row per container; stopped ones only with `all`, the running first as listed. */
export function psRows(containers: Container[], status: (pid: number) => GraftStatus, all = false, ended: Map<Container, StoppedFacts> = new Map()): PsRow[] {
  return containers
    .filter((c) => all || live(c))
    .map((c) => ({
      runtime: c.runtime,
      id: c.id,
      name: c.name ?? null,
      ...(c.namespace ? { namespace: c.namespace } : {}),
      pid: c.pid,
      status: c.status,
      ...(live(c) ? status(c.pid) : { grafted: false, sessions: 0, pinned: false }),
      ...(ended.get(c) ?? {}),
    }));
}

/** Statuses whose processes still exist: not for --stopped. */
const NOT_ENDED = new Set(['running', 'paused', 'pausing', 'frozen', 'stopping', 'restarting']);

/** What each runtime says about its containers that do not run, all at once, within the lookup deadline. */
export async function stoppedFacts(containers: Container[]): Promise<Map<Container, StoppedFacts>> {
  const out = new Map<Container, StoppedFacts>();
  await Promise.all(containers.filter((c) => !live(c)).map(async (c) => {
    const none = { exitCode: null, finishedAt: null };
    const runtime = RUNTIMES.find((r) => r.name === c.runtime);
    if (NOT_ENDED.has(c.status)) {
      out.set(c, { ...none, opens: false, why: 'its processes still exist' });
    } else if (!runtime?.describeStopped) {
      out.set(c, { ...none, opens: false, why: `${c.runtime} keeps no files of it that crashcart can read` });
    } else {
      try {
        const d = await withDeadline(LOOKUP_DEADLINE_MS, undefined, (signal) => runtime.describeStopped!(c, signal));
        out.set(c, { exitCode: d.state.exitCode ?? null, finishedAt: d.state.finishedAt ?? null, opens: true });
      } catch (e) {
        out.set(c, { ...none, opens: false, why: (e as Error).message });
      }
    }
  }));
  return out;
}

/** Columns padded to their widest cell; IDs cut to 12 characters as docker ps does. */
export function psTable(rows: PsRow[], all = false): string {
  const header = ['RUNTIME', 'ID', 'NAME', 'PID', 'STATUS', 'TOOLKIT', 'SESSIONS', ...(all ? ['EXIT', 'FINISHED', '--STOPPED'] : [])];
  const ended = (r: PsRow) => (r.opens === undefined ? ['-', '-', '-'] : [
    r.exitCode === null || r.exitCode === undefined ? '-' : String(r.exitCode),
    r.finishedAt ? r.finishedAt.replace(/\.[0-9]+Z$/, 'Z') : '-',
    r.opens ? 'yes' : 'no',
  ]);
  const cells = rows.map((r) => [
    r.namespace ? `${r.runtime}/${r.namespace}` : r.runtime,
    r.id.length > 12 && /^[0-9a-f]{64}$/.test(r.id) ? r.id.slice(0, 12) : r.id,
    r.name ?? '-',
    String(r.pid || '-'),
    r.status,
    r.grafted ? (r.image ? basename(r.image) : 'grafted') + (r.pinned ? ' (kept)' : '') : '-',
    r.grafted ? String(r.sessions) : '-',
    ...(all ? ended(r) : []),
  ]);
  return formatTable([header, ...cells]);
}

export const psCommand: CommandModule<object, PsArgs> = {
  command: 'ps',
  describe: 'list running containers of every runtime present, and where the toolkit is grafted',
  builder: (b) =>
    b
      .option('json', { type: 'boolean', default: false, describe: 'print a JSON array instead of a table' })
      .option('all', { alias: 'a', type: 'boolean', default: false, describe: 'include containers that are not running: their exit code, finish time and whether --stopped opens them' })
      .option('runtime', { alias: 'r', type: 'string', requiresArg: true, describe: 'list this runtime only' }),
  handler: async (a) => {
    requireRoot('crashcart ps', "it reads the runtimes' state and the containers' mounts");
    const { containers, failures } = await listContainers(a.runtime);
    for (const f of failures) warn(`${f.runtime} not listed: ${f.message}`);
    const rows = psRows(containers, (pid) => graftStatus(pid), a.all, a.all ? await stoppedFacts(containers) : undefined);
    process.stdout.write(a.json ? `${JSON.stringify(rows, null, 2)}\n` : psTable(rows, a.all));
  },
};
