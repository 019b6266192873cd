// Deadlines end what a lookup opened: a unix socket that accepts and never answers (a hung
// daemon, here in this process) sees its connections closed, a command is killed. No root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrashcartError } from '../../src/core/errors.js';
import { isRunning } from '../../src/core/proc.js';
import { listContainerd } from '../../src/runtimes/containerd.js';
import { abortError, DeadlinePassed, runCommand, withDeadline } from '../../src/runtimes/deadline.js';
import { engineGet } from '../../src/runtimes/engine-api.js';
import { grpcClient } from '../../src/runtimes/grpc.js';
import { HungSocket } from '../helpers/hung-socket.js';

let dir = '';
let hung: HungSocket;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-deadline-'));
  hung = new HungSocket(join(dir, 'hung.sock'));
  await hung.start();
});

after(async () => {
  await hung.stop();
  rmSync(dir, { recursive: true, force: true });
});

const aborted = () => {
  const c = new AbortController();
  return { c, signal: c.signal };
};

describe('deadlines', { timeout: 20_000 }, () => {
  test('withDeadline: the work sees its signal abort with DeadlinePassed, and a parent abort passes on', async () => {
    const reason = await withDeadline(20, undefined, (signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason))));
    assert.ok(reason instanceof DeadlinePassed && reason.ms === 20);
    const parent = new AbortController();
    const why = new Error('not needed');
    const p = withDeadline(10_000, parent.signal, (signal) => new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason))));
    parent.abort(why);
    assert.equal(await p, why);
  });

  test('abortError: a deadline names what did not answer; a cancel is its reason', () => {
    const c = new AbortController();
    c.abort(new DeadlinePassed(2_000));
    const e = abortError(c.signal, 'the docker daemon at /x.sock', 'check dockerd');
    assert.ok(e instanceof CrashcartError);
    assert.equal(e.message, 'the docker daemon at /x.sock did not answer within 2 s');
    assert.equal((e as CrashcartError).code, 'ETIMEDOUT');
    const d = new AbortController();
    const why = new Error('chosen');
    d.abort(why);
    assert.equal(abortError(d.signal, 'x', 'y'), why);
  });

  test("the Engine API: a hung daemon's request is ended at the deadline, and its connection closed", async () => {
    const before = hung.accepted;
    const t0 = Date.now();
    await assert.rejects(engineGet(hung.path, '/containers/json', 100), (e: CrashcartError) => {
      assert.equal(e.message, `the docker daemon at ${hung.path} did not answer within 0.1 s`);
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000);
    assert.equal(hung.accepted, before + 1);
    await hung.allClosed();
  });

  test('the Engine API: an abort ends the request at once', async () => {
    const { c, signal } = aborted();
    const p = engineGet(hung.path, '/containers/json', 10_000, signal);
    const why = new Error('not needed');
    setImmediate(() => c.abort(why));
    await assert.rejects(p, (e) => e === why);
    await hung.allClosed();
  });

  test('gRPC: a call that gets no answer ends the whole session and its socket', async () => {
    const client = await grpcClient(hung.path, 'containerd', 100);
    await assert.rejects(client.call('/containerd.services.namespaces.v1.Namespaces/List', Buffer.alloc(0)), (e: CrashcartError) => {
      assert.equal(e.message, `containerd at ${hung.path} did not answer List within 0.1 s`);
      return true;
    });
    // the session is gone: the server sees the socket closed without close() being called
    await hung.allClosed();
    await assert.rejects(client.call('/x.Y/Z', Buffer.alloc(0)), /did not answer List/);
    client.close();
  });

  test("containerd's listing: one deadline, and nothing left open after it", async () => {
    const t0 = Date.now();
    const { signal } = aborted();
    await assert.rejects(withDeadline(100, signal, (s) => listContainerd(undefined, hung.path, s)), (e: CrashcartError) => {
      assert.equal(e.message, `containerd at ${hung.path} did not answer within 0.1 s`);
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000);
    await hung.allClosed();
  });

  test('runCommand: output and exit code; a command that is not there is ENOENT', async () => {
    const { signal } = aborted();
    const r = await runCommand('sh', ['-c', 'echo out; echo err >&2; exit 3'], { signal, what: 'sh', hint: '' });
    assert.deepEqual(r, { code: 3, stdout: 'out\n', stderr: 'err\n' });
    await assert.rejects(runCommand('/nonexistent/crashcart-no-such-command', [], { signal, what: 'x', hint: '' }), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  });

  test('runCommand: at the deadline the command is killed, even when a grandchild holds its pipes', async () => {
    const pidFile = join(dir, 'pids');
    const t0 = Date.now();
    await assert.rejects(withDeadline(300, undefined, (signal) =>
      // the shell starts a sleep that inherits its stdout and stderr, notes both pids, and waits
      runCommand('sh', ['-c', `sleep 100 & echo $$ $! > ${pidFile}; wait`], { signal, what: 'the test command', hint: 'none' })), (e: CrashcartError) => {
      assert.equal(e.message, 'the test command did not answer within 0.3 s');
      return true;
    });
    assert.ok(Date.now() - t0 < 5_000);
    const [shell, sleep] = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
    try {
      for (let i = 0; i < 500 && isRunning(shell); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(!isRunning(shell), `the shell ${shell} still runs`);
    } finally {
      // the orphaned sleep still holds the pipes, which are not ours any more
      if (isRunning(sleep)) process.kill(sleep, 'SIGKILL');
    }
  });
});
