// What the command in the target gets: argv, environment, PATH search, user, exit code.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_PATH,
  TOOLKIT_BIN,
  TOOLKIT_RC,
  commandEnv,
  defaultCommand,
  execEnv,
  parseUser,
  searchCandidates,
  toolkitPath,
} from '../../src/core/command.js';
import { CrashcartError } from '../../src/core/errors.js';
import { exitCodeOf } from '../../src/core/session.js';

describe('defaultCommand', () => {
  test('an interactive bash with the toolkit rc file on a terminal', () => {
    assert.deepEqual(defaultCommand(true), ['/dev/crashcart/bin/bash', '--rcfile', '/dev/crashcart/etc/bashrc', '-i']);
    assert.equal(TOOLKIT_RC, '/dev/crashcart/etc/bashrc');
  });

  test('bash reading commands from stdin otherwise', () => {
    assert.deepEqual(defaultCommand(false), ['/dev/crashcart/bin/bash', '-s']);
  });
});

describe('toolkitPath', () => {
  test('puts the toolkit first', () => {
    assert.equal(toolkitPath('/usr/bin:/bin'), '/dev/crashcart/bin:/usr/bin:/bin');
  });

  test('uses the default PATH when there is none', () => {
    assert.equal(toolkitPath(undefined), `${TOOLKIT_BIN}:${DEFAULT_PATH}`);
    assert.equal(DEFAULT_PATH, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  });

  test('lists the toolkit once, and drops empty entries', () => {
    assert.equal(toolkitPath('/bin:/dev/crashcart/bin::/usr/bin:/dev/crashcart/bin'), '/dev/crashcart/bin:/bin:/usr/bin');
    assert.equal(toolkitPath('/dev/crashcart/bin'), '/dev/crashcart/bin');
    assert.equal(toolkitPath(''), '/dev/crashcart/bin');
  });
});

describe('commandEnv', () => {
  test("starts from the target's environment, toolkit first on PATH, caller's TERM, HOME defaulted", () => {
    assert.deepEqual(commandEnv({ targetEnv: ['FOO=bar', 'PATH=/bin', 'EQ=a=b=c', 'EMPTY='], term: 'xterm', extra: [] }), [
      'FOO=bar',
      'PATH=/dev/crashcart/bin:/bin',
      'EQ=a=b=c',
      'EMPTY=',
      'TERM=xterm',
      'HOME=/',
    ]);
  });

  test("keeps the target's HOME and replaces its TERM with the caller's", () => {
    assert.deepEqual(commandEnv({ targetEnv: ['HOME=/root', 'TERM=dumb'], term: 'screen', extra: [] }), [
      'HOME=/root',
      'TERM=screen',
      'PATH=/dev/crashcart/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    ]);
  });

  test("keeps the target's TERM when the caller has none", () => {
    assert.ok(commandEnv({ targetEnv: ['TERM=dumb'], extra: [] }).includes('TERM=dumb'));
  });

  test('without a target environment (--no-target-env): PATH and HOME only', () => {
    assert.deepEqual(commandEnv({ extra: [] }), [`PATH=${TOOLKIT_BIN}:${DEFAULT_PATH}`, 'HOME=/']);
  });

  test('a later duplicate wins, and entries without a name are dropped', () => {
    assert.deepEqual(commandEnv({ targetEnv: ['A=1', '=nameless', 'A=2'], extra: [] }), [
      'A=2',
      `PATH=${TOOLKIT_BIN}:${DEFAULT_PATH}`,
      'HOME=/',
    ]);
  });

  test("the container's loader settings are not passed on; --env can still set them", () => {
    assert.deepEqual(commandEnv({ targetEnv: ['LD_PRELOAD=/usr/lib/libjemalloc.so.2', 'LD_LIBRARY_PATH=/opt/lib', 'LD_AUDIT=/x.so', 'A=1'], extra: [] }), [
      'A=1',
      `PATH=${TOOLKIT_BIN}:${DEFAULT_PATH}`,
      'HOME=/',
    ]);
    assert.ok(commandEnv({ targetEnv: [], extra: ['LD_LIBRARY_PATH=/opt/lib'] }).includes('LD_LIBRARY_PATH=/opt/lib'));
  });

  test('--exec: only what differs from the container\'s environment, loader variables emptied, no default HOME', () => {
    assert.deepEqual(execEnv({ targetEnv: ['PATH=/bin', 'A=1', 'LD_PRELOAD=/x.so'], term: 'xterm', extra: ['A=1', 'B=2'] }), {
      PATH: `${TOOLKIT_BIN}:/bin`,
      TERM: 'xterm',
      B: '2',
      LD_PRELOAD: '',
    });
    assert.deepEqual(execEnv({ targetEnv: [], extra: ['HOME=/root', 'LD_LIBRARY_PATH=/opt/lib'] }), {
      PATH: `${TOOLKIT_BIN}:${DEFAULT_PATH}`,
      HOME: '/root',
      LD_LIBRARY_PATH: '/opt/lib',
    });
  });

  test('--env applies last, overrides, and a PATH given there still gets the toolkit first', () => {
    assert.deepEqual(
      commandEnv({ targetEnv: ['FOO=bar', 'PATH=/bin'], term: 'xterm', extra: ['FOO=baz', 'K=V=W', 'PATH=/opt/bin', 'HOME=/tmp', 'E='] }),
      ['FOO=baz', 'PATH=/dev/crashcart/bin:/opt/bin', 'TERM=xterm', 'HOME=/tmp', 'K=V=W', 'E='],
    );
  });

  test('an --env that is not NAME=VALUE is refused', () => {
    for (const bad of ['BAD', '=x', '1X=y', 'A-B=c', ' A=b', '']) {
      assert.throws(
        () => commandEnv({ extra: [bad] }),
        (e: unknown) => {
          assert.ok(e instanceof CrashcartError);
          assert.equal(e.message, `invalid --env '${bad}'`);
          assert.equal(e.hint, 'use --env NAME=VALUE');
          assert.equal(e.exitCode, 125);
          return true;
        },
        bad,
      );
    }
  });
});

describe('searchCandidates', () => {
  const env = (path?: string) => (path === undefined ? ['A=b'] : ['A=b', `PATH=${path}`]);

  test('tries every PATH entry in order', () => {
    assert.deepEqual(searchCandidates('ls', env('/dev/crashcart/bin:/usr/bin:/bin')), [
      '/dev/crashcart/bin/ls',
      '/usr/bin/ls',
      '/bin/ls',
    ]);
  });

  test('a name with a slash is used as it is', () => {
    assert.deepEqual(searchCandidates('/dev/crashcart/bin/busybox', env('/bin')), ['/dev/crashcart/bin/busybox']);
    assert.deepEqual(searchCandidates('./run.sh', env('/bin')), ['./run.sh']);
    assert.deepEqual(searchCandidates('bin/x', env('/bin')), ['bin/x']);
  });

  test('relative and empty PATH entries are skipped, trailing slashes trimmed', () => {
    assert.deepEqual(searchCandidates('id', env('.:bin::/usr/bin/://sbin//')), ['/usr/bin/id', '//sbin/id']);
  });

  test('without PATH, the default one', () => {
    assert.deepEqual(
      searchCandidates('id', env()),
      DEFAULT_PATH.split(':').map((d) => `${d}/id`),
    );
  });

  test('the first PATH= in the environment counts', () => {
    assert.deepEqual(searchCandidates('id', ['PATH=/a', 'PATH=/b']), ['/a/id']);
  });

  test('an empty command is refused', () => {
    assert.throws(() => searchCandidates('', env('/bin')), (e: unknown) => {
      assert.ok(e instanceof CrashcartError);
      assert.equal(e.message, 'empty command');
      assert.equal(e.hint, 'give a command after --');
      return true;
    });
  });
});

describe('parseUser', () => {
  const passwd = ['root:x:0:0:root:/root:/bin/sh', 'app:x:1000:2000:App:/home/app:/bin/sh', 'broken:x', ''].join('\n');
  const group = ['root:x:0:', 'staff:x:50:app', 'app:x:2000:'].join('\n');

  test('nothing given: root', () => {
    assert.deepEqual(parseUser(undefined), { uid: 0, gid: 0 });
    assert.deepEqual(parseUser(''), { uid: 0, gid: 0 });
  });

  test('numeric uid and gid need no files', () => {
    assert.deepEqual(parseUser('1000:1000'), { uid: 1000, gid: 1000 });
    assert.deepEqual(parseUser('0:0'), { uid: 0, gid: 0 });
  });

  test("a numeric uid takes its group from the container's passwd, else 0", () => {
    assert.deepEqual(parseUser('1000', passwd, group), { uid: 1000, gid: 2000 });
    assert.deepEqual(parseUser('4242', passwd, group), { uid: 4242, gid: 0 });
    assert.deepEqual(parseUser('1000:'), { uid: 1000, gid: 0 });
  });

  test("names are looked up in the container's passwd and group", () => {
    assert.deepEqual(parseUser('app', passwd, group), { uid: 1000, gid: 2000 });
    assert.deepEqual(parseUser('app:staff', passwd, group), { uid: 1000, gid: 50 });
    assert.deepEqual(parseUser('app:7', passwd, group), { uid: 1000, gid: 7 });
    assert.deepEqual(parseUser('1000:staff', passwd, group), { uid: 1000, gid: 50 });
  });

  test('an unknown user name is refused', () => {
    assert.throws(() => parseUser('nobody', passwd, group), (e: unknown) => {
      assert.ok(e instanceof CrashcartError);
      assert.equal(e.message, "user 'nobody' is not in the container's /etc/passwd");
      assert.equal(e.hint, 'give a numeric uid[:gid]');
      return true;
    });
    // a line too short to be an entry does not count
    assert.throws(() => parseUser('broken', passwd, group), /user 'broken' is not in the container's \/etc\/passwd/);
  });

  test('an unknown group name is refused', () => {
    assert.throws(() => parseUser('app:wheel', passwd, group), (e: unknown) => {
      assert.ok(e instanceof CrashcartError);
      assert.equal(e.message, "group 'wheel' is not in the container's /etc/group");
      assert.equal(e.hint, 'give a numeric gid');
      return true;
    });
  });

  test('ids beyond 32 bits (or the reserved -1) are refused', () => {
    assert.deepEqual(parseUser('4294967294:4294967294'), { uid: 4294967294, gid: 4294967294 });
    assert.throws(() => parseUser('4294967295'), { message: "invalid --user '4294967295'" });
    assert.throws(() => parseUser('0:4294967295'), { message: "invalid --user '0:4294967295'" });
    assert.throws(() => parseUser('99999999999999999999'), { message: "invalid --user '99999999999999999999'" });
  });
});

describe('exitCodeOf', () => {
  test("the command's exit code", () => {
    assert.equal(exitCodeOf({ code: 0, signal: null }), 0);
    assert.equal(exitCodeOf({ code: 7, signal: null }), 7);
    assert.equal(exitCodeOf({ code: 255, signal: null }), 255);
  });

  test('128+N for a command killed by signal N', () => {
    assert.equal(exitCodeOf({ code: null, signal: 15 }), 143);
    assert.equal(exitCodeOf({ code: null, signal: 9 }), 137);
    assert.equal(exitCodeOf({ code: null, signal: 2 }), 130);
  });

  test("125 (crashcart's own failure) when neither is known", () => {
    assert.equal(exitCodeOf({ code: null, signal: null }), 125);
  });
});
