// How the command line is split between crashcart's own options and the command to run.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { splitArgv } from '../../src/cli/argv.js';

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
