// Session state: which targets have the toolkit grafted, by which sessions, under a
// root-only directory (/run/crashcart, a tmpfs: a reboot clears it together with the
// containers it describes). One JSON record per target, keyed by its mount namespace;
// every change happens under a lock that the kernel drops if crashcart dies: one record's,
// or the whole state's for a sweep of them all.
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tryLock } from '../native/index.js';
import { CrashcartError, errnoCode } from './errors.js';
import { isAlive } from './proc.js';
import { unsafeDirReason, unsafeReason } from './trust.js';

export const stateDir = () => process.env.CRASHCART_STATE_DIR ?? '/run/crashcart';

export interface ProcessRef {
  pid: number;
  start: number;
}

export interface Session {
  /** which of the sessions of one crashcart process (several targets run at once) this is */
  id?: string;
  /** crashcart's own process, then the process that waits for the command */
  processes: ProcessRef[];
}

export interface TargetRecord {
  key: string;
  target: ProcessRef & { runtime: string; id: string };
  image: string;
  loop: string;
  method: string;
  createdDir: boolean;
  /** grafted with --mount-only or --keep: stays until crashcart -u */
  pinned: boolean;
  sessions: Session[];
}

export const targetKey = (mntNs: number) => `mnt-${mntNs}`;

/** How long a waiter sleeps at most between two tries of a held lock. */
const LOCK_POLL_MAX_MS = 20;

/** A record's byte in the lock file (byte 0 is no record's; two keys may share one, and then wait for each other). */
export function lockOffset(key: string): number {
  let h = 0x811c9dc5; // FNV-1a
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return 1 + h;
}

export const sessionAlive = (s: Session) => s.processes.some((p) => isAlive(p.pid, p.start));

/** State directories found safe by this process: checked once, however many stores and targets. */
const trustedDirs = new Set<string>();

export class StateStore {
  constructor(readonly dir = stateDir()) {}

  private get targetsDir() {
    return join(this.dir, 'targets');
  }

  /**
   * The records say what to unmount where, as root: a directory that someone else could
   * write to is refused (the same rule as for images), before anything is made in it.
   */
  checkTrust(): void {
    if (trustedDirs.has(this.dir)) return;
    for (const dir of [this.dir, this.targetsDir]) {
      try {
        // Nothing is made below a directory others could write to.
        const parent = existingAncestor(dir);
        const unsafeParent = parent !== dir ? unsafeDirReason(parent) : undefined;
        if (unsafeParent) throw untrusted(dir, unsafeParent, parent);
        if (parent === dir && !statSync(dir).isDirectory()) throw stateError(`the state directory ${dir} is not a directory`);
        mkdirSync(dir, { recursive: true, mode: 0o700 });
      } catch (e) {
        if (e instanceof CrashcartError) throw e;
        throw stateError(`cannot create the state directory ${dir}`, e);
      }
      let reason: string | undefined;
      try {
        ({ reason } = unsafeReason(dir));
      } catch (e) {
        throw stateError(`cannot check the state directory ${dir}`, e);
      }
      if (reason) throw untrusted(dir, reason);
    }
    trustedDirs.add(this.dir);
  }

  /** Runs fn holding the whole state: no other holder, of any record, meanwhile. */
  withLock<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.holding({ start: 0, length: 0 }, fn);
  }

  /**
   * Runs fn holding one target's record (and no sweep of the whole state runs meanwhile):
   * sessions in different targets, of one crashcart or of several, go on at once.
   */
  withTargetLock<T>(key: string, fn: () => T | Promise<T>): Promise<T> {
    return this.holding({ start: lockOffset(key), length: 1 }, fn);
  }

  private async holding<T>(range: { start: number; length: number }, fn: () => T | Promise<T>): Promise<T> {
    this.checkTrust();
    let fd = -1;
    try {
      // a description of its own: holders in this process exclude each other too
      fd = openSync(join(this.dir, 'lock'), 'a', 0o600);
      for (let wait = 1; !tryLock({ fd, ...range }); wait = Math.min(wait * 2, LOCK_POLL_MAX_MS)) {
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    } catch (e) {
      if (fd >= 0) closeSync(fd);
      throw stateError(`cannot lock the state directory ${this.dir}`, e);
    }
    try {
      return await fn();
    } finally {
      closeSync(fd); // and with it the lock
    }
  }

  read(key: string): TargetRecord | undefined {
    try {
      return JSON.parse(readFileSync(join(this.targetsDir, `${key}.json`), 'utf8')) as TargetRecord;
    } catch {
      return undefined;
    }
  }

  write(rec: TargetRecord): void {
    const file = join(this.targetsDir, `${rec.key}.json`);
    try {
      writeFileSync(`${file}.tmp`, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    } catch (e) {
      rmSync(`${file}.tmp`, { force: true });
      throw stateError(`cannot write the session record ${file}`, e);
    }
  }

  /**
   * Removes the temporary files of writes that never finished (a crashcart killed between
   * writing a record's .tmp and renaming it). Only while holding the lock: then no write is
   * under way.
   */
  sweepPartialWrites(log: (line: string) => void, names = this.list()): void {
    for (const n of names.filter((n) => n.endsWith('.json.tmp'))) {
      rmSync(join(this.targetsDir, n), { force: true });
      log(`removed ${join(this.targetsDir, n)}, a session record whose write was cut short`);
    }
  }

  remove(key: string): void {
    rmSync(join(this.targetsDir, `${key}.json`), { force: true });
  }

  /** The names in the records' directory ([] before there is one). */
  list(): string[] {
    try {
      return readdirSync(this.targetsDir);
    } catch {
      return [];
    }
  }

  all(names = this.list()): TargetRecord[] {
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => this.read(n.slice(0, -5)))
      .filter((r): r is TargetRecord => r !== undefined);
  }
}

/** `fix` is the directory to make root's: the state directory, or the one it would be made in. */
function untrusted(dir: string, reason: string, fix = dir): CrashcartError {
  return new CrashcartError(`refusing the state directory ${dir}: ${reason}, so another user could change what crashcart unmounts`, {
    code: 'EUNSAFESTATE',
    hint: fix === dir
      ? `make it root's alone (chown root: ${dir} && chmod 700 ${dir}), or set CRASHCART_STATE_DIR`
      : `set CRASHCART_STATE_DIR to a directory below directories only root can write`,
  });
}

/** `path` if it exists, else its nearest ancestor that does. */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && p !== dirname(p)) p = dirname(p);
  return p;
}

function stateError(what: string, e?: unknown): CrashcartError {
  return new CrashcartError(e === undefined ? what : `${what}: ${errnoCode(e) ?? (e as Error).message}`, {
    code: 'ESTATEDIR',
    hint: 'CRASHCART_STATE_DIR (default /run/crashcart) must name a directory root can write',
    cause: e,
  });
}
