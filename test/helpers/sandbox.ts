// What every runtime's --stopped test checks on a crashed container (helpers/crashy.ts): its
// last words are there; hostname, working directory, user and environment are its own;
// writes in the sandbox, `rm -rf /*` included, leave its layers and volumes byte-identical;
// --entrypoint runs its crash again and exits with its code; crashcart cp copies its last
// words out and refuses to copy into it; and nothing is left on the host: no mount, loop
// device, temporary directory, session record or process.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { runCrashcart, type CliResult } from './cli.js';
import { CRASHY, digests } from './crashy.js';
import { assertClean, assertFailure, snapshot } from './expect.js';
import { processes } from './procs.js';
import { waitFor } from './wait.js';

export interface StoppedCase {
  /** what names it: ['--stopped', 'crashy'], ['--pod', 'web', '--stopped'], ... */
  args: string[];
  env?: Record<string, string>;
  image: string;
  /** host directories that must come out unchanged: its layers, its volumes */
  unchanged: Record<string, string>;
  /** the first line on stderr */
  firstLine: string | RegExp;
  /** what the command sees: defaults are crashy's */
  expect?: Partial<{ hostname: string; cwd: string; uid: number; gid: number; lastWords: string; exitCode: number }>;
  /** more to look at: a script, and lines its output must have */
  also?: { script: string; lines: string[] };
}

/** The processes a sandbox, or a view of crashcart cp, is made of (native/sandbox.cc names them). */
export const sandboxProcesses = () => processes().filter((p) => ['crashcart-box', 'crashcart-init', 'crashcart-view'].includes(p.comm));

/**
 * A private TMPDIR for crashcart's runs, so that a temporary file or directory the sandbox
 * left is seen (a sandbox must make none), whatever else uses the shared /tmp meanwhile.
 */
export async function privateTmp(): Promise<{ env: { TMPDIR: string }; left: () => Promise<string[]>; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-sandbox-tmp-'));
  return { env: { TMPDIR: dir }, left: async () => (await readdir(dir)).sort(), remove: () => rm(dir, { recursive: true, force: true }) };
}

function assertFirstLine(r: CliResult, line: string | RegExp): string[] {
  const lines = r.stderr.split('\n').filter(Boolean);
  if (typeof line === 'string') assert.equal(lines[0], line, r.stderr);
  else assert.match(lines[0] ?? '', line, r.stderr);
  return lines.slice(1);
}

/** Everything above, on one stopped container. */
export async function checkStopped(c: StoppedCase): Promise<void> {
  const tmp = await privateTmp();
  try {
    await check(c, tmp.env);
    assert.deepEqual(await tmp.left(), [], 'temporary files left');
  } finally {
    await tmp.remove();
  }
}

async function check(c: StoppedCase, tmpEnv: { TMPDIR: string }): Promise<void> {
  const want = { hostname: CRASHY.hostname, cwd: CRASHY.cwd, uid: CRASHY.uid, gid: CRASHY.gid, lastWords: CRASHY.lastWords, exitCode: CRASHY.exitCode, ...c.expect };
  const run = (extra: string[]) => runCrashcart(['-i', c.image, ...c.args, ...extra], { env: { ...c.env, ...tmpEnv } });
  const before = await digests(c.unchanged);
  const host = await snapshot();

  const look = await run(['--', 'sh', '-c', 'cat /tmp/last-words; hostname; pwd; id -u; id -g; echo "CRASHY=$CRASHY"; echo "PATH=$PATH"; echo "pid1 $(cat /proc/1/comm)"']);
  assert.equal(look.code, 0, look.stderr);
  assert.deepEqual(assertFirstLine(look, c.firstLine), [], 'only the first line on stderr');
  const [lastWords, hostname, cwd, uid, gid, crashy, path, pid1] = look.stdout.split('\n');
  assert.equal(`${lastWords}\n`, want.lastWords);
  assert.deepEqual({ hostname, cwd, uid: Number(uid), gid: Number(gid) }, { hostname: want.hostname, cwd: want.cwd, uid: want.uid, gid: want.gid });
  assert.equal(crashy, 'CRASHY=1');
  assert.match(path ?? '', /^PATH=\/dev\/crashcart\/bin:/);
  assert.equal(pid1, 'pid1 crashcart-init', 'the sandbox has a PID namespace of its own, with its own /proc');

  if (c.also) {
    const r = await run(['--', 'sh', '-c', c.also.script]);
    assert.equal(r.code, 0, r.stderr);
    for (const l of c.also.lines) assert.ok(r.stdout.split('\n').includes(l), `${l} in:\n${r.stdout}`);
  }

  // as root, with everything the sandbox lets a process delete deleted
  const wreck = await run(['--user', '0', '--', 'sh', '-c', 'rm -rf /* 2>/dev/null; echo new > /made-here; mkdir -p /app/x; echo gone > /tmp/last-words; for d in /data /vol /bind; do [ -d $d ] && (echo w > $d/w) 2>/dev/null; done; cat /made-here']);
  assert.equal(wreck.code, 0, wreck.stderr);
  assert.equal(wreck.stdout, 'new');

  const again = await run(['--entrypoint']);
  assert.equal(again.code, want.exitCode, again.stderr);

  // a container named plainly is copied out of too, through the same resolution (crashcart cp)
  if (c.args.length === 2 && c.args[0] === '--stopped') await checkCpOut(c.args[1]!, { ...c.env, ...tmpEnv }, want.lastWords);

  assert.deepEqual(await digests(c.unchanged), before, "the container's layers and volumes are byte-identical");
  await assertClean(host);
  await waitFor('no sandbox process is left', () => sandboxProcesses().length === 0, { ms: 5_000 });
}

/** crashcart cp out of the stopped container `name`: its last words; into it is refused in one line. */
async function checkCpOut(name: string, env: Record<string, string>, lastWords: string): Promise<void> {
  const out = await mkdtemp(join(tmpdir(), 'crashcart-cp-stopped-out-'));
  try {
    const r = await runCrashcart(['cp', `${name}:/tmp/last-words`, out], { env });
    assert.deepEqual([r.code, r.stderr], [0, ''], 'crashcart cp out of it');
    assert.equal(await readFile(join(out, 'last-words'), 'utf8'), lastWords);
    const w = await runCrashcart(['cp', join(out, 'last-words'), `${name}:/tmp/`], { env });
    assertFailure(w, 125, new RegExp(`^crashcart: cannot copy into ${name}: it is not running \\(status: \\w+\\), and its writable layer belongs to its runtime; start it first, `));
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}
