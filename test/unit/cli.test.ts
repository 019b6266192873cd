// How the command line is split between crashcart's own options and the command to run, and
// how a failure is told: one line, yargs' messages too.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { splitArgv } from '../../src/cli/argv.js';
import { usageLine } from '../../src/cli/main.js';
import { report } from '../../src/cli/output.js';
import { checkUserSpec } from '../../src/core/command.js';
import { CrashcartError } from '../../src/core/errors.js';

describe('splitArgv', () => {
  test('a -- after the command word belongs to the command', () => {
    assert.deepEqual(splitArgv(['web', 'ls', '--', '-l']), { own: ['web'], command: ['ls', '--', '-l'] });
    assert.deepEqual(splitArgv(['-v', 'web', '-i', 'img', '--', 'ls']), { own: ['-v', 'web', '-i', 'img'], command: ['ls'] });
  });

  test('with --, everything before is crashcart and everything after the command', () => {
    assert.deepEqual(splitArgv(['-i', 'img', 'web', '--', 'ls', '-l', '/']), {
      own: ['-i', 'img', 'web'],
      command: ['ls', '-l', '/'],
    });
  });

  test('only the first -- splits; later ones belong to the command', () => {
    assert.deepEqual(splitArgv(['web', '--', 'grep', '--', '-x', 'file']), {
      own: ['web'],
      command: ['grep', '--', '-x', 'file'],
    });
  });

  test('a trailing -- gives the default command', () => {
    assert.deepEqual(splitArgv(['web', '--']), { own: ['web'], command: [] });
  });

  test('without --, the command starts after the target, its options included', () => {
    assert.deepEqual(splitArgv(['web', 'ps', '-ef']), { own: ['web'], command: ['ps', '-ef'] });
    assert.deepEqual(splitArgv(['-v', 'web', 'ls', '-v', '--image', 'x']), {
      own: ['-v', 'web'],
      command: ['ls', '-v', '--image', 'x'],
    });
  });

  test('options that take a value skip it when looking for the target', () => {
    for (const opt of ['-i', '--image', '--user', '--workdir', '-w', '--env', '--method', '-r', '--runtime',
      '--namespace', '--container', '--k8s-namespace']) {
      assert.deepEqual(splitArgv([opt, 'value', 'web', 'id']), { own: [opt, 'value', 'web'], command: ['id'] }, opt);
    }
  });

  test('--opt=value keeps the value in the same argument', () => {
    assert.deepEqual(splitArgv(['--image=img', 'web', 'id']), { own: ['--image=img', 'web'], command: ['id'] });
    assert.deepEqual(splitArgv(['--user=0:0', '--env=A=B', 'web', 'id', '-u']), {
      own: ['--user=0:0', '--env=A=B', 'web'],
      command: ['id', '-u'],
    });
  });

  test('--pod names the target: the first word after the options is the command', () => {
    assert.deepEqual(splitArgv(['--pod', 'web', 'ls', '-l']), { own: ['--pod', 'web'], command: ['ls', '-l'] });
    assert.deepEqual(splitArgv(['--pod=web', '--container', 'app', 'id']), { own: ['--pod=web', '--container', 'app'], command: ['id'] });
    assert.deepEqual(splitArgv(['--k8s-namespace', 'prod', '--pod', 'web', '--', 'id']), {
      own: ['--k8s-namespace', 'prod', '--pod', 'web'],
      command: ['id'],
    });
    assert.deepEqual(splitArgv(['--pod', 'web']), { own: ['--pod', 'web'], command: [] });
    // after a target, --pod is only an option (attach refuses both)
    assert.deepEqual(splitArgv(['web', '--pod', 'x', 'id']), { own: ['web', '--pod', 'x'], command: ['id'] });
  });

  test('boolean options do not take the next argument', () => {
    assert.deepEqual(splitArgv(['-m', 'web']), { own: ['-m', 'web'], command: [] });
    assert.deepEqual(splitArgv(['-v', '-k', '--no-target-env', 'web', 'env']), {
      own: ['-v', '-k', '--no-target-env', 'web'],
      command: ['env'],
    });
  });

  test('no target at all: everything is crashcart', () => {
    assert.deepEqual(splitArgv([]), { own: [], command: [] });
    assert.deepEqual(splitArgv(['-h']), { own: ['-h'], command: [] });
    assert.deepEqual(splitArgv(['-i', 'img']), { own: ['-i', 'img'], command: [] });
  });

  test('subcommands keep their arguments', () => {
    assert.deepEqual(splitArgv(['image', 'build', '-o', 'out.img']), { own: ['image', 'build', '-o', 'out.img'], command: [] });
    assert.deepEqual(splitArgv(['demo', '-i', 'img']), { own: ['demo', '-i', 'img'], command: [] });
    assert.deepEqual(splitArgv(['demo', '-i', 'img', '--', 'ls', '/dev/crashcart/bin']), {
      own: ['demo', '-i', 'img'],
      command: ['ls', '/dev/crashcart/bin'],
    });
    assert.deepEqual(splitArgv(['help']), { own: ['help'], command: [] });
  });

  test('a lone - is a positional argument', () => {
    assert.deepEqual(splitArgv(['-', 'cat']), { own: ['-'], command: ['cat'] });
  });

  test('does not modify its input', () => {
    const args = ['-i', 'img', 'web', 'ls'];
    splitArgv(args);
    assert.deepEqual(args, ['-i', 'img', 'web', 'ls']);
  });
});

describe('usageLine: yargs messages as one line', () => {
  test('unknown options as the user wrote them, unknown and unexpected words', () => {
    assert.equal(usageLine('Unknown argument: bogus', ['--bogus', 'web']), 'unknown option --bogus; see crashcart --help');
    assert.equal(usageLine('Unknown arguments: z, other', ['-z', '--other=3', 'web']), 'unknown options -z, --other; see crashcart --help');
    assert.equal(usageLine('Unknown argument: bogus', ['image', 'bogus']), "unknown image command 'bogus'; choose one of build, pull, ls, inspect, rm");
    assert.equal(usageLine('Unknown argument: extra', ['ps', 'extra']), "unexpected argument 'extra' for crashcart ps; see crashcart ps --help");
  });

  test('missing values and arguments, invalid choices', () => {
    assert.equal(usageLine('Not enough arguments following: env', ['web', '--env']), '--env needs a value; see crashcart --help');
    assert.equal(usageLine('Not enough arguments following: i', ['-i']), '-i needs a value; see crashcart --help');
    assert.equal(usageLine('Not enough arguments following: o', ['image', 'build', '-o']), '-o needs a value; see crashcart image build --help');
    assert.equal(usageLine('Not enough non-option arguments: got 0, need at least 1', ['image', 'pull']),
      'crashcart image pull needs 1 argument, got 0; see crashcart image pull --help');
    assert.equal(usageLine('Invalid values:\n  Argument: method, Given: "bogus", Choices: "auto", "mknod", "mountapi"', ['--method', 'bogus', 'web']),
      'invalid --method "bogus": choose one of auto, mknod, mountapi; see crashcart --help');
  });

  test('anything else: its words on one line', () => {
    assert.equal(usageLine('name an image command:\n build, pull', ['image']), 'name an image command: build, pull; see crashcart image --help');
  });
});

describe('report', () => {
  const capture = (fn: () => number): { code: number; lines: string[] } => {
    const out: string[] = [];
    const write = process.stderr.write;
    process.stderr.write = ((s: string) => out.push(s) > 0) as typeof process.stderr.write;
    try {
      const code = fn();
      return { code, lines: out.join('').split('\n').filter(Boolean) };
    } finally {
      process.stderr.write = write;
    }
  };

  test("crashcart's errors: the message, the hint, and with -v the causes", () => {
    const cause = Object.assign(new Error("chdir '/x': ENOENT (No such file or directory)"), { code: 'ENOENT', errno: 2, syscall: 'chdir', path: '/x' });
    const e = new CrashcartError('cannot start the command', { hint: 'check --workdir', exitCode: 126, cause });
    assert.deepEqual(capture(() => report(e)), { code: 126, lines: ['crashcart: cannot start the command; check --workdir'] });
    assert.deepEqual(capture(() => report(e, true)).lines, [
      'crashcart: cannot start the command; check --workdir',
      "crashcart:   caused by: chdir '/x': ENOENT (No such file or directory) [code ENOENT, syscall chdir, path /x]",
    ]);
  });

  test('anything else is a bug: one line that says so, the stack only with -v', () => {
    const e = Object.assign(new TypeError('x is not a function'), { code: 'ERR_X' });
    const plain = capture(() => report(e));
    assert.deepEqual(plain, {
      code: 125,
      lines: ['crashcart: internal error: x is not a function (ERR_X); this is a bug in crashcart: run it again with -v and report what it prints'],
    });
    const verbose = capture(() => report(e, true)).lines;
    assert.equal(verbose[0], plain.lines[0]);
    assert.ok(verbose.length > 1 && verbose.slice(1).every((l) => l.startsWith('crashcart:   at ')), verbose.join('\n'));
  });
});

describe('checkUserSpec: the shape of --user before any lookup', () => {
  test('user[:group], numbers up to 4294967294', () => {
    for (const ok of ['0', '1000:1000', 'nobody', 'app:staff', '4294967294']) checkUserSpec(ok);
    for (const bad of ['1:2:3', ':5', '4294967295', '0:99999999999']) {
      assert.throws(() => checkUserSpec(bad), {
        name: 'CrashcartError',
        message: `invalid --user '${bad}'`,
        hint: "give uid[:gid] (numbers up to 4294967294) or user[:group] names of the container's /etc/passwd and /etc/group",
      });
    }
  });
});
