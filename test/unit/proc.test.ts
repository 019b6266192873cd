// Parsers for what /proc says: mountinfo, id maps, cgroups, stat.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import {
  cgroupProcsFiles,
  isAlive,
  mapToHost,
  parseCgroups,
  parseEnviron,
  parseIdMap,
  parseMountInfo,
  parseStartTime,
  processState,
  startTime,
  type MountInfo,
} from '../../src/core/proc.js';

describe('parseMountInfo', () => {
  test('reads every field, with optional fields before the separator', () => {
    const text = [
      '36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
      '61 94 7:3 / /dev/crashcart ro,nosuid,nodev,relatime shared:5 master:7 - ext3 /dev/loop3 ro',
      '25 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime - sysfs sysfs rw',
    ].join('\n');
    assert.deepEqual(parseMountInfo(text), [
      {
        id: 36, parent: 35, major: 98, minor: 0, root: '/mnt1', mountPoint: '/mnt2', options: 'rw,noatime',
        fsType: 'ext3', source: '/dev/root', superOptions: 'rw,errors=continue',
      },
      {
        id: 61, parent: 94, major: 7, minor: 3, root: '/', mountPoint: '/dev/crashcart', options: 'ro,nosuid,nodev,relatime',
        fsType: 'ext3', source: '/dev/loop3', superOptions: 'ro',
      },
      {
        id: 25, parent: 1, major: 0, minor: 22, root: '/', mountPoint: '/sys', options: 'rw,nosuid,nodev,noexec,relatime',
        fsType: 'sysfs', source: 'sysfs', superOptions: 'rw',
      },
    ] satisfies MountInfo[]);
  });

  test('unescapes spaces, tabs, newlines and backslashes in paths and sources', () => {
    const line = '70 67 0:50 /a\\040dir /mnt/with\\040space\\011tab\\012nl\\134bs rw - tmpfs my\\040src rw,size=1k';
    const [m] = parseMountInfo(`${line}\n`);
    assert.equal(m.root, '/a dir');
    assert.equal(m.mountPoint, '/mnt/with space\ttab\nnl\\bs');
    assert.equal(m.source, 'my src');
    assert.equal(m.fsType, 'tmpfs');
    assert.equal(m.superOptions, 'rw,size=1k');
  });

  test('skips empty and malformed lines; missing super options read as empty', () => {
    const text = '\n\ngarbage line\n90 1 0:70 / /x rw - tmpfs none\n';
    assert.deepEqual(parseMountInfo(text).map((m) => [m.mountPoint, m.source, m.superOptions]), [['/x', 'none', '']]);
  });

  test("parses this process's own mountinfo", () => {
    const mounts = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    assert.ok(mounts.some((m) => m.mountPoint === '/'));
    assert.ok(mounts.every((m) => Number.isInteger(m.id) && m.fsType.length > 0));
  });
});

describe('parseIdMap and mapToHost', () => {
  test('reads uid_map lines as the kernel pads them', () => {
    assert.deepEqual(parseIdMap('         0     100000      65536\n'), [{ inside: 0, outside: 100000, count: 65536 }]);
    assert.deepEqual(parseIdMap('0 1000 1\n1 100000 65535\n\n'), [
      { inside: 0, outside: 1000, count: 1 },
      { inside: 1, outside: 100000, count: 65535 },
    ]);
  });

  test("reads this process's own uid_map", () => {
    const map = parseIdMap(readFileSync('/proc/self/uid_map', 'utf8'));
    assert.ok(map.length > 0);
    // whatever namespace the tests run in, the current euid is mapped
    assert.notEqual(mapToHost(map, process.geteuid!()), undefined);
  });

  test('ignores lines that are not three integers', () => {
    assert.deepEqual(parseIdMap('0 1\nx y z\n0 1 2 3\n5 6 7\n'), [{ inside: 5, outside: 6, count: 7 }]);
    assert.deepEqual(parseIdMap(''), []);
  });

  test('maps an id through the range that holds it', () => {
    const map = parseIdMap('0 1000 1\n1 100000 65535\n');
    assert.equal(mapToHost(map, 0), 1000);
    assert.equal(mapToHost(map, 1), 100000);
    assert.equal(mapToHost(map, 1000), 100999);
    assert.equal(mapToHost(map, 65535), 165534);
  });

  test('an id outside every range is unmapped', () => {
    const map = parseIdMap('0 100000 65536\n');
    assert.equal(mapToHost(map, 65535), 165535);
    assert.equal(mapToHost(map, 65536), undefined);
    assert.equal(mapToHost(parseIdMap('1000 0 1\n'), 0), undefined);
    assert.equal(mapToHost([], 0), undefined);
  });
});

// A hybrid host: v1 controllers plus the unified hierarchy at /sys/fs/cgroup/unified.
const HYBRID_CGROUP = [
  '12:pids:/user.slice/user-0.slice/session-3.scope',
  '11:cpu,cpuacct:/user.slice',
  '10:rdma:/',
  '4:memory:/user.slice/user-0.slice/session-3.scope',
  '1:name=systemd:/user.slice/user-0.slice/session-3.scope',
  '0::/user.slice/user-0.slice/session-3.scope',
  '',
].join('\n');

const HYBRID_MOUNTINFO = [
  '23 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
  '27 23 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755',
  '28 27 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate',
  '29 27 0:27 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,xattr,name=systemd',
  '33 27 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct',
  '34 27 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,pids',
  '35 27 0:33 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory',
  '',
].join('\n');

describe('parseCgroups and cgroupProcsFiles', () => {
  test('reads v1 controllers and the v2 line', () => {
    assert.deepEqual(parseCgroups(HYBRID_CGROUP), [
      { hierarchy: 12, controllers: ['pids'], path: '/user.slice/user-0.slice/session-3.scope' },
      { hierarchy: 11, controllers: ['cpu', 'cpuacct'], path: '/user.slice' },
      { hierarchy: 10, controllers: ['rdma'], path: '/' },
      { hierarchy: 4, controllers: ['memory'], path: '/user.slice/user-0.slice/session-3.scope' },
      { hierarchy: 1, controllers: ['name=systemd'], path: '/user.slice/user-0.slice/session-3.scope' },
      { hierarchy: 0, controllers: [], path: '/user.slice/user-0.slice/session-3.scope' },
    ]);
  });

  test('a path may contain colons', () => {
    assert.deepEqual(parseCgroups('0::/system.slice/docker-abc.scope:extra\n'), [
      { hierarchy: 0, controllers: [], path: '/system.slice/docker-abc.scope:extra' },
    ]);
  });

  test('hybrid host: one cgroup.procs per mounted hierarchy, unmounted ones skipped', () => {
    const files = cgroupProcsFiles(parseCgroups(HYBRID_CGROUP), parseMountInfo(HYBRID_MOUNTINFO));
    assert.deepEqual(files, [
      '/sys/fs/cgroup/pids/user.slice/user-0.slice/session-3.scope/cgroup.procs',
      '/sys/fs/cgroup/cpu,cpuacct/user.slice/cgroup.procs',
      '/sys/fs/cgroup/memory/user.slice/user-0.slice/session-3.scope/cgroup.procs',
      '/sys/fs/cgroup/systemd/user.slice/user-0.slice/session-3.scope/cgroup.procs',
      '/sys/fs/cgroup/unified/user.slice/user-0.slice/session-3.scope/cgroup.procs',
    ]);
  });

  test('pure v2: the root cgroup is the mount itself', () => {
    const mounts = parseMountInfo('30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n');
    assert.deepEqual(cgroupProcsFiles(parseCgroups('0::/\n'), mounts), ['/sys/fs/cgroup/cgroup.procs']);
    assert.deepEqual(cgroupProcsFiles(parseCgroups('0::/a/b\n'), mounts), ['/sys/fs/cgroup/a/b/cgroup.procs']);
  });

  test('a mount of a sub-tree: paths are taken relative to its root, paths outside it skipped', () => {
    const mounts = parseMountInfo('40 23 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n');
    assert.deepEqual(cgroupProcsFiles(parseCgroups('0::/kubepods/pod1/ctr\n'), mounts), ['/sys/fs/cgroup/pod1/ctr/cgroup.procs']);
    assert.deepEqual(cgroupProcsFiles(parseCgroups('0::/kubepods\n'), mounts), ['/sys/fs/cgroup/cgroup.procs']);
    assert.deepEqual(cgroupProcsFiles(parseCgroups('0::/system.slice/x\n'), mounts), []);
  });

  test(
    'a sub-tree root is matched on whole path components',
    () => {
      const mounts = parseMountInfo('40 23 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n');
      assert.deepEqual(cgroupProcsFiles(parseCgroups('0::/kubepods2/x\n'), mounts), []);
    },
  );

  test("this process's own cgroup files exist", () => {
    const files = cgroupProcsFiles(
      parseCgroups(readFileSync('/proc/self/cgroup', 'utf8')),
      parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')),
    );
    assert.ok(files.length > 0);
    for (const f of files) assert.match(readFileSync(f, 'utf8'), new RegExp(`^${process.pid}$`, 'm'), f);
  });
});

describe('parseStartTime', () => {
  // fields 3..22 of /proc/PID/stat: state ppid pgrp session tty tpgid flags minflt cminflt
  // majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
  const tail = 'S 1 1 1 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 1 0 987654 5000000 300 18446744073709551615';

  test('field 22', () => {
    assert.equal(parseStartTime(`4242 (sleeper) ${tail}`), 987654);
  });

  test('a command name with spaces and parentheses', () => {
    assert.equal(parseStartTime(`4242 (my (odd) name ) ${tail}`), 987654);
    assert.equal(parseStartTime(`4242 ()) ) ${tail}`), 987654);
    assert.equal(parseStartTime(`4242 (a) S 9 9 9 (b) ${tail}`), 987654);
  });

  test('agrees with what /proc/self/stat says', () => {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const start = startTime('self');
    assert.equal(start, parseStartTime(stat));
    assert.equal(start, Number(stat.split(') ')[1]!.split(' ')[19]));
    assert.equal(startTime(process.pid), start);
    assert.ok(isAlive(process.pid, start!));
    assert.ok(!isAlive(process.pid, start! + 1), 'another start time is another process');
    assert.equal(processState(process.pid), 'R');
  });
});

describe('process liveness', () => {
  test('a process that is gone has no start time and no state', async () => {
    const child = spawn('true', { stdio: 'ignore' });
    const pid = child.pid!;
    await new Promise((resolve) => child.once('exit', resolve));
    // node reaps it at once; wait until /proc agrees
    for (let i = 0; i < 100 && startTime(pid) !== undefined; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(startTime(pid), undefined);
    assert.equal(processState(pid), undefined);
  });

  test(
    'a zombie is not alive',
    async () => {
      // sh starts `sleep 0` in the background, then becomes `sleep 30`, which never reaps it
      const sh = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
      const pid = Number(await new Promise<string>((resolve) => sh.stdout.once('data', (d: Buffer) => resolve(d.toString()))));
      try {
        for (let i = 0; i < 1000 && processState(pid) !== 'Z'; i++) await new Promise((r) => setTimeout(r, 10));
        assert.equal(processState(pid), 'Z');
        assert.equal(isAlive(pid, startTime(pid)!), false);
      } finally {
        sh.kill('SIGKILL');
      }
    },
  );
});

describe('parseEnviron', () => {
  test('splits on NUL and keeps only NAME=VALUE entries', () => {
    assert.deepEqual(parseEnviron(Buffer.from('A=1\0B=x=y\0junk\0\0C=\0')), ['A=1', 'B=x=y', 'C=']);
    assert.deepEqual(parseEnviron(''), []);
  });
});
