// Real systemd-nspawn containers (no systemd, no machined: --register=no --keep-unit) are
// found through their nspawn process and grafted like any other target.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { processState } from '../../src/core/proc.js';
import { scanNspawn } from '../../src/runtimes/nspawn.js';
import { attachAndCheck, runCrashcart, testImage } from '../helpers/cli.js';
import { assertNoLeaks, onPath, requireCommand, requireRoot, snapshotHost } from '../helpers/host.js';
import { nspawnRunDirsMissing, startNspawn, type NspawnContainer } from '../helpers/nspawn.js';
import { removeEmptyDirs } from '../helpers/rootfs.js';

const unique = (prefix: string) => `${prefix}-${randomBytes(3).toString('hex')}`;

describe('nspawn', () => {
  let image = '';
  let setupError: unknown;
  let runDirs: string[] = [];
  const running = new Set<NspawnContainer>();

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'systemd-nspawn')) return false;
    if (setupError) throw setupError;
    return image !== '';
  };

  async function start(opts: Parameters<typeof startNspawn>[0]): Promise<NspawnContainer> {
    const c = await startNspawn(opts);
    running.add(c);
    return c;
  }

  async function stop(c: NspawnContainer): Promise<void> {
    running.delete(c);
    assert.deepEqual(await c.stop(), [], `nspawn container ${c.name} left something behind`);
  }

  /** Attaches with `args`: the target's pid 1 is the sleeper, and nothing is left behind. */
  const attach = async (pid: number, args: string[]): Promise<number> =>
    (await attachAndCheck({ image, pid, args })).ms;

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !onPath('systemd-nspawn')) return;
    try {
      runDirs = nspawnRunDirsMissing();
      image = await testImage();
    } catch (err) {
      setupError = err;
    }
  });

  after(async () => {
    const left: string[] = [];
    for (const c of running) left.push(...(await c.stop()));
    left.push(...(await removeEmptyDirs(runDirs)).map((d) => `not removed: ${d}`));
    assert.deepEqual(left, [], 'nspawn left something behind');
  });

  test('a container named with -M: by name and with --runtime nspawn, its read-only root untouched', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccns');
    const c = await start({ machine: name, readOnly: true });
    t.diagnostic(`systemd-nspawn until the leader runs: ${c.startMs} ms`);
    const root = (await readFile(`/proc/${c.pid}/mountinfo`, 'utf8')).split('\n').find((l) => l.split(' ')[4] === '/');
    assert.match(root ?? '', /^\S+ \S+ \S+ \S+ \/ ro[, ]/, 'the container\'s root is mounted read-only');

    t.diagnostic(`attach by name: ${await attach(c.pid, [name])} ms`);
    t.diagnostic(`attach with --runtime nspawn: ${await attach(c.pid, ['--runtime', 'nspawn', name])} ms`);

    const verbose = await runCrashcart(['-i', image, '-v', name, '--', 'true']);
    assert.equal(verbose.code, 0, verbose.stderr);
    assert.match(verbose.stderr, new RegExp(`target: nspawn ${name} \\(pid ${c.pid}\\)`));

    // nspawn has no exec of its own: --exec is refused before anything is grafted
    const before = await snapshotHost({ pid: c.pid, rootfs: `/proc/${c.pid}/root` });
    const exec = await runCrashcart(['-i', image, '--exec', name, '--', 'true']);
    assert.equal(exec.code, 125);
    assert.equal(exec.stderr, 'crashcart: --exec is not supported for nspawn containers: nspawn has no exec of its own; attach without --exec');
    assertNoLeaks(before, await snapshotHost({ pid: c.pid, rootfs: `/proc/${c.pid}/root` }));
    await stop(c);
  });

  test('a unique name prefix attaches; a prefix two machines share is refused with both', async (t) => {
    if (!ready(t)) return;
    const base = unique('ccpre');
    const one = await start({ machine: `${base}-one` });
    const two = await start({ machine: `${base}-two` });
    await attach(one.pid, [`${base}-o`]);
    const host = await snapshotHost();
    const r = await runCrashcart(['-i', image, `${base}-`, '--', 'true']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, new RegExp(`^crashcart: '${base}-' matches 2 containers: nspawn ${base}-(one|two), nspawn ${base}-(one|two); give more of the ID, or the runtime with --runtime$`));
    assertNoLeaks(host, await snapshotHost());
    await stop(one);
    await stop(two);
  });

  test('without -M the machine is named after its directory, as nspawn names it', async (t) => {
    if (!ready(t)) return;
    const dirName = unique('ccdir');
    const c = await start({ dirName });
    await attach(c.pid, ['--runtime', 'nspawn', dirName]);
    await stop(c);
  });

  test('a stopped container is gone: nothing matches, and the error names nspawn', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccgone');
    const c = await start({ machine: name });
    await stop(c);
    const host = await snapshotHost();
    const r = await runCrashcart(['-i', image, '--runtime', 'nspawn', name, '--', 'true']);
    assert.equal(r.code, 125);
    assert.equal(r.stderr, `crashcart: no container or process matches '${name}' (asked: nspawn); ` +
      'check the ID with your runtime (e.g. ps -C systemd-nspawn -f), or give a PID');
    assertNoLeaks(host, await snapshotHost());
  });

  test('a container whose leader has exited and not been reaped is refused as stopping', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccstop');
    const c = await start({ machine: name });
    // nspawn, stopped, cannot reap its leader: the container stays in its last moment
    process.kill(c.nspawnPid, 'SIGSTOP');
    try {
      process.kill(c.pid, 'SIGKILL');
      for (let i = 0; i < 500 && processState(c.pid) !== 'Z'; i++) await delay(10);
      assert.equal(processState(c.pid), 'Z');
      const r = await runCrashcart(['-i', image, name, '--', 'true']);
      assert.equal(r.code, 125);
      assert.equal(r.stderr, `crashcart: container ${name} is not running (status: stopping); start it first; ` +
        `crashcart attaches to running containers only (nspawn ${name})`);
    } finally {
      process.kill(c.nspawnPid, 'SIGCONT');
    }
    await stop(c);
  });

  test('a record of systemd-machined for the leader names the container', async (t) => {
    if (!ready(t)) return;
    const dirName = unique('ccrec');
    const c = await start({ dirName });
    // machined cannot run here (no systemd, no D-Bus): a record as it writes them stands in
    const machines = await mkdtemp(join(tmpdir(), 'crashcart-machines-'));
    try {
      await writeFile(join(machines, `${dirName}-5f3a`), `# This is private data. Do not parse.\nNAME=${dirName}-5f3a\n` +
        `SCOPE=machine-${dirName}.scope\nSERVICE=nspawn\nROOT=${c.rootfs}\nLEADER=${c.pid}\nCLASS=container\n`);
      const found = scanNspawn(machines).filter((x) => x.pid === c.pid);
      assert.deepEqual(found, [{ runtime: 'nspawn', id: `${dirName}-5f3a`, pid: c.pid, status: 'running' }]);
      // without the record, the name nspawn derives from the directory
      assert.deepEqual(scanNspawn(join(machines, 'none')).filter((x) => x.pid === c.pid).map((x) => x.id), [dirName]);
    } finally {
      await rm(machines, { recursive: true, force: true });
    }
    await stop(c);
  });

  test('while nspawn starts, its intermediate child is not a second container', async (t) => {
    if (!ready(t)) return;
    const name = unique('ccrace');
    const seen: string[][] = [];
    let done = false;
    const scanning = (async () => {
      while (!done) {
        seen.push(scanNspawn().filter((x) => x.id === name).map((x) => `${x.status} ${x.pid}`));
        await delay(0);
      }
    })();
    let c: NspawnContainer;
    try {
      c = await start({ machine: name });
    } finally {
      done = true;
      await scanning;
    }
    t.diagnostic(`${seen.length} scans while starting: ${[...new Set(seen.map((s) => s.map((x) => x.split(' ')[0]).join('+') || 'none'))].join(', ')}`);
    assert.deepEqual(seen.filter((s) => s.length > 1), []);
    // the leader counts once it runs the container's command, never before
    assert.deepEqual(seen.flat().filter((s) => s.startsWith('running') && s !== `running ${c!.pid}`), []);
    assert.deepEqual(scanNspawn().filter((x) => x.id === name), [{ runtime: 'nspawn', id: name, pid: c!.pid, status: 'running' }]);
    await stop(c!);
  });
});
