// Target resolution against a fake runc state root (and no crun), without root.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrashcartError } from '../../src/core/errors.js';
import { readComm, startTime } from '../../src/core/proc.js';
import { pickRuntimes, resolveTarget, RUNTIMES } from '../../src/runtimes/index.js';

let root = '';
const saved: Record<string, string | undefined> = {};
let deadPid = 0;
const selfStart = startTime('self')!;

function container(id: string, state: Record<string, unknown> | string, created = false): void {
  mkdirSync(join(root, 'runc', id), { recursive: true });
  writeFileSync(join(root, 'runc', id, 'state.json'), typeof state === 'string' ? state : JSON.stringify(state));
  if (created) writeFileSync(join(root, 'runc', id, 'exec.fifo'), '');
}

const running = () => ({ init_process_pid: process.pid, init_process_start: selfStart });

/** Resolves to the CrashcartError resolveTarget rejects with. */
async function failure(query: string, runtime?: string): Promise<CrashcartError> {
  try {
    const t = await resolveTarget(query, runtime);
    assert.fail(`'${query}' resolved to ${JSON.stringify(t)}`);
  } catch (e) {
    assert.ok(e instanceof CrashcartError, String(e));
    assert.equal(e.exitCode, 125);
    return e;
  }
}

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'crashcart-unit-runtimes-'));
  for (const k of ['CRASHCART_RUNC_ROOT', 'CRASHCART_CRUN_ROOT', 'DOCKER_HOST', 'CONTAINERS_STORAGE_CONF', 'CONTAINERS_CONF', 'CONTAINERD_ADDRESS', 'CRASHCART_CONTAINERD_STATE', 'CRASHCART_LXC_PATH', 'CRASHCART_NSPAWN_DIR']) saved[k] = process.env[k];
  process.env.CRASHCART_RUNC_ROOT = join(root, 'runc');
  process.env.DOCKER_HOST = `unix://${join(root, 'no-docker.sock')}`; // a host's own daemon stays out
  process.env.CONTAINERD_ADDRESS = join(root, 'no-containerd.sock'); // and its containerd
  process.env.CRASHCART_CONTAINERD_STATE = join(root, 'no-containerd-state');
  process.env.CRASHCART_CRUN_ROOT = join(root, 'no-crun-here');
  // a host's own podman stays out too: storage in a directory that does not exist
  writeFileSync(join(root, 'storage.conf'), `[storage]\ngraphroot = "${join(root, 'no-podman-here')}"\n`);
  writeFileSync(join(root, 'containers.conf'), '');
  process.env.CONTAINERS_STORAGE_CONF = join(root, 'storage.conf');
  process.env.CONTAINERS_CONF = join(root, 'containers.conf');
  process.env.CRASHCART_LXC_PATH = join(root, 'no-lxc-here');
  process.env.CRASHCART_NSPAWN_DIR = join(root, 'no-nspawn-here');

  // a pid that existed once and is gone now
  const child = spawn('true', { stdio: 'ignore' });
  deadPid = child.pid!;
  await new Promise((resolve) => child.once('exit', resolve));
  for (let i = 0; i < 100 && startTime(deadPid) !== undefined; i++) await new Promise((r) => setTimeout(r, 10));

  container('alpha-1234', running());
  container('web', running());
  container('web-2', running());
  container('db-1', running());
  container('db-2', running());
  container('dead', { init_process_pid: deadPid, init_process_start: 12345 });
  // same pid, another start time: the pid was reused by someone else
  container('reused', { init_process_pid: process.pid, init_process_start: selfStart + 1 });
  container('nopid', { init_process_pid: 0 });
  container('fresh', running(), true);
  // no start time recorded: alive while the pid exists
  container('nostart', { init_process_pid: process.pid });
  container('broken', '{ not json');
  mkdirSync(join(root, 'runc', 'empty-dir'));
  // named after this process's pid, plus one more digit: a PID beats an ID prefix
  container(`${process.pid}0`, running());
});

after(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  rmSync(root, { recursive: true, force: true });
});

describe('resolveTarget', () => {
  test('an exact ID of a running container', async () => {
    const alpha = { runtime: 'runc', id: 'alpha-1234', pid: process.pid, status: 'running' };
    assert.deepEqual(await resolveTarget('alpha-1234'), { pid: process.pid, runtime: 'runc', id: 'alpha-1234', name: undefined, container: alpha });
  });

  test('a unique ID prefix', async () => {
    assert.deepEqual((await resolveTarget('alp')).container, { runtime: 'runc', id: 'alpha-1234', pid: process.pid, status: 'running' });
  });

  test('an exact ID wins over a longer ID it prefixes', async () => {
    assert.equal((await resolveTarget('web')).id, 'web');
    assert.equal((await resolveTarget('web-')).id, 'web-2');
  });

  test('an ambiguous prefix lists every match', async () => {
    const e = await failure('db');
    assert.equal(e.message, "'db' matches 2 containers: runc db-1, runc db-2");
    assert.equal(e.hint, 'give more of the ID, or the runtime with --runtime');
    const w = await failure('we');
    assert.equal(w.message, "'we' matches 2 containers: runc web, runc web-2");
  });

  test('a container whose process is gone is stopped', async () => {
    const e = await failure('dead');
    assert.equal(e.message, 'container dead is not running (status: stopped)');
    assert.equal(e.hint, 'start it first, or open its files in a sandbox with crashcart --stopped dead (runc dead)');
  });

  test('a reused pid (other start time) is stopped too', async () => {
    assert.equal((await failure('reused')).message, 'container reused is not running (status: stopped)');
    assert.equal((await failure('nopid')).message, 'container nopid is not running (status: stopped)');
  });

  test('a created, not started container is not running', async () => {
    const e = await failure('fresh');
    assert.equal(e.message, 'container fresh is not running (status: created)');
  });

  test('without a recorded start time the pid alone decides', async () => {
    assert.equal((await resolveTarget('nostart')).pid, process.pid);
  });

  test('unreadable state is ignored', async () => {
    assert.equal((await failure('broken')).message, "no container or process matches 'broken' (asked: runc, pid)");
    assert.equal((await failure('empty-dir')).message, "no container or process matches 'empty-dir' (asked: runc, pid)");
  });

  test('nothing matches: the error names the runtimes asked', async () => {
    const e = await failure('zzz');
    assert.equal(e.message, "no container or process matches 'zzz' (asked: runc, pid)");
    assert.equal(e.hint, 'check the ID with your runtime (e.g. runc list), or give a PID');
    assert.equal((await failure('zzz', 'runc')).message, "no container or process matches 'zzz' (asked: runc)");
    assert.equal((await failure('zzz', 'pid')).message, "no container or process matches 'zzz' (asked: pid)");
    assert.equal((await failure('zzz', 'crun')).message, "no container or process matches 'zzz' (asked: none present)");
  });

  test('a runtime that is not present is not asked', async () => {
    const saved = process.env.CRASHCART_RUNC_ROOT;
    process.env.CRASHCART_RUNC_ROOT = join(root, 'no-runc-here');
    try {
      assert.equal((await failure('web')).message, "no container or process matches 'web' (asked: pid)");
    } finally {
      process.env.CRASHCART_RUNC_ROOT = saved;
    }
  });

  test('a PID', async () => {
    assert.deepEqual(await resolveTarget(String(process.pid)), {
      pid: process.pid,
      runtime: 'pid',
      id: String(process.pid),
      name: readComm(process.pid),
    });
    assert.equal((await resolveTarget(String(process.pid), 'pid')).runtime, 'pid');
  });

  test('a PID wins over an ID prefix, an exact ID over a PID', async () => {
    assert.equal((await resolveTarget(String(process.pid))).runtime, 'pid');
    const numeric = { runtime: 'runc', id: `${process.pid}0`, pid: process.pid, status: 'running' };
    assert.deepEqual(await resolveTarget(`${process.pid}0`), { pid: process.pid, runtime: 'runc', id: `${process.pid}0`, name: undefined, container: numeric });
  });

  test('--runtime runc does not fall back to a PID, but to prefixes', async () => {
    assert.equal((await resolveTarget(String(process.pid), 'runc')).id, `${process.pid}0`);
  });

  test('--runtime pid ignores containers', async () => {
    assert.equal((await failure('web', 'pid')).message, "no container or process matches 'web' (asked: pid)");
  });

  test('a PID that does not exist, or is not a number, is no target', async () => {
    assert.equal((await failure(String(deadPid))).message, `no container or process matches '${deadPid}' (asked: runc, pid)`);
    assert.equal((await failure('0')).message, "no container or process matches '0' (asked: runc, pid)");
    assert.equal((await failure('-1')).message, "no container or process matches '-1' (asked: runc, pid)");
  });

  test('an empty target is refused', async () => {
    const e = await failure('');
    assert.equal(e.message, 'no target given');
    assert.equal(e.hint, 'name a container ID, name or PID');
  });

  test('an unknown runtime is refused', async () => {
    const e = await failure('web', 'nosuch');
    assert.equal(e.message, "unknown runtime 'nosuch'");
    assert.equal(e.hint, 'choose one of: runc, crun, docker, podman, containerd, lxc, nspawn, pid');
  });
});

describe('pickRuntimes', () => {
  test('all runtimes by default, one by name, none for pid', () => {
    assert.deepEqual(pickRuntimes().map((r) => r.name), ['runc', 'crun', 'docker', 'podman', 'containerd', 'lxc', 'nspawn']);
    assert.deepEqual(pickRuntimes('crun').map((r) => r.name), ['crun']);
    assert.deepEqual(pickRuntimes('pid'), []);
    assert.equal(RUNTIMES.length, 7);
  });

  test('the runc runtime lists what the state root holds', async () => {
    const runc = RUNTIMES.find((r) => r.name === 'runc')!;
    assert.ok(runc.present());
    const list = await runc.list();
    const byId = new Map(list.map((c) => [c.id, c]));
    assert.deepEqual(byId.get('web'), { runtime: 'runc', id: 'web', pid: process.pid, status: 'running' });
    assert.equal(byId.get('fresh')?.status, 'created');
    assert.equal(byId.get('dead')?.status, 'stopped');
    assert.equal(byId.get('nopid')?.pid, 0);
    assert.ok(!byId.has('broken') && !byId.has('empty-dir'));
  });

  test("a stopped container's pid is 0, as runc and crun say, even when its old pid runs something else now", async () => {
    const byId = new Map((await RUNTIMES.find((r) => r.name === 'runc')!.list()).map((c) => [c.id, c]));
    assert.deepEqual(byId.get('dead'), { runtime: 'runc', id: 'dead', pid: 0, status: 'stopped' });
    // its recorded pid is this process, started at another time
    assert.deepEqual(byId.get('reused'), { runtime: 'runc', id: 'reused', pid: 0, status: 'stopped' });
    // a created container has its init process waiting
    assert.deepEqual(byId.get('fresh'), { runtime: 'runc', id: 'fresh', pid: process.pid, status: 'created' });

    const saved = process.env.CRASHCART_CRUN_ROOT;
    process.env.CRASHCART_CRUN_ROOT = join(root, 'crun');
    try {
      for (const [id, pid, start] of [['gone', deadPid, 12345], ['up', process.pid, selfStart]] as const) {
        mkdirSync(join(root, 'crun', id), { recursive: true });
        writeFileSync(join(root, 'crun', id, 'status'), JSON.stringify({ pid, 'process-start-time': start }));
      }
      const crun = new Map((await RUNTIMES.find((r) => r.name === 'crun')!.list()).map((c) => [c.id, c]));
      assert.deepEqual(crun.get('gone'), { runtime: 'crun', id: 'gone', pid: 0, status: 'stopped' });
      assert.deepEqual(crun.get('up'), { runtime: 'crun', id: 'up', pid: process.pid, status: 'running' });
    } finally {
      process.env.CRASHCART_CRUN_ROOT = saved;
    }
  });
});
