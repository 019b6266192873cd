// crashcart ps's rows and table, the runtimes' own exec command lines, and the merging of a
// managed container with its low-level runtime's view of it. No root needed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { psRows, psTable } from '../../src/cli/commands/ps.js';
import { splitArgv } from '../../src/cli/argv.js';
import { CrashcartError } from '../../src/core/errors.js';
import { dockerExec } from '../../src/runtimes/docker.js';
import { runtimeExecutor, distinctContainers, type Container } from '../../src/runtimes/index.js';
import { ociExec } from '../../src/runtimes/oci-state.js';

const ID = 'c0ffee'.padEnd(64, '0');
const web: Container = { runtime: 'docker', id: ID, name: 'web', pid: 4242, status: 'running' };
const db: Container = { runtime: 'runc', id: 'db', pid: 77, status: 'running' };
const old: Container = { runtime: 'docker', id: 'f'.repeat(64), name: 'old', pid: 0, status: 'exited' };

describe('crashcart ps', () => {
  const status = (pid: number) =>
    pid === 4242 ? { grafted: true, image: '/var/lib/crashcart/images/full.img', sessions: 2, pinned: false } : { grafted: false, sessions: 0, pinned: false };

  test('rows: running containers only, unless all; graft status asked for live pids only', () => {
    const asked: number[] = [];
    const rows = psRows([web, db, old], (pid) => (asked.push(pid), status(pid)));
    assert.deepEqual(rows.map((r) => r.id), [ID, 'db']);
    assert.deepEqual(asked, [4242, 77]);
    assert.deepEqual(rows[0], { runtime: 'docker', id: ID, name: 'web', pid: 4242, status: 'running', grafted: true, image: '/var/lib/crashcart/images/full.img', sessions: 2, pinned: false });
    assert.equal(rows[1]!.name, null);
    assert.deepEqual(psRows([web, db, old], status, true).map((r) => r.status), ['running', 'running', 'exited']);
  });

  test('table: aligned columns, 64-hex IDs cut to 12, image by file name, kept grafts marked', () => {
    const rows = psRows([web, db, { ...db, id: 'pinned', pid: 88 }], (pid) =>
      pid === 88 ? { grafted: true, sessions: 0, pinned: true } : status(pid),
    );
    assert.equal(
      psTable(rows),
      [
        'RUNTIME  ID            NAME  PID   STATUS   TOOLKIT         SESSIONS',
        'docker   c0ffee000000  web   4242  running  full.img        2',
        'runc     db            -     77    running  -               -',
        'runc     pinned        -     88    running  grafted (kept)  0',
        '',
      ].join('\n'),
    );
  });

  test('a namespace shows next to the runtime', () => {
    const rows = psRows([{ runtime: 'containerd', namespace: 'k8s.io', id: 'app', pid: 9, status: 'running' }], () => ({ grafted: false, sessions: 0, pinned: false }));
    assert.equal(rows[0]!.namespace, 'k8s.io');
    assert.match(psTable(rows), /^containerd\/k8s\.io {2}app /m);
  });

  test('ps is a subcommand, not a target', () => {
    assert.deepEqual(splitArgv(['ps', '--json']), { own: ['ps', '--json'], command: [] });
  });
});

describe("the runtimes' own exec", () => {
  const req = { argv: ['/dev/crashcart/bin/bash', '-s'], tty: false, env: { PATH: '/dev/crashcart/bin:/bin' } };

  test('runc and crun: --tty only for a terminal; env, user and cwd passed on', () => {
    assert.deepEqual(ociExec('runc', '/run/runc', 'web', req), {
      file: 'runc',
      args: ['--root', '/run/runc', 'exec', '--env', 'PATH=/dev/crashcart/bin:/bin', 'web', '/dev/crashcart/bin/bash', '-s'],
    });
    assert.deepEqual(ociExec('crun', '/run/crun', 'web', { ...req, tty: true, user: '65532:65532', workdir: '/tmp' }).args, [
      '--root', '/run/crun', 'exec', '--tty', '--env', 'PATH=/dev/crashcart/bin:/bin', '--user', '65532:65532', '--cwd', '/tmp', 'web', '/dev/crashcart/bin/bash', '-s',
    ]);
  });

  test('docker: always --interactive, --tty only for a terminal', () => {
    assert.deepEqual(dockerExec(ID, req).args, ['exec', '--interactive', '--env', 'PATH=/dev/crashcart/bin:/bin', ID, '/dev/crashcart/bin/bash', '-s']);
    assert.deepEqual(dockerExec('web', { ...req, tty: true, user: 'nobody', workdir: '/' }).args, [
      'exec', '--interactive', '--tty', '--env', 'PATH=/dev/crashcart/bin:/bin', '--user', 'nobody', '--workdir', '/', 'web', '/dev/crashcart/bin/bash', '-s',
    ]);
  });

  test('a plain PID has no runtime to exec through', () => {
    assert.throws(
      () => runtimeExecutor({ pid: 42, runtime: 'pid', id: '42' }),
      (e: unknown) => e instanceof CrashcartError && e.exitCode === 125 && e.message === '--exec needs a container runtime, but process 42 was given as a plain PID',
    );
  });

  test('the executor builds the runtime\'s command for the resolved container', () => {
    const exec = runtimeExecutor({ pid: 4242, runtime: 'docker', id: ID, name: 'web', container: web });
    assert.equal(exec(req).file, 'docker');
    assert.ok(exec(req).args.includes(ID));
  });
});

describe('a container seen by its manager and by runc', () => {
  test('the manager keeps it; runc-only containers stay', () => {
    const podman: Container = { runtime: 'podman', id: 'abc', name: 't1', pid: 5, status: 'running' };
    const twin: Container = { runtime: 'runc', id: 'abc', pid: 5, status: 'running' };
    assert.deepEqual(distinctContainers([twin, db, podman]), [db, podman]);
  });
});
