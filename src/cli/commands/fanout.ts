// One command in several targets at once, from one process:
//   crashcart t1,t2,t3 [--] command...
//   crashcart --all [--runtime R] [--namespace NS] [--filter name=GLOB]... [--filter label=K=V]... -- command...
// At most --parallel of them run at a time. One loop device serves them all (held here from
// start to end); each target's graft is made or joined, and taken out again at the end as
// after any session (a graft that was there before, or another session's, stays). The
// commands' stdout and stderr go to pipes read here, line by line (see fanout-output.ts);
// stdin is /dev/null. A termination signal stops new targets from starting; SIGTERM and SIGHUP
// are passed on to the commands that run, and SIGINT from the terminal reaches them directly.
import { closeSync, openSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Socket } from 'node:net';
import { CrashcartError, EXIT_CRASHCART } from '../../core/errors.js';
import { describeTarget, pruneStale } from '../../core/grafts.js';
import { acquireLoop, releaseLoop } from '../../core/loop.js';
import { runSession } from '../../core/session.js';
import { signalHub, signalsSeen, type SignalHub } from '../../core/signals.js';
import { StateStore } from '../../core/state.js';
import { inspectTarget } from '../../core/target.js';
import { stopwatch } from '../../core/timing.js';
import { recordedDigest } from '../../image/cache.js';
import { isatty, pipe } from '../../native/index.js';
import { matches, parseFilter } from '../../runtimes/filter.js';
import { listContainers, resolveTarget, running, runtimeExecutor, type Target } from '../../runtimes/index.js';
import type { AttachArgs } from '../attach-args.js';
import { commandOptions, toolkitImage } from './attach.js';
import { lineFormat, LineSplitter, summary, type Stream, type TargetResult } from '../fanout-output.js';
import { warn } from '../output.js';

/** How long output that outlives its command (a process it left running holds the pipe) is still read. */
const DRAIN_MS = 250;

interface Planned {
  label: string;
  target?: Target;
  /** why it cannot be reached */
  error?: unknown;
}

const oneLine = (e: unknown) => (e instanceof CrashcartError ? `${e.message}${e.hint ? `; ${e.hint}` : ''}` : `internal error: ${(e as Error)?.message ?? String(e)}`);
const failed = (label: string, e: unknown): TargetResult => ({ target: label, code: e instanceof CrashcartError ? e.exitCode : EXIT_CRASHCART, error: oneLine(e) });

/** Names on the prefix: what the user typed, or a container's name (else its short ID); each once. */
function labels(names: string[]): string[] {
  const seen = new Map<string, number>();
  return names.map((n) => {
    const k = (seen.get(n) ?? 0) + 1;
    seen.set(n, k);
    return k === 1 ? n : `${n}#${k}`;
  });
}

async function plan(args: AttachArgs): Promise<Planned[]> {
  const scope = args.namespace === undefined ? {} : { namespace: args.namespace };
  if (!args.all) {
    const words = args.target!.split(',');
    const found = await Promise.all(words.map((w) => resolveTarget(w, args.runtime, scope, { warn }).then((target) => ({ target }), (error: unknown) => ({ error }))));
    return labels(words).map((label, i) => ({ label, ...found[i]! }));
  }
  const filters = args.filter.map(parseFilter);
  const { containers, failures } = await listContainers(args.runtime === 'pid' ? undefined : args.runtime);
  for (const f of failures) warn(`${f.runtime} not listed: ${f.message}`);
  const chosen = containers.filter((c) => c.status === 'running' && c.pid > 0 && (args.namespace === undefined || c.namespace === args.namespace) && matches(c, filters));
  if (chosen.length === 0) {
    const narrowed = [args.runtime && `--runtime ${args.runtime}`, args.namespace !== undefined && `--namespace ${args.namespace}`, ...args.filter.map((f) => `--filter ${f}`)].filter(Boolean);
    throw new CrashcartError(`no running container${narrowed.length ? ` matches ${narrowed.join(' ')}` : ' found'}${failures.length ? ` (not listed: ${failures.map((f) => f.runtime).join(', ')})` : ''}`, {
      hint: 'see crashcart ps',
    });
  }
  const short = (id: string) => (/^[0-9a-f]{64}$/.test(id) ? id.slice(0, 12) : id);
  // in the order of their names, whatever order the runtimes listed them in
  const name = (c: (typeof chosen)[number]) => c.name ?? short(c.id);
  chosen.sort((a, b) => name(a).localeCompare(name(b), 'en') || a.runtime.localeCompare(b.runtime));
  return labels(chosen.map(name)).map((label, i) => ({ label, target: running(chosen[i]!, chosen[i]!.id) }));
}

export async function fanOut(args: AttachArgs, command: string[], load?: number): Promise<number> {
  const planned = await plan(args);
  const image = await toolkitImage(args);
  const sha256 = await recordedDigest(image.path);
  const store = new StateStore();
  await store.withLock(() => pruneStale(store, args.verbose ? (line) => process.stderr.write(`crashcart: ${line}\n`) : () => {}));

  const colour = (to: Stream) => !process.env.NO_COLOR && isatty(to === 'stdout' ? 1 : 2);
  const format = lineFormat(planned.map((p) => p.label), { prefix: args.prefix, json: args.json, colour });
  // A reader that went away (`| head`) takes the rest of that stream, not crashcart: the
  // commands run to their end and the summary still comes.
  const gone = new Set<NodeJS.WriteStream>();
  for (const out of [process.stdout, process.stderr]) out.on('error', () => gone.add(out));
  const emit = (label: string, stream: Stream, text: string) => {
    const line = format(label, stream, text);
    const out = line.to === 'stdout' ? process.stdout : process.stderr;
    if (!gone.has(out)) out.write(line.text);
  };

  const hub = signalHub();
  // one loop device for every graft: held until the end, so it is not freed and attached again between targets
  const loop = acquireLoop(image.path);
  const results: TargetResult[] = new Array(planned.length);
  const timings: string[] = [];
  // targets whose command has ended, still taking their toolkit out and reading the last of their output
  const ending: Promise<void>[] = [];
  try {
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < planned.length; i = next++) {
        const p = planned[i]!;
        // a signal that ended the last command (Ctrl-C reaches the commands too) was meant for this one as well
        await signalsSeen();
        if (!p.target) results[i] = failed(p.label, p.error);
        else if (hub.received) results[i] = { target: p.label, code: hub.session().exitCode(), error: `not started: interrupted by ${hub.received}` };
        else {
          // at most --parallel commands at a time: the next one starts when this one has ended,
          // while this target's toolkit is taken out
          let ended = () => {};
          const commandEnded = new Promise<void>((resolve) => (ended = resolve));
          const one = runOne(p.label, p.target, { args, command, image: image.path, sha256, loop, hub, emit, load, timings, onCommandEnd: ended }).then((r) => {
            results[i] = r;
          });
          ending.push(one);
          await Promise.race([commandEnded, one]);
        }
      }
    };
    const parallel = args.parallel ?? availableParallelism();
    await Promise.all(Array.from({ length: Math.min(parallel, planned.length) }, worker));
    await Promise.all(ending);
  } finally {
    releaseLoop(loop);
    hub.release();
  }
  for (const line of timings) process.stderr.write(`crashcart: ${line}\n`);
  const { lines, exitCode } = summary(results);
  for (const line of lines) process.stderr.write(`crashcart: ${line}\n`);
  return exitCode;
}

interface Shared {
  args: AttachArgs;
  command: string[];
  image: string;
  sha256: string | null;
  loop: ReturnType<typeof acquireLoop>;
  hub: SignalHub;
  emit: (label: string, stream: Stream, text: string) => void;
  load?: number;
  timings: string[];
  onCommandEnd: () => void;
}

/** One target: its session, with stdout and stderr read from pipes, line by line. */
async function runOne(label: string, target: Target, s: Shared): Promise<TargetResult> {
  const { args } = s;
  const timing = stopwatch({ load: s.load });
  let facts;
  let via;
  try {
    via = args.exec ? runtimeExecutor(target) : undefined;
    facts = inspectTarget(target.pid, { allowHost: args['allow-host'], what: describeTarget(target) });
  } catch (e) {
    return failed(label, e);
  }
  timing.lap('lookup');
  const [outR, outW] = pipe();
  const [errR, errW] = pipe();
  let nul = -1;
  let childEnds = [outW, errW];
  const closeChildEnds = () => {
    for (const fd of childEnds) closeSync(fd);
    childEnds = [];
  };
  const readers = [read(outR, 'stdout'), read(errR, 'stderr')];
  const trap = s.hub.session();
  try {
    nul = openSync('/dev/null', 'r');
    childEnds.push(nul);
    const code = await runSession(target, facts, {
      image: s.image,
      loop: s.loop,
      method: args.method,
      allowHost: args['allow-host'],
      log: args.verbose ? (line) => process.stderr.write(`crashcart: ${label}: ${line}\n`) : () => {},
      warn: (line) => warn(`${label}: ${line}`),
      command: s.command,
      interactive: false,
      ...commandOptions(args),
      runtimeExec: via,
      imageSha256: s.sha256,
      timing,
      signals: trap,
      stdio: [nul, outW, errW],
      prune: false,
      onSpawn: closeChildEnds,
      onCommandEnd: s.onCommandEnd,
    });
    return { target: label, code };
  } catch (e) {
    return failed(label, e);
  } finally {
    trap.release();
    closeChildEnds();
    await drain(readers);
    const line = timing.line();
    if (line) s.timings.push(`${label}: ${line}`);
  }

  /** Reads a pipe to its end, passing on whole lines. */
  function read(fd: number, stream: Stream): { done: Promise<void>; socket: Socket } {
    const socket = new Socket({ fd, readable: true, writable: false });
    const split = new LineSplitter();
    socket.on('data', (b: Buffer) => {
      for (const line of split.push(b)) s.emit(label, stream, line);
    });
    socket.on('error', () => {}); // the end comes as 'close' either way
    const done = new Promise<void>((resolve) => socket.once('close', () => {
      for (const line of split.end()) s.emit(label, stream, line);
      resolve();
    }));
    return { done, socket };
  }
}

/** The rest of the output, then the pipes go: at most DRAIN_MS for what a leftover process still holds open. */
async function drain(readers: { done: Promise<void>; socket: Socket }[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_MS)));
  await Promise.race([Promise.all(readers.map((r) => r.done)), late]);
  clearTimeout(timer);
  for (const r of readers) r.socket.destroy();
  await Promise.all(readers.map((r) => r.done));
}
