// A process private to the tests that runs in the background (dockerd, containerd, an
// lxc-start monitor, systemd-nspawn): spawned with its output in a log file, waited for until
// it is ready or dies, stopped by its PID; and the removal of what such a daemon leaves in
// its directory.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import { isRunning, readMountInfo } from '../../src/core/proc.js';
import { processesMentioning, waitGone } from './procs.js';

export interface DaemonSpec<T> {
  /** its name in messages */
  name: string;
  command: string;
  args: string[];
  /** where its stdout and stderr go (appended) */
  log: string;
  /** what it is waited for, as in "timed out after 30 s waiting until <its socket answers>" */
  readyWhen: string;
  /** a truthy value once it is ready (its socket answers, its container runs), else falsy */
  ready(pid: number): T | undefined | false | 0 | Promise<T | undefined | false | 0>;
  /** milliseconds to become ready */
  startMs: number;
  /** milliseconds between two readiness checks (default 50) */
  every?: number;
  /** milliseconds from SIGTERM to SIGKILL in stop() */
  stopMs: number;
  /** a session of its own, away from the test's terminal and process group */
  detached?: boolean;
}

export interface Daemon {
  name: string;
  pid: number;
  log: string;
  /** it has exited and been reaped */
  readonly exited: boolean;
  /**
   * Sends `signal` (default SIGTERM; null when it was asked to stop some other way), then
   * SIGKILL if it is still there after `ms` (default: the spec's stopMs). Resolves once it
   * has exited, saying whether SIGKILL was needed; rejects if it survives SIGKILL.
   */
  stop(opts?: { signal?: NodeJS.Signals | null; ms?: number }): Promise<{ killed: boolean }>;
  /** the last lines of its log */
  logTail(lines?: number): Promise<string>;
}

const KILL_WAIT_MS = 5_000;

/** Daemons not yet reaped: if the test process ends without stop(), none is left behind. */
const live = new Set<number>();
process.once('exit', () => {
  for (const pid of live) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch { /* gone */ }
  }
});

/** Starts the daemon and waits until it is ready; on failure it is stopped again and the error holds its log's tail. */
export async function startDaemon<T>(spec: DaemonSpec<T>): Promise<{ daemon: Daemon; ready: T }> {
  const fd = openSync(spec.log, 'a');
  let child: ChildProcess;
  try {
    child = spawn(spec.command, spec.args, { stdio: ['ignore', fd, fd], detached: spec.detached ?? false });
  } finally {
    closeSync(fd);
  }
  let status = '';
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      status = signal ? `killed by ${signal}` : `exit ${code}`;
      resolve();
    });
    child.once('error', (err) => {
      status = err.message;
      resolve();
    });
  });
  // the test's event loop does not wait for it; stop() does
  child.unref();
  const pid = child.pid ?? 0;
  if (pid > 0) {
    live.add(pid);
    void exited.then(() => live.delete(pid));
  }

  const logTail = async (lines = 30) => (await readFile(spec.log, 'utf8').catch(() => '')).trim().split('\n').slice(-lines).join('\n');
  let stopping: Promise<{ killed: boolean }> | undefined;
  // 'exit' comes once Node has reaped it: then its pid is gone
  const stop = (opts: { signal?: NodeJS.Signals | null; ms?: number } = {}) => (stopping ??= (async () => {
    if (status) return { killed: false };
    if (opts.signal !== null) child.kill(opts.signal ?? 'SIGTERM');
    if (await settles(exited, opts.ms ?? spec.stopMs)) return { killed: false };
    child.kill('SIGKILL');
    if (await settles(exited, KILL_WAIT_MS)) return { killed: true };
    throw new Error(`${spec.name} ${pid} survived SIGKILL`);
  })());
  const daemon: Daemon = {
    name: spec.name,
    pid,
    log: spec.log,
    get exited() {
      return status !== '';
    },
    logTail,
    stop,
  };

  let why: string;
  try {
    const deadline = Date.now() + spec.startMs;
    for (;;) {
      if (status) {
        why = `${spec.name} exited (${status}) while waiting until ${spec.readyWhen}`;
        break;
      }
      const ready = await spec.ready(pid);
      if (ready) return { daemon, ready };
      if (Date.now() > deadline) {
        why = `${spec.name}: timed out after ${spec.startMs / 1000} s waiting until ${spec.readyWhen}`;
        break;
      }
      await delay(spec.every ?? 50);
    }
  } catch (err) {
    why = `${spec.name}: ${(err as Error).message}`;
  }
  const tail = await logTail();
  await stop().catch(() => {});
  throw new Error(`${why} (log ${spec.log}):\n${tail}`);
}

/** Whether `p` settles within `ms`; the timer does not outlive the answer. */
async function settles(p: Promise<void>, ms: number): Promise<boolean> {
  const ac = new AbortController();
  const timeout = delay(ms, false, { signal: ac.signal }).catch(() => false);
  const done = await Promise.race([p.then(() => true), timeout]);
  ac.abort();
  return done;
}

/** Runs `file` with `args` after `prefix` (and `env`), never throwing for a non-zero exit. */
export function cliRunner(file: string, prefix: string[] = [], env?: Record<string, string>) {
  return async (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    const r = await execa(file, [...prefix, ...args], { ...(env ? { env } : {}), reject: false, stdin: 'ignore', timeout: 60_000 });
    return { code: r.exitCode ?? -1, stdout: r.stdout, stderr: r.stderr };
  };
}

/**
 * A teardown that runs once however often it is called (concurrent calls share it); a
 * failed one may be retried.
 */
export function runOnce<T>(fn: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | undefined;
  return () => (running ??= fn().catch((err: unknown) => {
    running = undefined;
    throw err;
  }));
}

/** Mount points at or under `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const points = readMountInfo('self').map((m) => m.mountPoint).filter((p) => p === dir || p.startsWith(`${dir}/`));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export interface Leftovers {
  /** milliseconds the processes that name the directory get to end by themselves (default 0) */
  graceMs?: number;
  /** processes that outlive the daemon by design (containerd's shims): ended, but not a problem */
  processesExpected?: boolean;
  /** mounts that stay by design (an overlay graph bind-mounted on itself): unmounted, but not a problem */
  mountsExpected?: boolean;
}

/** Ends (SIGKILL, after the grace) every process whose command line names `needle`; returns what was wrong. */
export async function endProcesses(needle: string, opts: Leftovers = {}): Promise<string[]> {
  const problems: string[] = [];
  const deadline = Date.now() + (opts.graceMs ?? 0);
  for (const p of await processesMentioning(needle)) {
    if (await waitGone(p.pid, Math.max(0, deadline - Date.now()))) continue;
    if (!opts.processesExpected) problems.push(`process left: ${p.pid} ${p.cmd}`);
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch { /* gone */ }
    if (!(await waitGone(p.pid, KILL_WAIT_MS))) problems.push(`process ${p.pid} survived SIGKILL: ${p.cmd}`);
  }
  return problems;
}

/**
 * Unmounts (lazily) what is mounted at or under `dir` and removes it, but never recurses into
 * a mount that stayed (that would delete what is mounted there); returns what was wrong.
 */
export async function removeDir(dir: string, opts: Leftovers = {}): Promise<string[]> {
  const problems: string[] = [];
  for (const m of await mountsUnder(dir)) {
    if (!opts.mountsExpected) problems.push(`mount left: ${m}`);
    await execa('umount', ['-l', m], { reject: false, stdin: 'ignore' });
  }
  const stayed = await mountsUnder(dir);
  problems.push(...stayed.map((m) => `mount not removed: ${m}`));
  if (stayed.length === 0) await rm(dir, { recursive: true, force: true });
  return problems;
}

/** What a daemon leaves in its directory, taken away: first the processes, then the mounts and the directory. */
export async function removeDaemonDir(dir: string, opts: Leftovers = {}): Promise<string[]> {
  return [...(await endProcesses(dir, opts)), ...(await removeDir(dir, opts))];
}

/**
 * Stops a private daemon and asserts that it left nothing: none of the processes that named
 * its directory (`what`: the daemon, its helpers) still runs, none names it now, and nothing
 * is mounted under it.
 */
export async function stopAndCheck(d: { dir: string; stop(): Promise<void> }, what: string): Promise<void> {
  const ours = await processesMentioning(d.dir);
  await d.stop();
  assert.deepEqual(ours.filter((p) => isRunning(p.pid)), [], `${what} still running`);
  assert.deepEqual(await processesMentioning(d.dir), []);
  assert.deepEqual(await mountsUnder(d.dir), []);
}
