// Runs the real CLI (bin/crashcart) as a child process, with its state and cache in private
// temporary directories, and builds the one toolkit image the end-to-end tests graft.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { execa } from 'execa';
import { StateStore, type Session } from '../../src/core/state.js';
import { assertNoLeaks, projectRoot, snapshotHost } from './host.js';

export interface CliResult {
  /** exit code; 128+N when a signal ended crashcart itself (null if neither is known) */
  code: number | null;
  /** the signal that ended crashcart, if one did */
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** stdin for crashcart (a pipe); without it stdin is closed ('ignore') */
  input?: string;
  /** extra environment, on top of this process's and the private directories */
  env?: Record<string, string>;
  /** milliseconds before crashcart is killed; default 60 s */
  timeout?: number;
}

let dirs: { root: string; state: string; cache: string; audit: string } | undefined;

/** This process's private directories (and audit log); removed when it exits. */
export function privateDirs(): { root: string; state: string; cache: string; audit: string } {
  if (!dirs) {
    const root = mkdtempSync(join(tmpdir(), 'crashcart-cli-test-'));
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
    // The cache must not exist yet: crashcart creates it root-only (mode 0700) itself.
    dirs = { root, state: join(root, 'state'), cache: join(root, 'cache'), audit: join(root, 'log', 'audit.log') };
  }
  return dirs;
}

/** The environment that points crashcart at this process's private directories. */
export function cliEnv(extra: Record<string, string> = {}): Record<string, string> {
  const { state, cache, audit } = privateDirs();
  return { CRASHCART_STATE_DIR: state, CRASHCART_CACHE_DIR: cache, CRASHCART_AUDIT_LOG: audit, ...extra };
}

/** The same as assignments for a shell command line ("K=V K=V"). */
export const cliEnvWords = () => Object.entries(cliEnv()).map(([k, v]) => `${k}=${v}`).join(' ');

function cliCommand(args: string[]): [string, string[]] {
  return [process.execPath, [join(projectRoot(), 'bin', 'crashcart'), ...args]];
}

const DEFAULT_TIMEOUT = 60_000;

/** Runs crashcart to completion; never throws for a non-zero exit. */
export async function runCrashcart(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const [file, argv] = cliCommand(args);
  const r = await execa(file, argv, {
    cwd: projectRoot(),
    env: cliEnv(opts.env),
    reject: false,
    timeout: opts.timeout ?? DEFAULT_TIMEOUT,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }),
  });
  if (r.timedOut) throw new Error(`crashcart ${args.join(' ')} timed out:\n${r.stderr}`);
  return {
    code: r.exitCode ?? null,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
  };
}

/**
 * Starts crashcart without waiting for it. With `detached`, it leads a process group of its
 * own, so the group (crashcart, its waiting process and the command) can be signalled at once.
 * With `stdin: 'pipe'` its stdin stays open until the test ends it (`.stdin.end()`): a
 * command such as `cat` then runs exactly as long as the test wants.
 */
export function startCrashcart(args: string[], opts: CliOptions & { detached?: boolean; stdin?: 'pipe' } = {}) {
  const [file, argv] = cliCommand(args);
  return execa(file, argv, {
    cwd: projectRoot(),
    env: cliEnv(opts.env),
    reject: false,
    detached: opts.detached ?? false,
    timeout: opts.timeout ?? DEFAULT_TIMEOUT,
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: opts.stdin ?? ('ignore' as const) }),
  });
}

/** The session of the crashcart process `pid`, as recorded in this process's state directory. */
export function recordedSession(pid: number): Session | undefined {
  return new StateStore(privateDirs().state).all().flatMap((r) => r.sessions).find((s) => s.processes[0]?.pid === pid);
}

let image: Promise<string> | undefined;
let fullImage: Promise<string> | undefined;

/** The static toolkit image (quick to build), once per test process with `crashcart image build -o`. */
export function testImage(): Promise<string> {
  image ??= (async () => {
    const out = join(privateDirs().root, 'static.img');
    const r = await runCrashcart(['image', 'build', '--profile', 'static', '-o', out], { timeout: 600_000 });
    if (r.code !== 0) throw new Error(`crashcart image build --profile static -o ${out} failed (exit ${r.code}):\n${r.stderr}`);
    return out;
  })();
  return image;
}

/**
 * The full toolkit image (`crashcart image build --profile full -o`), built once per test
 * process. Its .deb downloads go to the private cache, or to CRASHCART_TEST_CACHE_DIR's debs/
 * when that is set (a root-only directory kept between runs: a warm cache saves the downloads).
 * CRASHCART_TEST_FULL_IMAGE names an already built full image to use instead.
 */
export function fullTestImage(): Promise<string> {
  fullImage ??= (async () => {
    // an image built beforehand, to iterate on tests without rebuilding it
    const given = process.env.CRASHCART_TEST_FULL_IMAGE;
    if (given) return given;
    const out = join(privateDirs().root, 'full.img');
    const shared = process.env.CRASHCART_TEST_CACHE_DIR;
    const r = await runCrashcart(['image', 'build', '--profile', 'full', '-o', out], {
      timeout: 900_000,
      ...(shared ? { env: { CRASHCART_CACHE_DIR: shared } } : {}),
    });
    if (r.code !== 0) throw new Error(`crashcart image build --profile full -o ${out} failed (exit ${r.code}):\n${r.stderr}`);
    return out;
  })();
  return fullImage;
}

/**
 * Attaches to the container whose first process is `pid` with `args`, runs
 * `cat /proc/1/comm` (and the files `also`) there, and checks that its pid 1 is the sleeper
 * and that nothing is left behind. Returns the CLI's time and the output after the first line.
 */
export async function attachAndCheck(o: { image: string; pid: number; args: string[]; env?: Record<string, string>; also?: string[] }): Promise<{ ms: number; rest: string }> {
  const snap = () => snapshotHost({ pid: o.pid, rootfs: `/proc/${o.pid}/root` });
  const before = await snap();
  const t0 = performance.now();
  const r = await runCrashcart(['-i', o.image, ...o.args, '--', 'cat', '/proc/1/comm', ...(o.also ?? [])], { env: o.env });
  const ms = Math.round(performance.now() - t0);
  assert.equal(r.code, 0, r.stderr);
  const [comm, ...rest] = r.stdout.split('\n');
  assert.equal(comm, 'sleeper');
  assertNoLeaks(before, await snap());
  const mountinfo = readFileSync(`/proc/${o.pid}/mountinfo`, 'utf8');
  assert.ok(!mountinfo.includes('/dev/crashcart'), mountinfo);
  return { ms, rest: rest.join('\n') };
}

/** The shortest prefix of `id` that none of `others` shares, and at least `min` characters (12: never taken for a PID). */
export function uniquePrefix(id: string, others: string[], min = 12): string {
  let n = 1;
  while (others.some((o) => o.startsWith(id.slice(0, n)))) n++;
  return id.slice(0, Math.max(n, min));
}
