// A crashcart session: join (or make) the graft in a target, run a command there, and leave
// the graft to the record's rules when the command ends (see grafts.ts).
import { closeSync, openSync, readFileSync } from 'node:fs';
import { writeAudit, type AuditEntry } from './audit.js';
import { targetCaps } from './caps.js';
import { commandEnv, defaultCommand, execEnv, parseUser, searchCandidates } from './command.js';
import { CrashcartError, EXIT_CANNOT_INVOKE, EXIT_CRASHCART, EXIT_NOT_FOUND } from './errors.js';
import { faultPoint, injectedFault, nativeFault } from './fault.js';
import { describeTarget, ensureGrafted, newSessionId, pruneStale, releaseIfUnused, self, type GraftOptions } from './grafts.js';
import { existsInRoot, readBytesInRoot, readInRoot, statInRoot } from './inroot.js';
import { checkLimits, describeLimit } from './limits.js';
import { isFrozen, mapToHost, readEnviron, readIdMap, startTime } from './proc.js';
import { FORWARDED_SIGNALS, signalsSeen, TERMINAL_SIGNALS, trapSignals, type SignalTrap } from './signals.js';
import { StateStore, targetKey, type Session } from './state.js';
import { now, type Stopwatch } from './timing.js';
import { TargetHandles, type ExecCommand, type ExecRequest, type Target, type TargetFacts } from './target.js';
import { readElf } from '../image/elf.js';
import { isNativeError, signalNumber, spawn, type ChildFailure, type ExitStatus } from '../native/index.js';

export type { GraftOptions, Log } from './grafts.js';

export interface RunOptions extends GraftOptions {
  command: string[];
  interactive: boolean;
  keep: boolean;
  user?: string;
  workdir?: string;
  env: string[];
  targetEnv: boolean;
  joinCgroup: boolean;
  /** --caps target: the target process's capability sets and no_new_privs */
  targetCaps: boolean;
  /** --exec: run the command through the runtime's own exec instead of entering ourselves */
  runtimeExec?: (req: ExecRequest) => ExecCommand;
  /** what the audit line says about the image */
  imageSha256?: string | null;
  /** --no-audit */
  audit: boolean;
  /** CRASHCART_TIMING: the session's laps */
  timing?: Stopwatch;
  /** the caller's signal trap, shared by sessions that run at once (else one of the session's own) */
  signals?: SignalTrap;
  /** fds that become the command's stdin, stdout and stderr (default: crashcart's own) */
  stdio?: [number, number, number];
  /** forget dead sessions everywhere first (default true; the caller did it already for several targets) */
  prune?: boolean;
  /** called once the command's process exists (the caller closes its copies of the stdio pipes) */
  onSpawn?: () => void;
  /** called once the command has ended, or could not start, before the toolkit is taken out (a fan-out starts its next target meanwhile) */
  onCommandEnd?: () => void;
}

/** Graft, run the command, clean up; resolves to the exit code crashcart should exit with. */
export async function runSession(target: Target, facts: TargetFacts, opts: RunOptions): Promise<number> {
  const started = now();
  const argv = opts.command.length > 0 ? opts.command : defaultCommand(opts.interactive);
  const entry: AuditEntry = {
    event: 'attach',
    target: { runtime: target.runtime, id: target.id, ...(target.name ? { name: target.name } : {}), pid: target.pid },
    image: { path: opts.image, sha256: opts.imageSha256 ?? null },
    command: argv,
    method: opts.runtimeExec ? 'exec' : opts.method,
  };
  // the command's own status, or crashcart's failure
  let status: ExitStatus = { code: EXIT_CRASHCART, signal: null };
  try {
    status = await session(target, facts, opts, argv, (method) => (entry.method = opts.runtimeExec ? `exec (${method})` : method));
    return exitCodeOf(status);
  } catch (e) {
    status = { code: e instanceof CrashcartError ? e.exitCode : EXIT_CRASHCART, signal: null };
    throw e;
  } finally {
    const result = { exitCode: exitCodeOf(status), signal: status.signal, durationMs: Math.round(now() - started) };
    const why = writeAudit(opts.audit ? { ...entry, ...result } : { event: 'attach', noAudit: true });
    if (why) opts.warn(why);
  }
}

async function session(target: Target, facts: TargetFacts, opts: RunOptions, argv: string[], grafted: (method: string) => void): Promise<ExitStatus> {
  const store = new StateStore();
  store.checkTrust(); // a refused state directory: nothing to join, nothing to leave
  if (opts.joinCgroup && !opts.runtimeExec && isFrozen(facts.pid)) {
    throw new CrashcartError(`${describeTarget(target)} is frozen (its cgroup is paused): the command would hang there until it is thawed`, {
      hint: 'resume the container first (runc resume, docker unpause, ...), or pass --no-cgroup to run beside it',
    });
  }
  const session: Session = { id: newSessionId(), processes: [self()] };
  const mine = (s: Session) => s.id === session.id;
  const trap = opts.signals ?? trapSignals();
  const key = targetKey(facts.mntNs);
  let recording: Promise<void> | undefined;
  try {
    // One session: the whole state, swept of dead sessions first. Several (a fan-out, swept
    // once before): only this target's record, so they graft at once.
    const graft = () => ensureGrafted(store, target, facts, opts, session, opts.keep);
    const rec = await (opts.prune ?? true
      ? store.withLock(async () => {
        await pruneStale(store, opts.log);
        return graft();
      })
      : store.withTargetLock(key, graft));
    grafted(rec.method);
    opts.timing?.lap('graft');
    await signalsSeen(); // a signal that came during the graft
    trap.throwIfReceived();
    const run = opts.runtimeExec ? runThroughRuntime : runCommand;
    return await run(facts, opts, argv, trap, (pid) => {
      // Remember the waiting process too: the session lives while either of us does.
      const start = startTime(pid);
      if (start === undefined) return;
      recording = store.withTargetLock(key, () => {
        const r = store.read(key);
        const recorded = r?.sessions.find(mine);
        if (r && recorded) {
          recorded.processes.push({ pid, start });
          store.write(r);
        }
      }).catch((e: unknown) => opts.warn(`the session's waiting process is not recorded (a crashcart killed now would leave its toolkit to the next run's cleanup): ${(e as Error).message}`));
    });
  } finally {
    opts.timing?.lap('wait');
    opts.onCommandEnd?.();
    await recording;
    // Whatever failed, and however late: if the record holds this session, leave it.
    try {
      await store.withTargetLock(key, async () => {
        const r = store.read(key);
        if (!r?.sessions.some(mine)) return;
        r.sessions = r.sessions.filter((s) => !mine(s));
        await releaseIfUnused(store, r, opts.log, facts);
      });
    } catch (e) {
      // The command's own exit code still stands (scripts rely on it); the next run
      // retries the cleanup, as for a crashed session.
      opts.warn(`the toolkit could not be removed from the container: ${(e as Error).message}`);
    }
    opts.timing?.lap('ungraft');
    if (trap !== opts.signals) trap.release();
  }
}

/**
 * Whether the command joins the target's cgroups: not when asked not to, and not when the
 * target is at its pids or memory limit (the fork would fail, or the tools would push the
 * container into the OOM killer): then the session runs beside it, as --no-cgroup. A
 * runtime's exec (--exec) always joins them; then the warning says so.
 */
function joinCgroups(target: TargetFacts, opts: RunOptions): boolean {
  if (!opts.joinCgroup) return false;
  const { reached, limits } = checkLimits(target.pid);
  for (const l of limits) opts.log(`cgroup limit: ${l.currentFile} = ${l.current}, ${l.maxFile} = ${l.max}`);
  if (reached.length === 0) return true;
  const what = `the container (pid ${target.pid}) is at its ${reached.map(describeLimit).join(', ')}`;
  if (opts.runtimeExec) {
    opts.warn(`${what}: the runtime's exec may fail there; without --exec crashcart runs outside its cgroup`);
    return true;
  }
  opts.warn(`${what}: the session runs outside its cgroup (as --no-cgroup)`);
  return false;
}

async function runCommand(facts: TargetFacts, opts: RunOptions, argv: string[], trap: SignalTrap, started: (pid: number) => void): Promise<ExitStatus> {
  const joinCgroup = joinCgroups(facts, opts);
  const env = commandEnv({
    targetEnv: opts.targetEnv ? readEnviron(facts.pid) : undefined,
    term: process.env.TERM,
    extra: opts.env,
  });
  const handles = TargetHandles.forSpawn(facts, { joinCgroup, useCwd: !opts.workdir });
  let handle;
  try {
    // The container's own files, read inside its root: a symlink there cannot make crashcart
    // read one of the host's.
    const user = opts.user ? parseUser(opts.user, readInRoot(handles.root, '/etc/passwd') ?? '', readInRoot(handles.root, '/etc/group') ?? '') : { uid: 0, gid: 0 };
    if (opts.user && facts.ownUserNs) checkMapped(facts.pid, user, opts.user);
    faultPoint('before-spawn');
    trap.throwIfReceived();
    handle = await spawn({
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
      forwardSignals: FORWARDED_SIGNALS.map(signalNumber),
      terminalSignals: TERMINAL_SIGNALS.map(signalNumber),
      ...(opts.targetCaps ? { caps: targetCaps(facts.pid) } : {}),
      ...(opts.stdio ? { stdio: opts.stdio } : {}),
      ...nativeFault(),
    });
  } catch (e) {
    handles.close();
    if (!isNativeError(e)) throw e;
    throw new CrashcartError(`cannot start the command in the container: ${e.message}`, {
      hint: e.code === 'EAGAIN' ? 'the host is out of processes (see ulimit -u and kernel.pid_max)' : 'run with -v for details',
      code: e.code,
      cause: e,
    });
  }
  const nsOrder = handles.namespaceOrder();
  const cgroupFiles = handles.cgroupFiles;
  handles.close();
  opts.onSpawn?.();
  opts.log(`started ${argv[0]} (waiting process ${handle.pid})`);
  started(handle.pid);
  trap.forwardTo(handle.pid);
  opts.timing?.lap('spawn');
  faultPoint('after-spawn');
  try {
    return await handle.exited;
  } catch (e) {
    throw spawnError(e, argv, env, { pid: facts.pid, nsOrder, cgroupFiles });
  }
}

/** --user inside a user namespace must be one of its mapped ids. */
function checkMapped(pid: number, user: { uid: number; gid: number }, spec: string): void {
  const mapped = (which: 'uid' | 'gid', id: number) => mapToHost(readIdMap(pid, which), id) !== undefined;
  if (!mapped('uid', user.uid) || !mapped('gid', user.gid)) {
    throw new CrashcartError(`--user ${spec}: ${user.uid}:${user.gid} is not mapped in the container's user namespace`, {
      hint: `see /proc/${pid}/uid_map and gid_map for the ids it has`,
    });
  }
}

/**
 * --exec: the runtime's exec runs the command, so it gets exactly the container's user,
 * capabilities, seccomp and LSM profile. Its exit code is passed on as it is (docker, runc
 * and friends already give the command's own, 126/127, or 128+N).
 */
async function runThroughRuntime(facts: TargetFacts, opts: RunOptions, argv: string[], trap: SignalTrap, started: (pid: number) => void): Promise<ExitStatus> {
  joinCgroups(facts, opts);
  const env = execEnv({
    targetEnv: readEnviron(facts.pid),
    term: opts.interactive ? process.env.TERM : undefined,
    extra: opts.env,
  });
  // Runtimes disagree on the exit code for a missing program (runc says 255): look first,
  // inside the target's root (the toolkit is mounted there now), and answer 127 ourselves.
  const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const candidates = searchCandidates(argv[0], envList);
  const root = openSync(`/proc/${facts.pid}/root`, 'r');
  try {
    if (candidates.every((c) => c.startsWith('/') && !existsInRoot(root, c))) throw notFound(argv[0], searchDirs(argv[0], envList));
  } finally {
    closeSync(root);
  }
  const cmd = opts.runtimeExec!({ argv, tty: opts.interactive, env, user: opts.user, workdir: opts.workdir });
  opts.log(`running ${[cmd.file, ...cmd.args].join(' ')}`);
  faultPoint('before-spawn');
  trap.throwIfReceived();
  // loaded here: child_process (with net and streams) costs every other attach
  const [{ spawn: spawnChild }, { constants: osConstants }] = await Promise.all([import('node:child_process'), import('node:os')]);
  const child = spawnChild(cmd.file, cmd.args, { stdio: opts.stdio ?? 'inherit', env: { ...process.env, ...cmd.env } });
  opts.onSpawn?.();
  const status = new Promise<ExitStatus>((resolve, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) => {
      reject(new CrashcartError(`cannot run ${cmd.file} for --exec: ${e.code ?? e.message}`, {
        hint: e.code === 'ENOENT' ? `install ${cmd.file}'s command-line tool, or attach without --exec` : 'run with -v for details',
        cause: e,
      }));
    });
    child.once('exit', (code, signal) => resolve(signal ? { code: null, signal: osConstants.signals[signal] ?? 0 } : { code: code ?? EXIT_CRASHCART, signal: null }));
  });
  status.catch(() => {}); // handled from the start: the fault below may end the session before it is awaited
  if (child.pid !== undefined) {
    started(child.pid);
    trap.forwardTo(child.pid);
  }
  opts.timing?.lap('spawn');
  faultPoint('after-spawn');
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

/** A failure of the forked children, in the user's words, with the detail the addon gave. */
function spawnError(e: unknown, argv: string[], env: string[], ctx: { pid: number; nsOrder: string[]; cgroupFiles: string[] }): unknown {
  if (!isNativeError(e)) return e;
  const f = e as ChildFailure;
  const argv0 = argv[0]!;
  if (f.step === 'fault') return injectedFault(e);
  if (f.step === 'execve') {
    if (e.code === 'ENOENT') return missingInterpreter(ctx.pid, searchCandidates(argv0, env), e) ?? notFound(argv0, searchDirs(argv0, env), e);
    if (e.code === 'E2BIG') return tooLong(argv0, argv, env, e);
    const why = e.code === 'EACCES' || e.code === 'EISDIR' ? notExecutable(ctx.pid, e.path)
      : e.code === 'ENOEXEC' ? 'it is not an executable for this machine' : 'it cannot be run';
    return new CrashcartError(`cannot run ${argv0}: ${why} (${e.message})`, {
      exitCode: EXIT_CANNOT_INVOKE,
      hint: 'give the path of an executable file',
      cause: e,
    });
  }
  // The step's object, for the cause line of -v: which namespace, which cgroup file.
  const ns = f.step === 'setns' ? ctx.nsOrder[f.detail] : undefined;
  const cgroupFile = f.step === 'write cgroup.procs' ? ctx.cgroupFiles[f.detail] : undefined;
  if (ns) e.path = `/proc/${ctx.pid}/ns/${ns}`;
  if (cgroupFile) e.path = cgroupFile;
  const detail = f.step === 'setns' ? ` (the ${ns ?? '?'} namespace)`
    : f.step === 'write cgroup.procs' ? ` (${cgroupFile ?? '?'})`
      : f.step.startsWith('prctl PR_CAP') ? ` (capability ${f.detail})` : '';
  const hints: Record<string, string> = {
    chdir: 'check --workdir: the directory must exist in the container',
    setgroups: "the container's user namespace does not allow setgroups",
    fork: e.code === 'EAGAIN' ? 'the container is at a pids limit: try --no-cgroup' : 'run with -v for details',
    'write cgroup.procs': 'try --no-cgroup',
    'execve crashcart-wait': "crashcart's helper must be an executable file on a filesystem that allows exec: run 'npm run build:native' in the project directory",
  };
  return new CrashcartError(`cannot start the command in the container: ${e.message}${detail}`, {
    hint: hints[f.step] ?? 'run with -v for details',
    code: e.code,
    cause: e,
  });
}

/** Why execve said EACCES: a directory, or a file without execute permission (or on a noexec mount). */
function notExecutable(pid: number, path: string | undefined): string {
  let st;
  try {
    const root = openSync(`/proc/${pid}/root`, 'r');
    try {
      st = path ? statInRoot(root, path) : undefined;
    } finally {
      closeSync(root);
    }
  } catch {
    // the target went away meanwhile: say what execve said
  }
  if (st?.isDirectory()) return 'it is a directory';
  if (st?.isFile() && !(st.mode & 0o111)) return `it has no execute permission, mode ${(st.mode & 0o7777).toString(8)}`;
  return 'it is not executable, or on a filesystem mounted noexec';
}

/**
 * ENOENT from execve for a file that is there: its #! interpreter or its ELF loader is
 * missing in the container. The command exists but cannot run (126, as a shell says).
 */
function missingInterpreter(pid: number, candidates: string[], cause: unknown): CrashcartError | undefined {
  let found: { path: string; head: Buffer } | undefined;
  try {
    const root = openSync(`/proc/${pid}/root`, 'r');
    try {
      for (const path of candidates) {
        const head = statInRoot(root, path)?.isFile() ? readBytesInRoot(root, path, 4096) : undefined;
        if (head) {
          found = { path, head };
          break;
        }
      }
    } finally {
      closeSync(root);
    }
  } catch {
    return undefined; // the target went away meanwhile: "not found" it is
  }
  if (!found) return undefined;
  const { path, head } = found;
  const shebang = head.subarray(0, 2).toString('latin1') === '#!' ? head.toString('utf8').slice(2).split('\n')[0]!.trim().split(/\s+/)[0] : undefined;
  let loader: string | undefined;
  try {
    loader = shebang === undefined ? readElf(head, path)?.interp : undefined;
  } catch {
    // not ELF we can read: say it without the name
  }
  const what = shebang !== undefined ? `its interpreter ${shebang} (from its #! line)` : `its program loader${loader ? ` ${loader}` : ''}`;
  return new CrashcartError(`cannot run ${path}: ${what} is not in the container`, {
    exitCode: EXIT_CANNOT_INVOKE,
    hint: shebang !== undefined ? `run it with a shell of the toolkit: -- sh ${path}` : 'run a static program, or one of the toolkit (/dev/crashcart/bin)',
    cause,
  });
}

/** E2BIG: the arguments and environment together are more than execve takes. */
function tooLong(argv0: string, argv: string[], env: string[], cause: unknown): CrashcartError {
  // what execve copies: each string with its NUL, and a pointer for each
  const bytes = (list: string[]) => list.reduce((n, s) => n + Buffer.byteLength(s) + 1 + 8, 8);
  const kib = (n: number) => `${Math.ceil(n / 1024)} KiB`;
  const longest = Math.max(...[...argv, ...env].map((s) => Buffer.byteLength(s)));
  const why = longest >= MAX_ARG_STRLEN
    ? `one of its arguments or environment strings is ${kib(longest)}, and execve takes ${kib(MAX_ARG_STRLEN)} at most`
    : `its arguments (${kib(bytes(argv))}) and environment (${kib(bytes(env))}) are more than execve takes (${kib(argMax())} here)`;
  return new CrashcartError(`cannot run ${argv0}: ${why}`, {
    exitCode: EXIT_CANNOT_INVOKE,
    code: 'E2BIG',
    hint: "pass fewer or shorter arguments, or --no-target-env to leave out the container's environment",
    cause,
  });
}

/** The kernel's limit for one argument or environment string (32 pages). */
const MAX_ARG_STRLEN = 32 * 4096;

/** The kernel's limit for argv and envp together: a quarter of the stack limit, 6 MiB at most. */
function argMax(): number {
  const m = /^Max stack size\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  const stack = m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  return Math.max(Math.min(stack / 4, 6 << 20), MAX_ARG_STRLEN);
}
