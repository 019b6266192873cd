// The logic of the hardening, without root: fault points, cgroup limits, capability sets,
// audit lines, gc's lines, one-line usage errors and the -v cause chain.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { gcLine } from '../../src/cli/commands/gc.js';
import { usageLine } from '../../src/cli/main.js';
import { causeChain } from '../../src/cli/output.js';
import { auditLine, isoTime, recordedCommand } from '../../src/core/audit.js';
import { parseCaps } from '../../src/core/caps.js';
import { CrashcartError } from '../../src/core/errors.js';
import { configuredFault } from '../../src/core/fault.js';
import { describeLimit, isReached, limitsOf, withAncestors } from '../../src/core/limits.js';
import { parseMountInfo } from '../../src/core/proc.js';
import { StateStore, type TargetRecord } from '../../src/core/state.js';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

describe('CRASHCART_FAULT', () => {
  test('a point, with fail as the default action', () => {
    assert.equal(configuredFault({}), null);
    assert.deepEqual(configuredFault({ CRASHCART_FAULT: 'after-mount' }), { point: 'after-mount', action: 'fail' });
    assert.deepEqual(configuredFault({ CRASHCART_FAULT: 'before-exec:kill' }), { point: 'before-exec', action: 'kill' });
    assert.deepEqual(configuredFault({ CRASHCART_FAULT: 'after-state-write:stop' }), { point: 'after-state-write', action: 'stop' });
  });

  test('a typo is an error, not a fault that never fires', () => {
    assert.throws(() => configuredFault({ CRASHCART_FAULT: 'after-mnt' }), /unknown fault point 'after-mnt'/);
    assert.throws(() => configuredFault({ CRASHCART_FAULT: 'after-mount:boom' }), /unknown action 'boom'/);
    assert.throws(() => configuredFault({ CRASHCART_FAULT: 'after-mount:kill:now' }), /unknown fault point/);
  });
});

describe('cgroup limits', () => {
  const files = (entries: Record<string, string>) => (file: string) => {
    const v = entries[file];
    if (v === undefined) return undefined;
    return v === 'max' ? Infinity : Number(v);
  };

  test('v2 and v1 files; no limit ("max", or v1\'s huge number) is no limit', () => {
    const read = files({
      '/cg/a/pids.max': '10', '/cg/a/pids.current': '3',
      '/cg/a/memory.max': 'max', '/cg/a/memory.current': '100',
      '/cg/b/memory.limit_in_bytes': '9223372036854771712', '/cg/b/memory.usage_in_bytes': '5',
      '/cg/c/memory.limit_in_bytes': '67108864', '/cg/c/memory.usage_in_bytes': '1048576',
    });
    assert.deepEqual(limitsOf('/cg/a', read), [{ kind: 'pids', currentFile: '/cg/a/pids.current', maxFile: '/cg/a/pids.max', current: 3, max: 10 }]);
    assert.deepEqual(limitsOf('/cg/b', read), []);
    assert.deepEqual(limitsOf('/cg/c', read).map((l) => [l.kind, l.max]), [['memory', 67108864]]);
  });

  test('reached: fewer than 8 free pids; less than a tenth (at least 32 MiB) of memory free', () => {
    const pids = (current: number, max: number) => isReached({ kind: 'pids', currentFile: '', maxFile: '', current, max });
    assert.equal(pids(1, 1), true);
    assert.equal(pids(93, 100), true);
    assert.equal(pids(92, 100), false);
    const mem = (current: number, max: number) => isReached({ kind: 'memory', currentFile: '', maxFile: '', current, max });
    const MiB = 1 << 20;
    assert.equal(mem(1 * MiB, 16 * MiB), true, 'a 16 MiB container has no room for a debugger');
    assert.equal(mem(100 * MiB, 1024 * MiB), false);
    assert.equal(mem(950 * MiB, 1024 * MiB), true);
  });

  test("a cgroup's ancestors up to its hierarchy's mount, v1 and v2", () => {
    const mounts = parseMountInfo([
      '30 25 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,pids',
      '31 25 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:13 - cgroup2 cgroup2 rw',
    ].join('\n'));
    assert.deepEqual(withAncestors(['/sys/fs/cgroup/pids/kube/pod1/c1', '/sys/fs/cgroup/unified/x'], mounts), [
      '/sys/fs/cgroup/pids/kube/pod1/c1', '/sys/fs/cgroup/pids/kube/pod1', '/sys/fs/cgroup/pids/kube', '/sys/fs/cgroup/pids',
      '/sys/fs/cgroup/unified/x', '/sys/fs/cgroup/unified',
    ]);
    assert.deepEqual(withAncestors(['/elsewhere/x'], mounts), []);
  });

  test('the warning names the numbers and the cgroup', () => {
    assert.equal(describeLimit({ kind: 'pids', currentFile: '/cg/x/pids.current', maxFile: '/cg/x/pids.max', current: 1, max: 1 }), 'pids 1 of 1 (/cg/x)');
    assert.equal(describeLimit({ kind: 'memory', currentFile: '/cg/x/memory.current', maxFile: '/cg/x/memory.max', current: 15 << 20, max: 16 << 20 }), 'memory 15 MiB of 16 MiB (/cg/x)');
  });
});

test('capability sets from /proc/PID/status', () => {
  const status = 'Name:\tsleeper\nCapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n';
  assert.deepEqual(parseCaps(status), { inheritable: '0000000000000000', permitted: '00000000a80425fb', effective: '00000000a80425fb', bounding: '00000000a80425fb', ambient: '0000000000000000' });
  assert.throws(() => parseCaps('Name:\tx\n'), /no CapInh line/);
});

describe('audit lines', () => {
  const now = new Date('2026-12-01T12:00:00.000Z');
  test('one JSON object: when, who (and who ran sudo), what, where, with which result', () => {
    const line = auditLine({
      event: 'attach',
      target: { runtime: 'runc', id: 'web', pid: 42 },
      image: { path: '/var/lib/crashcart/images/full.img', sha256: 'ab'.repeat(32) },
      command: ['ps', '-ef'],
      method: 'mknod',
      exitCode: 0,
      signal: null,
      durationMs: 120,
    }, now, { SUDO_USER: 'alice', SUDO_UID: '1000' });
    const o = JSON.parse(line);
    assert.equal(o.time, '2026-12-01T12:00:00.000Z');
    assert.equal(o.sudoUser, 'alice');
    assert.equal(o.sudoUid, 1000);
    assert.deepEqual(o.target, { runtime: 'runc', id: 'web', pid: 42 });
    assert.deepEqual(o.command, ['ps', '-ef']);
    assert.equal(o.exitCode, 0);
    assert.ok(!line.includes('\n'));
  });

  test("the time is toISOString's, written without V8's date cache", () => {
    for (const ms of [0, 1, 999, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2000, 1, 29, 7, 5, 3, 40), Date.UTC(999, 0, 1), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.now()]) {
      assert.equal(isoTime(new Date(ms)), new Date(ms).toISOString(), String(ms));
    }
  });

  test('a huge command is recorded up to 4 KiB, with how much was left out', () => {
    assert.deepEqual(recordedCommand(['sh', '-c', 'x'.repeat(10)], 8), { command: ['sh', '-c', 'xxxx'], commandOmittedBytes: 6 });
    assert.deepEqual(recordedCommand(['a', 'b'], 8), { command: ['a', 'b'] });
    const o = JSON.parse(auditLine({ event: 'attach', command: ['sh', '-c', 'y'.repeat(100_000)] }, now, {}));
    assert.equal(o.command.join('').length, 4096);
    assert.equal(o.commandOmittedBytes, 100_000 + 4 - 4096);
  });

  test('--no-audit records only that a run went unrecorded', () => {
    const o = JSON.parse(auditLine({ event: 'attach', noAudit: true, command: ['cat', '/secret'] }, now, {}));
    assert.deepEqual(Object.keys(o).sort(), ['event', 'noAudit', 'sudoUid', 'sudoUser', 'time', 'uid']);
    assert.equal(o.sudoUser, null);
  });
});

test("gc's lines", () => {
  const target = { pid: 7, start: 1, runtime: 'runc', id: 'web' };
  assert.equal(gcLine({ target, action: 'unmounted' }, false), 'removed the toolkit from runc container web (pid 7): no session uses it any more');
  assert.equal(gcLine({ target, action: 'unmounted' }, true), 'would remove the toolkit from runc container web (pid 7): no session uses it any more');
  assert.equal(gcLine({ target, action: 'forgotten' }, false), 'forgot runc container web (pid 7): it is gone');
  assert.equal(gcLine({ target, action: 'cleared' }, false), 'forgot an interrupted session in runc container web (pid 7): it left nothing in the container');
  assert.equal(gcLine({ target: { ...target, runtime: 'pid', id: '7' }, action: 'failed', message: 'EBUSY' }, false), 'could not clean up process 7 (pid 7): EBUSY');
});

test("yargs' messages in one line", () => {
  // (more in cli.test.ts)
  assert.equal(usageLine('Invalid values:\n  Argument: method, Given: "bogus", Choices: "auto", "mknod", "mountapi"'), 'invalid --method "bogus": choose one of auto, mknod, mountapi; see crashcart --help');
  assert.equal(usageLine('Unknown argument: frobnicate', ['--frobnicate']), 'unknown option --frobnicate; see crashcart --help');
  assert.equal(usageLine('Not enough arguments following: image', ['--image']), '--image needs a value; see crashcart --help');
  assert.equal(usageLine('something\nmore'), 'something more; see crashcart --help');
});

test('-v: the cause chain with the native side\'s step and detail', () => {
  const native = Object.assign(new Error("setns: EPERM (Operation not permitted)"), { code: 'EPERM', syscall: 'setns', step: 'setns', detail: 2 });
  const e = new CrashcartError('cannot start the command in the container: setns: EPERM (Operation not permitted) (the net namespace)', { cause: native });
  assert.deepEqual(causeChain(e), ['caused by: setns: EPERM (Operation not permitted) [code EPERM, syscall setns, detail 2]']);
  assert.deepEqual(causeChain(new CrashcartError('plain')), []);
});

test('the state store sweeps what cut-short record writes left (a .tmp, a spare without its record), and nothing else', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-state-'));
  try {
    mkdirSync(join(dir, 'targets'));
    for (const n of ['mnt-1.json', 'mnt-1.json.tmp', 'mnt-2.json', 'mnt-2.json.spare', 'mnt-3.json.spare', 'lock']) writeFileSync(join(dir, 'targets', n), '{}');
    const lines: string[] = [];
    new StateStore(dir).sweepPartialWrites((l) => lines.push(l));
    assert.deepEqual(readdirSync(join(dir, 'targets')).sort(), ['lock', 'mnt-1.json', 'mnt-2.json', 'mnt-2.json.spare']);
    assert.deepEqual(lines, ['mnt-1.json.tmp', 'mnt-3.json.spare'].map((n) => `removed ${join(dir, 'targets', n)}, a session record whose write was cut short`));
    new StateStore(join(dir, 'missing')).sweepPartialWrites(() => assert.fail('nothing to sweep'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a record is replaced by trading names with its spare: the old inode is kept for the next write, a shorter record is padded, remove takes both', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crashcart-state-'));
  try {
    const store = new StateStore(dir);
    mkdirSync(join(dir, 'targets'));
    const file = join(dir, 'targets', 'mnt-7.json');
    const rec = (sessions: number): TargetRecord => ({
      key: 'mnt-7', target: { pid: 1, start: 2, runtime: 'runc', id: 'x' }, image: '/i.img', loop: '/dev/loop9', method: 'mknod', createdDir: true, pinned: false,
      sessions: Array.from({ length: sessions }, (_, i) => ({ id: `s${i}`, processes: [{ pid: 100 + i, start: 5 }] })),
    });
    store.write(rec(1));
    assert.deepEqual(readdirSync(join(dir, 'targets')), ['mnt-7.json']);
    const first = statSync(file).ino;
    store.write(rec(3));
    assert.deepEqual(readdirSync(join(dir, 'targets')).sort(), ['mnt-7.json', 'mnt-7.json.spare']);
    assert.equal(statSync(`${file}.spare`).ino, first, 'the old record is the spare now');
    assert.deepEqual(JSON.parse(readFileSync(`${file}.spare`, 'utf8')), rec(1), 'the spare still holds a whole record');
    const second = statSync(file).ino;
    store.write(rec(0)); // shorter than what the spare held
    assert.equal(statSync(file).ino, first, 'the two inodes take turns');
    assert.equal(statSync(`${file}.spare`).ino, second);
    assert.deepEqual(store.read('mnt-7'), rec(0));
    assert.match(readFileSync(file, 'utf8'), /\n +$/, 'padded with spaces, not truncated');
    store.write(rec(2));
    assert.deepEqual(store.read('mnt-7'), rec(2));
    store.remove('mnt-7');
    assert.deepEqual(readdirSync(join(dir, 'targets')), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
