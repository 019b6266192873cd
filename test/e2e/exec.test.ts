// --exec: the toolkit is grafted by crashcart, the command runs through the runtime's own
// exec (runc exec here), so it has exactly the container's capabilities and security
// settings, and the toolkit is taken away afterwards.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { runCrashcart, testImage } from '../helpers/cli.js';
import { assertNoLeaks, onPath, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';

/** The lines of a /proc status file that say what a process may do. */
const SECURITY = /^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):/;
const securityOf = (status: string) => status.split('\n').filter((l) => SECURITY.test(l)).join('\n');

describe('--exec through runc exec', { skip: !(process.getuid?.() === 0 && onPath('runc')) && 'needs root and runc' }, () => {
  let c: ScratchContainer | undefined;
  let image = '';

  before(async () => {
    image = await testImage();
    c = await createScratchContainer({ sleeperPath: await sleeperPath(), readOnly: true });
  });
  after(async () => {
    await c?.remove();
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc') && c !== undefined;
  const snap = () => snapshotHost({ pid: c!.pid, rootfs: c!.rootfs });
  const crashcart = (args: string[], input?: string) => runCrashcart(['-i', image, ...args], input === undefined ? {} : { input });

  test("the command gets the container's capabilities and security settings, not crashcart's", async (t) => {
    if (!ready(t)) return;
    const before = await snap();
    const container = securityOf(readFileSync(`/proc/${c!.pid}/status`, 'utf8'));
    const viaRuntime = await crashcart(['--exec', c!.id, '--', 'cat', '/proc/self/status']);
    assert.equal(viaRuntime.code, 0, viaRuntime.stderr);
    assert.equal(securityOf(viaRuntime.stdout), container);
    // without --exec crashcart enters the namespaces itself and keeps root's full set
    const direct = await crashcart([c!.id, '--', 'cat', '/proc/self/status']);
    assert.equal(direct.code, 0, direct.stderr);
    assert.notEqual(securityOf(direct.stdout), container);
    assertNoLeaks(before, await snap());
  });

  test('stdin reaches the default shell, stdout stays clean, and -e is --exec', async (t) => {
    if (!ready(t)) return;
    const before = await snap();
    const r = await crashcart(['-e', c!.id], 'echo "$PATH"; ls /dev/crashcart/bin/busybox; cat /proc/1/comm\n');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const [path, busybox, comm] = r.stdout.split('\n');
    assert.match(path!, /^\/dev\/crashcart\/bin:/);
    assert.equal(busybox, '/dev/crashcart/bin/busybox');
    assert.equal(comm, 'sleeper');
    assertNoLeaks(before, await snap());
  });

  test("exit codes: the command's own, 127 for a missing command, --env and --workdir reach it", async (t) => {
    if (!ready(t)) return;
    const before = await snap();
    const seven = await crashcart(['-e', c!.id, '--', 'sh', '-c', 'exit 7']);
    assert.equal(seven.code, 7, seven.stderr);
    const missing = await crashcart(['-e', c!.id, '--', 'no-such-tool']);
    assert.equal(missing.code, 127);
    assert.equal(missing.stderr, 'crashcart: command not found in the container: no-such-tool (searched /dev/crashcart/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin); the toolkit is at /dev/crashcart/bin; give a full path or a tool that exists');
    const env = await crashcart(['-e', '--env', 'GREETING=hi', '--workdir', '/dev/crashcart', c!.id, '--', 'sh', '-c', 'echo "$GREETING $PWD"']);
    assert.equal(env.code, 0, env.stderr);
    assert.equal(env.stdout, 'hi /dev/crashcart');
    assertNoLeaks(before, await snap());
  });

  test('--exec refuses a plain PID and options it cannot honour, before grafting anything', async (t) => {
    if (!ready(t)) return;
    const before = await snap();
    const pid = await crashcart(['-e', '--runtime', 'pid', String(c!.pid), '--', 'true']);
    assert.equal(pid.code, 125);
    assert.equal(pid.stderr, `crashcart: --exec needs a container runtime, but process ${c!.pid} was given as a plain PID; name the container instead, or attach without --exec`);
    const clash = await crashcart(['-e', '--no-target-env', c!.id, '--', 'true']);
    assert.equal(clash.code, 125);
    assert.equal(clash.stderr, "crashcart: --exec and --no-target-env exclude each other; with --exec the runtime's exec decides the command's environment and cgroup");
    assertNoLeaks(before, await snap());
  });
});
