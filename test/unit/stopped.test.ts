// Where each runtime keeps a stopped container, read from recorded answers (docker's and
// podman's inspect, runc's and crun's state and bundle config, an LXC config), and the
// sandbox's own decisions: its first line, its mount table, its command line, and the
// options it refuses. No root needed.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { splitArgv } from '../../src/cli/argv.js';
import { psRows, psTable } from '../../src/cli/commands/ps.js';
import { refuseCopyInto } from '../../src/cli/commands/cp.js';
import { acceptStopped, checkSandboxArgs, type StoppedArgs } from '../../src/cli/commands/stopped.js';
import { CrashcartError } from '../../src/core/errors.js';
import { cleanDestination, containerMounts, firstLine, planMounts, sandboxArgv } from '../../src/core/sandbox.js';
import { describeEnd, displayName, type StoppedContainer } from '../../src/core/stopped.js';
import { fromInspect, imageFromInspect, type Inspected } from '../../src/runtimes/docker-stopped.js';
import { parseCriStatus, snapshotLayers, timestamp } from '../../src/runtimes/containerd-stopped.js';
import { pickExitedAttempt } from '../../src/runtimes/kubernetes-stopped.js';
import { fromLxcConfig, lxcLayers, lxcMounts } from '../../src/runtimes/lxc-stopped.js';
import { fromOciSpec, ociMounts, parseCrunStatus, parseRuncState } from '../../src/runtimes/oci-stopped.js';
import { projectRoot } from '../helpers/host.js';

const fixture = (name: string) => JSON.parse(readFileSync(join(projectRoot(), 'test/fixtures/stopped', name), 'utf8')) as unknown;
const DOCKER_ID = '34080d7e39c3340a0ecb03bbf32ba8b148cead5bc31e6425d7492709092d9b25';
const D = '/tmp/crashcart-dockerd-Qhb7Zq/data';

function refused(fn: () => unknown, message: string, hint?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CrashcartError, String(e));
    assert.equal(e.message, message);
    if (hint !== undefined) assert.equal(e.hint, hint);
    return true;
  });
}

describe('docker: the Engine API inspect answer of an exited container (docker 20.10, recorded)', () => {
  const inspected = fixture('docker-container.json') as Inspected;
  const everyFileExists = () => true;

  test('layers: UpperDir first, then LowerDir (the -init layer, the image)', () => {
    const c = fromInspect('docker', inspected, everyFileExists);
    assert.deepEqual(c.layers, [
      `${D}/overlay2/334dc7d83e5f332d6cdf413f0d4e648b9208c4c9a3706ba6227f034b96f861ae/diff`,
      `${D}/overlay2/334dc7d83e5f332d6cdf413f0d4e648b9208c4c9a3706ba6227f034b96f861ae-init/diff`,
      `${D}/overlay2/c07abbaf611745aafb87dc4c9abbf82c08d6878881b229713a7f8b928d206f66/diff`,
    ]);
    assert.equal(c.id, DOCKER_ID);
    assert.equal(c.name, 'crashy');
    assert.equal(displayName(c), 'crashy');
  });

  test('mounts: the named volume, the read-only bind, and the files docker made for it', () => {
    const c = fromInspect('docker', inspected, everyFileExists);
    const cdir = `${D}/containers/${DOCKER_ID}`;
    assert.deepEqual(c.mounts, [
      { destination: '/data', source: `${D}/volumes/vol1/_data`, kind: 'volume', readOnly: false, name: 'vol1' },
      { destination: '/bind', source: '/tmp/crashcart-dockerd-Qhb7Zq/bindsrc', kind: 'bind', readOnly: true },
      { destination: '/etc/hostname', source: `${cdir}/hostname`, kind: 'runtime', readOnly: true },
      { destination: '/etc/hosts', source: `${cdir}/hosts`, kind: 'runtime', readOnly: true },
      { destination: '/etc/resolv.conf', source: `${cdir}/resolv.conf`, kind: 'runtime', readOnly: true },
    ]);
    // a runtime file that is gone is left out, not an error
    assert.deepEqual(fromInspect('docker', inspected, (p) => !p.endsWith('/hosts')).mounts.map((m) => m.destination), ['/data', '/bind', '/etc/hostname', '/etc/resolv.conf']);
  });

  test('config and end: user, env, cwd, hostname, the command as run; exited 3, not OOM-killed', () => {
    const c = fromInspect('docker', inspected, everyFileExists);
    assert.deepEqual(c.config, {
      env: ['CRASHY=1'], cwd: '/tmp', user: '1000:1000', hostname: 'crashyhost',
      entrypoint: ['/bin/sh'], cmd: ['-c', 'echo bye > /tmp/last-words; exit 3'],
    });
    assert.deepEqual(c.state, { status: 'exited', exitCode: 3, finishedAt: '2026-12-01T21:39:12.205031687Z', oomKilled: false });
    assert.equal(describeEnd(c.state), 'exited 3 at 2026-12-01T21:39:12Z (OOM-killed: no)');
  });

  test('a container created and never started has no exit code', () => {
    const created = { ...inspected, State: { Status: 'created', ExitCode: 0, OOMKilled: false, StartedAt: '0001-01-01T00:00:00Z', FinishedAt: '0001-01-01T00:00:00Z' } };
    const c = fromInspect('docker', created, everyFileExists);
    assert.deepEqual(c.state, { status: 'created' });
    assert.equal(describeEnd(c.state), 'was created and never started');
  });

  test('a storage driver other than overlay2 is one clear error', () => {
    refused(() => fromInspect('docker', { ...inspected, GraphDriver: { Name: 'vfs', Data: null } }),
      'docker container crashy is stored by the vfs storage driver, which crashcart cannot open (it opens docker\'s overlay2 and overlay)',
      'export its files (docker export, podman export) into a directory and open that with --rootfs DIR');
  });

  test('an image: its one layer (UpperDir), its config, no hostname', () => {
    const c = imageFromInspect('docker', 'mini:latest', fixture('docker-image.json') as Inspected);
    assert.deepEqual(c.layers, [`${D}/overlay2/c07abbaf611745aafb87dc4c9abbf82c08d6878881b229713a7f8b928d206f66/diff`]);
    assert.equal(c.kind, 'image');
    assert.equal(c.id, 'd38e9a7bc14bb618b191b6742005afe0ec38176457163bf31af709c09e0a8c43');
    assert.deepEqual(c.config, { env: [], cwd: '', user: '', hostname: '', entrypoint: [], cmd: [] });
  });
});

describe('podman: `podman container inspect` of an exited container (podman 4.3, recorded)', () => {
  const [inspected] = fixture('podman-container.json') as Inspected[];

  test('layers, volume and bind, its hostname and hosts files, config and end', () => {
    const c = fromInspect('podman', inspected!, () => true);
    const G = '/tmp/crashcart-podman-HtVKiw';
    assert.deepEqual(c.layers, [
      `${G}/graph/overlay/2d1103728c5c4db4076003e8bf7c6f89658464e562585a8754a726e7b104dafc/diff`,
      `${G}/graph/overlay/97e958044e24e4d45aee97ff0858e834ac754975d3e4c92cfaf927049ca0b99f/diff`,
    ]);
    assert.deepEqual(c.mounts.map((m) => [m.destination, m.kind, m.readOnly]), [
      ['/data', 'volume', false], ['/bind', 'bind', true], ['/etc/hostname', 'runtime', true], ['/etc/hosts', 'runtime', true],
    ]);
    assert.equal(c.config.user, '1000:1000');
    assert.equal(c.config.hostname, 'crashyhost');
    assert.ok(c.config.env.includes('CRASHY=1'));
    // podman's Entrypoint is one string; Path and Args are what ran
    assert.deepEqual([c.config.entrypoint, c.config.cmd], [['/bin/sh'], ['-c', 'echo bye > /tmp/last-words; exit 3']]);
    assert.equal(describeEnd(c.state), 'exited 3 at 2026-12-01T21:39:27Z (OOM-killed: no)');
  });

  test('an image', () => {
    const [i] = fixture('podman-image.json') as Inspected[];
    const c = imageFromInspect('podman', 'localhost/mini:latest', i!);
    assert.equal(c.layers.length, 1);
    assert.match(c.layers[0]!, /\/graph\/overlay\/97e9[0-9a-f]+\/diff$/);
  });
});

describe('runc and crun: state directory and bundle (recorded)', () => {
  test("runc's state.json names the rootfs and the bundle", () => {
    assert.deepEqual(parseRuncState(fixture('runc-state.json')), {
      rootfs: '/tmp/crashcart-9d041582142f-IJmNIb/rootfs', bundle: '/tmp/crashcart-9d041582142f-IJmNIb',
    });
  });

  test("crun's status file too", () => {
    assert.deepEqual(parseCrunStatus(fixture('crun-status.json')), {
      rootfs: '/tmp/crashcart-8c1f4ce4fae6-WJcp9V/rootfs', bundle: '/tmp/crashcart-8c1f4ce4fae6-WJcp9V',
    });
  });

  test("the bundle's config.json: process, hostname; the runtime's own mounts are left to the sandbox", () => {
    const { config, mounts } = fromOciSpec(fixture('runc-config.json') as never);
    assert.deepEqual(config, { env: ['A=1'], cwd: '/', user: '', hostname: 'h1', entrypoint: ['/bin/sleeper'], cmd: [] });
    assert.deepEqual(mounts, []);
  });

  test('OCI mounts: binds with host sources (ro kept), tmpfs; proc, devpts, cgroup and anything under /dev, /proc, /sys are not', () => {
    assert.deepEqual(ociMounts([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm' },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup' },
      { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind', 'rw'] },
      { destination: '/etc/hosts', type: 'none', source: '/var/lib/x/hosts', options: ['bind', 'ro'] },
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] },
      { destination: '/relative', type: 'bind', source: 'relative/src', options: ['bind'] },
    ]), [
      { destination: '/data', source: '/srv/data', kind: 'bind', readOnly: false },
      { destination: '/etc/hosts', source: '/var/lib/x/hosts', kind: 'bind', readOnly: true },
      { destination: '/run', kind: 'tmpfs', readOnly: false },
    ]);
  });

  test('a user with additional groups', () => {
    const { config } = fromOciSpec({ process: { user: { uid: 1000, gid: 100, additionalGids: [10, 20] } } });
    assert.equal(config.user, '1000:100');
    assert.deepEqual(config.groups, [10, 20]);
  });
});

describe('LXC: its config', () => {
  const text = [
    'lxc.uts.name = crashy',
    'lxc.rootfs.path = dir:/var/lib/lxc/crashy/rootfs',
    'lxc.init.cmd = /bin/sh /app/crash.sh',
    'lxc.init.cwd = /app',
    'lxc.init.uid = 1000',
    'lxc.init.gid = 1000',
    'lxc.environment = CRASHY=1',
    'lxc.mount.entry = /srv/data data none bind,create=dir 0 0',
    'lxc.mount.entry = /srv/ro srv/ro none bind,ro 0 0',
    'lxc.mount.entry = proc proc proc nodev 0 0',
    'lxc.mount.entry = tmpfs run tmpfs defaults 0 0',
  ].join('\n');

  test('rootfs, init command, cwd, ids, environment, hostname, binds', () => {
    const c = fromLxcConfig('crashy', text, 'stopped');
    assert.deepEqual(c.layers, ['/var/lib/lxc/crashy/rootfs']);
    assert.deepEqual(c.config, { env: ['CRASHY=1'], cwd: '/app', user: '1000:1000', hostname: 'crashy', entrypoint: ['/bin/sh', '/app/crash.sh'], cmd: [] });
    assert.deepEqual(c.mounts, [
      { destination: '/data', source: '/srv/data', kind: 'bind', readOnly: false },
      { destination: '/srv/ro', source: '/srv/ro', kind: 'bind', readOnly: true },
      { destination: '/run', kind: 'tmpfs', readOnly: false },
    ]);
    assert.equal(describeEnd(c.state), 'is stopped (LXC records no exit code)');
  });

  test('rootfs backends: a path, dir:, overlay:LOWER:UPPER; others are refused', () => {
    assert.deepEqual(lxcLayers('/srv/root'), ['/srv/root']);
    assert.deepEqual(lxcLayers('overlay:/base:/delta'), ['/delta', '/base']);
    assert.equal(lxcLayers('lvm:/dev/vg/crashy'), undefined);
    refused(() => fromLxcConfig('crashy', 'lxc.rootfs.path = lvm:/dev/vg/crashy\n', 'stopped'),
      "LXC container crashy is stored by the lvm backend (lxc.rootfs.path = lvm:/dev/vg/crashy), which crashcart cannot open (it opens LXC's dir and overlay backends)");
    assert.deepEqual(lxcMounts(['garbage']), []);
  });
});

const crashy: StoppedContainer = {
  kind: 'container', runtime: 'docker', id: DOCKER_ID, name: 'crashy', layers: ['/l/upper', '/l/lower'],
  mounts: [
    { destination: '/data/sub', source: '/v/sub', kind: 'bind', readOnly: false },
    { destination: '/data', source: '/v/data', kind: 'volume', readOnly: false, name: 'vol1' },
    { destination: '/etc/hosts', source: '/d/hosts', kind: 'runtime', readOnly: true },
    { destination: '/dev/shm', kind: 'tmpfs', readOnly: false },
    { destination: '/cache', kind: 'tmpfs', readOnly: false },
    { destination: 'relative', source: '/x', kind: 'bind', readOnly: false },
  ],
  config: { env: ['A=1'], cwd: '/app', user: 'app', hostname: 'crashy', entrypoint: ['/app/server'], cmd: ['--flag'] },
  state: { status: 'exited', exitCode: 3, finishedAt: '2026-12-01T17:58:22.123456Z', oomKilled: false },
};

describe('the sandbox', () => {
  test("the issue's first line", () => {
    assert.equal(firstLine(crashy, `crashy ${describeEnd(crashy.state)}`, 'loopback only'),
      'crashy exited 3 at 2026-12-01T17:58:22Z (OOM-killed: no); its files are opened in a sandbox: changes are thrown away, none of its processes run, network: loopback only');
  });

  test('the mount table: /dev and the toolkit, /sys; volumes by depth, read-only unless --rw-volumes; the runtime files always; /proc last, by init', () => {
    const ops = planMounts(crashy, { devicePath: '/dev/loop7', rwVolumes: false, workdir: '/app', sourceIsDir: (p) => !p.endsWith('hosts') });
    const table = ops.map((o) => `${o.op} ${o.target}${o.readOnly ? ' ro' : ''}${o.late ? ' late' : ''}${o.create ? ` ${o.create}` : ''}`);
    assert.deepEqual(table, [
      'mount /dev dir',
      'mknod /dev/null', 'mknod /dev/zero', 'mknod /dev/full', 'mknod /dev/random', 'mknod /dev/urandom', 'mknod /dev/tty',
      'symlink /dev/fd', 'symlink /dev/stdin', 'symlink /dev/stdout', 'symlink /dev/stderr', 'symlink /dev/ptmx',
      'mount /dev/pts dir', 'mount /dev/shm dir', 'mount /dev/crashcart dir', 'mount /sys dir',
      'bind /data ro dir', 'mount /cache dir', 'bind /data/sub ro dir', 'bind /etc/hosts ro file',
      'mkdir /app dir',
      'mount /proc late dir',
    ]);
    const toolkit = ops.find((o) => o.target === '/dev/crashcart')!;
    assert.deepEqual([toolkit.fsType, toolkit.source], ['ext3', '/dev/loop7']);
    const rw = planMounts(crashy, { devicePath: '/dev/loop7', rwVolumes: true, sourceIsDir: () => true });
    assert.deepEqual(rw.filter((o) => o.op === 'bind').map((o) => [o.target, Boolean(o.readOnly)]), [['/data', false], ['/data/sub', false], ['/etc/hosts', true]]);
    assert.ok(!rw.some((o) => o.op === 'mkdir'), 'no working directory made when --workdir names it');
  });

  test("crashcart cp's view: the container's own mounts only, all read-only, its tmpfs not made (its layers show below), nothing late", () => {
    const ops = containerMounts(crashy, { rwVolumes: false, sourceIsDir: (p) => !p.endsWith('hosts'), tmpfs: false });
    assert.deepEqual(ops.map((o) => `${o.op} ${o.target}${o.readOnly ? ' ro' : ''}${o.late ? ' late' : ''} ${o.create}`), ['bind /data ro dir', 'bind /data/sub ro dir', 'bind /etc/hosts ro file']);
  });

  test('crashcart cp into a container that does not run: one line, why and what to do', () => {
    const e = refuseCopyInto('crashy', new CrashcartError('container crashy is not running (status: exited)', { code: 'ENOTRUNNING' }));
    assert.equal(e.message, 'cannot copy into crashy: it is not running (status: exited), and its writable layer belongs to its runtime');
    assert.equal(e.hint, 'start it first, copy out of it (crashcart cp crashy:PATH DEST), or look at its files with crashcart --stopped crashy');
    assert.equal(e.exitCode, 125);
  });

  test('destinations: absolute, normalized, never the root', () => {
    assert.equal(cleanDestination('/a/../b//c/'), '/b/c');
    assert.equal(cleanDestination('/../..'), undefined);
    assert.equal(cleanDestination('rel'), undefined);
  });

  test('the command: given; with --entrypoint the container\'s after it; alone, the container\'s; else the shell', () => {
    assert.deepEqual(sandboxArgv(crashy, { command: ['strace', '-f'], entrypoint: true, interactive: false }), ['strace', '-f', '/app/server', '--flag']);
    assert.deepEqual(sandboxArgv(crashy, { command: [], entrypoint: true, interactive: false }), ['/app/server', '--flag']);
    assert.deepEqual(sandboxArgv(crashy, { command: ['ls'], entrypoint: false, interactive: false }), ['ls']);
    assert.deepEqual(sandboxArgv(crashy, { command: [], entrypoint: false, interactive: false }), ['/dev/crashcart/bin/bash', '-s']);
    refused(() => sandboxArgv({ ...crashy, config: { ...crashy.config, entrypoint: [], cmd: [] } }, { command: [], entrypoint: true, interactive: false }),
      '--entrypoint: crashy has no entrypoint or command in its config');
  });

  test('--stopped takes a container whose processes are gone, and refuses a running or paused one', () => {
    assert.equal(acceptStopped({ runtime: 'runc', id: 'a', pid: 0, status: 'stopped' }, 'a').pid, 0);
    assert.equal(acceptStopped({ runtime: 'docker', id: 'a', pid: 0, status: 'created' }, 'a').runtime, 'docker');
    refused(() => acceptStopped({ runtime: 'runc', id: 'a', pid: 5, status: 'running' }, 'a'),
      'container a is running: --stopped opens containers that do not run (runc a)', 'attach to it as it runs: crashcart a');
    refused(() => acceptStopped({ runtime: 'runc', id: 'a', pid: 5, status: 'paused' }, 'a'),
      'container a is paused: its processes still exist, --stopped opens containers that do not run (runc a)', 'resume it and attach to it, or stop it first');
  });

  const args = (o: Partial<StoppedArgs>): StoppedArgs => ({
    'mount-only': false, unmount: false, keep: false, verbose: false, env: [], 'target-env': true, cgroup: true, method: 'auto', 'allow-host': false,
    'insecure-image': false, exec: false, caps: 'root', audit: true, stopped: false, entrypoint: false, 'rw-volumes': false, add: [],
    all: false, filter: [], prefix: true, json: false, ...o,
  });

  test('options that are wrong with a sandbox are refused before anything is looked up', () => {
    checkSandboxArgs(args({ stopped: true, target: 'crashy', entrypoint: true, net: 'host' }), []);
    refused(() => checkSandboxArgs(args({ entrypoint: true, target: 'x' }), []), '--entrypoint applies to --stopped, --rootfs and --from-image only');
    refused(() => checkSandboxArgs(args({ stopped: true, target: 'a,b' }), []), 'several targets and --stopped exclude each other: --stopped opens one at a time', 'run crashcart --stopped once for each');
    refused(() => checkSandboxArgs(args({ rootfs: '/r', all: true }), []), '--all and --rootfs exclude each other: --rootfs opens one at a time', 'run crashcart --rootfs once for each');
    refused(() => checkSandboxArgs(args({ stopped: true, rootfs: '/r' }), []), '--stopped and --rootfs exclude each other');
    refused(() => checkSandboxArgs(args({ stopped: true, target: 'x', keep: true }), []),
      "--keep applies to an attach, not to --stopped: the sandbox runs none of the container's processes");
    refused(() => checkSandboxArgs(args({ rootfs: '/r', target: 'x' }), []), '--rootfs and the target x exclude each other');
    refused(() => checkSandboxArgs(args({ stopped: true }), []), '--stopped needs a target');
    refused(() => checkSandboxArgs(args({ stopped: true, pod: 'web', net: 'host' }), []), '--net host and --pod exclude each other: the sandbox joins the network of the pod');
    refused(() => checkSandboxArgs(args({ rootfs: '/r', entrypoint: true }), []), '--entrypoint: a directory has no entrypoint');
    refused(() => checkSandboxArgs(args({ stopped: true, target: 'x', workdir: 'rel' }), []), '--workdir rel: not an absolute path');
    refused(() => checkSandboxArgs(args({ stopped: true, target: 'x', add: ['strace'], image: '/i.img' }), []), '--add and --image exclude each other');
    checkSandboxArgs(args({ rootfs: '/r', add: ['strace'] }), []);
  });

  test('--rootfs and --from-image name what to open: the first word after the options is the command', () => {
    assert.deepEqual(splitArgv(['--rootfs', '/srv/root', 'ls', '-l']), { own: ['--rootfs', '/srv/root'], command: ['ls', '-l'] });
    assert.deepEqual(splitArgv(['--from-image', 'mini:latest', '--net', 'host', 'sh']), { own: ['--from-image', 'mini:latest', '--net', 'host'], command: ['sh'] });
    assert.deepEqual(splitArgv(['--stopped', 'crashy', '--entrypoint', '--', 'strace', '-f']), { own: ['--stopped', 'crashy', '--entrypoint'], command: ['strace', '-f'] });
  });
});

describe('containerd and Kubernetes: task ends, snapshots, attempts', () => {
  /** A Timestamp message: seconds = 1 as a varint of its 64-bit two's complement. */
  const ts = (seconds: bigint) => {
    const bytes = [0x08];
    let v = BigInt.asUintN(64, seconds);
    while (v > 127n) {
      bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    bytes.push(Number(v));
    return Buffer.from(bytes);
  };

  test('a timestamp: set, unset, and Go\'s zero time of a running task', () => {
    assert.equal(timestamp(ts(1_764_611_902n)), '2025-12-01T17:58:22.000Z');
    assert.equal(timestamp(undefined), undefined);
    assert.equal(timestamp(Buffer.alloc(0)), undefined);
    assert.equal(timestamp(ts(-62_135_596_800n)), undefined);
  });

  test('a snapshot\'s directories, the top first; kinds the sandbox cannot stack are none', () => {
    assert.deepEqual(snapshotLayers([{ type: 'overlay', source: 'overlay', options: ['index=off', 'workdir=/s/3/work', 'upperdir=/s/3/fs', 'lowerdir=/s/2/fs:/s/1/fs'] }]), ['/s/3/fs', '/s/2/fs', '/s/1/fs']);
    assert.deepEqual(snapshotLayers([{ type: 'bind', source: '/s/1/fs', options: ['rbind', 'rw'] }]), ['/s/1/fs']);
    assert.equal(snapshotLayers([{ type: 'btrfs', source: '/dev/sda1', options: [] }]), undefined);
    assert.equal(snapshotLayers([]), undefined);
  });

  test('the CRI\'s status file: exit code, finish time (ns), OOM-killed', () => {
    assert.deepEqual(parseCriStatus('{"Status":{"ExitCode":137,"FinishedAt":1764611902000000000,"Reason":"OOMKilled"}}'),
      { exitCode: 137, finishedAt: '2025-12-01T17:58:22.000Z', oomKilled: true });
    assert.deepEqual(parseCriStatus('{"Status":{"ExitCode":0,"FinishedAt":0}}'), {});
  });

  test('of a pod in a crash loop, the newest attempt that does not run; a pod whose only attempt runs is refused', () => {
    const labels = (container: string) => ({ 'io.kubernetes.pod.name': 'web', 'io.kubernetes.pod.namespace': 'default', 'io.cri-containerd.kind': 'container', 'io.kubernetes.container.name': container });
    const rec = (id: string, attempt: number, status: string, container = 'app') =>
      ({ id, labels: labels(container), image: '', snapshotter: 'overlayfs', snapshotKey: id, attempt, task: { pid: status === 'running' ? 9 : 0, status, exitStatus: 3 } });
    const q = { pod: 'web', namespace: 'default' };
    assert.equal(pickExitedAttempt([rec('a0', 0, 'stopped'), rec('a2', 2, 'running'), rec('a1', 1, 'stopped')], q).id, 'a1');
    refused(() => pickExitedAttempt([rec('a0', 0, 'running')], q),
      'container app of pod default/web runs (a0) and has no exited attempt: --stopped opens containers that do not run', 'attach to it as it runs: crashcart --pod web --container app');
    refused(() => pickExitedAttempt([rec('a0', 0, 'stopped'), rec('s0', 0, 'stopped', 'side')], q), 'pod default/web has 2 containers: app, side', 'name one with --container');
    refused(() => pickExitedAttempt([], q), 'no pod web in Kubernetes namespace default (searched: containerd namespace k8s.io)');
  });
});

describe('crashcart ps -a: how containers that do not run ended, and whether --stopped opens them', () => {
  test('rows and table', () => {
    const web = { runtime: 'runc', id: 'web', pid: 7, status: 'running' };
    const crashy = { runtime: 'docker', id: 'c'.repeat(64), name: 'crashy', pid: 0, status: 'exited' };
    const vfs = { runtime: 'docker', id: 'vfs1', name: 'old', pid: 0, status: 'exited' };
    const ended = new Map([
      [crashy, { exitCode: 3, finishedAt: '2026-12-01T17:58:22.123456789Z', opens: true }],
      [vfs, { exitCode: null, finishedAt: null, opens: false, why: 'docker container old is stored by the vfs storage driver' }],
    ]);
    const rows = psRows([web, crashy, vfs], () => ({ grafted: false, sessions: 0, pinned: false }), true, ended);
    assert.deepEqual(rows[1], { runtime: 'docker', id: crashy.id, name: 'crashy', pid: 0, status: 'exited', grafted: false, sessions: 0, pinned: false,
      exitCode: 3, finishedAt: '2026-12-01T17:58:22.123456789Z', opens: true });
    assert.equal(rows[2]!.why, 'docker container old is stored by the vfs storage driver');
    assert.equal(psTable(rows, true), [
      'RUNTIME  ID            NAME    PID  STATUS   TOOLKIT  SESSIONS  EXIT  FINISHED              --STOPPED',
      'runc     web           -       7    running  -        -         -     -                     -',
      'docker   cccccccccccc  crashy  -    exited   -        -         3     2026-12-01T17:58:22Z  yes',
      'docker   vfs1          old     -    exited   -        -         -     -                     no',
      '',
    ].join('\n'));
    assert.doesNotMatch(psTable(rows), /EXIT/);
  });
});
