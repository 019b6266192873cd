// The resolution policy with daemons that answer, fail or hang: fake runtimes whose
// answers the tests hold in their hands. No root, no sockets.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CrashcartError } from '../../src/core/errors.js';
import { DAEMON_GRACE_MS, listAmong, resolveAmong, type LookupOptions } from '../../src/runtimes/index.js';
import type { Container, Runtime } from '../../src/runtimes/types.js';

interface Fake {
  runtime: Runtime;
  /** how many times it was asked, and the signal of the last lookup */
  asked: number;
  signal?: AbortSignal;
  answer(cs: Container[]): void;
  fail(e: Error): void;
}

/** A runtime whose answer comes when the test gives it (never, if it does not). */
function fake(name: string, extra: Partial<Runtime> = {}): Fake {
  let resolve: (cs: Container[]) => void = () => {};
  let reject: (e: Error) => void = () => {};
  const answer = new Promise<Container[]>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  answer.catch(() => {}); // a fake that fails is awaited by the code under test, or not at all
  const f: Fake = {
    asked: 0,
    answer: (cs) => resolve(cs),
    fail: (e) => reject(e),
    runtime: {
      name,
      present: () => true,
      list: (_scope, signal) => f.runtime.find!('', undefined, signal),
      find: (_q, _scope, signal) => {
        f.asked++;
        f.signal = signal;
        return answer;
      },
      ...extra,
    },
  };
  return f;
}

/** A runtime that reads the disk: it answers at once with `cs`. */
function disk(name: string, cs: Container[]): Fake {
  const f = fake(name);
  f.answer(cs);
  return f;
}

/** A daemon-backed runtime, named after its socket in messages. */
const daemon = (name: string, extra: Partial<Runtime> = {}) => fake(name, { daemon: () => `the ${name} daemon at /run/${name}.sock`, ...extra });

const live = (runtime: string, id: string, name?: string): Container => ({ runtime, id, ...(name ? { name } : {}), pid: process.pid, status: 'running' });

/** Resolves with the target and the warnings printed, and how long it took. */
async function resolve(query: string, fakes: Fake[], o: LookupOptions & { pids?: boolean } = {}) {
  const warnings: string[] = [];
  const t0 = performance.now();
  const target = await resolveAmong(query, fakes.map((f) => f.runtime), { pids: false, warn: (l) => warnings.push(l), ...o });
  return { target, warnings, ms: performance.now() - t0 };
}

async function refusal(query: string, fakes: Fake[], o: LookupOptions & { pids?: boolean } = {}) {
  const warnings: string[] = [];
  const t0 = performance.now();
  try {
    const t = await resolveAmong(query, fakes.map((f) => f.runtime), { pids: false, warn: (l) => warnings.push(l), ...o });
    assert.fail(`'${query}' resolved to ${JSON.stringify(t)}`);
  } catch (e) {
    assert.ok(e instanceof CrashcartError, String(e));
    assert.equal(e.exitCode, 125);
    return { error: e, warnings, ms: performance.now() - t0 };
  }
}

// Long enough that a test which waited for it would be noticed, short enough not to hang.
const LONG = 10_000;

describe('resolution with daemons', () => {
  test('the grace is short: a healthy daemon answers within it', () => {
    assert.ok(DAEMON_GRACE_MS >= 40 && DAEMON_GRACE_MS <= 100, String(DAEMON_GRACE_MS));
  });

  test('a daemon that answers in time: every answer is used, no warning', async () => {
    const docker = daemon('docker');
    const runc = disk('runc', [live('runc', 'web')]);
    queueMicrotask(() => docker.answer([live('docker', 'a'.repeat(64), 'db')]));
    const r = await resolve('web', [runc, docker], { graceMs: LONG, deadlineMs: LONG });
    assert.equal(r.target.runtime, 'runc');
    assert.deepEqual(r.warnings, []);
    assert.ok(r.ms < LONG / 2, `${r.ms} ms`);
  });

  test('a name the disk and a daemon both have is ambiguous, whoever answers first', async () => {
    const docker = daemon('docker');
    queueMicrotask(() => docker.answer([live('docker', 'b'.repeat(64), 'web')]));
    const r = await refusal('web', [disk('runc', [live('runc', 'web')]), docker], { graceMs: LONG, deadlineMs: LONG });
    assert.equal(r.error.message, `'web' matches 2 containers: runc web, docker ${'b'.repeat(64)} (web)`);
  });

  test('a hung daemon: the exact match on disk is used after the grace, with one warning naming it', async () => {
    const docker = daemon('docker');
    const containerd = daemon('containerd');
    const r = await resolve('web', [disk('runc', [live('runc', 'web')]), docker, containerd], { graceMs: 20, deadlineMs: LONG });
    assert.equal(r.target.runtime, 'runc');
    assert.equal(r.target.id, 'web');
    assert.ok(r.ms >= 19 && r.ms < LONG / 2, `${r.ms} ms`);
    assert.deepEqual(r.warnings, [
      "the docker daemon at /run/docker.sock did not answer within 0.02 s; going on with runc web without it (a docker container with the ID or name 'web' would have made it ambiguous)",
      "the containerd daemon at /run/containerd.sock did not answer within 0.02 s; going on with runc web without it (a containerd container with the ID or name 'web' would have made it ambiguous)",
    ]);
    // what they were asking with is ended
    assert.equal(docker.signal?.aborted, true);
    assert.equal(containerd.signal?.aborted, true);
  });

  test('when every runtime has answered, nothing is left to end: the shared signal is not aborted', async () => {
    const runc = disk('runc', [live('runc', 'web')]);
    const docker = daemon('docker');
    docker.answer([]);
    const r = await resolve('web', [runc, docker], { graceMs: LONG, deadlineMs: LONG });
    assert.equal(r.target.runtime, 'runc');
    assert.equal(runc.signal?.aborted, false);
    assert.equal(docker.signal?.aborted, false);
  });

  test('a hung daemon that could not have the name is neither waited for nor named', async () => {
    const docker = daemon('docker', { couldName: (q) => /^[a-z0-9]+$/.test(q) });
    const r = await resolve('web+1', [disk('runc', [live('runc', 'web+1')]), docker], { graceMs: LONG, deadlineMs: LONG });
    assert.equal(r.target.id, 'web+1');
    assert.deepEqual(r.warnings, []);
    assert.ok(r.ms < LONG / 2, `${r.ms} ms`);
    assert.equal(docker.signal?.aborted, true);
  });

  test('a runtime with a longer grace of its own is waited for that long', async () => {
    const podman = daemon('podman', { graceMs: LONG });
    setTimeout(() => podman.answer([]), 50); // a slow but healthy CLI
    const r = await resolve('web', [disk('runc', [live('runc', 'web')]), podman], { graceMs: 1, deadlineMs: LONG });
    assert.equal(r.target.id, 'web');
    assert.deepEqual(r.warnings, []);
  });

  test('two exact matches on disk are refused at once, hung daemon or not', async () => {
    const docker = daemon('docker');
    const r = await refusal('web', [disk('runc', [live('runc', 'web')]), disk('crun', [{ ...live('crun', 'web'), pid: process.ppid }]), docker], { graceMs: LONG, deadlineMs: LONG });
    assert.equal(r.error.message, "'web' matches 2 containers: runc web, crun web");
    assert.ok(r.ms < LONG / 2, `${r.ms} ms`);
  });

  test('a PID is used after the grace, with a warning; an exact ID that a daemon answers in time wins over it', async () => {
    const pid = String(process.pid);
    const hung = daemon('docker');
    const r = await resolve(pid, [disk('runc', []), hung], { pids: true, graceMs: 20, deadlineMs: LONG });
    assert.deepEqual([r.target.runtime, r.target.pid], ['pid', process.pid]);
    assert.deepEqual(r.warnings, [`the docker daemon at /run/docker.sock did not answer within 0.02 s; going on with process ${pid} without it ` +
      `(a docker container with the ID or name '${pid}' would have come first)`]);

    const docker = daemon('docker');
    queueMicrotask(() => docker.answer([live('docker', 'c'.repeat(64), pid)]));
    const named = await resolve(pid, [disk('runc', []), docker], { pids: true, graceMs: LONG, deadlineMs: LONG });
    assert.deepEqual([named.target.runtime, named.target.name], ['docker', pid]);
    assert.deepEqual(named.warnings, []);
  });

  test('a unique ID prefix needs every answer: refused at the deadline when a daemon hangs, naming it', async () => {
    const docker = daemon('docker');
    const r = await refusal('we', [disk('runc', [live('runc', 'web')]), docker], { graceMs: 1, deadlineMs: 50 });
    assert.equal(r.error.message, "'we' starts the ID of runc web, but not every runtime answered " +
      '(docker: the docker daemon at /run/docker.sock did not answer within 0.05 s), and a container of theirs may start the same way');
    assert.equal(r.error.hint, 'give the whole ID or the name, or the runtime with --runtime');
    assert.ok(r.ms >= 49 && r.ms < LONG / 2, `${r.ms} ms`);
    assert.deepEqual(r.warnings, []);
    assert.equal(docker.signal?.aborted, true);
  });

  test("a daemon's own deadline counts as hanging too", async () => {
    const docker = daemon('docker');
    docker.fail(new CrashcartError('the docker daemon at /run/docker.sock did not answer within 2 s', { code: 'ETIMEDOUT' }));
    const r = await refusal('we', [disk('runc', [live('runc', 'web')]), docker], { deadlineMs: LONG });
    assert.match(r.error.message, /^'we' starts the ID of runc web, but not every runtime answered \(docker: the docker daemon at \/run\/docker.sock did not answer within 2 s\)/);
  });

  test('a daemon that is down (it failed at once) hides no prefix elsewhere, as before', async () => {
    const docker = daemon('docker');
    docker.fail(new CrashcartError('cannot reach the docker daemon at /run/docker.sock: connection refused (no daemon listening)'));
    const r = await resolve('we', [disk('runc', [live('runc', 'web')]), docker], { graceMs: LONG, deadlineMs: LONG });
    assert.equal(r.target.id, 'web');
    assert.deepEqual(r.warnings, []);
  });

  test('a name only the hung daemon could know: refused at the deadline, naming the daemon and its socket', async () => {
    const docker = daemon('docker');
    const containerd = daemon('containerd');
    containerd.answer([]);
    const r = await refusal('web', [disk('runc', []), docker, containerd], { graceMs: 1, deadlineMs: 50 });
    assert.equal(r.error.message, "no container or process matches 'web', and not every runtime answered " +
      '(docker: the docker daemon at /run/docker.sock did not answer within 0.05 s)');
    assert.match(r.error.hint ?? '', /hangs: check it, restart it, or name another runtime with --runtime$/);
    assert.equal(docker.signal?.aborted, true);
  });

  test('every runtime is asked once, at once', async () => {
    const fakes = [disk('runc', [live('runc', 'web')]), daemon('docker'), daemon('containerd')];
    await resolve('web', fakes, { graceMs: 1, deadlineMs: LONG });
    assert.deepEqual(fakes.map((f) => f.asked), [1, 1, 1]);
  });

  test('a runtime that throws instead of rejecting is a failure like any other', async () => {
    const broken = fake('broken', { find: () => { throw new Error('boom'); } });
    const r = await refusal('web', [disk('runc', []), broken], { deadlineMs: LONG });
    assert.equal(r.error.message, "no container or process matches 'web', and not every runtime answered (broken: boom)");
  });
});

describe('listing with daemons', () => {
  test('a hung daemon is a failure at the deadline; the others are listed; its lookup is ended', async () => {
    const docker = daemon('docker');
    const runc = disk('runc', [live('runc', 'web')]);
    const t0 = performance.now();
    const l = await listAmong([runc.runtime, docker.runtime], 50);
    assert.ok(performance.now() - t0 < LONG / 2);
    assert.deepEqual(l.containers.map((c) => c.id), ['web']);
    assert.deepEqual(l.failures, [{ runtime: 'docker', message: 'the docker daemon at /run/docker.sock did not answer within 0.05 s' }]);
    assert.equal(docker.signal?.aborted, true);
  });

  test('healthy runtimes: everything, no failures, and no wait for the deadline', async () => {
    const docker = daemon('docker');
    queueMicrotask(() => docker.answer([live('docker', 'd'.repeat(64), 'db')]));
    const t0 = performance.now();
    const l = await listAmong([disk('runc', [live('runc', 'web')]).runtime, docker.runtime], LONG);
    assert.ok(performance.now() - t0 < LONG / 2);
    assert.deepEqual(l.containers.map((c) => c.id), ['web', 'd'.repeat(64)]);
    assert.deepEqual(l.failures, []);
  });
});
