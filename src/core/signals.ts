// crashcart must never die half-way through a graft: a mount without a session record
// would be left behind. While it works, termination signals are noted, not obeyed; the
// caller looks at them when it is safe. While a command runs they are passed on instead.
import { CrashcartError } from './errors.js';
import { signalNumber } from '../native/index.js';

const TERMINATING: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/** Passed on to the command by the process that waits for it, whoever sent them. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGCONT'];
/** Of those, the ones a terminal sends to its foreground group: the command already got
 *  them, so they are passed on only when a process sent them. */
export const TERMINAL_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGQUIT'];

export interface SignalTrap {
  /** the first termination signal received, if any */
  readonly received: NodeJS.Signals | undefined;
  /** 128 + its number, the exit code to leave with */
  exitCode(): number;
  /** throws "interrupted by SIG…" (exit 128+N) if a termination signal came */
  throwIfReceived(): void;
  /** from now on pass SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 to `pid`; SIGINT and SIGQUIT come
   *  from the terminal to the command directly, so crashcart only outlives them */
  forwardTo(pid: number): void;
  release(): void;
}

/**
 * Resolves once the event loop has run the handlers of every signal that has already
 * arrived. libuv hands a signal to JavaScript in the poll phase; a signal that came during a
 * long synchronous step (the graft) is polled in the *next* loop iteration, after the
 * current iteration's setImmediate callbacks: so wait for an immediate scheduled from one.
 */
export function signalsSeen(): Promise<void> {
  return new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
}

/**
 * The process's signal handlers, shared by every session it runs (several targets at once):
 * each session gets a trap of its own from it. A termination signal interrupts every session
 * whose command has not started yet; SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 are passed on to
 * the waiting process of every session whose command runs.
 */
export interface SignalHub {
  /** the first termination signal received, if any */
  readonly received: NodeJS.Signals | undefined;
  /** a trap for one session */
  session(): SignalTrap;
  /** the handlers go */
  release(): void;
}

export function signalHub(): SignalHub {
  let received: NodeJS.Signals | undefined;
  const targets = new Set<number>();
  const handlers = new Map<NodeJS.Signals, () => void>();
  const forwarded = new Set<NodeJS.Signals>(['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2']);
  for (const sig of [...TERMINATING, 'SIGUSR1', 'SIGUSR2'] as NodeJS.Signals[]) {
    const h = () => {
      if (forwarded.has(sig)) {
        for (const pid of targets) {
          try {
            process.kill(pid, sig);
          } catch {
            // it has just ended
          }
        }
      }
      if (TERMINATING.includes(sig)) received ??= sig;
    };
    handlers.set(sig, h);
    process.on(sig, h);
  }
  const interrupted = () => {
    if (received) throw new CrashcartError(`interrupted by ${received} before the command started`, { exitCode: 128 + signalNumber(received) });
  };
  return {
    get received() {
      return received;
    },
    session() {
      let target: number | undefined;
      return {
        get received() {
          return received;
        },
        exitCode: () => 128 + (received ? signalNumber(received) : 0),
        throwIfReceived: interrupted,
        forwardTo(pid: number) {
          target = pid;
          targets.add(pid);
        },
        release() {
          if (target !== undefined) targets.delete(target);
        },
      };
    },
    release() {
      for (const [sig, h] of handlers) process.off(sig, h);
      handlers.clear();
      targets.clear();
    },
  };
}

/** The trap of a session that runs alone: the hub is its own. */
export function trapSignals(): SignalTrap {
  const hub = signalHub();
  const trap = hub.session();
  return {
    get received() {
      return trap.received;
    },
    exitCode: trap.exitCode,
    throwIfReceived: trap.throwIfReceived,
    forwardTo: trap.forwardTo,
    release() {
      trap.release();
      hub.release();
    },
  };
}

/**
 * Runs a long step that cleans up after itself (in its own `finally`): SIGINT, SIGTERM and
 * SIGHUP abort `interrupted` instead of killing crashcart before the cleanup could run.
 */
export async function interruptible<T>(fn: (interrupted: AbortSignal) => Promise<T>): Promise<T> {
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => abort.abort(`interrupted by ${sig}`);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, onSignal);
  try {
    return await fn(abort.signal);
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
}
