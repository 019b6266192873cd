// A crashcart session: graft the toolkit into a target (or join an existing graft), run a
// command there, and take the toolkit away again when the last session ends.
import { spawn as spawnChild } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { CrashcartError, EXIT_CANNOT_INVOKE, EXIT_CRASHCART, EXIT_NOT_FOUND } from './errors.js';
import { findGraft, graftToolkit, ungraftToolkit, type MethodChoice } from './graft.js';
import { acquireLoop, loopBacks, loopIndexOf, releaseLoop, type HeldLoop } from './loop.js';
import { commandEnv, defaultCommand, execEnv, parseUser, searchCandidates } from './command.js';
import { isAlive, readEnviron, startTime } from './proc.js';
import { trapSignals, type SignalTrap } from './signals.js';
import { sessionAlive, StateStore, targetKey, type Session, type TargetRecord } from './state.js';
import { inspectTarget, TargetHandles, type TargetFacts } from './target.js';
import type { ExecCommand, ExecRequest, Target } from '../runtimes/index.js';
import { isNativeError, spawn, type ExitStatus } from '../native/index.js';

export type Log = (line: string) => void;

export interface GraftOptions {
  image: string;
  method: MethodChoice;
  allowHost: boolean;
  /** -v lines */
  log: Log;
  /** lines shown even without -v */
  warn: Log;
}

const describe = (t: Target) => (t.runtime === 'pid' ? `process ${t.pid}` : `${t.runtime} container ${t.id}`);

function self(): { pid: number; start: number } {
  return { pid: process.pid, start: startTime('self')! };
}

function newRecord(key: string, target: Target, facts: TargetFacts): TargetRecord {
  return {
    key,
    target: { pid: facts.pid, start: facts.start, runtime: target.runtime, id: target.id },
    image: '',
    loop: '',
    method: '',
    createdDir: false,
    pinned: false,
    sessions: [],
  };
}

/**
 * Makes sure the image is grafted in the target and records `session` (if any) against it.
 * Runs under the state lock. Returns the record.
 */
function ensureGrafted(store: StateStore, target: Target, facts: TargetFacts, opts: GraftOptions, session?: Session, pin = false): TargetRecord {
  const key = targetKey(facts.mntNs);
  const image = statSync(opts.image);
  let rec = store.read(key);
  if (rec && !isAlive(rec.target.pid, rec.target.start)) rec = undefined; // a namespace inode reused
  rec = rec ?? newRecord(key, target, facts);
  rec.sessions = rec.sessions.filter(sessionAlive);

  const existing = findGraft(facts.pid);
  if (existing) {
    const index = loopIndexOf(existing.major, existing.minor);
    if (index === undefined || !loopBacks(index, { dev: image.dev, ino: image.ino })) {
      const what = index === undefined ? existing.source : `/dev/loop${index}`;
      throw new CrashcartError(`${describe(target)} already has something else mounted at /dev/crashcart (${what})`, {
        hint: 'unmount it with crashcart -u, or use the image that is grafted there with -i',
      });
    }
    opts.log(`reusing the toolkit already grafted from /dev/loop${index}`);
    if (!rec.loop) Object.assign(rec, { loop: `/dev/loop${index}`, method: 'unknown', createdDir: true, image: opts.image });
  } else {
    // Recorded before the mount exists: if crashcart is killed in between, the next run
    // finds a dead session here and takes away whatever it left.
    store.write({ ...rec, sessions: [...rec.sessions, session ?? { processes: [self()] }] });
    let loop: HeldLoop | undefined;
    let handles: TargetHandles | undefined;
    try {
      loop = acquireLoop(opts.image);
      opts.log(`${loop.attached ? 'attached' : 'sharing'} ${loop.path} for ${opts.image}`);
      handles = TargetHandles.forGraft(facts);
      const outcome = graftToolkit(handles, loop, opts.method);
      if (outcome.fallbackReason) opts.log(`mknod path failed (${outcome.fallbackReason}); used the mount API`);
      if (outcome.remountedParent) opts.log("the container's /dev was read-only: made writable for a moment, then restored");
      opts.log(`grafted at /dev/crashcart with ${outcome.method}`);
      Object.assign(rec, { loop: loop.path, method: outcome.method, createdDir: outcome.createdDir, image: opts.image, pinned: false });
    } catch (e) {
      if (rec.sessions.length > 0 || rec.pinned) store.write(rec);
      else store.remove(key);
      throw e;
    } finally {
      handles?.close();
      if (loop) releaseLoop(loop); // the mount holds the device now (or, on failure, autoclear frees it)
    }
  }
  if (session) rec.sessions.push(session);
  if (pin) rec.pinned = true;
  store.write(rec);
  return rec;
}

/** Takes the toolkit out of a target if nothing needs it any more. Runs under the lock. */
function releaseIfUnused(store: StateStore, rec: TargetRecord, log: Log): void {
  rec.sessions = rec.sessions.filter(sessionAlive);
  if (rec.pinned || rec.sessions.length > 0) {
    store.write(rec);
    if (rec.sessions.length > 0) log(`${rec.sessions.length} other session(s) still use the toolkit: leaving it`);
    return;
  }
  if (!isAlive(rec.target.pid, rec.target.start)) {
    store.remove(rec.key); // the container is gone, and its mounts with it
    return;
  }
  const facts = inspectTarget(rec.target.pid, { allowHost: true });
  if (findGraft(facts.pid)) {
    const handles = TargetHandles.forGraft(facts);
    try {
      const { lazy } = ungraftToolkit(handles, { removeDir: rec.createdDir });
      log(lazy ? 'toolkit detached (still in use by a leftover process; freed when it exits)' : 'toolkit unmounted');
    } finally {
      handles.close();
    }
  }
  store.remove(rec.key);
}

/** Forgets dead sessions everywhere, and ungrafts targets that crashed sessions left. */
export function pruneStale(store: StateStore, log: Log): void {
  for (const rec of store.all()) {
    const before = rec.sessions.length;
    const live = rec.sessions.filter(sessionAlive);
    if (live.length === before && (live.length > 0 || rec.pinned)) continue;
    try {
      releaseIfUnused(store, rec, log);
    } catch (e) {
      log(`could not clean up after a stale session in ${rec.target.runtime} ${rec.target.id}: ${(e as Error).message}`);
    }
  }
}

export interface RunOptions extends GraftOptions {
  command: string[];
  interactive: boolean;
  keep: boolean;
  user?: string;
  workdir?: string;
  env: string[];
  targetEnv: boolean;
  joinCgroup: boolean;
  /** --exec: run the command through the runtime's own exec instead of entering ourselves */
  runtimeExec?: (req: ExecRequest) => ExecCommand;
}

/** Graft, run the command, clean up; resolves to the exit code crashcart should exit with. */
export async function runSession(target: Target, opts: RunOptions): Promise<number> {
  const facts = inspectTarget(target.pid, { allowHost: opts.allowHost, what: describe(target) });
  const store = new StateStore();
  const session: Session = { processes: [self()] };
  const trap = trapSignals();
  let rec: TargetRecord | undefined;
  try {
    rec = store.withLock(() => {
      pruneStale(store, opts.log);
      return ensureGrafted(store, target, facts, opts, session, opts.keep);
    });
    await new Promise(setImmediate); // let a signal that came during the graft be seen
    if (trap.received) {
      throw new CrashcartError(`interrupted by ${trap.received}`, { exitCode: trap.exitCode() });
    }
    const key = rec.key;
    const run = opts.runtimeExec ? runThroughRuntime : runCommand;
    return await run(facts, opts, trap, (pid) => {
      // Remember the waiting process too: the session lives while either of us does.
      const start = startTime(pid);
      if (start === undefined) return;
      store.withLock(() => {
        const r = store.read(key);
        const mine = r?.sessions.find((s) => s.processes[0].pid === process.pid);
        if (r && mine) {
          mine.processes.push({ pid, start });
          store.write(r);
        }
      });
    });
  } finally {
    if (rec) {
      const key = rec.key;
      try {
        store.withLock(() => {
          const r = store.read(key);
          if (!r) return;
          r.sessions = r.sessions.filter((s) => s.processes[0].pid !== process.pid);
          releaseIfUnused(store, r, opts.log);
        });
      } catch (e) {
        // The command's own exit code still stands (scripts rely on it); the next run
        // retries the cleanup, as for a crashed session.
        opts.warn(`the toolkit could not be removed from the container: ${(e as Error).message}`);
      }
    }
    trap.release();
  }
}

/** --mount-only: graft and pin; the toolkit stays until crashcart -u. */
export function mountOnly(target: Target, opts: GraftOptions): TargetRecord {
  const facts = inspectTarget(target.pid, { allowHost: opts.allowHost, what: describe(target) });
  const store = new StateStore();
  const trap = trapSignals(); // the graft is finished and recorded before a signal is obeyed
  try {
    return store.withLock(() => {
      pruneStale(store, opts.log);
      return ensureGrafted(store, target, facts, opts, undefined, true);
    });
  } finally {
    trap.release();
  }
}

/** --unmount: unpin, and ungraft now unless live sessions still use it. */
export function unmount(target: Target, opts: { allowHost: boolean; log: Log }): { removed: boolean; sessions: number } {
  const facts = inspectTarget(target.pid, { allowHost: opts.allowHost, what: describe(target) });
  const store = new StateStore();
  return store.withLock(() => {
    pruneStale(store, opts.log);
    const key = targetKey(facts.mntNs);
    // Without a record (grafted by an older crashcart, or the state was lost) the directory
    // is taken to be crashcart's own.
    const rec = store.read(key) ?? { ...newRecord(key, target, facts), createdDir: true };
    rec.pinned = false;
    const live = rec.sessions.filter(sessionAlive).length;
    if (!findGraft(facts.pid)) {
      store.remove(key);
      return { removed: false, sessions: 0 };
    }
    releaseIfUnused(store, rec, opts.log);
    return { removed: live === 0, sessions: live };
  });
}

async function runCommand(facts: TargetFacts, opts: RunOptions, trap: SignalTrap, started: (pid: number) => void): Promise<number> {
  const rootPath = `/proc/${facts.pid}/root`;
  const readTargetFile = (p: string) => {
    try {
      return readFileSync(`${rootPath}${p}`, 'utf8');
    } catch {
      return '';
    }
  };
  const user = opts.user ? parseUser(opts.user, readTargetFile('/etc/passwd'), readTargetFile('/etc/group')) : { uid: 0, gid: 0 };
  const argv = opts.command.length > 0 ? opts.command : defaultCommand(opts.interactive);
  const env = commandEnv({
    targetEnv: opts.targetEnv ? readEnviron(facts.pid) : undefined,
    term: process.env.TERM,
    extra: opts.env,
  });
  const handles = TargetHandles.forSpawn(facts, { joinCgroup: opts.joinCgroup, useCwd: !opts.workdir });
  let handle;
  try {
    handle = spawn({
      namespaces: handles.namespaceList(),
      cgroupProcsFds: handles.cgroupProcs,
      rootFd: handles.root,
      cwdFd: handles.cwd,
      workdir: opts.workdir ?? '/',
      uid: user.uid,
      gid: user.gid,
      groups: [],
      candidates: searchCandidates(argv[0], env),
      argv,
      env,
    });
  } finally {
    handles.close();
  }
  opts.log(`started ${argv[0]} (waiting process ${handle.pid})`);
  started(handle.pid);
  trap.forwardTo(handle.pid);
  try {
    return exitCodeOf(await handle.exited);
  } catch (e) {
    throw spawnError(e, argv[0], searchDirs(argv[0], env));
  }
}

/**
 * --exec: the runtime's exec runs the command, so it gets exactly the container's user,
 * capabilities, seccomp and LSM profile. Its exit code is passed on as it is (docker, runc
 * and friends already give the command's own, 126/127, or 128+N).
 */
async function runThroughRuntime(facts: TargetFacts, opts: RunOptions, trap: SignalTrap, started: (pid: number) => void): Promise<number> {
  const env = execEnv({
    targetEnv: readEnviron(facts.pid),
    term: opts.interactive ? process.env.TERM : undefined,
    extra: opts.env,
  });
  const argv = opts.command.length > 0 ? opts.command : defaultCommand(opts.interactive);
  // Runtimes disagree on the exit code for a missing program (runc says 255): look first,
  // through the target's root (the toolkit is mounted there now), and answer 127 ourselves.
  const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const candidates = searchCandidates(argv[0], envList);
  if (candidates.every((c) => c.startsWith('/') && !existsSync(`/proc/${facts.pid}/root${c}`))) {
    throw notFound(argv[0], searchDirs(argv[0], envList));
  }
  const cmd = opts.runtimeExec!({ argv, tty: opts.interactive, env, user: opts.user, workdir: opts.workdir });
  opts.log(`running ${[cmd.file, ...cmd.args].join(' ')}`);
  const child = spawnChild(cmd.file, cmd.args, { stdio: 'inherit', env: { ...process.env, ...cmd.env } });
  const status = new Promise<number>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      reject(new CrashcartError(`cannot run ${cmd.file} for --exec: ${e.code ?? e.message}`, {
        hint: e.code === 'ENOENT' ? `install ${cmd.file}'s command-line tool, or attach without --exec` : 'run with -v for details',
        cause: e,
      }));
    });
    child.once('exit', (code, signal) => resolve(signal ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? EXIT_CRASHCART)));
  });
  if (child.pid !== undefined) {
    started(child.pid);
    trap.forwardTo(child.pid);
  }
  return status;
}

export function exitCodeOf(status: ExitStatus): number {
  if (status.signal !== null) return 128 + status.signal;
  return status.code ?? EXIT_CRASHCART;
}

/** The directories a PATH search looked in, for the "not found" message. */
function searchDirs(argv0: string, env: string[]): string {
  return searchCandidates(argv0, env)
    .map((c) => c.slice(0, c.lastIndexOf('/')) || '/')
    .join(':');
}

function notFound(argv0: string, searched: string, cause?: unknown): CrashcartError {
  const where = argv0.includes('/') ? `execve '${argv0}': ENOENT` : `searched ${searched}`;
  return new CrashcartError(`command not found in the container: ${argv0} (${where})`, {
    exitCode: EXIT_NOT_FOUND,
    hint: 'the toolkit is at /dev/crashcart/bin; give a full path or a tool that exists',
    cause,
  });
}

function spawnError(e: unknown, argv0: string, searched: string): unknown {
  if (!isNativeError(e)) return e;
  const step = (e as { step?: string }).step;
  if (step === 'execve') {
    if (e.code === 'ENOENT') return notFound(argv0, searched, e);
    return new CrashcartError(`cannot run ${argv0}: ${e.message}`, {
      exitCode: EXIT_CANNOT_INVOKE,
      hint: 'is it an executable for this machine?',
      cause: e,
    });
  }
  const hints: Record<string, string> = {
    chdir: 'check --workdir: the directory must exist in the container',
    setgroups: "the container's user namespace does not allow setgroups",
  };
  return new CrashcartError(`cannot start the command in the container: ${e.message}`, {
    hint: hints[step ?? ''] ?? 'run with -v for details',
    cause: e,
  });
}
