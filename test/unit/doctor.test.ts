// crashcart doctor's decisions: capabilities, cgroup layouts, filesystems, runtimes, the
// state, cache and audit directories, the table and the exit status.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { splitArgv } from '../../src/cli/argv.js';
import { doctorSummary, doctorTable } from '../../src/cli/commands/doctor.js';
import { parseMountInfo } from '../../src/core/proc.js';
import {
  auditCheck, buildToolsCheck, cacheDirCheck, capabilitiesCheck, cgroupFacts, cgroupsCheck, decodeCapabilities, doctorExitCode, ext3Check,
  imageCheck, mountApiCheck, namespacesCheck, parseCapEff, parseFilesystems, rootCheck, runtimeCheck, runtimesCheck, stateDirCheck,
  trustFix, type CheckResult,
} from '../../src/doctor/checks.js';
import { fsTypeOf } from '../../src/doctor/probes.js';

const dir = (uid: number, mode: number) => ({ exists: true as const, kind: 'dir' as const, uid, mode: 0o40000 | mode });
const file = (uid: number, mode: number) => ({ exists: true as const, kind: 'file' as const, uid, mode: 0o100000 | mode });
const missing = { exists: false as const };

describe('capabilities', () => {
  test('CapEff is read as a 64-bit set and decoded to the capabilities an attach uses', () => {
    const status = 'Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n';
    assert.equal(parseCapEff(status), 0x1fffeffffffn);
    assert.deepEqual(decodeCapabilities(0x1fffeffffffn), ['CAP_SYS_ADMIN', 'CAP_SYS_PTRACE', 'CAP_SYS_CHROOT', 'CAP_SETUID', 'CAP_SETGID', 'CAP_MKNOD']);
    assert.equal(parseCapEff('Name:\tx\n'), undefined);
  });

  test('docker\'s default set lacks SYS_ADMIN and SYS_PTRACE: a failure naming both and why', () => {
    // chown dac_override fowner fsetid kill setgid setuid setpcap net_bind_service net_raw sys_chroot mknod audit_write setfcap
    const dockerDefault = parseCapEff('CapEff:\t00000000a80425fb\n');
    assert.deepEqual(decodeCapabilities(dockerDefault!), ['CAP_SYS_CHROOT', 'CAP_SETUID', 'CAP_SETGID', 'CAP_MKNOD']);
    const r = capabilitiesCheck(dockerDefault);
    assert.equal(r.status, 'fail');
    assert.equal(r.detail, "missing CAP_SYS_ADMIN (setns, mount and the loop device ioctls), CAP_SYS_PTRACE (other users' processes' namespaces and roots in /proc)");
    assert.match(r.fix!, /full root/);
  });

  test('only CAP_MKNOD missing is a warning: the mount API works without it', () => {
    const r = capabilitiesCheck(0x1fffeffffffn & ~(1n << 27n));
    assert.equal(r.status, 'warn');
    assert.match(r.detail, /^missing CAP_MKNOD/);
  });

  test('all of them: ok, listed', () => {
    assert.deepEqual(capabilitiesCheck(0x1ffffffffffn), {
      check: 'capabilities', status: 'ok', detail: 'CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_SYS_CHROOT CAP_SETUID CAP_SETGID CAP_MKNOD',
    });
    assert.equal(capabilitiesCheck(undefined).status, 'fail');
  });

  test("root of a user namespace is not the host's root", () => {
    assert.equal(rootCheck(0, [{ inside: 0, outside: 0, count: 4294967295 }]).status, 'ok');
    const userns = rootCheck(0, [{ inside: 0, outside: 100000, count: 65536 }]);
    assert.equal(userns.status, 'fail');
    assert.match(userns.detail, /host uid 100000/);
  });
});

describe('cgroup layout from mountinfo', () => {
  const line = (id: number, point: string, type: string, opts: string) => `${id} 30 0:${id} / ${point} rw,nosuid,nodev,noexec,relatime - ${type} ${type} ${opts}`;
  const none = () => [] as string[];

  test('hybrid: v1 controllers (combined ones split) and a cgroup2 mount', () => {
    const mounts = parseMountInfo([
      '30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      line(31, '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct'),
      line(34, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
      line(38, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids'),
      line(39, '/sys/fs/cgroup/systemd', 'cgroup', 'rw,xattr,name=systemd'),
      line(40, '/sys/fs/cgroup/unified', 'cgroup2', 'rw,nsdelegate'),
    ].join('\n'));
    const f = cgroupFacts(mounts, none);
    assert.deepEqual(f, {
      layout: 'hybrid',
      v1: ['/sys/fs/cgroup/cpu,cpuacct', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/pids', '/sys/fs/cgroup/systemd'],
      v2: ['/sys/fs/cgroup/unified'],
      controllers: ['cpu', 'cpuacct', 'memory', 'pids'],
    });
    assert.deepEqual(cgroupsCheck(f), {
      check: 'cgroups', status: 'ok',
      detail: 'hybrid: 4 v1 hierarchies and cgroup2 at /sys/fs/cgroup/unified; pids and memory controllers visible',
    });
  });

  test('v2 only: the controllers come from cgroup.controllers of the mount', () => {
    const mounts = parseMountInfo(line(26, '/sys/fs/cgroup', 'cgroup2', 'rw,nsdelegate,memory_recursiveprot'));
    const asked: string[] = [];
    const f = cgroupFacts(mounts, (p) => {
      asked.push(p);
      return ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'rdma', 'misc'];
    });
    assert.deepEqual(asked, ['/sys/fs/cgroup']);
    assert.equal(f.layout, 'v2');
    assert.equal(cgroupsCheck(f).detail, 'cgroup v2 only (/sys/fs/cgroup); pids and memory controllers visible');
  });

  test('v2 only without the pids controller enabled: a warning that says how to enable it', () => {
    const f = cgroupFacts(parseMountInfo(line(26, '/sys/fs/cgroup', 'cgroup2', 'rw')), () => ['cpu', 'io', 'memory']);
    const r = cgroupsCheck(f);
    assert.equal(r.status, 'warn');
    assert.equal(r.detail, "cgroup v2 only (/sys/fs/cgroup); no pids controller visible: a container's pids limits cannot be read");
    assert.match(r.fix!, /cgroup\.subtree_control/);
  });

  test('v1 only, without memory; and no cgroups at all', () => {
    const v1 = cgroupFacts(parseMountInfo([line(31, '/sys/fs/cgroup/cpu', 'cgroup', 'rw,cpu'), line(38, '/sys/fs/cgroup/pids', 'cgroup', 'rw,pids')].join('\n')), none);
    assert.equal(v1.layout, 'v1');
    assert.equal(cgroupsCheck(v1).detail, "cgroup v1 only (2 hierarchies); no memory controller visible: a container's memory limits cannot be read");
    const bare = cgroupFacts(parseMountInfo('25 1 0:22 / /sys rw - sysfs sysfs rw'), none);
    assert.equal(bare.layout, 'none');
    assert.equal(cgroupsCheck(bare).status, 'warn');
    assert.match(cgroupsCheck(bare).fix!, /--no-cgroup/);
  });
});

describe('kernel checks', () => {
  const procFilesystems = 'nodev\tsysfs\nnodev\ttmpfs\n\text3\n\text2\n\text4\nnodev\tcgroup2\n';

  test('/proc/filesystems lists the types, nodev or not', () => {
    assert.deepEqual(parseFilesystems(procFilesystems), ['sysfs', 'tmpfs', 'ext3', 'ext2', 'ext4', 'cgroup2']);
  });

  test('ext3 registered, autoloaded by the probe, or missing for good', () => {
    const fs = parseFilesystems(procFilesystems);
    assert.deepEqual(ext3Check({ before: fs, after: fs }), { check: 'ext3', status: 'ok', detail: 'in /proc/filesystems (served by the ext4 driver)' });
    const loaded = ext3Check({ before: ['tmpfs'], after: fs });
    assert.equal(loaded.status, 'ok');
    assert.match(loaded.detail, /autoloaded/);
    const none = ext3Check({ before: ['tmpfs'], after: ['tmpfs'], fsopenError: 'ENODEV' });
    assert.equal(none.status, 'fail');
    assert.match(none.fix!, /modprobe ext4/);
    assert.equal(ext3Check({ before: ['tmpfs'], after: ['tmpfs'], fsopenError: 'ENOSYS' }).status, 'warn');
  });

  test('the mount API: missing is a warning (only user-namespaced containers need it), no ext3 a failure', () => {
    assert.equal(mountApiCheck().status, 'ok');
    const nosys = mountApiCheck('ENOSYS', "fsopen 'ext3': ENOSYS (Function not implemented)");
    assert.equal(nosys.status, 'warn');
    assert.match(nosys.detail, /^fsopen\('ext3'\): ENOSYS: the kernel \(before 5\.2\) or a seccomp filter has no new mount API; user-namespaced/);
    assert.equal(mountApiCheck('ENODEV').status, 'fail');
  });

  test('namespaces: every type crashcart enters must open; time is only listed', () => {
    const all = { ipc: undefined, uts: undefined, net: undefined, pid: undefined, cgroup: undefined, mnt: undefined, user: undefined };
    assert.deepEqual(namespacesCheck(all, true), { check: 'namespaces', status: 'ok', detail: '/proc/self/ns: ipc uts net pid cgroup mnt user time' });
    assert.equal(namespacesCheck(all, false).detail, '/proc/self/ns: ipc uts net pid cgroup mnt user (no time namespace: not needed)');
    const r = namespacesCheck({ ...all, cgroup: 'ENOENT', user: 'ENOENT' }, false);
    assert.equal(r.status, 'fail');
    assert.equal(r.detail, 'cannot open /proc/self/ns/cgroup (ENOENT), /proc/self/ns/user (ENOENT)');
    assert.match(r.fix!, /CONFIG_CGROUP_NS, CONFIG_USER_NS/);
  });
});

describe('runtimes', () => {
  test('an answer gives the count and the time; a hang is a warning naming the socket', () => {
    assert.deepEqual(runtimeCheck({ name: 'runc', ms: 2.4, deadlineMs: 1000, answer: { state: 'answered', containers: 3, running: 2 } }), {
      check: 'runtime:runc', status: 'ok', detail: '3 containers (2 running), answered in 2 ms',
    });
    const hung = runtimeCheck({ name: 'docker', endpoint: '/run/x/docker.sock', hungFix: 'restart dockerd', ms: 1001, deadlineMs: 1000, answer: { state: 'timeout' } });
    assert.equal(hung.status, 'warn');
    assert.equal(hung.detail, 'no answer from /run/x/docker.sock within 1 s (its connections were closed); attaches to containers of other runtimes and to PIDs still work');
    assert.equal(hung.fix, 'restart dockerd');
    const refused = runtimeCheck({ name: 'docker', ms: 1, deadlineMs: 1000, answer: { state: 'failed', message: 'cannot reach the docker daemon at /x: connection refused', hint: 'start dockerd' } });
    assert.equal(refused.status, 'warn');
    assert.equal(refused.fix, 'start dockerd');
  });

  test('no runtime at all is a warning: PIDs still work', () => {
    assert.equal(runtimesCheck([], ['runc', 'docker']).status, 'warn');
    assert.equal(runtimesCheck(['runc'], ['docker']).detail, 'found runc; not here: docker');
  });
});

describe('directories and files', () => {
  test('the state directory: 0777 fails with the chmod to run; not a tmpfs warns', () => {
    const open = stateDirCheck({ path: '/run/cc', facts: dir(0, 0o777), fsType: 'tmpfs' });
    assert.deepEqual(open, {
      check: 'state-dir', status: 'fail',
      detail: '/run/cc: mode 777: others can write the records root acts on (must be 700)',
      fix: 'chmod 700 /run/cc',
    });
    const both = stateDirCheck({ path: '/var/cc', facts: dir(1000, 0o775), fsType: 'ext4' });
    assert.equal(both.status, 'fail');
    assert.equal(both.fix, 'chown root: /var/cc && chmod 700 /var/cc; set CRASHCART_STATE_DIR to a directory on a tmpfs (/run is one on most hosts)');
    assert.equal(stateDirCheck({ path: '/run/cc', facts: dir(0, 0o700), fsType: 'tmpfs' }).status, 'ok');
    assert.equal(stateDirCheck({ path: '/run/cc', facts: dir(0, 0o755), fsType: 'tmpfs' }).status, 'warn');
    assert.equal(stateDirCheck({ path: '/var/cc', facts: dir(0, 0o700), fsType: 'ext4' }).status, 'warn');
    assert.deepEqual(stateDirCheck({ path: '/run/cc', facts: missing, fsType: 'tmpfs' }), {
      check: 'state-dir', status: 'ok', detail: '/run/cc: not created yet (made 0700 by the first attach), on tmpfs',
    });
    assert.equal(stateDirCheck({ path: '/run/cc', facts: file(0, 0o600), fsType: 'tmpfs' }).status, 'fail');
  });

  test('the image cache: missing is fine, writable by others or not root\'s fails', () => {
    assert.equal(cacheDirCheck([{ path: '/c', facts: missing }, { path: '/c/images', facts: missing }]).status, 'ok');
    assert.deepEqual(cacheDirCheck([{ path: '/c', facts: dir(0, 0o700) }, { path: '/c/images', facts: dir(0, 0o700) }]), {
      check: 'image-cache', status: 'ok', detail: '/c: root-owned, mode 700',
    });
    const r = cacheDirCheck([{ path: '/c', facts: dir(0, 0o700) }, { path: '/c/images', facts: dir(0, 0o777) }]);
    assert.equal(r.status, 'fail');
    assert.equal(r.fix, 'chmod 700 /c/images');
    assert.match(r.detail, /^\/c: \/c\/images is writable by group or others \(mode 777\)/);
    assert.equal(cacheDirCheck([{ path: '/c', facts: dir(1000, 0o700) }, { path: '/c/images', facts: missing }]).fix, 'chown root: /c');
  });

  test('the image: from its sidecar; none cached warns, an untrusted one fails, an outdated one warns', () => {
    const base = { path: '/c/images/full.img', source: 'default' as const, exists: true, sizeBytes: 78 * 1048576 };
    const sidecar = { sha256: 'ab'.repeat(32), profile: 'full', recipe: 'r1', built: '2025-01-01T00:00:00.000Z' };
    assert.deepEqual(imageCheck({ ...base, sidecar, currentRecipe: 'r1' }), {
      check: 'image', status: 'ok',
      detail: '/c/images/full.img (profile full, sha256:abababababab, built 2025-01-01T00:00:00.000Z, 78.0 MiB): trusted (root-owned, not writable by others)',
    });
    assert.equal(imageCheck({ ...base, sidecar, currentRecipe: 'r2' }).status, 'warn');
    const unsafe = imageCheck({ ...base, unsafe: 'directory /c is writable by group or others (mode 777)' });
    assert.equal(unsafe.status, 'fail');
    assert.match(unsafe.detail, /no sidecar record .*directory \/c is writable by group or others \(mode 777\), so a non-root user could change what root mounts/);
    assert.equal(unsafe.fix, 'chmod go-w /c (or chmod +t, for a shared directory like /tmp)');
    assert.equal(trustFix('/c/images/x.img', 'it is owned by uid 1000, not root'), 'chown root: /c/images/x.img');
    assert.equal(trustFix('/c/images/x.img', 'it is writable by group or others (mode 666)'), 'chmod go-w /c/images/x.img');
    assert.equal(trustFix('/c/images/x.img', 'directory /c is owned by uid 1000, not root'), 'chown root: /c');
    assert.equal(imageCheck({ ...base, exists: false }).status, 'warn');
    assert.equal(imageCheck({ path: '/nope.img', source: 'CRASHCART_IMAGE', exists: false }).status, 'fail');
    assert.equal(imageCheck({ ...base, source: 'CRASHCART_IMAGE', ext3Error: 'not an ext2/3/4 filesystem (no superblock magic)' }).status, 'fail');
    const pull = imageCheck({ path: `/c/images/sha256-${'cd'.repeat(32)}.img`, source: 'CRASHCART_IMAGE_URL', url: 'https://x/t.img', exists: false });
    assert.equal(pull.status, 'warn');
    assert.equal(pull.fix, `pull it now: crashcart image pull https://x/t.img --sha256 ${'cd'.repeat(32)}`);
  });

  test('the audit log: a missing file is fine; its directory and mode must be root\'s alone (a warning: the log never fails an attach)', () => {
    const base = { file: '/l/cc/audit.log', dir: '/l/cc' };
    assert.equal(auditCheck({ ...base, dirFacts: missing, parent: '/l', fileFacts: missing }).status, 'ok');
    const ro = auditCheck({ ...base, dirFacts: missing, parent: '/l', writeError: 'EROFS', fileFacts: missing });
    assert.equal(ro.status, 'warn');
    assert.equal(ro.detail, '/l/cc/audit.log: /l/cc cannot be created: /l is not writable (EROFS)');
    assert.equal(auditCheck({ ...base, dirFacts: dir(0, 0o755), fileFacts: file(0, 0o600) }).status, 'ok');
    const loose = auditCheck({ ...base, dirFacts: dir(0, 0o777), fileFacts: file(1000, 0o644) });
    assert.equal(loose.status, 'warn');
    assert.equal(loose.detail, '/l/cc/audit.log: /l/cc is writable by group or others (mode 777); owned by uid 1000, not root; mode 644 (must be 600)');
    assert.equal(loose.fix, 'chmod go-w /l/cc; chown root: /l/cc/audit.log; chmod 600 /l/cc/audit.log');
    assert.equal(auditCheck({ ...base, dirFacts: dir(0, 0o755), fileFacts: { exists: true, kind: 'symlink', uid: 0, mode: 0o120777 } }).status, 'warn');
  });

  test('build tools missing are a warning with the packages to install', () => {
    assert.equal(buildToolsCheck([]).status, 'ok');
    assert.deepEqual(buildToolsCheck(['mke2fs', 'debugfs', 'patchelf']), {
      check: 'build-tools', status: 'warn',
      detail: 'missing mke2fs, debugfs, patchelf: needed only to build toolkit images, not to attach with one',
      fix: 'apt-get install e2fsprogs patchelf',
    });
  });

  test('the filesystem of a path is that of its longest mount point, the last one mounted over', () => {
    const mounts = parseMountInfo([
      '1 0 8:1 / / rw - ext4 /dev/vda rw',
      '2 1 0:20 / /run rw - tmpfs tmpfs rw',
      '3 1 0:21 / /runx rw - xfs /dev/vdb rw',
      '4 2 0:22 / /run rw - ramfs ramfs rw',
    ].join('\n'));
    assert.equal(fsTypeOf('/run/crashcart-doctor-test-does-not-exist/state', mounts), 'ramfs');
    assert.equal(fsTypeOf('/runx-does-not-exist', mounts), 'ext4');
  });
});

describe('table and exit status', () => {
  const results: CheckResult[] = [
    { check: 'root', status: 'ok', detail: "euid 0, the host's root" },
    { check: 'state-dir', status: 'fail', detail: '/s: mode 777', fix: 'chmod 700 /s' },
    { check: 'runtime:docker', status: 'warn', detail: 'no answer', fix: 'restart dockerd' },
  ];

  test('a row per check, a fix line under each warn and fail, and a summary', () => {
    assert.equal(doctorTable(results), [
      'CHECK           STATUS  DETAIL',
      "root            ok      euid 0, the host's root",
      'state-dir       fail    /s: mode 777',
      '                        fix: chmod 700 /s',
      'runtime:docker  warn    no answer',
      '                        fix: restart dockerd',
      '',
      'crashcart cannot attach on this host: 1 check failed (state-dir)',
      '',
    ].join('\n'));
    assert.equal(doctorSummary(results.slice(0, 1)), 'crashcart can attach on this host');
    assert.equal(doctorSummary([results[0]!, results[2]!]), 'crashcart can attach on this host (1 warning: runtime:docker)');
  });

  test('exit 1 only when something an attach needs failed; warnings keep 0', () => {
    assert.equal(doctorExitCode(results), 1);
    assert.equal(doctorExitCode([results[0]!, results[2]!]), 0);
    assert.equal(doctorExitCode([]), 0);
  });

  test('doctor is a subcommand: its words are not a target and a command', () => {
    assert.deepEqual(splitArgv(['doctor', '--json']), { own: ['doctor', '--json'], command: [] });
  });
});
