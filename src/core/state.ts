// Session state: which targets have the toolkit grafted, by which sessions, under a
// root-only directory (/run/crashcart, a tmpfs: a reboot clears it together with the
// containers it describes). One JSON record per target, keyed by its mount namespace;
// every change happens under a lock that the kernel drops if crashcart dies: one record's,
// or the whole state's for a sweep of them all.
import { closeSync, constants, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { exchangePaths, tryLock } from '../native/index.js';
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

/** A record's spare file: the next write goes there, then trades names with the record. */
const SPARE = '.spare';

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

  /**
   * Replaces a record at once: the new text goes into the record's spare file, which then
   * trades names with the record (RENAME_EXCHANGE), and the old record is the next write's
   * spare. Nothing is freed, so nothing waits for a filesystem that discards freed blocks
   * as it frees them (renaming over the old record costs an attach milliseconds there).
   * The spare is overwritten in place, padded with spaces to its length (JSON allows
   * them), never truncated. The first write of a record, and a filesystem without
   * RENAME_EXCHANGE, rename the spare over it instead.
   */
  write(rec: TargetRecord): void {
    const file = join(this.targetsDir, `${rec.key}.json`);
    const spare = `${file}${SPARE}`;
    let fd = -1;
    try {
      // made if missing, never truncated
      fd = openSync(spare, constants.O_WRONLY | constants.O_CREAT, 0o600);
      const text = Buffer.from(JSON.stringify(rec, null, 2) + '\n');
      const size = fstatSync(fd).size;
      const bytes = text.length >= size ? text : Buffer.concat([text, Buffer.alloc(size - text.length, ' ')]);
      for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done, done);
      closeSync(fd);
      fd = -1;
      try {
        exchangePaths(spare, file);
      } catch (e) {
        // no record yet (ENOENT), or no RENAME_EXCHANGE here (EINVAL): a plain rename
        if (errnoCode(e) !== 'ENOENT' && errnoCode(e) !== 'EINVAL') throw e;
        renameSync(spare, file);
      }
    } catch (e) {
      if (fd >= 0) closeSync(fd);
      rmSync(spare, { force: true });
      throw stateError(`cannot write the session record ${file}`, e);
    }
  }

  /**
   * Removes what writes that never finished left: a record's .tmp (written by older
   * versions, which renamed it over the record) and a spare whose record was never made (a
   * crashcart killed during a record's first write). Only while holding the lock: then no
   * write is under way.
   */
  sweepPartialWrites(log: (line: string) => void, names = this.list()): void {
    const orphanSpare = (n: string) => n.endsWith(`.json${SPARE}`) && !names.includes(n.slice(0, -SPARE.length));
    for (const n of names.filter((n) => n.endsWith('.json.tmp') || orphanSpare(n))) {
      rmSync(join(this.targetsDir, n), { force: true });
      log(`removed ${join(this.targetsDir, n)}, a session record whose write was cut short`);
    }
  }

  remove(key: string): void {
    const file = join(this.targetsDir, `${key}.json`);
    rmSync(file, { force: true });
    rmSync(`${file}${SPARE}`, { force: true });
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
