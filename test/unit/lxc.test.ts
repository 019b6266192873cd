// LXC's config files, lxc-info's output and the lxc-attach command line, without root.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { CrashcartError } from '../../src/core/errors.js';
import { RUNTIMES } from '../../src/runtimes/index.js';
import { definedContainers, lxcAttachCommand, lxcPath, parseLxcConfig, parseLxcInfo } from '../../src/runtimes/lxc.js';

const dir = mkdtempSync(join(tmpdir(), 'crashcart-unit-lxc-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('LXC config', () => {
  test('key = value lines; comments and blank lines skipped; repeated keys kept in order', () => {
    const cfg = parseLxcConfig([
      '# Template used to create this container',
      'lxc.include = /usr/share/lxc/config/common.conf',
      '',
      '  lxc.rootfs.path=dir:/var/lib/lxc/web/rootfs  ',
      'lxc.mount.entry = proc proc proc nodev 0 0',
      'lxc.mount.entry = tmpfs tmp tmpfs defaults=1 0 0',
      'not a setting',
      'lxc.init.cmd = /bin/sleeper 100000',
    ].join('\n'));
    assert.deepEqual(cfg.get('lxc.rootfs.path'), ['dir:/var/lib/lxc/web/rootfs']);
    assert.deepEqual(cfg.get('lxc.mount.entry'), ['proc proc proc nodev 0 0', 'tmpfs tmp tmpfs defaults=1 0 0']);
    assert.deepEqual(cfg.get('lxc.init.cmd'), ['/bin/sleeper 100000']);
    assert.equal(cfg.has('not a setting'), false);
    assert.equal(cfg.size, 4);
  });

  test('the lxcpath: CRASHCART_LXC_PATH, else lxc.lxcpath in lxc.conf, else /var/lib/lxc', () => {
    const conf = join(dir, 'lxc.conf');
    writeFileSync(conf, '# site\nlxc.lxcpath = /srv/lxc\nlxc.default_config = /etc/lxc/default.conf\n');
    assert.equal(lxcPath({ CRASHCART_LXC_PATH: '/tmp/mine' }, conf), '/tmp/mine');
    assert.equal(lxcPath({}, conf), '/srv/lxc');
    assert.equal(lxcPath({}, join(dir, 'no-such.conf')), '/var/lib/lxc');
    writeFileSync(conf, 'lxc.bdev.lvm.vg = lxc\n');
    assert.equal(lxcPath({}, conf), '/var/lib/lxc');
    assert.equal(lxcPath({ CRASHCART_LXC_PATH: '' }, conf), '/var/lib/lxc');
  });

  test('containers are the directories of the lxcpath that hold a config', () => {
    const path = join(dir, 'lxcpath');
    for (const n of ['web', 'db', 'no-config', '.hidden']) mkdirSync(join(path, n), { recursive: true });
    for (const n of ['web', 'db', '.hidden']) writeFileSync(join(path, n, 'config'), 'lxc.uts.name = x\n');
    writeFileSync(join(path, 'stray-file'), '');
    assert.deepEqual(definedContainers(path), ['db', 'web']);
    assert.deepEqual(definedContainers(join(dir, 'missing')), []);
  });
});

describe('lxc-info -s -p', () => {
  test('a running container: its state and init pid', () => {
    assert.deepEqual(parseLxcInfo('State:          RUNNING\nPID:            4129\n'), { status: 'running', pid: 4129 });
  });

  test('a stopped container has no pid line', () => {
    assert.deepEqual(parseLxcInfo('State:          STOPPED\n'), { status: 'stopped', pid: 0 });
  });

  test('a frozen container keeps its pid; a pid without a running state is dropped', () => {
    assert.deepEqual(parseLxcInfo('State:          FROZEN\nPID:            77\n'), { status: 'frozen', pid: 77 });
    assert.deepEqual(parseLxcInfo('State:          STOPPING\nPID:            77\n'), { status: 'stopping', pid: 0 });
  });

  test('the other fields of plain lxc-info are ignored', () => {
    const text = 'Name:           web\nState:          RUNNING\nPID:            4129\nCPU use:        0.00 seconds\n' +
      'BlkIO use:      0 bytes\nMemory use:     208.00 KiB\nKMem use:       84.00 KiB\n';
    assert.deepEqual(parseLxcInfo(text), { status: 'running', pid: 4129 });
  });

  test('anything else is not an answer', () => {
    assert.equal(parseLxcInfo(''), undefined);
    assert.equal(parseLxcInfo('web doesn\'t exist\n'), undefined);
    assert.equal(parseLxcInfo('State: running\n'), undefined);
    assert.deepEqual(parseLxcInfo('State: RUNNING\nPID: -1\n'), { status: 'running', pid: 0 });
  });
});

describe('lxc-attach', () => {
  const req = { argv: ['/dev/crashcart/bin/bash', '-i'], tty: true, env: {} };

  test('the lxcpath and name, a cleared environment plus the request\'s, then the command', () => {
    const c = lxcAttachCommand('/srv/lxc', 'web', { ...req, env: { TERM: 'xterm', A: 'b=c' } });
    assert.deepEqual(c, {
      file: 'lxc-attach',
      args: ['-P', '/srv/lxc', '-n', 'web', '--clear-env', '-v', 'TERM=xterm', '-v', 'A=b=c', '--', '/dev/crashcart/bin/bash', '-i'],
    });
  });

  test('numeric users become -u and -g', () => {
    assert.deepEqual(lxcAttachCommand('/p', 'web', { ...req, user: '1000' }).args.slice(5, 7), ['-u', '1000']);
    assert.deepEqual(lxcAttachCommand('/p', 'web', { ...req, user: '1000:50' }).args.slice(5, 9), ['-u', '1000', '-g', '50']);
  });

  test('user names and a working directory cannot be expressed', () => {
    assert.throws(() => lxcAttachCommand('/p', 'web', { ...req, user: 'nobody' }), (e: unknown) => {
      assert.ok(e instanceof CrashcartError);
      assert.equal(e.message, "lxc-attach takes numeric user and group ids only, not 'nobody'");
      assert.equal(e.hint, 'give the user as uid[:gid]');
      return true;
    });
    assert.throws(() => lxcAttachCommand('/p', 'web', { ...req, workdir: '/srv' }), (e: unknown) => {
      assert.ok(e instanceof CrashcartError);
      assert.equal(e.message, 'lxc-attach cannot set the working directory (/srv)');
      assert.equal(e.hint, 'leave out the working directory with --runtime lxc');
      return true;
    });
  });

  test('the registered runtime uses the configured lxcpath', () => {
    const saved = process.env.CRASHCART_LXC_PATH;
    process.env.CRASHCART_LXC_PATH = '/tmp/some-lxcpath';
    try {
      const lxc = RUNTIMES.find((r) => r.name === 'lxc')!;
      const c = lxc.execCommand!({ runtime: 'lxc', id: 'web', pid: 1, status: 'running' }, { ...req, env: {} });
      assert.deepEqual(c.args.slice(0, 5), ['-P', '/tmp/some-lxcpath', '-n', 'web', '--clear-env']);
    } finally {
      if (saved === undefined) delete process.env.CRASHCART_LXC_PATH;
      else process.env.CRASHCART_LXC_PATH = saved;
    }
  });
});
