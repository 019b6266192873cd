// --stopped on a real LXC container that crashed (lxc-start under a private lxcpath: crashy's
// root as a dir backend, its init as uid 1000 in /app, a bind mount at /data): its files,
// hostname, user, environment and working directory from its config, nothing changed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { buildCrashyRoot, CRASHY } from '../helpers/crashy.js';
import { assertClean, assertFailure, snapshot } from '../helpers/expect.js';
import { onPath, requireCommand, requireRoot } from '../helpers/host.js';
import { createPrivateLxc, type PrivateLxc } from '../helpers/lxc.js';
import { checkStopped } from '../helpers/sandbox.js';

describe('--stopped with LXC', () => {
  let lxc: PrivateLxc | undefined;
  let image = '';
  let setupError: unknown;

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'lxc-start')) return false;
    if (setupError) throw setupError;
    return lxc !== undefined;
  };

  before(async () => {
    if (process.getuid?.() !== 0) return;
    if (!process.env.CI && !onPath('lxc-start')) return;
    try {
      image = await testImage();
      lxc = await createPrivateLxc();
    } catch (err) {
      setupError = err;
    }
  });
  after(async () => {
    if (lxc) assert.deepEqual(await lxc.destroy(), [], 'LXC left something behind');
  });

  /** A container defined through the helper (so it is cleaned up), its config then crashy's; run until it exits. */
  async function crashed(name: string, backend: (root: string) => string = (root) => `dir:${root}`): Promise<{ root: string; volume: string }> {
    await lxc!.define(name);
    const root = join(lxc!.dir, 'crashy-roots', name);
    await buildCrashyRoot(root);
    const volume = join(lxc!.dir, `vol-${name}`);
    await mkdir(volume);
    await chmod(volume, 0o777); // crashy runs as uid 1000
    await writeFile(join(volume, 'kept'), 'volume data\n');
    await writeFile(join(lxc!.path, name, 'config'), [
      `lxc.uts.name = ${CRASHY.hostname}`,
      `lxc.rootfs.path = ${backend(root)}`,
      `lxc.init.cmd = ${CRASHY.entrypoint.join(' ')}`,
      `lxc.init.uid = ${CRASHY.uid}`,
      `lxc.init.gid = ${CRASHY.gid}`,
      `lxc.init.cwd = ${CRASHY.cwd}`,
      ...CRASHY.env.map((e) => `lxc.environment = ${e}`),
      `lxc.mount.entry = ${volume} data none bind 0 0`,
      'lxc.net.0.type = empty',
      'lxc.apparmor.profile = unconfined',
      'lxc.mount.auto = proc:mixed sys:ro',
      'lxc.autodev = 1',
      'lxc.console.path = none',
      'lxc.tty.max = 0',
      'lxc.pty.max = 0',
      '',
    ].join('\n'));
    if (backend(root).startsWith('dir:')) {
      // -F: in the foreground until its init has exited
      await execa('lxc-start', ['-P', lxc!.path, '-n', name, '-F', '-o', join(lxc!.path, name, 'lxc.log'), '-l', 'INFO'], { reject: false, stdin: 'ignore', timeout: 30_000 });
      assert.equal((await lxc!.info(name)).status, 'stopped');
    }
    return { root, volume };
  }

  test('a crashed container: its last words, config and bind mount; all unchanged after', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    const { root, volume } = await crashed(name);
    t.after(() => rm(volume, { recursive: true, force: true }));
    await checkStopped({
      args: ['--stopped', name],
      env: lxc!.env,
      image,
      unchanged: { root, volume },
      firstLine: `crashcart: ${name} is stopped (LXC records no exit code); its files are opened in a sandbox: changes are thrown away, none of its processes run, network: loopback only`,
      also: { script: 'cat /data/kept /data/note', lines: ['volume data', `note from ${CRASHY.uid}`] },
    });
  });

  test('a backend crashcart does not open (lvm): one line, 125', async (t) => {
    if (!ready(t)) return;
    const name = `crashy-${randomBytes(3).toString('hex')}`;
    await crashed(name, () => 'lvm:/dev/vg0/crashy');
    const host = await snapshot();
    const r = await runCrashcart(['-i', image, '--runtime', 'lxc', '--stopped', name, '--', 'true'], { env: lxc!.env });
    assertFailure(r, 125, `crashcart: LXC container ${name} is stored by the lvm backend (lxc.rootfs.path = lvm:/dev/vg0/crashy), which crashcart cannot open (it opens LXC's dir and overlay backends); ` +
      'mount its root filesystem read-only and open that with --rootfs DIR');
    await assertClean(host);
  });
});
