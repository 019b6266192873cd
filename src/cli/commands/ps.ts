// crashcart ps [--json]: the running containers of every runtime present, and where the
// toolkit is grafted.
import { basename } from 'node:path';
import type { CommandModule } from 'yargs';
import { graftStatus, type GraftStatus } from '../../core/graft-status.js';
import { listContainers, type Container } from '../../runtimes/index.js';
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
}

/** One row per container; stopped ones only with `all`, the running first as listed. */
export function psRows(containers: Container[], status: (pid: number) => GraftStatus, all = false): PsRow[] {
  return containers
    .filter((c) => all || (c.status === 'running' && c.pid > 0))
    .map((c) => ({
      runtime: c.runtime,
      id: c.id,
      name: c.name ?? null,
      ...(c.namespace ? { namespace: c.namespace } : {}),
      pid: c.pid,
      status: c.status,
      ...(c.status === 'running' && c.pid > 0 ? status(c.pid) : { grafted: false, sessions: 0, pinned: false }),
    }));
}

/** Columns padded to their widest cell; IDs cut to 12 characters as docker ps does. */
export function psTable(rows: PsRow[]): string {
  const header = ['RUNTIME', 'ID', 'NAME', 'PID', 'STATUS', 'TOOLKIT', 'SESSIONS'];
  const cells = rows.map((r) => [
    r.namespace ? `${r.runtime}/${r.namespace}` : r.runtime,
    r.id.length > 12 && /^[0-9a-f]{64}$/.test(r.id) ? r.id.slice(0, 12) : r.id,
    r.name ?? '-',
    String(r.pid || '-'),
    r.status,
    r.grafted ? (r.image ? basename(r.image) : 'grafted') + (r.pinned ? ' (kept)' : '') : '-',
    r.grafted ? String(r.sessions) : '-',
  ]);
  return formatTable([header, ...cells]);
}

export const psCommand: CommandModule<object, PsArgs> = {
  command: 'ps',
  describe: 'list running containers of every runtime present, and where the toolkit is grafted',
  builder: (b) =>
    b
      .option('json', { type: 'boolean', default: false, describe: 'print a JSON array instead of a table' })
      .option('all', { alias: 'a', type: 'boolean', default: false, describe: 'include containers that are not running' })
      .option('runtime', { alias: 'r', type: 'string', requiresArg: true, describe: 'list this runtime only' }),
  handler: async (a) => {
    requireRoot('crashcart ps', "it reads the runtimes' state and the containers' mounts");
    const { containers, failures } = await listContainers(a.runtime);
    for (const f of failures) warn(`${f.runtime} not listed: ${f.message}`);
    const rows = psRows(containers, (pid) => graftStatus(pid), a.all);
    process.stdout.write(a.json ? `${JSON.stringify(rows, null, 2)}\n` : psTable(rows));
  },
};
