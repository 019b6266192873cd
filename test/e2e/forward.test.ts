// crashcart forward against real containers: runc's default spec gives each its own empty
// network namespace (only lo, as docker's --network none), a user-namespaced runc container,
// and a private dockerd's --network none container. The server is test/fixtures/echo.c,
// bound to 127.0.0.1 inside: nothing but the target's own namespace reaches it.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { privateDirs, runCrashcart } from '../helpers/cli.js';
import { dockerdForSuite } from '../helpers/dockerd.js';
import { closedAtOnce, ECHO_ARGS, ECHO_PORT, echoPath, fdCount, helperOf, roundTrip, startForward, waitEchoListening, type Forwarding } from '../helpers/forward.js';
import { onPath, requireCommand, requireRoot } from '../helpers/host.js';
import { readProc } from '../helpers/procs.js';
import { waitFor } from '../helpers/wait.js';

const USERNS = { hostUid: 100000, hostGid: 100000, size: 65536 };
const MiB = 1 << 20;

const canRun = () => process.getuid?.() === 0;

/** Ends a forwarding with `signal` and returns its exit; its helper must be gone too. */
async function endWith(f: Forwarding, signal: NodeJS.Signals): Promise<{ code: number | undefined; stderr: string }> {
  const helper = helperOf(f.pid);
  assert.ok(helper, 'the network helper runs while forwarding does');
  f.child.kill(signal);
  const r = await f.child;
  await waitFor(`helper ${helper.pid} is gone`, () => {
    const p = readProc(helper.pid);
    return !p || p.start !== helper.start || p.state === 'Z';
  });
  return { code: r.exitCode, stderr: String(r.stderr ?? '') };
}

const warnings = (stderr: string) => stderr.split('\n').filter(Boolean);

describe('crashcart forward', () => {
  let plain: ScratchContainer | undefined;
  let userns: ScratchContainer | undefined;
  let hostSockDir = '';
  let hostServer: Server | undefined;
  let hostConnections = 0;

  before(async () => {
    if (!canRun()) return;
    const echo = await echoPath();
    // a unix socket of the host that a symlink in the container names
    hostSockDir = mkdtempSync(join(tmpdir(), 'crashcart-hostsock-'));
    hostServer = createServer((s) => {
      hostConnections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => hostServer!.listen(join(hostSockDir, 'host.sock'), resolve));
    const made = await Promise.allSettled([
      createScratchContainer({
        sleeperPath: echo,
        programPath: '/bin/echo',
        args: ECHO_ARGS,
        readOnly: false,
        hostname: 'fwd-plain',
        files: [
          { path: '/etc/hosts', content: '127.0.0.1\tlocalhost\n127.0.0.1\tbackend backend.internal\n' },
          { path: '/tmp/evil-abs.sock', symlink: join(hostSockDir, 'host.sock') },
          { path: '/tmp/evil-rel.sock', symlink: `../../../../../../../..${join(hostSockDir, 'host.sock')}` },
        ],
      }),
      createScratchContainer({ sleeperPath: echo, programPath: '/bin/echo', args: ECHO_ARGS, readOnly: false, userns: USERNS }),
    ]);
    [plain, userns] = made.map((m) => (m.status === 'fulfilled' ? m.value : undefined));
    for (const m of made) if (m.status === 'rejected') throw m.reason;
    await Promise.all([waitEchoListening(plain!.pid), waitEchoListening(userns!.pid)]);
  });

  after(async () => {
    for (const c of [plain, userns]) await c?.remove();
    if (hostServer) await new Promise((resolve) => hostServer!.close(resolve));
    if (hostSockDir) rmSync(hostSockDir, { recursive: true, force: true });
  });

  const ready = (t: TestContext) => requireRoot(t) && requireCommand(t, 'runc');

  test('every byte both ways, with a half-close, into a namespace of its own (runc: lo only)', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `:${ECHO_PORT}`], 1);
    try {
      assert.match(f.lines[0]!, new RegExp(`^forwarding 127\\.0\\.0\\.1:\\d+ -> ${plain!.id}:${ECHO_PORT}$`));
      for (const size of [0, 1, 65_536, 8 * MiB]) {
        const r = await roundTrip(f.ports[0]!, size);
        assert.deepEqual(r, { sent: size, received: size, same: true, ended: true }, `${size} bytes`);
      }
    } finally {
      const end = await endWith(f, 'SIGINT');
      assert.equal(end.code, 0, end.stderr);
      assert.equal(end.stderr, '');
    }
  });

  test('--address: one free port on each address, IPv6 too', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `0:${ECHO_PORT}`, '--address', 'localhost,::1'], 2);
    try {
      assert.equal(f.ports[0], f.ports[1]);
      assert.match(f.lines[1]!, new RegExp(`^forwarding \\[::1\\]:${f.ports[0]} -> ${plain!.id}:${ECHO_PORT}$`));
      assert.equal((await roundTrip(f.ports[1]!, 70_000, '::1')).same, true);
      assert.equal((await roundTrip(f.ports[0]!, 70_000, '127.0.0.1')).same, true);
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });

  test('a half-close by the server: it ends its side first, and what the client sends after still reaches it', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `0:${ECHO_PORT + 1}`], 1);
    try {
      rmSync(join(plain!.rootfs, 'tmp/sink.out'), { force: true });
      const data = randomBytes(3 * MiB);
      const got = await new Promise<string>((resolve, reject) => {
        const s = connect({ port: f.ports[0]!, host: '127.0.0.1', allowHalfOpen: true });
        let text = '';
        s.on('data', (d: Buffer) => (text += d.toString()));
        s.on('end', () => s.end(data)); // only now, after the server's FIN
        s.on('error', reject);
        s.on('close', () => resolve(text));
      });
      assert.equal(got, 'bye\n');
      const sink = join(plain!.rootfs, 'tmp/sink.out');
      await waitFor('the server wrote what it received after its FIN', () => existsSync(sink));
      assert.ok(readFileSync(sink).equals(data), 'every byte sent after the half-close arrived');
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });

  test('200 connections at once, each checked; no fd left once they close', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `0:${ECHO_PORT}`], 1);
    try {
      const baseline = fdCount(f.pid);
      const t0 = performance.now();
      const all = await Promise.all(Array.from({ length: 200 }, (_, i) => roundTrip(f.ports[0]!, 16_384 + i)));
      t.diagnostic(`200 concurrent connections of 16 KiB both ways: ${Math.round(performance.now() - t0)} ms`);
      assert.ok(all.every((r) => r.same && r.ended && r.received === r.sent), 'every connection came back whole');
      await waitFor(`crashcart's fds are back to ${baseline}`, () => fdCount(f.pid) === baseline);
    } finally {
      assert.equal((await endWith(f, 'SIGTERM')).code, 0);
    }
  });

  test('a unix socket and an abstract one in the container', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, '0:/tmp/echo.sock', '0:@echo-abstract'], 2);
    try {
      assert.match(f.lines[0]!, new RegExp(`-> ${plain!.id}:/tmp/echo\\.sock$`));
      assert.match(f.lines[1]!, new RegExp(`-> ${plain!.id}:@echo-abstract$`));
      for (const port of f.ports) assert.deepEqual(await roundTrip(port, 2 * MiB), { sent: 2 * MiB, received: 2 * MiB, same: true, ended: true });
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });

  test("a symlink in the container to a host socket resolves inside the container's root", async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, '0:/tmp/evil-abs.sock', '0:/tmp/evil-rel.sock'], 2);
    try {
      for (const port of f.ports) assert.notEqual(await closedAtOnce(port), 'data');
      await waitFor('two warnings', () => warnings(f.stderr()).length === 2);
      const w = warnings(f.stderr());
      assert.match(w[0]!, new RegExp(`^crashcart: warning: connection from 127\\.0\\.0\\.1:\\d+ closed: cannot connect to /tmp/evil-abs\\.sock in ${plain!.id}: ENOENT \\(no such file or directory\\)$`));
      assert.match(w[1]!, /cannot connect to \/tmp\/evil-rel\.sock in .*: ENOENT/);
      assert.equal(hostConnections, 0, 'the host socket saw no connection');
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });

  test('a refused port: the connection is closed with one warning, and its listener stays', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, '0:9999', `0:${ECHO_PORT}`], 2);
    try {
      for (let i = 1; i <= 2; i++) {
        assert.notEqual(await closedAtOnce(f.ports[0]!), 'data');
        await waitFor(`${i} warning(s)`, () => warnings(f.stderr()).length === i);
      }
      for (const line of warnings(f.stderr())) {
        assert.match(line, new RegExp(`^crashcart: warning: connection from 127\\.0\\.0\\.1:\\d+ closed: cannot connect to 127\\.0\\.0\\.1:9999 in ${plain!.id}: ECONNREFUSED \\(connection refused\\)$`));
      }
      assert.equal((await roundTrip(f.ports[1]!, 1000)).same, true, 'the other listener works');
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });

  test("HOST:PORT as the container's /etc/hosts resolves it; a name it does not know is refused", async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `0:backend:${ECHO_PORT}`, `0:backend.internal:${ECHO_PORT}`], 2);
    try {
      assert.match(f.lines[0]!, new RegExp(`-> ${plain!.id}:backend:${ECHO_PORT} \\(127\\.0\\.0\\.1\\)$`));
      assert.equal((await roundTrip(f.ports[1]!, 5000)).same, true);
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
    const r = await runCrashcart(['forward', plain!.id, '0:db:5432']);
    assert.equal(r.code, 125);
    assert.equal(r.stderr, `crashcart: cannot resolve 'db' in runc container ${plain!.id}: it is not in the container's /etc/hosts; crashcart does not query DNS from inside the container; give its IP address`);
  });

  test('bad forwards and a local port in use fail in one line before anything runs', async (t) => {
    if (!ready(t)) return;
    let r = await runCrashcart(['forward', plain!.id]);
    assert.deepEqual([r.code, r.stderr], [125, 'crashcart: crashcart forward needs at least one port; e.g. crashcart forward web 8080']);
    r = await runCrashcart(['forward', plain!.id, '0']);
    assert.equal(r.code, 125);
    assert.match(r.stderr, /^crashcart: invalid forward '0': port '0' is not a port \(1-65535\); give /);
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const port = (busy.address() as { port: number }).port;
      r = await runCrashcart(['forward', plain!.id, `${port}:${ECHO_PORT}`]);
      assert.deepEqual([r.code, r.stderr], [125, `crashcart: cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is in use); pick another local port, or 0 for a free one`]);
    } finally {
      busy.close();
    }
  });

  test('the target stopping ends it with 125 and a line saying so; its helper goes too', async (t) => {
    if (!ready(t)) return;
    const c = await createScratchContainer({ sleeperPath: await echoPath(), programPath: '/bin/echo', args: ECHO_ARGS, readOnly: false });
    try {
      await waitEchoListening(c.pid);
      const f = await startForward([c.id, `0:${ECHO_PORT}`], 1);
      const helper = helperOf(f.pid);
      assert.ok(helper);
      assert.equal((await roundTrip(f.ports[0]!, 100)).same, true);
      await execa('runc', ['kill', c.id, 'KILL'], { stdin: 'ignore' });
      const r = await f.child;
      assert.equal(r.exitCode, 125);
      assert.equal(String(r.stderr), `crashcart: runc container ${c.id} stopped (pid ${c.pid} exited): forwarding ended after 1 connection(s)`);
      assert.ok(!readProc(helper.pid) || readProc(helper.pid)!.start !== helper.start, 'the helper is gone');
    } finally {
      await c.remove();
    }
  });

  test('Ctrl-C ends it with 0 and the audit log has where it led', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `0:${ECHO_PORT}`], 1);
    assert.equal((await roundTrip(f.ports[0]!, 10)).same, true);
    const end = await endWith(f, 'SIGINT');
    assert.deepEqual([end.code, end.stderr], [0, '']);
    const lines = readFileSync(privateDirs().audit, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const mine = lines.filter((l) => l.event === 'forward' && l.forwards?.[0] === f.lines[0]!.replace(/^forwarding /, ''));
    assert.deepEqual(mine.map((l) => [l.state, l.connections, l.exitCode]), [['started', undefined, undefined], ['ended', 1, 0]]);
    assert.equal(mine[0].target.id, plain!.id);
  });

  test('crashcart killed with SIGKILL takes its helper with it (PR_SET_PDEATHSIG)', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([plain!.id, `0:${ECHO_PORT}`], 1);
    const helper = helperOf(f.pid);
    assert.ok(helper);
    f.child.kill('SIGKILL');
    await f.child;
    await waitFor(`helper ${helper.pid} is gone`, () => {
      const p = readProc(helper.pid);
      return !p || p.start !== helper.start || p.state === 'Z';
    });
  });

  test('into a user-namespaced container', async (t) => {
    if (!ready(t)) return;
    const f = await startForward([userns!.id, `0:${ECHO_PORT}`, '0:/tmp/echo.sock'], 2);
    try {
      for (const port of f.ports) assert.deepEqual(await roundTrip(port, MiB), { sent: MiB, received: MiB, same: true, ended: true });
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });
});

describe('crashcart forward: docker', () => {
  const dockerd = dockerdForSuite('echo:latest', echoPath, () => canRun() && (!!process.env.CI || onPath('dockerd')));

  test('a --network none container with its server on 127.0.0.1', async (t) => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd')) return;
    const d = dockerd();
    const run = await d.docker(['run', '-d', '--read-only', '--network', 'none', '--name', 'fwd', 'echo:latest', '/bin/sleeper', String(ECHO_PORT)]);
    assert.equal(run.code, 0, run.stderr);
    const pid = Number(JSON.parse((await d.docker(['inspect', 'fwd'])).stdout)[0].State.Pid);
    await waitEchoListening(pid);
    const f = await startForward(['fwd', `0:${ECHO_PORT}`], 1, d.env);
    try {
      assert.match(f.lines[0]!, new RegExp(`-> fwd:${ECHO_PORT}$`));
      const all = await Promise.all(Array.from({ length: 20 }, () => roundTrip(f.ports[0]!, 256 * 1024)));
      assert.ok(all.every((r) => r.same && r.ended));
    } finally {
      assert.equal((await endWith(f, 'SIGINT')).code, 0);
    }
  });
});
