// Deadlines for everything a lookup waits on: a daemon's socket, a runtime's CLI. A daemon
// that hangs accepts the connection and never answers; when the deadline passes, or when
// the answer is no longer needed, whatever the lookup opened (sockets, HTTP/2 sessions,
// child processes) is destroyed at once, so nothing keeps crashcart's event loop alive.
import { CrashcartError } from '../core/errors.js';

/** How long any one lookup (a daemon's list, a CLI's answer) may take. */
export const LOOKUP_DEADLINE_MS = 2_000;

/** The abort reason of a lookup whose deadline passed. */
export class DeadlinePassed extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${seconds(ms)}`);
    this.name = 'DeadlinePassed';
  }
}

/** 2000 -> '2 s', 60 -> '0.06 s'. */
export const seconds = (ms: number): string => `${Math.round(ms) / 1_000} s`;

/** Runs `cleanup` once when `signal` aborts (at once if it has); returns how to stop listening. */
export function onAbort(signal: AbortSignal | undefined, cleanup: () => void): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    cleanup();
    return () => {};
  }
  signal.addEventListener('abort', cleanup, { once: true });
  return () => signal.removeEventListener('abort', cleanup);
}

/**
 * `work` with a signal that aborts after `ms` (reason DeadlinePassed) or when `parent`
 * does; the timer goes when the work settles.
 */
export async function withDeadline<T>(ms: number, parent: AbortSignal | undefined, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const c = new AbortController();
  const timer = setTimeout(() => c.abort(new DeadlinePassed(ms)), ms);
  const stop = onAbort(parent, () => c.abort(parent!.reason));
  try {
    return await work(c.signal);
  } finally {
    clearTimeout(timer);
    stop();
  }
}

/**
 * What a lookup ended by `signal` rejects with: for a deadline, a CrashcartError saying
 * that `what` did not answer in time; otherwise (the answer is not needed any more) the
 * signal's reason.
 */
export function abortError(signal: AbortSignal, what: string, hint: string): Error {
  const why = signal.reason as unknown;
  if (why instanceof DeadlinePassed) return new CrashcartError(`${what} did not answer within ${seconds(why.ms)}`, { hint, code: 'ETIMEDOUT' });
  return why instanceof Error ? why : new Error('lookup cancelled');
}

export interface CommandResult {
  /** exit code, or null when a signal ended it */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `file args` with stdin closed and collects its output. When `signal` aborts, the
 * process is SIGKILLed, its pipes are closed (a grandchild may hold them) and it is
 * unref'd, and the promise rejects with abortError(). A command that cannot be started
 * rejects with the spawn error (code ENOENT when it is not installed).
 */
export async function runCommand(file: string, args: string[], o: { signal: AbortSignal; what: string; hint: string; maxBuffer?: number }): Promise<CommandResult> {
  // loaded here: child_process (with net and streams) costs every attach that runs no CLI
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    if (o.signal.aborted) return reject(abortError(o.signal, o.what, o.hint));
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (e: Error | undefined, r?: CommandResult) => {
      if (settled) return;
      settled = true;
      stop();
      if (e) reject(e);
      else resolve(r!);
    };
    const kill = (e: Error) => {
      child.kill('SIGKILL');
      child.stdout.destroy();
      child.stderr.destroy();
      child.unref();
      finish(e);
    };
    const stop = onAbort(o.signal, () => kill(abortError(o.signal, o.what, o.hint)));
    const collect = (into: Buffer[]) => (b: Buffer) => {
      size += b.length;
      if (size > (o.maxBuffer ?? 64 << 20)) return kill(new CrashcartError(`${o.what} printed more than ${o.maxBuffer ?? 64 << 20} bytes`, { hint: o.hint }));
      into.push(b);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    child.once('error', (e) => finish(e));
    child.once('close', (code) => finish(undefined, { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}
