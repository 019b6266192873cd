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
  event: 'attach' | 'mount' | 'unmount' | 'gc';
  target?: AuditTarget;
  image?: { path: string; sha256: string | null };
  command?: string[];
  method?: string;
  exitCode?: number | null;
  signal?: number | null;
  durationMs?: number;
  /** gc: what it removed */
  removed?: string[];
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

/** The line written for `entry` (without the newline). */
export function auditLine(entry: AuditEntry, now = new Date(), env: NodeJS.ProcessEnv = process.env): string {
  const base = { time: now.toISOString(), event: entry.event, ...invoker(env) };
  if (entry.noAudit) return JSON.stringify({ ...base, noAudit: true });
  return JSON.stringify({ ...base, ...entry });
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
