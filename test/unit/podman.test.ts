// The podman runtime without root: its configuration lookup, a real libpod database written
// by podman 4.3 (63 containers: running-then-paused, exited, created), the container states
// and the exec command line.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { CrashcartError } from '../../src/core/errors.js';
import type { ProcStat } from '../../src/core/proc.js';
import { BoltError, BoltFile } from '../../src/runtimes/bolt.js';
import { distinctContainers } from '../../src/runtimes/index.js';
import {
  database, DEFAULT_GRAPHROOT, engineConfig, fromPsEntry, fromState, graphRoot, podman, podmanEnv, podmanExec, readBoltState, tomlString,
} from '../../src/runtimes/podman.js';
import type { Container } from '../../src/runtimes/types.js';
import { projectRoot } from '../helpers/host.js';

const fixture = (name: string) => join(projectRoot(), 'test/fixtures', name);
const dbBytes = () => gunzipSync(readFileSync(fixture('podman-4.3-bolt_state.db.gz')));
/** `podman ps -a --format json` (Id, Names, State, Pid) taken with the database above. */
const psFixture = () => JSON.parse(readFileSync(fixture('podman-4.3-ps.json'), 'utf8')) as
  { Id: string; Names: string[]; State: string; Pid: number }[];

// In the fixture, t1 (pid 4975, conmon 4965) is paused and e1 has exited.
const T1_PID = 4975;
const T1_CONMON = 4965;
const stat = (alive: Record<number, Partial<ProcStat>>) => (pid: number | 'self'): ProcStat | undefined => {
  const s = typeof pid === 'number' ? alive[pid] : undefined;
  return s ? { comm: 'sleeper', state: 'S', ppid: 1, flags: 0, start: 1, ...s } : undefined;
};

describe('tomlString', () => {
  const text = [
    '# comment',
    '[storage]',
    'driver = "overlay"',
    'graphroot = "/srv/containers" # trailing',
    '[storage.options]',
    'graphroot = "/not/this/one"',
    '[engine]',
    "static_dir = '/x/libpod'",
    'tmp_dir = "/a\\"b"',
    '#static_dir = "/commented"',
  ].join('\n');
  test('a key in its own section only, quoted either way', () => {
    assert.equal(tomlString(text, 'storage', 'graphroot'), '/srv/containers');
    assert.equal(tomlString(text, 'storage.options', 'graphroot'), '/not/this/one');
    assert.equal(tomlString(text, 'engine', 'static_dir'), '/x/libpod');
    assert.equal(tomlString(text, 'engine', 'tmp_dir'), '/a"b');
    assert.equal(tomlString(text, 'engine', 'graphroot'), undefined);
    assert.equal(tomlString('', 'storage', 'graphroot'), undefined);
  });
  test('a key that only comments mention is not there', () => {
    assert.equal(tomlString('[engine]\n# static_dir = "/c"\n  #static_dir="/d"\n', 'engine', 'static_dir'), undefined);
    assert.equal(tomlString('[engine]\n  static_dir = "/e"\n', 'engine', 'static_dir'), '/e');
  });
  test('the last assignment wins', () => {
    assert.equal(tomlString('[s]\nk = "1"\nk = "2"\n', 's', 'k'), '2');
  });
});

describe('where podman keeps its state', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-podman-conf-'));
    writeFileSync(join(dir, 'storage.conf'), '[storage]\ndriver = "overlay"\ngraphroot = "/srv/g"\nrunroot = "/run/r"\n');
    writeFileSync(join(dir, 'nographroot.conf'), '[storage]\ndriver = "overlay"\n');
    writeFileSync(join(dir, 'containers.conf'), '[engine]\nstatic_dir = "/srv/static"\n');
    writeFileSync(join(dir, 'empty.conf'), '');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('CONTAINERS_STORAGE_CONF names the graph root', () => {
    assert.equal(graphRoot({ CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf') }), '/srv/g');
    assert.equal(graphRoot({ CONTAINERS_STORAGE_CONF: join(dir, 'nographroot.conf') }), DEFAULT_GRAPHROOT);
    assert.equal(graphRoot({ CONTAINERS_STORAGE_CONF: join(dir, 'missing.conf') }), DEFAULT_GRAPHROOT);
  });

  test('static_dir from CONTAINERS_CONF, else <graphroot>/libpod', () => {
    const storage = { CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf') };
    assert.deepEqual(engineConfig({ ...storage, CONTAINERS_CONF: join(dir, 'containers.conf') }), { staticDir: '/srv/static', databaseBackend: '' });
    assert.deepEqual(engineConfig({ ...storage, CONTAINERS_CONF: join(dir, 'empty.conf') }), { staticDir: '/srv/g/libpod', databaseBackend: '' });
  });

  test('bolt when its file exists, SQLite (podman 4.8+) otherwise or when configured', () => {
    const st = join(dir, 'static');
    mkdirSync(st, { recursive: true });
    const conf = (backend?: string) => {
      const f = join(dir, `engine-${backend ?? 'default'}.conf`);
      writeFileSync(f, `[engine]\nstatic_dir = "${st}"\n${backend ? `database_backend = "${backend}"\n` : ''}`);
      return { CONTAINERS_CONF: f };
    };
    assert.equal(database(conf()), undefined);
    writeFileSync(join(st, 'db.sql'), '');
    assert.deepEqual(database(conf()), { kind: 'sqlite', path: join(st, 'db.sql') });
    assert.equal(database(conf('boltdb')), undefined);
    writeFileSync(join(st, 'bolt_state.db'), '');
    assert.deepEqual(database(conf()), { kind: 'bolt', path: join(st, 'bolt_state.db') });
    assert.deepEqual(database(conf('sqlite')), { kind: 'sqlite', path: join(st, 'db.sql') });
  });

  test('the podman variables are passed on to podman commands, and only those', () => {
    assert.deepEqual(podmanEnv({ CONTAINERS_CONF: '/c', CONTAINERS_STORAGE_CONF: '/s', HOME: '/root' }), {
      CONTAINERS_CONF: '/c', CONTAINERS_STORAGE_CONF: '/s',
    });
    assert.deepEqual(podmanEnv({ CONTAINERS_CONF: '' }), {});
  });
});

describe('libpod state to Container', () => {
  const id = 'ab'.repeat(32);
  const alive = stat({ 100: { ppid: 99 } });
  test('the state number as podman ps words it', () => {
    const words = ['unknown', 'created', 'created', 'running', 'stopped', 'paused', 'exited', 'removing', 'stopping'];
    words.forEach((w, n) => {
      assert.equal(fromState(id, 'web', { state: n, pid: 100, conmonPid: 99 }, alive).status, w);
    });
    assert.equal(fromState(id, 'web', { state: 42 }, alive).status, 'unknown');
    assert.equal(fromState(id, 'web', {}, alive).status, 'unknown');
  });

  test('a running container has its pid; others have none', () => {
    assert.deepEqual(fromState(id, 'web', { state: 3, pid: 100, conmonPid: 99 }, alive), {
      runtime: 'podman', id, name: 'web', pid: 100, status: 'running',
    });
    assert.equal(fromState(id, 'web', { state: 6, pid: 100, conmonPid: 99 }, alive).pid, 0);
    assert.deepEqual(fromState(id, undefined, { state: 1 }, alive), { runtime: 'podman', id, pid: 0, status: 'created' });
  });

  test('running in the database but gone, a zombie, or not conmon\'s child: exited', () => {
    for (const s of [stat({}), stat({ 100: { ppid: 99, state: 'Z' } }), stat({ 100: { ppid: 7 } })]) {
      assert.deepEqual(fromState(id, 'web', { state: 3, pid: 100, conmonPid: 99 }, s), {
        runtime: 'podman', id, name: 'web', pid: 0, status: 'exited',
      });
    }
    assert.equal(fromState(id, 'web', { state: 3, pid: 0, conmonPid: 99 }, alive).status, 'exited');
  });

  test('podman ps JSON entries (the SQLite fallback)', () => {
    assert.deepEqual(fromPsEntry({ Id: id, Names: ['web'], State: 'running', Pid: 100 }), {
      runtime: 'podman', id, name: 'web', pid: 100, status: 'running',
    });
    assert.deepEqual(fromPsEntry({ Id: id, Names: ['old'], State: 'exited', Pid: 100 }), {
      runtime: 'podman', id, name: 'old', pid: 0, status: 'exited',
    });
    assert.deepEqual(fromPsEntry({ Id: id }), { runtime: 'podman', id, pid: 0, status: 'unknown' });
    assert.equal(fromPsEntry({ Names: ['x'] }), undefined);
  });
});

describe('a libpod bolt database written by podman 4.3', () => {
  test('every container podman ps listed, with its name and state', () => {
    const list = readBoltState(new BoltFile(dbBytes()), stat({ [T1_PID]: { ppid: T1_CONMON } }));
    const ps = psFixture();
    assert.equal(list.length, 63);
    assert.deepEqual(
      list.map((c) => [c.id, c.name, c.status, c.pid]).sort(),
      ps.map((e) => [e.Id, e.Names[0], e.State, e.Pid]).sort(),
    );
  });

  test('without its process the paused container has exited', () => {
    const list = readBoltState(new BoltFile(dbBytes()), stat({}));
    assert.deepEqual(list.find((c) => c.name === 't1'), {
      runtime: 'podman', id: psFixture().find((e) => e.Names[0] === 't1')!.Id, name: 't1', pid: 0, status: 'exited',
    });
  });

  test('a damaged file is refused, not misread', () => {
    const bytes = dbBytes();
    assert.throws(() => new BoltFile(Buffer.alloc(8192)), BoltError);
    assert.throws(() => new BoltFile(bytes.subarray(0, 8192)), BoltError);
    // both metas broken
    const metas = Buffer.from(bytes);
    metas[16 + 20] ^= 0xff;
    metas[4096 + 16 + 20] ^= 0xff;
    assert.throws(() => new BoltFile(metas), /no valid meta page/);
    // every page after the metas with a wrong id: a torn read
    const torn = Buffer.from(bytes);
    for (let off = 8192; off < torn.length; off += 4096) torn.writeBigUInt64LE(0xffffn, off);
    assert.throws(() => readBoltState(new BoltFile(torn)), BoltError);
  });
});

describe('the podman runtime on a copy of that database', () => {
  let dir = '';
  const saved: Record<string, string | undefined> = {};
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-podman-'));
    mkdirSync(join(dir, 'graph/libpod'), { recursive: true });
    writeFileSync(join(dir, 'graph/libpod/bolt_state.db'), dbBytes());
    writeFileSync(join(dir, 'storage.conf'), `[storage]\ndriver = "overlay"\ngraphroot = "${join(dir, 'graph')}"\n`);
    writeFileSync(join(dir, 'containers.conf'), '[engine]\nruntime = "runc"\n');
    for (const k of ['CONTAINERS_CONF', 'CONTAINERS_STORAGE_CONF', 'PATH']) saved[k] = process.env[k];
    process.env.CONTAINERS_STORAGE_CONF = join(dir, 'storage.conf');
    process.env.CONTAINERS_CONF = join(dir, 'containers.conf');
  });
  after(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  test('present() is whether the database exists where the configuration says', () => {
    assert.ok(podman.present());
    process.env.CONTAINERS_CONF = join(dir, 'other.conf');
    writeFileSync(join(dir, 'other.conf'), `[engine]\nstatic_dir = "${join(dir, 'elsewhere')}"\n`);
    try {
      assert.ok(!podman.present());
    } finally {
      process.env.CONTAINERS_CONF = join(dir, 'containers.conf');
    }
  });

  test('list() and find()', async () => {
    const list = await podman.list();
    assert.equal(list.length, 63);
    const e1 = list.find((c) => c.name === 'e1')!;
    assert.equal(e1.status, 'exited');
    assert.deepEqual(await podman.find!('e1'), [e1]);
    assert.deepEqual(await podman.find!(e1.id), [e1]);
    assert.deepEqual((await podman.find!(e1.id.slice(0, 2))).map((c) => c.id), list.filter((c) => c.id.startsWith(e1.id.slice(0, 2))).map((c) => c.id));
    assert.deepEqual(await podman.find!('nosuch'), []);
  });

  test('an unreadable database falls back to the podman CLI, and says so when that fails too', async () => {
    const db = join(dir, 'graph/libpod/bolt_state.db');
    writeFileSync(db, Buffer.alloc(8192));
    process.env.PATH = join(dir, 'no-bin');
    try {
      await assert.rejects(podman.list(), (e: unknown) => {
        assert.ok(e instanceof CrashcartError);
        assert.equal(e.message, "listing podman containers with 'podman ps -a --format json' failed: ENOENT");
        assert.equal(e.hint, 'check that podman works (podman ps -a)');
        return true;
      });
    } finally {
      process.env.PATH = saved.PATH;
      writeFileSync(db, dbBytes());
    }
  });
});

describe('podman exec', () => {
  const c: Container = { runtime: 'podman', id: 'cd'.repeat(32), name: 'web', pid: 100, status: 'running' };
  test('the smallest command: -i, the ID, the argv', () => {
    assert.deepEqual(podmanExec(c, { argv: ['/dev/crashcart/bin/sh'], tty: false, env: {} }, {}), {
      file: 'podman', args: ['exec', '-i', c.id, '/dev/crashcart/bin/sh'],
    });
  });
  test('a terminal, user, working directory, environment and private storage', () => {
    const env = { CONTAINERS_CONF: '/d/containers.conf', CONTAINERS_STORAGE_CONF: '/d/storage.conf', HOME: '/root' };
    assert.deepEqual(podmanExec(c, {
      argv: ['/dev/crashcart/bin/bash', '-i', '-c', 'echo $A'], tty: true, env: { A: '1', PATH: '/dev/crashcart/bin:/bin' },
      user: '1000:1000', workdir: '/tmp',
    }, env), {
      file: 'podman',
      args: ['exec', '-i', '-t', '--user', '1000:1000', '--workdir', '/tmp', '-e', 'A=1', '-e', 'PATH=/dev/crashcart/bin:/bin',
        c.id, '/dev/crashcart/bin/bash', '-i', '-c', 'echo $A'],
      env: { CONTAINERS_CONF: '/d/containers.conf', CONTAINERS_STORAGE_CONF: '/d/storage.conf' },
    });
  });
  test('the runtime offers it', () => {
    assert.deepEqual(podman.execCommand!(c, { argv: ['/bin/true'], tty: false, env: {} }).args, ['exec', '-i', c.id, '/bin/true']);
  });
});

describe('a podman container is also in runc\'s state root', () => {
  test('the runc twin (same ID) is dropped; other runc containers stay', () => {
    const id = 'ef'.repeat(32);
    const all: Container[] = [
      { runtime: 'runc', id, pid: 100, status: 'running' },
      { runtime: 'runc', id: 'web', pid: 200, status: 'running' },
      { runtime: 'podman', id, name: 'web', pid: 100, status: 'running' },
      { runtime: 'docker', id: 'a0'.repeat(32), name: 'web', pid: 300, status: 'running' },
    ];
    assert.deepEqual(distinctContainers(all), [all[1], all[2], all[3]]);
  });
});
