// Several targets at once: the line prefixer, --filter, the exit-code summary; and the fast
// attach parser, which must read every command line it takes exactly as yargs does.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import type { Argv } from 'yargs';
import { splitArgv } from '../../src/cli/argv.js';
import { ATTACH_OPTIONS, isFanOut, parseAttachArgs, VERBOSE, type AttachArgs } from '../../src/cli/attach-args.js';
import { attachOptions } from '../../src/cli/commands/attach.js';
import { lineFormat, LineSplitter, summary } from '../../src/cli/fanout-output.js';
import { globRegExp, matches, parseFilter } from '../../src/runtimes/filter.js';
import type { Container } from '../../src/runtimes/types.js';

describe('LineSplitter', () => {
  test('whole lines only: a line split over chunks comes out once it is whole', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push(Buffer.from('one\ntw')), ['one']);
    assert.deepEqual(s.push(Buffer.from('o\n\nthr')), ['two', '']);
    assert.deepEqual(s.end(), ['thr']);
    assert.deepEqual(s.end(), []);
  });

  test('output that ends with a newline has no extra last line', () => {
    const s = new LineSplitter();
    assert.deepEqual(s.push(Buffer.from('a\nb\n')), ['a', 'b']);
    assert.deepEqual(s.end(), []);
  });

  test('a UTF-8 character split between chunks is not broken', () => {
    const bytes = Buffer.from('grüße\n');
    const s = new LineSplitter();
    assert.deepEqual(s.push(bytes.subarray(0, 3)), []);
    assert.deepEqual(s.push(bytes.subarray(3)), ['grüße']);
  });
});

describe('lineFormat', () => {
  const names = ['web', 'db-primary', 'cache'];
  test('names are padded to the longest, then " | ", stdout and stderr to their own streams', () => {
    const f = lineFormat(names, { prefix: true, json: false, colour: () => false });
    assert.deepEqual(f('web', 'stdout', 'hello'), { to: 'stdout', text: 'web        | hello\n' });
    assert.deepEqual(f('db-primary', 'stderr', 'oops'), { to: 'stderr', text: 'db-primary | oops\n' });
  });

  test('on a terminal only the prefix is coloured, one colour per target as docker compose does', () => {
    const f = lineFormat(names, { prefix: true, json: false, colour: (to) => to === 'stdout' });
    assert.equal(f('web', 'stdout', 'x').text, '\x1b[36mweb        |\x1b[0m x\n');
    assert.equal(f('db-primary', 'stdout', 'x').text, '\x1b[33mdb-primary |\x1b[0m x\n');
    assert.equal(f('cache', 'stderr', 'x').text, 'cache      | x\n', 'stderr is no terminal here');
  });

  test('--no-prefix: the lines as they are', () => {
    const f = lineFormat(names, { prefix: false, json: false, colour: () => true });
    assert.deepEqual(f('web', 'stderr', 'raw'), { to: 'stderr', text: 'raw\n' });
  });

  test('--json: one object per line on stdout, whatever the stream', () => {
    const f = lineFormat(names, { prefix: true, json: true, colour: () => true });
    const line = f('web', 'stderr', 'a "quoted" \u0001 line');
    assert.equal(line.to, 'stdout');
    assert.deepEqual(JSON.parse(line.text), { target: 'web', stream: 'stderr', text: 'a "quoted" \u0001 line' });
    assert.ok(line.text.endsWith('}\n'));
  });
});

describe('summary', () => {
  test('exit 0 only when every target succeeded', () => {
    const s = summary([{ target: 'a', code: 0 }, { target: 'bb', code: 0 }]);
    assert.equal(s.exitCode, 0);
    assert.deepEqual(s.lines, ['a   exit 0', 'bb  exit 0', '2 targets: 2 succeeded, 0 failed; exit 0']);
  });

  test('else the largest exit code; a target not reached is 125 and named with why', () => {
    const s = summary([
      { target: 'a', code: 3 },
      { target: 'b', code: 0 },
      { target: 'gone', code: 125, error: "no container or process matches 'gone'; check the ID" },
      { target: 'c', code: 127, error: 'command not found in the container: nope' },
    ]);
    assert.equal(s.exitCode, 127);
    assert.deepEqual(s.lines, [
      'a     exit 3',
      'b     exit 0',
      "gone  not reached (exit 125): no container or process matches 'gone'; check the ID",
      'c     exit 127: command not found in the container: nope',
      '4 targets: 1 succeeded, 2 failed, 1 not reached; exit 127',
    ]);
    assert.equal(summary([{ target: 'a', code: 2 }, { target: 'x', code: 125, error: 'no' }]).exitCode, 125);
  });

  test('a command killed by a signal counts with its 128+N', () => {
    assert.equal(summary([{ target: 'a', code: 143 }, { target: 'b', code: 1 }]).exitCode, 143);
  });
});

describe('--filter', () => {
  const c = (id: string, name?: string, labels?: Record<string, string>): Container => ({ runtime: 'docker', id, pid: 1, status: 'running', ...(name ? { name } : {}), ...(labels ? { labels } : {}) });

  test('globs: * ? [...] [!...], anchored, everything else literal', () => {
    assert.ok(globRegExp('web-*').test('web-1'));
    assert.ok(!globRegExp('web-*').test('xweb-1'));
    assert.ok(globRegExp('db?').test('db1') && !globRegExp('db?').test('db12'));
    assert.ok(globRegExp('n[0-9]').test('n7') && !globRegExp('n[0-9]').test('nx'));
    assert.ok(globRegExp('n[!0-9]').test('nx') && !globRegExp('n[!0-9]').test('n7'));
    assert.ok(globRegExp('a.b+(c)').test('a.b+(c)') && !globRegExp('a.b').test('axb'));
  });

  test('parsing: name=GLOB, label=KEY, label=KEY=VALUE (the value may hold =)', () => {
    assert.equal(parseFilter('name=web-*').kind, 'name');
    assert.deepEqual(parseFilter('label=tier'), { kind: 'label', key: 'tier' });
    assert.deepEqual(parseFilter('label=cmd=a=b'), { kind: 'label', key: 'cmd', value: 'a=b' });
    assert.deepEqual(parseFilter('label=empty='), { kind: 'label', key: 'empty', value: '' });
  });

  test('bad filters are one line each', () => {
    assert.throws(() => parseFilter('status=running'), { message: "--filter status=running: unknown filter 'status'" });
    assert.throws(() => parseFilter('name='), { message: '--filter name=: the name glob is empty' });
    assert.throws(() => parseFilter('label='), { message: '--filter label=: the label key is empty' });
    assert.throws(() => parseFilter('web'), { message: "--filter web: unknown filter 'web'" });
  });

  test('name filters: the name or the ID, any of them; label filters: each of them', () => {
    const web = c('aaa111', 'web-1', { tier: 'front', team: 'x' });
    const runcOne = c('job-7');
    const f = (...xs: string[]) => xs.map(parseFilter);
    assert.ok(matches(web, f('name=web-*')));
    assert.ok(matches(web, f('name=aaa*')), 'by ID');
    assert.ok(matches(runcOne, f('name=job-*')), 'no name: the ID');
    assert.ok(matches(web, f('name=db*', 'name=web*')), 'any name filter');
    assert.ok(matches(web, f('label=tier=front', 'label=team')));
    assert.ok(!matches(web, f('label=tier=front', 'label=team=y')), 'every label filter');
    assert.ok(!matches(runcOne, f('label=tier')), 'no labels at all');
    assert.ok(!matches(web, f('name=web*', 'label=tier=back')), 'names and labels both');
    assert.ok(matches(web, []));
  });
});

describe('parseAttachArgs', () => {
  const yargs = createRequire(import.meta.url)('yargs/yargs') as (args: string[]) => Argv;
  const KEYS = ['target', 'image', 'add', 'mount-only', 'unmount', 'keep', 'verbose', 'user', 'workdir', 'env', 'target-env', 'cgroup', 'method', 'runtime',
    'namespace', 'pod', 'container', 'k8s-namespace', 'allow-host', 'insecure-image', 'exec', 'caps', 'audit', 'all', 'filter', 'parallel', 'prefix', 'json',
    'stopped', 'rootfs', 'from-image', 'entrypoint', 'net', 'rw-volumes'] as const;

  /** What yargs makes of `own` with crashcart's attach definition, or the error it gives. */
  async function viaYargs(own: string[]): Promise<Partial<AttachArgs> | string> {
    let got: Record<string, unknown> | undefined;
    try {
      await yargs(own)
        .command('$0 [target]', 'attach', (y) => attachOptions(y) as never, (a) => {
          got = a as Record<string, unknown>;
        })
        .option('verbose', VERBOSE)
        .strict()
        .exitProcess(false)
        .fail((msg, err) => {
          throw err ?? new Error(msg);
        })
        .parseAsync();
    } catch (e) {
      return (e as Error).message;
    }
    return Object.fromEntries(KEYS.filter((k) => got![k] !== undefined).map((k) => [k, got![k]]));
  }
  const own = (line: string) => splitArgv(line.split(' ').filter(Boolean)).own;

  test('every plain attach it takes, it reads as yargs does', async () => {
    const lines = [
      'web', 'web ps -ef', '-v web -- ls', '-i img web', '--image=img web', '--image img -k web', '-m web', '-u web', '--user 1000:1000 -w /srv web',
      '--env A=1 --env B=2 --env=C=3 web', '--no-target-env --no-cgroup --no-audit web', '--method mknod web', '--method=mountapi web',
      '--caps target web', '-r runc web', '--runtime docker --namespace moby web', '--pod api --container app --k8s-namespace prod',
      '--allow-host --insecure-image -e web', '1234', 'a,b,c -- ps', '--all --filter name=web-* --filter label=tier=front -- ps',
      '--all --parallel 4 --no-prefix', '--json a,b', '--keep --verbose web', '--exec web -- true', '',
      '--add jq web', '--add jq --add tmux web -- jq --version', '--add=jq,tmux web', '--add jq a,b -- true',
      '--stopped crashy', '--stopped --entrypoint crashy -- strace -f', '--rootfs /srv/root ls', '--from-image=busybox:1 --net host', '--stopped --rw-volumes --net none crashy',
    ];
    for (const line of lines) {
      const fast = parseAttachArgs(own(line));
      assert.ok(fast, `taken: '${line}'`);
      const slow = await viaYargs(own(line));
      assert.equal(typeof slow, 'object', `yargs accepts '${line}': ${String(slow)}`);
      const picked = Object.fromEntries(KEYS.filter((k) => fast[k] !== undefined).map((k) => [k, fast[k]]));
      assert.deepEqual(picked, slow, line);
    }
  });

  test('one table: every attach option yargs knows is one parseAttachArgs reads (and splitArgv skips the value of)', () => {
    assert.deepEqual([...KEYS].filter((k) => k !== 'target' && k !== 'verbose').sort(), Object.keys(ATTACH_OPTIONS).sort());
    for (const [name, s] of Object.entries(ATTACH_OPTIONS)) {
      if (s.type === 'boolean') continue;
      // --pod, --rootfs and --from-image name the target themselves: the next word is the command's
      const names = ['pod', 'rootfs', 'from-image'].includes(name);
      const own = names ? [`--${name}`, 'x'] : [`--${name}`, 'x', 'web'];
      assert.deepEqual(splitArgv([`--${name}`, 'x', 'web', 'ls']), { own, command: names ? ['web', 'ls'] : ['ls'] }, name);
    }
  });

  test('anything unusual is left to yargs (and its messages)', () => {
    for (const line of ['--help', '-h', '--version', '-V', 'image ls', 'ps', 'gc', 'doctor', 'demo', 'forward web 8080', 'cp web:/etc/hosts .', '--add', '--bogus web', '-x web', '-vk web', '-iimg web',
      '--image', '--image --keep web', '--method fast web', '--caps all web', '--keep --keep web', '--image a --image b web',
      '--keep=true web', '--mountOnly web', '-', '--parallel x --all', '--user= web', '--no-image web']) {
      assert.equal(parseAttachArgs(own(line)), undefined, line);
    }
    assert.equal(parseAttachArgs(['web', 'other']), undefined, 'two targets');
  });

  test('several targets: a comma in the target, or --all', () => {
    assert.ok(isFanOut(parseAttachArgs(own('a,b -- ps'))!));
    assert.ok(isFanOut(parseAttachArgs(own('--all -- ps'))!));
    assert.ok(!isFanOut(parseAttachArgs(own('web -- ps'))!));
  });

  test('--all names the targets: the first word after the options is the command', () => {
    assert.deepEqual(splitArgv(['--all', 'ps', '-ef']), { own: ['--all'], command: ['ps', '-ef'] });
    assert.deepEqual(splitArgv(['--all', '--filter', 'name=x', '--parallel', '2', 'id']), { own: ['--all', '--filter', 'name=x', '--parallel', '2'], command: ['id'] });
    assert.deepEqual(splitArgv(['a,b', 'ps']), { own: ['a,b'], command: ['ps'] });
  });
});
