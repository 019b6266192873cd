// Bad input, case by case: every way of getting crashcart's input wrong (the target, the
// image, the container's contents, the command, the options, the environment) gives exactly
// the expected line on stderr, nothing on stdout, the right exit code, and changes nothing:
// no loop device, no mount on the host or in the container, the container's /dev, rootfs
// and whole mount table as they were, and no session record left in the state directory.
//
// The targets are real runc scratch containers, each kind made once and shared by the
// cases that use it; a case that plants something in a container takes it out again.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, closeSync, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { execa } from 'execa';
import { createScratchContainer, type ScratchContainer, type ScratchOptions } from '../../src/demo/scratch.js';
import { FAULT_POINTS } from '../../src/core/fault.js';
import { PF_KTHREAD, readStat } from '../../src/core/proc.js';
import { cliEnv, privateDirs, testImage, type CliResult } from '../helpers/cli.js';
import { assertClean } from '../helpers/expect.js';
import { onPath, projectRoot, requireCommand, requireRoot, sleeperPath, snapshotHost } from '../helpers/host.js';
import { waitFor } from '../helpers/wait.js';

const BASE = `ccbad-${randomBytes(3).toString('hex')}`;
const USERNS = { hostUid: 100000, hostGid: 100000, size: 65536 };
const NOBODY = 65534;
const CLI = () => join(projectRoot(), 'bin', 'crashcart');
const TIMEOUT = 60_000;

/** Big enough that its arguments fit crashcart's own execve, but not the command's. */
const BIG_ENV = Array.from({ length: 15 }, (_, i) => `BIG${i}=${'x'.repeat(100_000)}`);
const BIG_ARGS = Array.from({ length: 9 }, () => 'a'.repeat(90_000));

const canRun = () => process.getuid?.() === 0 && onPath('runc');

interface Containers {
  plain: ScratchContainer;
  busybox: ScratchContainer;
  userns: ScratchContainer;
  nodev: ScratchContainer;
  bigenv: ScratchContainer;
  stopped: ScratchContainer;
  paused: ScratchContainer;
}

let cs: Partial<Containers> = {};
/** A container made with `runc create` and never started. */
let createdId = '';
let image = '';
/** Image files of every kind of wrong, in a private root-only directory. */
const images: Record<string, string> = {};
/** A process whose child exited and is not reaped: the child is a zombie until we say. */
let zombie: { pid: number; release(): Promise<void> } | undefined;
/** Undo steps of everything a case made, in case the case itself failed before its own undo. */
const undos = new Set<() => Promise<void>>();

const c = <K extends keyof Containers>(k: K): Containers[K] => {
  const x = cs[k];
  assert.ok(x, `the ${k} container was not created`);
  return x as Containers[K];
};

async function run(cmd: string, args: string[]): Promise<string> {
  const r = await execa(cmd, args, { stdin: 'ignore', reject: false, timeout: 30_000 });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

async function runcStatus(id: string): Promise<string | undefined> {
  const r = await execa('runc', ['state', id], { stdin: 'ignore', reject: false });
  return r.exitCode === 0 ? (JSON.parse(r.stdout) as { status: string }).status : undefined;
}

/** `runc create`: the container exists, its init waits for `runc start`, which never comes. */
async function runcCreate(id: string, from: ScratchContainer): Promise<void> {
  const bundle = join(privateDirs().root, `bundle-${id}`);
  mkdirSync(bundle);
  copyFileSync(join(from.bundleDir, 'config.json'), join(bundle, 'config.json'));
  const log = openSync(join(bundle, 'runc.log'), 'a');
  try {
    // the waiting init inherits runc's stdio: a file, never a pipe the caller would wait on
    const child = spawn('runc', ['create', '--bundle', bundle, id], { stdio: ['ignore', log, log] });
    const code = await new Promise<number | null>((resolve, reject) => child.once('error', reject).once('exit', resolve));
    if (code !== 0) throw new Error(`runc create ${id} failed: ${readFileSync(join(bundle, 'runc.log'), 'utf8')}`);
  } finally {
    closeSync(log);
  }
}

/** A python3 process that forked a child which exited at once: a zombie until release(). */
async function makeZombie(): Promise<{ pid: number; release(): Promise<void> }> {
  const parent = execa('python3', ['-c', [
    'import os, sys',
    'pid = os.fork()',
    'if pid == 0: os._exit(0)',
    'print(pid, flush=True)',
    'sys.stdin.read()',
    'os.waitpid(pid, 0)',
  ].join('\n')], { stdin: 'pipe', reject: false, timeout: 120_000 });
  const pid = await new Promise<number>((resolve, reject) => {
    parent.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    parent.once('exit', () => reject(new Error('python3 exited before it printed the zombie')));
  });
  await waitFor(`process ${pid} is a zombie`, () => readStat(pid)?.state === 'Z');
  return {
    pid,
    async release() {
      parent.stdin!.end(); // the parent reaps it and exits
      await parent;
    },
  };
}

/** The first kernel thread in /proc (kthreadd is pid 2). */
function kernelThread(): { pid: number; comm: string } {
  for (let pid = 2; pid < 100; pid++) {
    const st = readStat(pid);
    if (st && st.flags & PF_KTHREAD) return { pid, comm: st.comm };
  }
  throw new Error('no kernel thread found among pids 2-99');
}

/** The largest pid the kernel hands out is pid_max - 1: pid_max itself never exists. */
const noSuchPid = () => Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim());

interface Run {
  args: string[];
  env?: Record<string, string>;
  /** run crashcart as nobody (setpriv) */
  asNobody?: boolean;
  /** run crashcart with SCHED_FIFO (chrt): a realtime process may not join a cgroup without realtime time */
  realtime?: boolean;
}

async function crashcart(r: Run): Promise<CliResult> {
  const argv = [CLI(), ...r.args];
  const [file, args] = r.asNobody
    ? ['setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, ...argv]]
    : r.realtime ? ['chrt', ['-f', '1', process.execPath, ...argv]] : [process.execPath, argv];
  const res = await execa(file, args, {
    cwd: projectRoot(),
    env: cliEnv(r.env),
    reject: false,
    timeout: TIMEOUT,
    stdin: 'ignore',
  });
  if (res.timedOut) throw new Error(`crashcart ${r.args.join(' ').slice(0, 200)} timed out:\n${res.stderr}`);
  return { code: res.exitCode ?? null, signal: res.signal, stdout: res.stdout, stderr: res.stderr };
}

interface Case {
  name: string;
  /** the command line, made when the case runs (IDs and PIDs are known then) */
  run: () => Run;
  code: number;
  /**
   * stderr, line by line and exactly; a RegExp (anchored) only where a part varies. With -v,
   * the last lines of stderr: the one-line message and the cause lines after it.
   */
  stderr: () => (string | RegExp)[];
  /** the container that must come out of the case unchanged */
  target?: keyof Containers;
  /** makes the condition; returns its undo */
  setup?: () => Promise<() => Promise<void>>;
  /** checks of its own, after the run */
  check?: () => void;
  needs?: string[];
}

const ID = (k: keyof Containers) => c(k).id;
const PID = (k: keyof Containers) => c(k).pid;
const img = () => ['-i', image];
const runc = (args: string[]) => run('runc', args);
/** Runs busybox inside the busybox container, as runc exec does. */
const inside = (...args: string[]) => runc(['exec', ID('busybox'), '/bin/busybox', ...args]);
/** Runs busybox with the host's root in the busybox container's mount namespace (to mount). */
const mountNs = (...args: string[]) => run('nsenter', ['-t', String(PID('busybox')), '-m', '/bin/busybox', ...args]);

const plant = (make: () => Promise<unknown>, remove: () => Promise<unknown>) => async () => {
  await make();
  return async () => {
    await remove();
  };
};

const notRunning = (id: string, status: string) => status === 'paused'
  ? `crashcart: container ${id} is not running (status: ${status}); start it first; crashcart attaches to running containers only (runc ${id})`
  : `crashcart: container ${id} is not running (status: ${status}); start it first, or open its files in a sandbox with crashcart --stopped ${id} (runc ${id})`;
const foreignMount = () =>
  `crashcart: runc container ${ID('busybox')} has tmpfs none mounted at /dev/crashcart, not a crashcart toolkit: crashcart leaves it alone; unmount it inside the container if it is yours to remove`;
const badImage = (path: string, why: string) =>
  `crashcart: image ${path} ${why}; give an image made by 'crashcart image build' or pulled with 'crashcart image pull'`;
const unsafeImage = (path: string, why: string) =>
  `crashcart: refusing image ${path}: ${why}, so a non-root user could change what root mounts; make it and its directories root-owned and not writable by others, or pass --insecure-image to use it anyway`;
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const CASES: Case[] = [
  // --- the command line itself (yargs) ---
  { name: 'an unknown option', run: () => ({ args: ['--bogus', 'x'] }), code: 125, stderr: () => ['crashcart: unknown option --bogus; see crashcart --help'] },
  { name: 'an unknown short option', run: () => ({ args: ['-z', 'x'] }), code: 125, stderr: () => ['crashcart: unknown option -z; see crashcart --help'] },
  { name: 'an option without its value, at the end', run: () => ({ args: ['x', '--env'] }), code: 125, stderr: () => ['crashcart: --env needs a value; see crashcart --help'] },
  { name: 'an option without its value, before another option', run: () => ({ args: ['-i', '--allow-host', 'x'] }), code: 125, stderr: () => ['crashcart: -i needs a value; see crashcart --help'] },
  { name: 'an empty value', run: () => ({ args: ['--user=', 'x'] }), code: 125, stderr: () => ['crashcart: --user needs a value; see crashcart --help'] },
  { name: 'an invalid choice', run: () => ({ args: ['--method', 'bogus', 'x'] }), code: 125, stderr: () => ['crashcart: invalid --method "bogus": choose one of auto, mknod, mountapi; see crashcart --help'] },
  { name: '--caps garbage', run: () => ({ args: ['--caps', 'bogus', 'x'] }), code: 125, stderr: () => ['crashcart: invalid --caps "bogus": choose one of root, target; see crashcart --help'] },
  { name: 'an unknown image command', run: () => ({ args: ['image', 'bogus'] }), code: 125, stderr: () => ["crashcart: unknown image command 'bogus'; choose one of build, pull, ls, inspect, rm"] },
  { name: 'no image command', run: () => ({ args: ['image'] }), code: 125, stderr: () => ['crashcart: name an image command: build, pull, ls, inspect, rm; see crashcart image --help'] },
  { name: 'a missing argument', run: () => ({ args: ['image', 'pull'] }), code: 125, stderr: () => ['crashcart: crashcart image pull needs 1 argument, got 0; see crashcart image pull --help'] },
  { name: 'an argument too many', run: () => ({ args: ['ps', 'extra'] }), code: 125, stderr: () => ["crashcart: unexpected argument 'extra' for crashcart ps; see crashcart ps --help"] },

  // --- who runs it, and the environment ---
  {
    name: 'not root', run: () => ({ args: [...img(), ID('plain'), '--', 'true'], asNobody: true }), code: 125, target: 'plain', needs: ['setpriv'],
    stderr: () => ['crashcart: crashcart needs root (it attaches loop devices and enters namespaces); run it with sudo'],
  },
  {
    name: 'CRASHCART_FAULT names no fault point', run: () => ({ args: [...img(), ID('plain'), '--', 'true'], env: { CRASHCART_FAULT: 'bogus' } }), code: 125, target: 'plain',
    stderr: () => [`crashcart: CRASHCART_FAULT: unknown fault point 'bogus'; use one of ${Object.keys(FAULT_POINTS).join(', ')}, optionally with :fail, :kill or :stop`],
  },
  {
    name: 'CRASHCART_FAULT with an unknown action', run: () => ({ args: [...img(), ID('plain'), '--', 'true'], env: { CRASHCART_FAULT: 'before-spawn:explode' } }), code: 125, target: 'plain',
    stderr: () => ["crashcart: CRASHCART_FAULT: unknown action 'explode'; use fail, kill or stop"],
  },
  {
    name: 'CRASHCART_STATE_DIR writable by everyone', target: 'plain', code: 125,
    run: () => ({ args: [...img(), ID('plain'), '--', 'true'], env: { CRASHCART_STATE_DIR: openStateDir() } }),
    stderr: () => [`crashcart: refusing the state directory ${openStateDir()}: it is writable by group or others (mode 777), so another user could change what crashcart unmounts; make it root's alone (chown root: ${openStateDir()} && chmod 700 ${openStateDir()}), or set CRASHCART_STATE_DIR`],
    check: () => assert.deepEqual(readdirSync(openStateDir()), [], 'nothing was made in the refused directory'),
  },
  {
    name: 'CRASHCART_STATE_DIR below a directory writable by everyone', target: 'plain', code: 125,
    run: () => ({ args: [...img(), ID('plain'), '--', 'true'], env: { CRASHCART_STATE_DIR: join(openStateDir(), 'sub') } }),
    stderr: () => [`crashcart: refusing the state directory ${openStateDir()}/sub: directory ${openStateDir()} is writable by group or others (mode 777), so another user could change what crashcart unmounts; set CRASHCART_STATE_DIR to a directory below directories only root can write`],
    check: () => assert.deepEqual(readdirSync(openStateDir()), [], 'nothing was made in the refused directory'),
  },
  {
    name: 'CRASHCART_STATE_DIR is a file', target: 'plain', code: 125,
    run: () => ({ args: [...img(), ID('plain'), '--', 'true'], env: { CRASHCART_STATE_DIR: image } }),
    stderr: () => [`crashcart: the state directory ${image} is not a directory; CRASHCART_STATE_DIR (default /run/crashcart) must name a directory root can write`],
  },
  {
    name: 'CRASHCART_CACHE_DIR is a file', target: 'plain', code: 125,
    run: () => ({ args: ['-i', 'static', ID('plain'), '--', 'true'], env: { CRASHCART_CACHE_DIR: image } }),
    stderr: () => [`crashcart: cannot read the image cache ${image}/images: ENOTDIR; CRASHCART_CACHE_DIR (default /var/lib/crashcart) must name a directory`],
  },
  {
    name: 'SOURCE_DATE_EPOCH is not a number', code: 125,
    run: () => ({ args: ['image', 'build', '--profile', 'static', '-o', join(privateDirs().root, 'epoch.img')], env: { SOURCE_DATE_EPOCH: 'soon' } }),
    stderr: () => ["crashcart: SOURCE_DATE_EPOCH 'soon' is not a time in seconds since 1970; set it to a whole number of seconds (date +%s), or unset it"],
    check: () => assert.ok(!existsSync(join(privateDirs().root, 'epoch.img'))),
  },

  // --- the target ---
  {
    name: 'an unknown target, one runtime asked', run: () => ({ args: [...img(), '--runtime', 'runc', `${BASE}-nothing`, '--', 'true'] }), code: 125,
    stderr: () => [`crashcart: no container or process matches '${BASE}-nothing' (asked: runc); check the ID with your runtime (e.g. runc list), or give a PID`],
  },
  {
    name: 'an unknown target, every runtime asked', run: () => ({ args: [...img(), `${BASE}-nothing`, '--', 'true'] }), code: 125,
    stderr: () => [new RegExp(`^crashcart: no container or process matches '${BASE}-nothing' \\(asked: runc(, [a-z]+)*, pid\\); check the ID with your runtime \\(e\\.g\\. runc list\\), or give a PID$`)],
  },
  {
    name: 'an ID prefix that two containers share', run: () => ({ args: [...img(), `${BASE}-a`, '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => {
      const [a, b] = [`runc ${ID('plain')}`, `runc ${ID('busybox')}`].map(esc);
      return [new RegExp(`^crashcart: '${BASE}-a' matches 2 containers: (${a}, ${b}|${b}, ${a}); give more of the ID, or the runtime with --runtime$`)];
    },
  },
  { name: 'a stopped container', run: () => ({ args: [...img(), ID('stopped'), '--', 'true'] }), code: 125, stderr: () => [notRunning(ID('stopped'), 'stopped')] },
  { name: 'a paused container, by ID', run: () => ({ args: [...img(), ID('paused'), '--', 'true'] }), code: 125, target: 'paused', stderr: () => [notRunning(ID('paused'), 'paused')] },
  {
    name: 'a paused container, by PID: refused, not frozen with it', run: () => ({ args: [...img(), String(PID('paused')), '--', 'true'] }), code: 125, target: 'paused',
    stderr: () => [`crashcart: process ${PID('paused')} is frozen (its cgroup is paused): the command would hang there until it is thawed; resume the container first (runc resume, docker unpause, ...), or pass --no-cgroup to run beside it`],
  },
  { name: 'a container that was created and never started', run: () => ({ args: [...img(), createdId, '--', 'true'] }), code: 125, stderr: () => [notRunning(createdId, 'created')] },
  {
    name: 'a PID that does not exist', run: () => ({ args: [...img(), String(noSuchPid()), '--', 'true'] }), code: 125,
    stderr: () => [new RegExp(`^crashcart: no container or process matches '${noSuchPid()}' \\(asked: runc(, [a-z]+)*, pid\\); check the ID with your runtime \\(e\\.g\\. runc list\\); no process has pid ${noSuchPid()} either$`)],
  },
  {
    name: 'a zombie', run: () => ({ args: [...img(), String(zombie!.pid), '--', 'true'] }), code: 125, needs: ['python3'],
    stderr: () => [`crashcart: process ${zombie!.pid} has exited (zombie); pick a running process`],
  },
  {
    name: 'a kernel thread', run: () => ({ args: [...img(), String(kernelThread().pid), '--', 'true'] }), code: 125,
    stderr: () => [`crashcart: process ${kernelThread().pid} is a kernel thread (${kernelThread().comm}): it has no user space to enter; give the PID of a container's process`],
  },
  {
    name: 'a kernel thread, with --allow-host', run: () => ({ args: [...img(), '--allow-host', String(kernelThread().pid), '--', 'true'] }), code: 125,
    stderr: () => [`crashcart: process ${kernelThread().pid} is a kernel thread (${kernelThread().comm}): it has no user space to enter; give the PID of a container's process`],
  },
  {
    name: 'a host process without --allow-host', run: () => ({ args: [...img(), String(process.pid), '--', 'true'] }), code: 125,
    stderr: () => [`crashcart: process ${process.pid} shares the host's mount namespace: it is not in a container; grafting there would create /dev/crashcart on the host; pass --allow-host if that is what you want`],
    check: () => assert.ok(!existsSync('/dev/crashcart'), 'no /dev/crashcart on the host'),
  },

  // --- the image ---
  {
    name: 'an image file that does not exist', run: () => ({ args: ['-i', images.missing!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [`crashcart: image file ${images.missing} not found: ENOENT; build one with 'crashcart image build -o ${images.missing}'`],
  },
  {
    name: 'an image name that nothing has', run: () => ({ args: ['-i', 'nosuchimage', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [`crashcart: image 'nosuchimage' not found: no cached image of that name or digest and no file ${join(projectRoot(), 'nosuchimage')}; see 'crashcart image ls'`],
  },
  {
    name: 'an image that is a directory', run: () => ({ args: ['-i', privateDirs().root, ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [`crashcart: image file ${privateDirs().root} not found: it is not a regular file; build one with 'crashcart image build -o ${privateDirs().root}'`],
  },
  {
    name: 'an image that is no filesystem at all', run: () => ({ args: ['-i', images.junk!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [badImage(images.junk!, 'is not an ext2/3/4 filesystem (no superblock magic)')],
  },
  {
    name: 'an ext2 image (no journal: not mountable as ext3)', run: () => ({ args: ['-i', images.ext2!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain', needs: ['mke2fs'],
    stderr: () => [badImage(images.ext2!, 'is not mountable as ext3: it has no journal (an ext2 filesystem)')],
  },
  {
    name: 'an ext4 image', run: () => ({ args: ['-i', images.ext4!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain', needs: ['mke2fs'],
    stderr: () => [badImage(images.ext4!, 'is not mountable as ext3: it uses ext4 features (extents, 64bit, flex_bg)')],
  },
  {
    name: 'a truncated image (the first 64 KiB of a real one)', run: () => ({ args: ['-i', images.truncated!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [badImage(images.truncated!, `is truncated (65536 bytes; its superblock says ${statSync(image).size})`)],
  },
  {
    name: 'an image a non-root user owns', run: () => ({ args: ['-i', images.nobodys!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [unsafeImage(images.nobodys!, `it is owned by uid ${NOBODY}, not root`)],
  },
  {
    name: 'an image in a directory a non-root user can write', run: () => ({ args: ['-i', images.inUserDir!, ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [unsafeImage(images.inUserDir!, `directory ${join(privateDirs().root, 'users')} is owned by uid ${NOBODY}, not root`)],
  },

  // --- what the container holds at /dev/crashcart, and its /dev ---
  {
    name: '/dev/crashcart holds a mount of something else', target: 'busybox', code: 125, needs: ['nsenter'],
    setup: plant(async () => {
      await inside('mkdir', '/dev/crashcart');
      await mountNs('mount', '-t', 'tmpfs', 'none', '/dev/crashcart');
    }, async () => {
      await mountNs('umount', '/dev/crashcart');
      await inside('rmdir', '/dev/crashcart');
    }),
    run: () => ({ args: [...img(), ID('busybox'), '--', 'true'] }),
    stderr: () => [foreignMount()],
  },
  {
    name: '-u leaves a mount of something else at /dev/crashcart alone', target: 'busybox', code: 125, needs: ['nsenter'],
    setup: plant(async () => {
      await inside('mkdir', '/dev/crashcart');
      await mountNs('mount', '-t', 'tmpfs', 'none', '/dev/crashcart');
    }, async () => {
      await mountNs('umount', '/dev/crashcart');
      await inside('rmdir', '/dev/crashcart');
    }),
    run: () => ({ args: ['-u', ID('busybox')] }),
    stderr: () => [foreignMount()],
  },
  {
    name: '/dev/crashcart is a file', target: 'busybox', code: 125,
    setup: plant(() => inside('touch', '/dev/crashcart'), () => inside('rm', '/dev/crashcart')),
    run: () => ({ args: [...img(), ID('busybox'), '--', 'true'] }),
    stderr: () => ["crashcart: cannot graft the toolkit: /dev/crashcart in the container is not a directory (openat '/dev/crashcart': ENOTDIR (Not a directory)); remove /dev/crashcart inside the container, or look at what put it there"],
  },
  {
    name: '/dev/crashcart is a symlink to /etc: the toolkit never lands on /etc', target: 'busybox', code: 125,
    setup: plant(() => inside('ln', '-s', '/etc', '/dev/crashcart'), () => inside('rm', '/dev/crashcart')),
    run: () => ({ args: [...img(), ID('busybox'), '--', 'true'] }),
    stderr: () => ["crashcart: cannot graft the toolkit: /dev/crashcart in the container is a symlink, and crashcart never follows a symlink inside a container (openat '/dev/crashcart': ELOOP (Too many levels of symbolic links)); remove /dev/crashcart inside the container, or look at what put it there"],
  },
  {
    name: '-v: a symlink at /dev/crashcart, with the syscall and path that refused it', target: 'busybox', code: 125,
    setup: plant(() => inside('ln', '-s', '/etc', '/dev/crashcart'), () => inside('rm', '/dev/crashcart')),
    run: () => ({ args: ['-v', ...img(), '-m', ID('busybox')] }),
    stderr: () => [
      "crashcart: cannot graft the toolkit: /dev/crashcart in the container is a symlink, and crashcart never follows a symlink inside a container (openat '/dev/crashcart': ELOOP (Too many levels of symbolic links)); remove /dev/crashcart inside the container, or look at what put it there",
      "crashcart:   caused by: openat '/dev/crashcart': ELOOP (Too many levels of symbolic links) [code ELOOP, syscall openat, path /dev/crashcart]",
    ],
  },
  {
    name: "a container whose /dev is part of its read-only root", target: 'nodev', code: 125,
    run: () => ({ args: [...img(), ID('nodev'), '--', 'true'] }),
    stderr: () => ["crashcart: cannot graft the toolkit: the container's /dev is part of its read-only root, so there is nowhere to put it (remount rw '/dev': EINVAL (Invalid argument)); give the container a tmpfs /dev (every runtime does by default)"],
  },
  {
    name: '-v: /dev part of a read-only root, with the remount that failed', target: 'nodev', code: 125,
    run: () => ({ args: ['-v', ...img(), ID('nodev'), '--', 'true'] }),
    stderr: () => [
      "crashcart: cannot graft the toolkit: the container's /dev is part of its read-only root, so there is nowhere to put it (remount rw '/dev': EINVAL (Invalid argument)); give the container a tmpfs /dev (every runtime does by default)",
      "crashcart:   caused by: remount rw '/dev': EINVAL (Invalid argument) [code EINVAL, syscall remount rw, path /dev]",
    ],
  },

  // --- the command ---
  {
    name: 'a command that is not there (127)', run: () => ({ args: [...img(), ID('plain'), '--', 'no-such-tool'] }), code: 127, target: 'plain',
    stderr: () => ['crashcart: command not found in the container: no-such-tool (searched /dev/crashcart/bin:/bin); the toolkit is at /dev/crashcart/bin; give a full path or a tool that exists'],
  },
  {
    name: 'a path that is not there (127)', run: () => ({ args: [...img(), ID('plain'), '--', '/no/such/tool'] }), code: 127, target: 'plain',
    stderr: () => ["crashcart: command not found in the container: /no/such/tool (execve '/no/such/tool': ENOENT); the toolkit is at /dev/crashcart/bin; give a full path or a tool that exists"],
  },
  {
    name: 'a file without execute permission (126)', run: () => ({ args: [...img(), ID('plain'), '--', '/dev/crashcart/etc/bashrc'] }), code: 126, target: 'plain',
    stderr: () => ["crashcart: cannot run /dev/crashcart/etc/bashrc: it has no execute permission, mode 644 (execve '/dev/crashcart/etc/bashrc': EACCES (Permission denied)); give the path of an executable file"],
  },
  {
    name: 'a directory (126)', run: () => ({ args: [...img(), ID('plain'), '--', '/dev/crashcart/bin'] }), code: 126, target: 'plain',
    stderr: () => ["crashcart: cannot run /dev/crashcart/bin: it is a directory (execve '/dev/crashcart/bin': EACCES (Permission denied)); give the path of an executable file"],
  },
  {
    name: 'an executable file that is no program (126)', run: () => ({ args: [...img(), ID('plain'), '--', '/bin/garbage'] }), code: 126, target: 'plain',
    stderr: () => ["crashcart: cannot run /bin/garbage: it is not an executable for this machine (execve '/bin/garbage': ENOEXEC (Exec format error)); give the path of an executable file"],
  },
  {
    name: 'a script whose interpreter is not there (126, not "not found")', run: () => ({ args: [...img(), ID('plain'), '--', 'script'] }), code: 126, target: 'plain',
    stderr: () => ['crashcart: cannot run /bin/script: its interpreter /no/such/sh (from its #! line) is not in the container; run it with a shell of the toolkit: -- sh /bin/script'],
  },
  {
    name: 'an empty command', run: () => ({ args: [...img(), ID('plain'), '--', ''] }), code: 125, target: 'plain',
    stderr: () => ['crashcart: empty command; give a command after --'],
  },
  {
    name: 'an argument list longer than execve takes (126)', run: () => ({ args: [...img(), ID('bigenv'), '--', 'true', ...BIG_ARGS] }), code: 126, target: 'bigenv',
    stderr: () => [/^crashcart: cannot run true: its arguments \(\d+ KiB\) and environment \(\d+ KiB\) are more than execve takes \(\d+ KiB here\); pass fewer or shorter arguments, or --no-target-env to leave out the container's environment$/],
  },

  // --- --user and --workdir ---
  {
    name: '--user names a user the container does not have', run: () => ({ args: [...img(), '--user', 'nobody', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: user 'nobody' is not in the container's /etc/passwd; give a numeric uid[:gid]"],
  },
  {
    name: '--user names a group the container does not have', run: () => ({ args: [...img(), '--user', '0:wheel', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: group 'wheel' is not in the container's /etc/group; give a numeric gid"],
  },
  {
    name: "--user outside the user namespace's range", run: () => ({ args: [...img(), '--user', '70000', ID('userns'), '--', 'true'] }), code: 125, target: 'userns',
    stderr: () => [`crashcart: --user 70000: 70000:0 is not mapped in the container's user namespace; see /proc/${PID('userns')}/uid_map and gid_map for the ids it has`],
  },
  {
    name: '--user beyond any uid', run: () => ({ args: [...img(), '--user', '4294967295', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: invalid --user '4294967295'; give uid[:gid] (numbers up to 4294967294) or user[:group] names of the container's /etc/passwd and /etc/group"],
  },
  {
    name: '--user with two colons', run: () => ({ args: [...img(), '--user', '1:2:3', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: invalid --user '1:2:3'; give uid[:gid] (numbers up to 4294967294) or user[:group] names of the container's /etc/passwd and /etc/group"],
  },
  {
    name: '--workdir that does not exist', run: () => ({ args: [...img(), '--workdir', '/no/such/dir', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: cannot start the command in the container: chdir '/no/such/dir': ENOENT (No such file or directory); check --workdir: the directory must exist in the container"],
  },
  {
    name: '-v: --workdir that does not exist, with the chdir that failed', run: () => ({ args: ['-v', ...img(), '--workdir', '/no/such/dir', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [
      "crashcart: cannot start the command in the container: chdir '/no/such/dir': ENOENT (No such file or directory); check --workdir: the directory must exist in the container",
      "crashcart:   caused by: chdir '/no/such/dir': ENOENT (No such file or directory) [code ENOENT, syscall chdir, path /no/such/dir]",
    ],
  },
  {
    name: '--workdir that is a file', run: () => ({ args: [...img(), '--workdir', '/bin/sleeper', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: cannot start the command in the container: chdir '/bin/sleeper': ENOTDIR (Not a directory); check --workdir: the directory must exist in the container"],
  },
  {
    name: '--workdir that is relative', run: () => ({ args: [...img(), '--workdir', 'tmp', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ['crashcart: --workdir tmp: not an absolute path; give the absolute path of a directory in the container'],
  },
  {
    name: '-v: a cgroup the command may not join, with the cgroup file', target: 'plain', code: 125, needs: ['chrt'],
    run: () => ({ args: ['-v', ...img(), ID('plain'), '--', 'true'], realtime: true }),
    stderr: () => {
      const file = esc(`/sys/fs/cgroup/cpu/${ID('plain')}/cgroup.procs`);
      return [
        new RegExp(`^crashcart: cannot start the command in the container: write cgroup\\.procs: EINVAL \\(Invalid argument\\) \\(${file}\\); try --no-cgroup$`),
        new RegExp(`^crashcart:   caused by: write cgroup\\.procs: EINVAL \\(Invalid argument\\) \\[code EINVAL, syscall write cgroup\\.procs, path ${file}, detail \\d+\\]$`),
      ];
    },
  },

  // --- options that exclude each other, and garbage values ---
  { name: '--mount-only with --unmount', run: () => ({ args: [...img(), '-m', '-u', ID('plain')] }), code: 125, target: 'plain', stderr: () => ['crashcart: --mount-only and --unmount exclude each other; give one of them'] },
  { name: '--mount-only with a command', run: () => ({ args: [...img(), '-m', ID('plain'), '--', 'true'] }), code: 125, target: 'plain', stderr: () => ['crashcart: --mount-only runs no command, but one was given: true; drop the command, or --mount-only'] },
  { name: '--unmount with --keep', run: () => ({ args: ['-u', '-k', ID('plain')] }), code: 125, target: 'plain', stderr: () => ['crashcart: --keep and --unmount exclude each other; give one of them'] },
  { name: '--mount-only with --user', run: () => ({ args: [...img(), '-m', '--user', '0', ID('plain')] }), code: 125, target: 'plain', stderr: () => ['crashcart: --user applies to a command, and --mount-only runs none; drop --user, or --mount-only'] },
  { name: '--unmount with --exec', run: () => ({ args: ['-u', '-e', ID('plain')] }), code: 125, target: 'plain', stderr: () => ['crashcart: --exec applies to a command, and --unmount runs none; drop --exec, or --unmount'] },
  {
    name: '--exec with --no-cgroup', run: () => ({ args: [...img(), '--exec', '--no-cgroup', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: --exec and --no-cgroup exclude each other; with --exec the runtime's exec decides the command's environment and cgroup"],
  },
  {
    name: '--caps target with --exec', run: () => ({ args: [...img(), '--caps', 'target', '--exec', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: --exec and --caps target exclude each other; with --exec the runtime's exec decides the command's environment and cgroup"],
  },
  {
    name: '--exec with a plain PID', run: () => ({ args: [...img(), '--exec', String(PID('plain')), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [`crashcart: --exec needs a container runtime, but process ${PID('plain')} was given as a plain PID; name the container instead, or attach without --exec`],
  },
  {
    name: '--pod with a target', run: () => ({ args: [...img(), ID('plain'), '--pod', 'web', '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => [`crashcart: --pod web and the target ${ID('plain')} exclude each other; give one; with --pod, the words after the options are the command`],
  },
  { name: '--container without --pod', run: () => ({ args: [...img(), '--container', 'app', ID('plain')] }), code: 125, target: 'plain', stderr: () => ['crashcart: --container applies to --pod only; add --pod NAME, or drop it'] },
  { name: '--env without =', run: () => ({ args: [...img(), '--env', 'NOEQUALS', ID('plain'), '--', 'true'] }), code: 125, target: 'plain', stderr: () => ["crashcart: invalid --env 'NOEQUALS'; use --env NAME=VALUE"] },
  {
    name: '--runtime garbage', run: () => ({ args: [...img(), '--runtime', 'bogus', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: unknown runtime 'bogus'; choose one of: runc, crun, docker, podman, containerd, lxc, nspawn, pid"],
  },
  {
    name: '--namespace with a runtime that has none', run: () => ({ args: [...img(), '--runtime', 'runc', '--namespace', 'default', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ['crashcart: --namespace applies to containerd, not to runc; drop --namespace, or --runtime'],
  },
  {
    name: '-i garbage', run: () => ({ args: ['-i', '/dev/null', ID('plain'), '--', 'true'] }), code: 125, target: 'plain',
    stderr: () => ["crashcart: image file /dev/null not found: it is not a regular file; build one with 'crashcart image build -o /dev/null'"],
  },

  // --- image commands ---
  {
    name: 'image inspect of nothing', run: () => ({ args: ['image', 'inspect', 'nosuchimage'] }), code: 125,
    stderr: () => [`crashcart: image inspect nosuchimage: no cached image of that name or digest and no image file ${join(projectRoot(), 'nosuchimage')}; see 'crashcart image ls'`],
  },
  { name: 'image rm of nothing', run: () => ({ args: ['image', 'rm', 'nosuchimage'] }), code: 125, stderr: () => ["crashcart: image rm nosuchimage: no cached image of that name or digest; see 'crashcart image ls'"] },
  {
    name: 'image pull without a digest', run: () => ({ args: ['image', 'pull', 'http://127.0.0.1:9/x.img'] }), code: 125,
    stderr: () => ['crashcart: pull http://127.0.0.1:9/x.img: no --sha256 given; pass the published digest with --sha256 HEX (or --insecure to skip the check)'],
  },
  {
    name: 'image pull of no URL', run: () => ({ args: ['image', 'pull', 'nowhere', '--sha256', 'a'.repeat(64)] }), code: 125,
    stderr: () => ['crashcart: pull nowhere: not a valid URL; give an http:// or https:// URL'],
  },
];

let openDir = '';
/** A directory anyone can write to, for CRASHCART_STATE_DIR. */
function openStateDir(): string {
  if (!openDir) {
    openDir = join(privateDirs().root, 'open-state');
    mkdirSync(openDir);
    chmodSync(openDir, 0o777);
  }
  return openDir;
}

/** Mount ids dropped, so that a line compares equal across snapshots. */
const mountTable = (pid: number) => readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').slice(2).join(' '));

function matchLine(actual: string | undefined, want: string | RegExp, all: string): void {
  if (typeof want === 'string') assert.equal(actual, want, `stderr:\n${all}`);
  else assert.match(actual ?? '', want, `stderr:\n${all}`);
}

describe('bad input: one line, the right exit code, nothing changed', { skip: !canRun() && 'needs root and runc' }, () => {
  before(async () => {
    image = await testImage();
    const sleeper = await sleeperPath();
    const start = (o: Partial<ScratchOptions>) => createScratchContainer({ sleeperPath: sleeper, ...o });
    const made = await Promise.allSettled([
      start({
        id: `${BASE}-a1`, env: ['PATH=/bin', 'FOO=bar'],
        files: [
          { path: '/bin/garbage', content: 'not a program\n', mode: 0o755 },
          { path: '/bin/script', content: '#!/no/such/sh\necho never\n', mode: 0o755 },
        ],
      }),
      start({ id: `${BASE}-a2`, busybox: true }),
      start({ id: `${BASE}-userns`, userns: USERNS }),
      start({ id: `${BASE}-nodev`, busybox: true, devTmpfs: false }),
      start({ id: `${BASE}-bigenv`, env: ['PATH=/bin', ...BIG_ENV] }),
      start({ id: `${BASE}-stopped` }),
      start({ id: `${BASE}-paused` }),
    ]);
    const keys: (keyof Containers)[] = ['plain', 'busybox', 'userns', 'nodev', 'bigenv', 'stopped', 'paused'];
    made.forEach((m, i) => {
      if (m.status === 'fulfilled') cs[keys[i]!] = m.value;
    });
    for (const m of made) if (m.status === 'rejected') throw m.reason;

    await runc(['kill', c('stopped').id, 'KILL']);
    await waitFor('the stopped container is stopped', async () => (await runcStatus(c('stopped').id)) === 'stopped');
    await runc(['pause', c('paused').id]);
    createdId = `${BASE}-created`;
    await runcCreate(createdId, c('plain'));

    // image files of every kind of wrong
    const root = privateDirs().root;
    images.missing = join(root, 'no-such.img');
    images.junk = join(root, 'junk.img');
    writeFileSync(images.junk, randomBytes(65536));
    images.truncated = join(root, 'truncated.img');
    writeFileSync(images.truncated, readFileSync(image).subarray(0, 65536));
    for (const fs of ['ext2', 'ext4']) {
      images[fs] = join(root, `${fs}.img`);
      if (onPath('mke2fs')) await run('mke2fs', ['-q', '-F', '-t', fs, images[fs]!, '4M']);
    }
    images.nobodys = join(root, 'nobodys.img');
    copyFileSync(image, images.nobodys);
    chownSync(images.nobodys, NOBODY, NOBODY);
    const users = join(root, 'users');
    mkdirSync(users);
    chownSync(users, NOBODY, NOBODY);
    images.inUserDir = join(users, 'toolkit.img');
    copyFileSync(image, images.inUserDir);

    if (onPath('python3')) zombie = await makeZombie();
  });

  after(async () => {
    for (const undo of [...undos].reverse()) await undo().catch(() => {});
    await zombie?.release();
    if (cs.paused) await execa('runc', ['resume', cs.paused.id], { reject: false, stdin: 'ignore' });
    if (createdId) await execa('runc', ['delete', '-f', createdId], { reject: false, stdin: 'ignore' });
    for (const x of Object.values(cs)) await x.remove();
  });

  for (const k of CASES) {
    test(k.name, async (t: TestContext) => {
      if (!requireRoot(t) || !requireCommand(t, 'runc') || !(k.needs ?? []).every((n) => requireCommand(t, n))) return;
      const target = k.target ? c(k.target) : undefined;
      let undo: (() => Promise<void>) | undefined;
      try {
        if (k.setup) {
          undo = await k.setup();
          undos.add(undo);
        }
        const before = await snapshotHost(target && { pid: target.pid, rootfs: target.rootfs });
        const table = target && mountTable(target.pid);
        const r = await crashcart(k.run());

        const want = k.stderr();
        const lines = r.stderr.split('\n');
        assert.equal(r.code, k.code, `exit code; stderr:\n${r.stderr}`);
        assert.equal(r.stdout, '', 'nothing on stdout');
        if (k.run().args.includes('-v')) {
          for (const l of lines) assert.match(l, /^crashcart: /, `every line is crashcart's:\n${r.stderr}`);
          assert.ok(lines.length >= want.length, `stderr:\n${r.stderr}`);
          want.forEach((w, i) => matchLine(lines[lines.length - want.length + i], w, r.stderr));
        } else {
          assert.equal(lines.length, want.length, `${want.length} line(s) on stderr, got:\n${r.stderr}`);
          want.forEach((w, i) => matchLine(lines[i], w, r.stderr));
          assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, 'no stack');
        }

        // the host, the target and the state directory: nothing new, nothing gone
        await assertClean(before, target);
        if (target) assert.deepEqual(mountTable(target.pid), table, "the container's mount table is unchanged");
        k.check?.();
      } finally {
        if (undo) {
          undos.delete(undo);
          await undo();
        }
      }
    });
  }
});
