// crashcart with daemons that hang: a unix socket in this process that accepts every
// connection and never answers (what a wedged dockerd or containerd looks like from
// outside), named by DOCKER_HOST=unix://PATH and CONTAINERD_ADDRESS=PATH, and real runc
// containers. An exact runc ID must attach at once, a lookup that needs the hung daemon
// must fail soon and say which, ps must list the rest; crashcart itself must close every
// connection it opened, and leave nothing behind.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import type { PsRow } from '../../src/cli/commands/ps.js';
import { processState } from '../../src/core/proc.js';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { cliEnv, runCrashcart, testImage, type CliResult } from '../helpers/cli.js';
import { assertNoLeaks, onPath, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { HungSocket } from '../helpers/hung-socket.js';

// The old behaviour waited as long as the hung socket lived; these bounds are generous.
const ATTACH_BOUND_MS = 8_000;
const FAIL_BOUND_MS = 8_000;

describe('hung daemons', { skip: !(process.getuid?.() === 0 && onPath('runc')) && 'needs root and runc' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-hung-'));
  const runcRoot = join(dir, 'runc');
  const hung = new HungSocket(join(dir, 'hung.sock'));
  const absent = join(dir, 'absent');
  // only runc (a private state root) is present, and with `env` the two hung daemons
  const isolated: Record<string, string> = {
    DOCKER_HOST: `unix://${absent}`,
    CONTAINERD_ADDRESS: absent,
    CRASHCART_RUNC_ROOT: runcRoot,
    CRASHCART_CRUN_ROOT: absent,
    CRASHCART_CONTAINERD_STATE: absent,
    CRASHCART_LXC_PATH: absent,
    CRASHCART_NSPAWN_DIR: absent,
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
    CONTAINERS_CONF: join(dir, 'containers.conf'),
  };
  const env = { ...isolated, DOCKER_HOST: `unix://${hung.path}`, CONTAINERD_ADDRESS: hung.path };
  let image = '';
  let web: ScratchContainer | undefined;
  let plus: ScratchContainer | undefined;

  before(async () => {
    writeFileSync(join(dir, 'storage.conf'), `[storage]\ngraphroot = "${join(absent, 'podman')}"\n`);
    writeFileSync(join(dir, 'containers.conf'), '');
    await hung.start();
    image = await testImage();
    const sleeper = await sleeperPath();
    web = await createScratchContainer({ sleeperPath: sleeper, runcRoot, id: `hung-${randomBytes(4).toString('hex')}` });
    // '+' is fine in a runc ID, and in no docker name or containerd ID
    plus = await createScratchContainer({ sleeperPath: sleeper, runcRoot, id: `hung+${randomBytes(4).toString('hex')}` });
  });

  after(async () => {
    await web?.remove();
    await plus?.remove();
    await hung.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc') && plus !== undefined;

  const warnings = (r: CliResult) => r.stderr.split('\n').filter(Boolean);
  const dockerWarning = (id: string, within: string) => `crashcart: warning: the docker daemon at ${hung.path} did not answer within ${within}; ` +
    `going on with runc ${id} without it (a docker container with the ID or name '${id}' would have made it ambiguous)`;
  const containerdWarning = (id: string, within: string) => `crashcart: warning: containerd at ${hung.path} did not answer within ${within}; ` +
    `going on with runc ${id} without it (a containerd container with the ID or name '${id}' would have made it ambiguous)`;

  async function timed(args: string[], extra: Record<string, string> = env): Promise<CliResult & { ms: number }> {
    const t0 = performance.now();
    const r = await runCrashcart(args, { env: extra });
    return { ...r, ms: Math.round(performance.now() - t0) };
  }

  test('an exact runc ID attaches at once with both daemons hung; crashcart closes their connections itself and warns once for each', async (t) => {
    if (!ready(t)) return;
    const c = web!;
    const before = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
    const accepted = hung.accepted;
    // `cat` in the container waits on crashcart's stdin: the session is still going when the
    // hung server must have seen both connections closed
    const t0 = performance.now();
    const child = execa(process.execPath, [join(projectRoot(), 'bin', 'crashcart'), '-i', image, c.id, '--', 'cat'], {
      cwd: projectRoot(), env: cliEnv(env), reject: false, timeout: 60_000,
    });
    try {
      await hung.until('docker and containerd were both asked', () => hung.accepted >= accepted + 2, ATTACH_BOUND_MS);
      await hung.allClosed(ATTACH_BOUND_MS);
      assert.equal(child.exitCode, null, 'crashcart is still in the session');
      child.stdin!.end('through the toolkit\n');
      const r = await child;
      const ms = Math.round(performance.now() - t0);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.stdout, 'through the toolkit');
      assert.deepEqual(r.stderr.split('\n'), [dockerWarning(c.id, '0.06 s'), containerdWarning(c.id, '0.06 s')]);
      assert.equal(hung.accepted, accepted + 2, 'one connection each');
      t.diagnostic(`exact runc ID, both daemons hung, through cat: ${ms} ms`);
    } finally {
      child.kill('SIGKILL');
      await child;
    }
    assertNoLeaks(before, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });

  test('timed against the same attach with no daemons, well within the bound', async (t) => {
    if (!ready(t)) return;
    const c = web!;
    const before = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
    const plain = await timed(['-i', image, c.id, '--', 'true'], isolated);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal(plain.stderr, '');
    const r = await timed(['-i', image, c.id, '--', 'true']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(warnings(r).length, 2, r.stderr);
    assert.ok(r.ms < ATTACH_BOUND_MS, `${r.ms} ms`);
    await hung.allClosed();
    t.diagnostic(`crashcart ID -- true: ${plain.ms} ms with no daemons, ${r.ms} ms with docker and containerd hung`);
    assertNoLeaks(before, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
  });

  test('no warning where no daemon answer could matter: a name they cannot have, or --runtime runc', async (t) => {
    if (!ready(t)) return;
    for (const [c, args] of [[plus!, [plus!.id]], [web!, ['--runtime', 'runc', web!.id]]] as const) {
      const before = await snapshotHost({ pid: c.pid, rootfs: c.rootfs });
      const accepted = hung.accepted;
      const r = await timed(['-i', image, ...args, '--', 'cat', '/proc/1/comm']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'sleeper');
      assert.equal(r.stderr, '', args.join(' '));
      assert.ok(r.ms < ATTACH_BOUND_MS, `${r.ms} ms`);
      await hung.allClosed();
      if (args[0] === '--runtime') assert.equal(hung.accepted, accepted, 'no daemon was asked');
      t.diagnostic(`${args.join(' ')}: ${r.ms} ms`);
      assertNoLeaks(before, await snapshotHost({ pid: c.pid, rootfs: c.rootfs }));
    }
  });

  test('a name only docker could know, and an ID prefix, fail soon with 125, naming the hung daemons and the socket', async (t) => {
    if (!ready(t)) return;
    const before = await snapshotHost();
    const name = await timed(['-i', image, 'web', '--', 'true']);
    assert.equal(name.code, 125, name.stderr);
    assert.equal(name.stdout, '');
    assert.deepEqual(warnings(name), [
      "crashcart: no container or process matches 'web', and not every runtime answered " +
      `(docker: the docker daemon at ${hung.path} did not answer within 2 s; containerd: containerd at ${hung.path} did not answer within 2 s); ` +
      'a daemon that accepts connections and sends nothing hangs: check it, restart it, or name another runtime with --runtime',
    ]);
    assert.ok(name.ms < FAIL_BOUND_MS, `${name.ms} ms`);

    const prefix = web!.id.slice(0, 7);
    const byPrefix = await timed(['-i', image, prefix, '--', 'true']);
    assert.equal(byPrefix.code, 125, byPrefix.stderr);
    assert.deepEqual(warnings(byPrefix), [
      `crashcart: '${prefix}' starts the ID of runc ${web!.id}, but not every runtime answered ` +
      `(docker: the docker daemon at ${hung.path} did not answer within 2 s; containerd: containerd at ${hung.path} did not answer within 2 s), ` +
      'and a container of theirs may start the same way; give the whole ID or the name, or the runtime with --runtime',
    ]);
    assert.ok(byPrefix.ms < FAIL_BOUND_MS, `${byPrefix.ms} ms`);
    await hung.allClosed();
    t.diagnostic(`a docker name: ${name.ms} ms; an ID prefix: ${byPrefix.ms} ms`);
    assertNoLeaks(before, await snapshotHost());
  });

  test('ps lists the runc containers, a stopped one with pid 0, and warns once about each hung daemon', async (t) => {
    if (!ready(t)) return;
    const stopped = await createScratchContainer({ sleeperPath: await sleeperPath(), runcRoot });
    t.after(() => stopped.remove());
    process.kill(stopped.pid, 'SIGTERM'); // the sleeper exits 0; runc keeps the container as stopped
    for (let i = 0; i < 500 && !['Z', 'X', undefined].includes(processState(stopped.pid)); i++) await delay(10);
    const before = await snapshotHost();
    const r = await timed(['ps', '--json', '-a']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(warnings(r), [
      `crashcart: warning: docker not listed: the docker daemon at ${hung.path} did not answer within 2 s`,
      `crashcart: warning: containerd not listed: containerd at ${hung.path} did not answer within 2 s`,
    ]);
    const rows = JSON.parse(r.stdout) as PsRow[];
    assert.deepEqual(rows.map((row) => row.id).sort(), [web!.id, plus!.id, stopped.id].sort());
    assert.deepEqual(rows.find((row) => row.id === web!.id), {
      runtime: 'runc', id: web!.id, name: null, pid: web!.pid, status: 'running', grafted: false, sessions: 0, pinned: false,
    });
    // runc keeps the old pid in its state; it is no process of the container any more
    assert.deepEqual(rows.find((row) => row.id === stopped.id), {
      runtime: 'runc', id: stopped.id, name: null, pid: 0, status: 'stopped', grafted: false, sessions: 0, pinned: false, exitCode: null, finishedAt: null, opens: true,
    });
    assert.ok(r.ms < FAIL_BOUND_MS, `${r.ms} ms`);
    await hung.allClosed();
    t.diagnostic(`ps -a with docker and containerd hung: ${r.ms} ms`);
    assertNoLeaks(before, await snapshotHost());
  });
});
