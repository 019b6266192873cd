// Session state: which targets have the toolkit grafted, by which sessions, under a
// root-only directory (/run/crashcart, a tmpfs: a reboot clears it together with the
// containers it describes). One JSON record per target, keyed by its mount namespace;
// every change happens under an flock that the kernel drops if crashcart dies.
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lock, unlock } from '../native/index.js';
import { CrashcartError } from './errors.js';
import { isAlive } from './proc.js';
import { unsafeReason } from './trust.js';

export const stateDir = () => process.env.CRASHCART_STATE_DIR ?? '/run/crashcart';

export interface ProcessRef {
  pid: number;
  start: number;
}

export interface Session {
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

export const sessionAlive = (s: Session) => s.processes.some((p) => isAlive(p.pid, p.start));

export class StateStore {
  private trusted = false;

  constructor(readonly dir = stateDir()) {}

  private get targetsDir() {
    return join(this.dir, 'targets');
  }

  /**
   * The records say what to unmount where, as root: a directory that someone else could
   * write to is refused (the same rule as for images).
   */
  private checkTrust(): void {
    if (this.trusted) return;
    mkdirSync(this.targetsDir, { recursive: true, mode: 0o700 });
    for (const dir of [this.dir, this.targetsDir]) {
      const { reason } = unsafeReason(dir);
      if (reason) {
        throw new CrashcartError(`refusing the state directory ${dir}: ${reason}, so another user could change what crashcart unmounts`, {
          hint: `make it root's alone (chown root: ${dir} && chmod 700 ${dir}), or set CRASHCART_STATE_DIR`,
        });
      }
    }
    this.trusted = true;
  }

  /** Runs fn holding the state lock. */
  withLock<T>(fn: () => T): T {
    this.checkTrust();
    const fd = openSync(join(this.dir, 'lock'), 'a', 0o600);
    try {
      lock(fd, true);
      return fn();
    } finally {
      try {
        unlock(fd);
      } finally {
        closeSync(fd);
      }
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
    writeFileSync(`${file}.tmp`, JSON.stringify(rec, null, 2) + '\n', { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  remove(key: string): void {
    rmSync(join(this.targetsDir, `${key}.json`), { force: true });
  }

  all(): TargetRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.targetsDir);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => this.read(n.slice(0, -5)))
      .filter((r): r is TargetRecord => r !== undefined);
  }
}
