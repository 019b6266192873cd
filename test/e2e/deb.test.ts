// The Debian package of `npm run package`, installed on this machine with dpkg as an operator
// would: /usr/bin/crashcart attaches to a real runc container, its man page is where man
// finds it and lists what --help lists, its bash completion completes a running container's
// name in a real bash, and dpkg -r then --purge leave the machine as it was. Nothing here runs
// the checkout's bin/crashcart: every command runs with a PATH that has no part of it.
//
// The host's own /var/lib/crashcart (its image cache), /var/log/crashcart and /run/crashcart
// are set aside while the package is installed (purge removes them) and put back after.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { cliSpec } from '../../src/cli/commands/completion.js';
import { roff } from '../../src/cli/man.js';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { assertNoLeaks, requireCommand, requireRoot, sleeperPath, snapshotHost, type HostSnapshot } from '../helpers/host.js';
import { commands, helpOptions, manOptions } from '../helpers/manpage.js';
import { buildPackage, setAside } from '../helpers/packages.js';
import { until } from '../helpers/wait.js';

const CACHE = '/var/lib/crashcart';
const LOG = '/var/log/crashcart';
const STATE = '/run/crashcart';
/** The PATH of every command here: the package's, not /usr/local/bin (where scripts/setup.sh links a checkout's crashcart). */
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root' };
const run = (file: string, args: string[], opts: { input?: string; cwd?: string } = {}) =>
  execa(file, args, { env: ENV, extendEnv: false, reject: false, cwd: opts.cwd ?? '/', ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' as const }) });

/**
 * `path` is gone, or what is there was made after `since` (a crashcart of someone else's
 * on this machine, with the default directories, may make them again at any time).
 */
function goneSince(path: string, since: number): boolean {
  const st = statSync(path, { throwIfNoEntry: false });
  return st === undefined || st.birthtimeMs >= since;
}

function installed(): Promise<string> {
  return run('dpkg-query', ['-W', '-f=${db:Status-Status}', 'crashcart']).then((r) => (r.exitCode === 0 ? r.stdout : 'unknown'));
}

describe('the .deb', () => {
  let deb: Awaited<ReturnType<typeof buildPackage>> | undefined;
  let aside: { restore(): Promise<void> } | undefined;
  let host: HostSnapshot | undefined;
  let setupError: unknown;
  /** the package's directories that this machine had before (dpkg must leave them) */
  const existedBefore = new Map<string, boolean>();
  let files: string[] = [];

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'dpkg')) return false;
    if (setupError) throw setupError;
    return deb !== undefined;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      // a crashcart someone installed is theirs: this test must not replace or remove it
      const status = await installed();
      if (status !== 'unknown' && status !== 'not-installed') throw new Error(`a crashcart package is on this machine already (${status}): remove it first (dpkg --purge crashcart)`);
      deb = await buildPackage('deb');
      process.stderr.write(`# .deb built in ${deb.ms} ms\n`);
      const listing = await run('dpkg-deb', ['-c', deb.file]);
      assert.equal(listing.exitCode, 0, listing.stderr);
      for (const line of listing.stdout.split('\n')) {
        const path = /\s\.(\/\S*?)\/?(?: -> .*)?$/.exec(line)?.[1];
        if (path && line.startsWith('d')) existedBefore.set(path, existsSync(path));
      }
      host = await snapshotHost();
      const targets = await readdir(join(STATE, 'targets')).catch(() => []);
      if (targets.length) throw new Error(`${STATE}/targets has sessions (${targets.join(', ')}): this test removes ${STATE}; run it when no crashcart session is open`);
      aside = await setAside([CACHE, LOG, STATE]);
      // the host's cached toolkit images, copied into the fresh cache: the demo attaches with
      // the default image without building it again (copies: nothing done to them reaches
      // the host's)
      const saved = join('/var/lib', `.crashcart.set-aside-by-test`, 'images');
      if (existsSync(saved)) {
        await mkdir(join(CACHE, 'images'), { recursive: true, mode: 0o700 });
        await chmod(CACHE, 0o700);
        await chmod(join(CACHE, 'images'), 0o700);
        for (const f of await readdir(saved)) if (f.endsWith('.img') || f.endsWith('.img.json')) await copyFile(join(saved, f), join(CACHE, 'images', f));
      }
    } catch (err) {
      setupError = err;
    }
  });

  after(async () => {
    const problems: string[] = [];
    // the package goes even when a test failed half-way
    if (!['unknown', 'not-installed'].includes(await installed())) {
      const r = await run('dpkg', ['--purge', 'crashcart']);
      if (r.exitCode !== 0) problems.push(`dpkg --purge crashcart: ${r.stderr}`);
    }
    await aside?.restore();
    await deb?.remove();
    if (host) assertNoLeaks(host, await snapshotHost());
    assert.deepEqual(problems, []);
  });

  test('dpkg -i installs /usr/bin/crashcart and its tree under /usr/lib/crashcart', async (t) => {
    if (!ready(t)) return;
    const r = await run('dpkg', ['-i', deb!.file]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(await installed(), 'installed');
    files = (await run('dpkg', ['-L', 'crashcart'])).stdout.split('\n').filter((f) => f && f !== '/.');
    for (const f of ['/usr/bin/crashcart', '/usr/bin/kubectl-crashcart', '/usr/lib/crashcart/build/Release/crashcart.node', '/usr/lib/crashcart/dist/bundle/crashcart.cjs', '/usr/share/man/man1/crashcart.1.gz',
      '/usr/share/bash-completion/completions/crashcart', '/usr/share/zsh/vendor-completions/_crashcart']) {
      assert.ok(files.includes(f), `${f} is not in the package`);
    }
    assert.equal((await run('readlink', ['-f', '/usr/bin/crashcart'])).stdout, '/usr/lib/crashcart/bin/crashcart');
    // started by the nodejs the package depends on, not through /usr/bin/env and PATH
    for (const bin of ['crashcart', 'kubectl-crashcart']) {
      assert.equal((await readFile(`/usr/lib/crashcart/bin/${bin}`, 'utf8')).split('\n')[0], '#!/usr/bin/node', bin);
    }
    // nothing installed points back into a checkout
    const grep = await run('grep', ['-rlI', '--exclude-dir=node_modules', '/work/', '/usr/lib/crashcart']);
    assert.equal(grep.stdout, '', `files naming a checkout path:\n${grep.stdout}`);
    const v = await run('/usr/bin/crashcart', ['--version']);
    assert.equal(v.exitCode, 0, v.stderr);
    // from the bundle: bin/crashcart says so on stderr when it has to run the plain build
    assert.equal(v.stderr, '');
    const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(v.stdout.trim(), pkg.version);
  });

  test('crashcart demo attaches to a runc container from /usr/bin/crashcart', async (t) => {
    if (!ready(t)) return;
    const before = await snapshotHost();
    const t0 = performance.now();
    const r = await run('/usr/bin/crashcart', ['demo', '--', 'cat', '/proc/1/comm']);
    process.stderr.write(`# crashcart demo -- cat /proc/1/comm: ${Math.round(performance.now() - t0)} ms\n`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, 'sleeper');
    // autoclear frees the loop device when its last user goes
    const loops = new Set(before.loops);
    await until(async () => (await snapshotHost()).loops.every((l) => loops.has(l)), { ms: 5_000 });
    assertNoLeaks(before, await snapshotHost());
    // the session was audited in the package's log
    const [record] = (await readFile(join(LOG, 'audit.log'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; target: { runtime: string }; command: string[]; exitCode: number });
    assert.deepEqual([record?.event, record?.target.runtime, record?.command, record?.exitCode], ['attach', 'runc', ['cat', '/proc/1/comm'], 0]);
  });

  test('man finds crashcart(1), and it lists exactly the options of --help of every command', async (t) => {
    if (!ready(t)) return;
    const w = await run('man', ['-w', 'crashcart']);
    assert.equal(w.exitCode, 0, w.stderr);
    assert.equal(w.stdout.trim(), '/usr/share/man/man1/crashcart.1.gz');
    const page = gunzipSync(await readFile('/usr/share/man/man1/crashcart.1.gz')).toString('utf8');
    const installedCli = ['/usr/bin/crashcart'];
    assert.deepEqual(manOptions(page, '.SH OPTIONS'), await helpOptions([], installedCli));
    const spec = await cliSpec();
    const global = spec.global.map((o) => o.name);
    for (const { path } of commands(spec)) {
      const own = (await helpOptions(path, installedCli)).filter((o) => !global.includes(o));
      assert.deepEqual(manOptions(page, `.SS \\fBcrashcart ${roff(path.join(' '))}\\fR`), own, `crashcart ${path.join(' ')}`);
    }
    // and man renders it
    const text = await execa('man', ['crashcart'], { env: { ...ENV, MANPAGER: 'cat', MANWIDTH: '100' }, extendEnv: false, reject: false, stdin: 'ignore' });
    assert.equal(text.exitCode, 0, text.stderr);
    assert.match(text.stdout, /EXIT STATUS/);
  });

  test('bash completion completes a running runc container by name', async (t) => {
    if (!ready(t)) return;
    const id = `crashcart-complete-${randomBytes(4).toString('hex')}`;
    let c: ScratchContainer | undefined;
    try {
      c = await createScratchContainer({ id, sleeperPath: await sleeperPath() });
      // bash's completion as the shell drives it: the words, the index, then the function
      // that `complete -p crashcart` names
      const script = [
        'source /usr/share/bash-completion/completions/crashcart',
        'complete -p crashcart',
        'command -v crashcart',
        'fn=$(complete -p crashcart | sed -n "s/.*-F \\([^ ]*\\) .*/\\1/p")',
        // the words of the command line, the last one being completed
        'complete_words() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; COMPREPLY=(); "$fn" crashcart "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"; printf "reply:%s\\n" "${COMPREPLY[@]}"; }',
        'complete_words crashcart "$1"',
        'echo --',
        'complete_words crashcart cp "$1"',
      ].join('\n');
      const t0 = performance.now();
      const r = await run('bash', ['--noprofile', '--norc', '-c', script, 'bash', id.slice(0, 24)]);
      const ms = Math.round(performance.now() - t0);
      process.stderr.write(`# bash completion of a container name, twice: ${ms} ms\n`);
      assert.equal(r.exitCode, 0, r.stderr);
      const [registered, which, ...rest] = r.stdout.split('\n');
      assert.equal(registered, 'complete -F _crashcart crashcart');
      assert.equal(which, '/usr/bin/crashcart');
      // the target of an attach; cp's TARGET:PATH (and no host file starts so, in /)
      assert.deepEqual(rest, [`reply:${id}`, '--', `reply:${id}:`]);
    } finally {
      await c?.remove();
    }
  });

  test('dpkg -r leaves only the image cache (and the audit log); dpkg --purge removes them', async (t) => {
    if (!ready(t)) return;
    assert.ok(files.length > 0, 'the package is not installed');
    const removed = Date.now();
    const r = await run('dpkg', ['-r', 'crashcart']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /kept/);
    for (const f of files) {
      if (existedBefore.has(f)) continue; // directories: checked below
      assert.ok(!existsSync(f), `${f} is left after dpkg -r`);
    }
    assert.ok(existsSync(join(CACHE, 'images')), 'dpkg -r removed the image cache');
    assert.ok(existsSync(join(LOG, 'audit.log')), 'dpkg -r removed the audit log');
    assert.ok(goneSince(STATE, removed), `${STATE} is left after dpkg -r with no session open`);
    const purged = Date.now();
    const p = await run('dpkg', ['--purge', 'crashcart']);
    assert.equal(p.exitCode, 0, p.stderr);
    assert.ok(['unknown', 'not-installed'].includes(await installed()));
    assert.ok(goneSince(CACHE, purged), `${CACHE} is left after dpkg --purge`);
    assert.ok(goneSince(LOG, purged), `${LOG} is left after dpkg --purge`);
    // every directory of the package is as it was: there if the machine had it, else gone
    for (const [dir, was] of existedBefore) assert.equal(existsSync(dir), was, dir);
  });
});
