// The audit log: every attach, gc and unmount appends one JSON line to
// /var/log/crashcart/audit.log (CRASHCART_AUDIT_LOG), created root-only. crashcart runs as
// root inside production containers; who did what, where, and with which result must be on
// record. Writing it never fails the session: a failure is a warning.
import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { unsafeReason } from './trust.js';

export const DEFAULT_AUDIT_LOG = '/var/log/crashcart/audit.log';
export const auditLogPath = (env: NodeJS.ProcessEnv = process.env) => env.CRASHCART_AUDIT_LOG || DEFAULT_AUDIT_LOG;

export interface AuditTarget {
  runtime: string;
  id: string;
  name?: string;
  pid: number;
}

export interface AuditEntry {
  event: 'attach' | 'mount' | 'unmount' | 'gc' | 'forward' | 'cp' | 'sandbox';
  /** forward: one line when the listeners are up, one when it ends */
  state?: 'started' | 'ended';
  target?: AuditTarget;
  image?: { path: string; sha256: string | null };
  command?: string[];
  method?: string;
  exitCode?: number | null;
  signal?: number | null;
  durationMs?: number;
  /** gc: what it removed */
  removed?: string[];
  /** forward: each listener and where it leads ('127.0.0.1:18080 -> web:8080') */
  forwards?: string[];
  /** forward: connections opened inside the target, at the end */
  connections?: number;
  /** cp: which way, both sides, and how much */
  copy?: { direction: 'in' | 'out'; from: string; to: string; archive: boolean; files: number; dirs: number; symlinks: number; bytes: number; skipped: number };
  /** --no-audit: only the fact that a run went unrecorded is recorded */
  noAudit?: boolean;
}

/** The invoking user: the real uid and, under sudo, who ran sudo. */
function invoker(env: NodeJS.ProcessEnv) {
  return {
    uid: process.getuid?.() ?? -1,
    sudoUser: env.SUDO_USER ?? null,
    sudoUid: env.SUDO_UID !== undefined && /^[0-9]+$/.test(env.SUDO_UID) ? Number(env.SUDO_UID) : null,
  };
}

/** At most this much of a command is recorded: a script passed as an argument can be huge. */
export const MAX_COMMAND_BYTES = 4096;

/** The command as recorded: whole arguments while they fit, then how much was left out. */
export function recordedCommand(argv: string[], max = MAX_COMMAND_BYTES): { command: string[]; commandOmittedBytes?: number } {
  const command: string[] = [];
  let used = 0;
  for (const [i, arg] of argv.entries()) {
    const room = max - used;
    if (Buffer.byteLength(arg) > room) {
      const omitted = argv.slice(i).reduce((n, a) => n + Buffer.byteLength(a), 0) - Math.max(room, 0);
      if (room > 0) command.push(Buffer.from(arg).subarray(0, room).toString('utf8').replace(/\uFFFD$/, ''));
      return { command, commandOmittedBytes: omitted };
    }
    command.push(arg);
    used += Buffer.byteLength(arg);
  }
  return { command };
}

/**
 * What toISOString says (for years 0 to 9999), from the UTC fields: V8's toISOString sets up
 * its date cache on first use, most of a millisecond of every attach.
 */
export function isoTime(d: Date): string {
  const p = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${p(d.getUTCFullYear(), 4)}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${p(d.getUTCMilliseconds(), 3)}Z`;
}

/** The line written for `entry` (without the newline). */
export function auditLine(entry: AuditEntry, now = new Date(), env: NodeJS.ProcessEnv = process.env): string {
  const base = { time: isoTime(now), event: entry.event, ...invoker(env) };
  if (entry.noAudit) return JSON.stringify({ ...base, noAudit: true });
  const { command, ...rest } = entry;
  return JSON.stringify({ ...base, ...rest, ...(command ? recordedCommand(command) : {}) });
}

/**
 * Appends `entry`; returns why it could not, or undefined. The file is opened without
 * following a symlink and must be root's and 0600; its directory must pass the trust rule.
 */
export function writeAudit(entry: AuditEntry, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const file = auditLogPath(env);
  try {
    const dir = dirname(file);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const { reason } = unsafeReason(dir);
    if (reason) return `audit log directory ${dir}: ${reason}`;
    const fd = openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    try {
      const st = fstatSync(fd);
      if (!st.isFile()) return `audit log ${file} is not a regular file`;
      if (st.uid !== 0) return `audit log ${file} is owned by uid ${st.uid}, not root`;
      if (st.mode & 0o077) fchmodSync(fd, 0o600); // made by an older crashcart or by hand: root's alone from now on
      writeSync(fd, `${auditLine(entry, new Date(), env)}\n`);
    } finally {
      closeSync(fd);
    }
    return undefined;
  } catch (e) {
    return `cannot write the audit log ${file}: ${(e as Error).message}`;
  }
}
