// The docker runtime against a fake Engine API on a private unix socket, without root.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CrashcartError } from '../../src/core/errors.js';
import { containerName, DEFAULT_DOCKER_SOCKET, docker, dockerSocket, fromListEntry, withInspect } from '../../src/runtimes/docker.js';
import { mayMatch } from '../../src/runtimes/types.js';
import { engineGet } from '../../src/runtimes/engine-api.js';
import { resolveTarget } from '../../src/runtimes/index.js';

const ID_WEB = `aa11${'0'.repeat(60)}`;
const ID_DB = `aa22${'1'.repeat(60)}`;
const ID_OLD = `bb33${'2'.repeat(60)}`;

describe('dockerSocket', () => {
  test('DOCKER_HOST unix://PATH gives PATH', () => {
    assert.equal(dockerSocket({ DOCKER_HOST: 'unix:///tmp/x/docker.sock' }), '/tmp/x/docker.sock');
    assert.equal(dockerSocket({ DOCKER_HOST: ' unix:///run/d.sock ' }), '/run/d.sock');
  });
  test('anything else gives the default socket', () => {
    assert.equal(DEFAULT_DOCKER_SOCKET, '/var/run/docker.sock');
    assert.equal(dockerSocket({}), DEFAULT_DOCKER_SOCKET);
    assert.equal(dockerSocket({ DOCKER_HOST: '' }), DEFAULT_DOCKER_SOCKET);
    assert.equal(dockerSocket({ DOCKER_HOST: 'tcp://127.0.0.1:2375' }), DEFAULT_DOCKER_SOCKET);
    assert.equal(dockerSocket({ DOCKER_HOST: 'unix://' }), DEFAULT_DOCKER_SOCKET);
  });
});

describe('Engine API JSON to Container', () => {
  test('names lose the leading slash; link names are skipped', () => {
    assert.equal(containerName(['/web']), 'web');
    assert.equal(containerName(['/app/db', '/db']), 'db');
    assert.equal(containerName('/web'), 'web');
    assert.equal(containerName([]), undefined);
    assert.equal(containerName(undefined), undefined);
    assert.equal(containerName(['/']), undefined);
  });

  test('a list entry: full ID, name, status from State, no pid', () => {
    assert.deepEqual(fromListEntry({ Id: ID_WEB, Names: ['/web'], State: 'running' }), {
      runtime: 'docker', id: ID_WEB, name: 'web', pid: 0, status: 'running',
    });
    for (const state of ['exited', 'created', 'paused', 'restarting', 'dead', 'removing']) {
      assert.equal(fromListEntry({ Id: ID_WEB, Names: ['/web'], State: state })?.status, state);
    }
    assert.deepEqual(fromListEntry({ Id: ID_WEB }), { runtime: 'docker', id: ID_WEB, pid: 0, status: 'unknown' });
    assert.equal(fromListEntry({ Names: ['/x'], State: 'running' }), undefined);
    assert.equal(fromListEntry({ Id: 7 }), undefined);
  });

  test('inspect adds the pid of a running container and refreshes its status', () => {
    const c = fromListEntry({ Id: ID_WEB, Names: ['/web'], State: 'running' })!;
    assert.deepEqual(withInspect(c, { State: { Status: 'running', Pid: 4242 } }), { ...c, pid: 4242 });
    assert.deepEqual(withInspect(c, { State: { Status: 'exited', Pid: 0 } }), { ...c, status: 'exited' });
    assert.deepEqual(withInspect(c, { State: { Status: 'exited', Pid: 4242 } }), { ...c, status: 'exited' });
    assert.deepEqual(withInspect(c, { State: { Status: 'paused', Pid: 4242 } }), { ...c, pid: 4242, status: 'paused' });
    assert.deepEqual(withInspect(c, {}), c);
  });

  test('candidates: exact ID or name, or an ID prefix', () => {
    const c = fromListEntry({ Id: ID_WEB, Names: ['/web'], State: 'running' })!;
    assert.ok(mayMatch(c, 'web'));
    assert.ok(mayMatch(c, ID_WEB));
    assert.ok(mayMatch(c, 'aa1'));
    assert.ok(!mayMatch(c, 'we'));
    assert.ok(!mayMatch(c, 'bb'));
  });
});

describe('the docker runtime against a fake daemon', () => {
  let dir = '';
  let server: Server | undefined;
  let silent: Server | undefined;
  const inspected: string[] = [];
  const saved: Record<string, string | undefined> = {};

  const list = [
    { Id: ID_WEB, Names: ['/web'], State: 'running' },
    { Id: ID_DB, Names: ['/db'], State: 'running' },
    { Id: ID_OLD, Names: ['/old'], State: 'exited' },
  ];
  const pids: Record<string, number> = { [ID_WEB]: process.pid, [ID_DB]: process.pid };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-docker-'));
    for (const k of ['DOCKER_HOST', 'CRASHCART_RUNC_ROOT', 'CRASHCART_CRUN_ROOT']) saved[k] = process.env[k];
    process.env.CRASHCART_RUNC_ROOT = join(dir, 'no-runc');
    process.env.CRASHCART_CRUN_ROOT = join(dir, 'no-crun');
    process.env.DOCKER_HOST = `unix://${join(dir, 'docker.sock')}`;
    server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.setHeader('Content-Type', 'application/json');
      if (url.pathname === '/containers/json') {
        assert.equal(url.searchParams.get('all'), '1');
        res.end(JSON.stringify(list));
        return;
      }
      const m = /^\/containers\/([^/]+)\/json$/.exec(url.pathname);
      const entry = m && list.find((c) => c.Id === m[1]);
      if (!entry) {
        res.statusCode = 404;
        res.end(JSON.stringify({ message: 'No such container' }));
        return;
      }
      inspected.push(entry.Id);
      res.end(JSON.stringify({ Id: entry.Id, Name: entry.Names[0], State: { Status: entry.State, Pid: pids[entry.Id] ?? 0 } }));
    });
    await new Promise<void>((resolve) => server!.listen(join(dir, 'docker.sock'), resolve));
    // accepts connections and never answers
    silent = createServer(() => {});
    await new Promise<void>((resolve) => silent!.listen(join(dir, 'silent.sock'), resolve));
  });

  after(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    server?.closeAllConnections();
    silent?.closeAllConnections();
    await new Promise((r) => server?.close(r));
    await new Promise((r) => silent?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  test('present() is whether the socket exists', () => {
    assert.ok(docker.present());
    process.env.DOCKER_HOST = `unix://${join(dir, 'nothing.sock')}`;
    try {
      assert.ok(!docker.present());
    } finally {
      process.env.DOCKER_HOST = `unix://${join(dir, 'docker.sock')}`;
    }
  });

  test('list() has every container, with pids for the running ones', async () => {
    inspected.length = 0;
    assert.deepEqual(await docker.list(), [
      { runtime: 'docker', id: ID_WEB, name: 'web', pid: process.pid, status: 'running' },
      { runtime: 'docker', id: ID_DB, name: 'db', pid: process.pid, status: 'running' },
      { runtime: 'docker', id: ID_OLD, name: 'old', pid: 0, status: 'exited' },
    ]);
    assert.deepEqual(inspected.sort(), [ID_WEB, ID_DB].sort());
  });

  test('find() inspects only the candidates', async () => {
    inspected.length = 0;
    assert.deepEqual((await docker.find!('web')).map((c) => c.name), ['web']);
    assert.deepEqual(inspected, [ID_WEB]);
    inspected.length = 0;
    assert.deepEqual((await docker.find!('old')).map((c) => c.status), ['exited']);
    assert.deepEqual(inspected, []);
  });

  test('resolution: name, full ID, prefix, ambiguity, not running', async () => {
    const web = { pid: process.pid, runtime: 'docker', id: ID_WEB, name: 'web', container: { runtime: 'docker', id: ID_WEB, name: 'web', pid: process.pid, status: 'running' } };
    assert.deepEqual(await resolveTarget('web'), web);
    assert.deepEqual(await resolveTarget(ID_WEB, 'docker'), web);
    assert.deepEqual(await resolveTarget('aa1'), web);
    await assert.rejects(resolveTarget('aa'), (e: CrashcartError) => {
      assert.equal(e.message, `'aa' matches 2 containers: docker ${ID_WEB} (web), docker ${ID_DB} (db)`);
      return true;
    });
    await assert.rejects(resolveTarget('old'), (e: CrashcartError) => {
      assert.equal(e.message, 'container old is not running (status: exited)');
      assert.equal(e.exitCode, 125);
      return true;
    });
    await assert.rejects(resolveTarget('nope', 'docker'), (e: CrashcartError) => {
      assert.equal(e.message, "no container or process matches 'nope' (asked: docker)");
      assert.equal(e.hint, 'check the ID with your runtime (e.g. docker ps -a), or give a PID');
      return true;
    });
  });

  test('a daemon that does not answer: a clear error naming the socket', async () => {
    const socket = join(dir, 'silent.sock');
    const t0 = Date.now();
    await assert.rejects(engineGet(socket, '/containers/json', 200), (e: CrashcartError) => {
      assert.ok(e instanceof CrashcartError);
      assert.equal(e.message, `the docker daemon at ${socket} did not answer within 0.2 s`);
      return true;
    });
    assert.ok(Date.now() - t0 < 1_500);
  });

  test('no daemon on the socket: the error names it', async () => {
    const socket = join(dir, 'stale.sock');
    // a socket file with nobody listening
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(socket, resolve));
    await new Promise((r) => s.close(r));
    await assert.rejects(engineGet(socket, '/_ping'), (e: CrashcartError) => {
      assert.match(e.message, new RegExp(`^cannot reach the docker daemon at ${socket}: `));
      return true;
    });
    await assert.rejects(engineGet(join(dir, 'absent.sock'), '/_ping'), /no such socket/);
  });

  test('a daemon that is down hides no match elsewhere, and is named when nothing matched', async () => {
    const socket = join(dir, 'down.sock');
    writeFileSync(socket, ''); // there, but nobody listens
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = `unix://${socket}`;
    try {
      const t = await resolveTarget(String(process.pid));
      assert.deepEqual([t.runtime, t.pid], ['pid', process.pid]);
      await assert.rejects(resolveTarget('nope-nothing'), (e: CrashcartError) => {
        assert.match(e.message, new RegExp(`^no container or process matches 'nope-nothing', and not every runtime answered \\(docker: cannot reach the docker daemon at ${socket}: `));
        assert.equal(e.hint, 'is its daemon running? name another runtime with --runtime');
        return true;
      });
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });
});
