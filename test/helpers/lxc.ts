// Real LXC containers under a private lxcpath in a temporary directory: configs written by
// hand (no templates), a scratch root, no network. Nothing touches /var/lib/lxc. LXC's own
// leftovers on the host (lock files under /run/lxc/lock/<lxcpath>, the lxc.pivot cgroups
// its monitors move into on exit) are removed again when this suite made them.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { parseLxcInfo } from '../../src/runtimes/lxc.js';
import { endProcesses, removeDir, startDaemon, type Daemon } from './daemon.js';
import { cgroupHierarchies, sleeperPath } from './host.js';
import { makeRootfs, missingDirs, removeEmptyDirs } from './rootfs.js';

const LOCK_ROOT = '/run/lxc/lock';
const TIMEOUT_MS = 30_000;

export interface LxcOptions {
  readOnly?: boolean;
  busybox?: boolean;
}

export interface PrivateLxc {
  dir: string;
  /** the lxcpath (-P) */
  path: string;
  env: { CRASHCART_LXC_PATH: string };
  /** writes <path>/<name>/config and a scratch root; the container is defined, not started */
  define(name: string, opts?: LxcOptions): Promise<{ rootfs: string }>;
  /** lxc-start -F in the background; returns the init pid once the container runs */
  start(name: string): Promise<number>;
  /** lxc-stop -k, and waits for the container's monitor (lxc-start) to exit */
  stop(name: string): Promise<void>;
  info(name: string): Promise<{ status: string; pid: number }>;
  /** stops everything, removes the directory and LXC's leftovers; returns what was left behind */
  destroy(): Promise<string[]>;
}

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const r = await execa(args[0], args.slice(1), { reject: false, stdin: 'ignore', timeout: TIMEOUT_MS, all: true });
  return { code: r.exitCode ?? -1, out: (r.all ?? '').trim() };
}

export async function createPrivateLxc(): Promise<PrivateLxc> {
  const dir = await mkdtemp(join(tmpdir(), 'crashcart-lxc-'));
  const path = join(dir, 'lxcpath');
  await mkdir(path);
  const lockDir = join(LOCK_ROOT, path);
  const lockMissing = missingDirs(lockDir);
  const pivots = cgroupHierarchies().map((m) => join(m, 'lxc.pivot')).filter((p) => !existsSync(p));
  const names = new Set<string>();
  const monitors = new Map<string, Daemon>();

  const lxc = (cmd: string, name: string, extra: string[] = []) => run([cmd, '-P', path, '-n', name, ...extra]);

  async function info(name: string): Promise<{ status: string; pid: number }> {
    const r = await lxc('lxc-info', name, ['-s', '-p']);
    const parsed = r.code === 0 ? parseLxcInfo(r.out) : undefined;
    if (!parsed) throw new Error(`lxc-info ${name}: exit ${r.code}: ${r.out}`);
    return parsed;
  }

  async function stop(name: string): Promise<void> {
    const monitor = monitors.get(name);
    if ((await info(name)).status !== 'stopped') {
      const r = await lxc('lxc-stop', name, ['-k']);
      if (r.code !== 0) throw new Error(`lxc-stop -k ${name}: exit ${r.code}: ${r.out}`);
    }
    if (!monitor) return;
    monitors.delete(name);
    // lxc-stop made it exit
    const { killed } = await monitor.stop({ signal: null });
    if (killed) throw new Error(`lxc-start of ${name} did not exit after lxc-stop; killed`);
  }

  return {
    dir,
    path,
    env: { CRASHCART_LXC_PATH: path },
    info,
    stop,
    async define(name, opts = {}) {
      const rootfs = join(dir, 'roots', name);
      await makeRootfs(rootfs, await sleeperPath(), { busybox: opts.busybox });
      await mkdir(join(path, name));
      await writeFile(join(path, name, 'config'), [
        `lxc.uts.name = ${name}`,
        `lxc.rootfs.path = dir:${rootfs}`,
        ...(opts.readOnly ? ['lxc.rootfs.options = ro'] : []),
        'lxc.init.cmd = /bin/sleeper 100000',
        'lxc.net.0.type = empty',
        'lxc.apparmor.profile = unconfined',
        'lxc.mount.auto = proc:mixed sys:ro',
        'lxc.autodev = 1',
        'lxc.console.path = none',
        'lxc.tty.max = 0',
        'lxc.pty.max = 0',
        '',
      ].join('\n'));
      names.add(name);
      return { rootfs };
    },
    async start(name) {
      // -F: lxc-start stays in the foreground as the container's monitor, a child of this
      // process, which reaps it; a daemonized monitor would be left to init to reap, and
      // until then keeps LXC's lxc.pivot cgroups busy
      const log = join(path, name, 'lxc.log');
      const { daemon, ready } = await startDaemon({
        name: `lxc-start of ${name}`,
        command: 'lxc-start',
        args: ['-P', path, '-n', name, '-F', '-o', log, '-l', 'INFO'],
        log: join(path, name, 'lxc-start.out'),
        readyWhen: 'the container runs',
        ready: async () => {
          const { status, pid } = await info(name);
          return status === 'running' && pid > 0 && pid;
        },
        startMs: TIMEOUT_MS,
        stopMs: TIMEOUT_MS,
        detached: true,
      }).catch(async (err: Error) => {
        const why = (await readFile(log, 'utf8').catch(() => '')).split('\n').filter((l) => /ERROR/.test(l)).join('\n');
        throw new Error(`${err.message}\n${why}`);
      });
      monitors.set(name, daemon);
      return ready;
    },
    async destroy() {
      const problems: string[] = [];
      for (const name of names) {
        await stop(name).catch((err: Error) => problems.push(err.message));
        for (const m of cgroupHierarchies()) {
          for (const cg of [`lxc.payload.${name}`, `lxc.monitor.${name}`]) {
            if (existsSync(join(m, cg))) problems.push(`cgroup left: ${join(m, cg)}`);
          }
        }
      }
      problems.push(...(await endProcesses(path)));
      const mounts = await removeDir(dir);
      problems.push(...mounts);
      await rm(lockDir, { recursive: true, force: true });
      problems.push(...(await removeEmptyDirs(lockMissing)).map((d) => `not removed: ${d}`));
      // exiting monitors move into lxc.pivot (a cgroup: rmdir removes it with its files)
      for (const p of pivots) await rmdir(p).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') problems.push(`cgroup not removed: ${p}: ${err.code}`);
      });
      return problems;
    },
  };
}
