// The OCI image of `npm run package`, as a Kubernetes node runs it (`kubectl debug node/NAME
// --profile=sysadmin`, or kubectl-crashcart's pod): loaded with `docker load` into a private
// dockerd and run privileged with the host's PID namespace and its /run, /dev, /sys/fs/cgroup
// and /var/lib/crashcart mounted; from inside it, crashcart attaches to a runc container of
// the host and to a docker container of that dockerd, and leaves nothing behind.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { createScratchContainer, type ScratchContainer } from '../../src/demo/scratch.js';
import { stopAndCheck } from '../helpers/daemon.js';
import { importScratchImage, startDockerd, type PrivateDockerd } from '../helpers/dockerd.js';
import { assertNoLeaks, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { buildPackage } from '../helpers/packages.js';
import { startPodman, ULIMITS, type PrivatePodman } from '../helpers/podman.js';
import { until } from '../helpers/wait.js';

const SLEEPER_TAG = 'mini:latest';
const version = (JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { version: string }).version;
const IMAGE = `crashcart:${version}`;

/** Capability names by number (capability.h), as docker's --cap-drop takes them. */
const CAPS = ['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'KILL', 'SETGID', 'SETUID', 'SETPCAP', 'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_ADMIN', 'NET_RAW', 'IPC_LOCK', 'IPC_OWNER', 'SYS_MODULE', 'SYS_RAWIO', 'SYS_CHROOT', 'SYS_PTRACE',
  'SYS_PACCT', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_NICE', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'MKNOD', 'LEASE', 'AUDIT_WRITE',
  'AUDIT_CONTROL', 'SETFCAP', 'MAC_OVERRIDE', 'MAC_ADMIN', 'SYSLOG', 'WAKE_ALARM', 'BLOCK_SUSPEND', 'AUDIT_READ', 'PERFMON', 'BPF', 'CHECKPOINT_RESTORE'];

/**
 * docker run's --privileged, or where this machine itself runs without some capabilities
 * (a bounding set narrower than the kernel's: runc then cannot apply them, and docker
 * ignores --cap-drop with --privileged) the same spelt out without those: every other
 * capability, every device, no seccomp or AppArmor profile, /proc and /sys unmasked.
 * A node's container runtime has them all and needs none of this.
 */
async function privileged(): Promise<string[]> {
  const bounding = BigInt(`0x${/^CapBnd:\s+([0-9a-f]+)$/m.exec(await readFile('/proc/self/status', 'utf8'))![1]}`);
  const last = Number(await readFile('/proc/sys/kernel/cap_last_cap', 'utf8'));
  const lacking = CAPS.slice(0, last + 1).filter((_, i) => !(bounding & (1n << BigInt(i))));
  if (!lacking.length) return ['--privileged'];
  return ['--cap-add=ALL', ...lacking.map((c) => `--cap-drop=${c}`), '--device-cgroup-rule=a *:* rwm',
    '--security-opt=seccomp=unconfined', '--security-opt=apparmor=unconfined', '--security-opt=systempaths=unconfined'];
}

describe('the OCI image', () => {
  let oci: Awaited<ReturnType<typeof buildPackage>> | undefined;
  let d: PrivateDockerd | undefined;
  let runcTarget: ScratchContainer | undefined;
  let setupError: unknown;
  const suffix = randomBytes(4).toString('hex');

  const ready = (t: TestContext): boolean => {
    if (!requireRoot(t) || !requireCommand(t, 'dockerd') || !requireCommand(t, 'docker')) return false;
    if (setupError) throw setupError;
    return d !== undefined;
  };

  async function docker(args: string[]): Promise<string> {
    const r = await d!.docker(args);
    assert.equal(r.code, 0, `docker ${args.join(' ')}: ${r.stderr}`);
    return r.stdout.trim();
  }

  /**
   * `crashcart ARGS -- cat /proc/1/comm` in the image as a node runs it; checks that the
   * target's pid 1 is the sleeper and that the host has no loop device, mount or /dev entry
   * more than before. Returns the time of the whole `docker run`.
   */
  async function attachFromImage(pid: number, args: string[], extra: string[] = []): Promise<number> {
    const snap = () => snapshotHost({ pid, rootfs: `/proc/${pid}/root` });
    const beforeSnap = await snap();
    const t0 = performance.now();
    const r = await d!.docker(['run', '--rm', ...(await privileged()), '--pid=host', '--network=none',
      '-v', '/run:/run', '-v', '/dev:/dev', '-v', '/sys/fs/cgroup:/sys/fs/cgroup', '-v', '/var/lib/crashcart:/var/lib/crashcart',
      ...extra, IMAGE, ...args, '--', 'cat', '/proc/1/comm']);
    const ms = Math.round(performance.now() - t0);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'sleeper');
    const loops = new Set(beforeSnap.loops);
    await until(async () => (await snapshotHost()).loops.every((l) => loops.has(l)), { ms: 5_000 });
    assertNoLeaks(beforeSnap, await snap());
    assert.ok(!(await readFile(`/proc/${pid}/mountinfo`, 'utf8')).includes('/dev/crashcart'));
    return ms;
  }

  before(async () => {
    if (process.getuid?.() !== 0) return;
    try {
      oci = await buildPackage('oci');
      process.stderr.write(`# OCI archive built in ${oci.ms} ms\n`);
      d = await startDockerd();
      const t0 = performance.now();
      assert.match(await docker(['load', '-i', oci.file]), new RegExp(`Loaded image: ${IMAGE.replace('.', '\\.')}`));
      process.stderr.write(`# docker load: ${Math.round(performance.now() - t0)} ms\n`);
      await importScratchImage(d, SLEEPER_TAG, await sleeperPath());
      runcTarget = await createScratchContainer({ id: `crashcart-oci-${suffix}`, sleeperPath: await sleeperPath() });
    } catch (err) {
      setupError = err;
    }
  });

  after(async () => {
    await runcTarget?.remove();
    if (d) {
      // the containers went with --rm; the images go with the daemon's data root
      await d.docker(['rm', '-f', `crashcart-oci-docker-${suffix}`]);
      await d.docker(['rmi', '-f', IMAGE, SLEEPER_TAG]);
      await stopAndCheck(d, 'the private dockerd');
    }
    await oci?.remove();
  });

  test('the archive loads as crashcart:VERSION, whose entrypoint runs crashcart', async (t) => {
    if (!ready(t)) return;
    const [info] = JSON.parse(await docker(['image', 'inspect', IMAGE])) as [{ Config: { Entrypoint: string[]; Env: string[] } }];
    assert.deepEqual(info.Config.Entrypoint, ['/usr/lib/crashcart/entrypoint']);
    assert.ok(info.Config.Env.includes('CRASHCART_IMAGE=/usr/share/crashcart/toolkit.img'));
    const v = await d!.docker(['run', '--rm', '--network=none', IMAGE, '--version']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stderr, '', 'the image runs the bundle');
    assert.equal(v.stdout, version);
  });

  test('attaches from inside the image to a runc container on the host', async (t) => {
    if (!ready(t)) return;
    const ms = await attachFromImage(runcTarget!.pid, [runcTarget!.id]);
    process.stderr.write(`# docker run crashcart ${runcTarget!.id}: ${ms} ms\n`);
  });

  test('attaches from inside the image to a docker container of the host\'s dockerd', async (t) => {
    if (!ready(t)) return;
    const name = `crashcart-oci-docker-${suffix}`;
    await docker(['run', '-d', '--read-only', '--network', 'none', '--name', name, SLEEPER_TAG, '/bin/sleeper', '100000']);
    const [info] = JSON.parse(await docker(['inspect', '--type', 'container', name])) as [{ State: { Pid: number } }];
    // the node's docker socket, where a node has it: here the private daemon's
    const ms = await attachFromImage(info.State.Pid, [name], ['-v', `${d!.socket}:${d!.socket}`, '-e', `DOCKER_HOST=${d!.env.DOCKER_HOST}`]);
    process.stderr.write(`# docker run crashcart ${name}: ${ms} ms\n`);
    await docker(['rm', '-f', name]);
  });

  test('podman load reads the same archive, and the image runs there too', async (t) => {
    if (!ready(t) || !requireCommand(t, 'podman')) return;
    let p: PrivatePodman | undefined;
    try {
      p = await startPodman();
      const load = await p.podman(['load', '-i', oci!.file]);
      assert.equal(load.code, 0, load.stderr);
      assert.match(load.stdout, new RegExp(`Loaded image.*${IMAGE.replace('.', '\\.')}`));
      const v = await p.podman(['run', '--rm', '--network=none', ...ULIMITS, IMAGE, '--version']);
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stdout, version);
    } finally {
      await p?.stop();
    }
  });
});
