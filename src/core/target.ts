// A target process opened for grafting and spawning: every /proc/PID file the native side
// needs is opened here first (the paths vanish once a child is inside the namespaces), and
// the facts policy depends on (own user namespace? shares the host's mounts?) are read once.
import { closeSync, openSync, statSync } from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { CrashcartError, errnoCode } from './errors.js';
import { constants as nativeConstants } from '../native/index.js';
import {
  NAMESPACES,
  type Namespace,
  cgroupProcsFiles,
  fixedNamespaceInode,
  hostCgroupMounts,
  mapToHost,
  namespaceInode,
  readCgroups,
  readIdMap,
  PF_KTHREAD,
  readStat,
  startTime,
} from './proc.js';

/** A container as a runtime describes it. */
export interface Container {
  runtime: string;
  id: string;
  name?: string;
  /** host pid of the container's first process; 0 when it has none */
  pid: number;
  /** 'running', or the runtime's word for why not ('stopped', 'created', 'exited', ...) */
  status: string;
  /** containerd's namespace (k8s.io, moby, default, ...), for runtimes that have them */
  namespace?: string;
  /** the runtime's labels; Kubernetes finds pods through io.kubernetes.* labels */
  labels?: Record<string, string>;
}

/** What --exec asks a runtime's own exec to run. */
export interface ExecRequest {
  /** absolute path and arguments, e.g. ['/dev/crashcart/bin/bash', '-i'] */
  argv: string[];
  /** allocate a terminal (-t); stdin is always kept open (-i) */
  tty: boolean;
  /** extra environment for the command */
  env: Record<string, string>;
  user?: string;
  workdir?: string;
}

/** A command line to run (stdio inherited) and the environment it needs. */
export interface ExecCommand {
  file: string;
  args: string[];
  env?: Record<string, string>;
}

/** What the user named, found: a container of some runtime, or a plain process. */
export interface Target {
  pid: number;
  /** 'runc', 'crun', ... or 'pid' for a plain process id */
  runtime: string;
  id: string;
  name?: string;
  /** containerd's namespace of the container */
  namespace?: string;
  /** what the runtime said about it; absent for a plain PID */
  container?: Container;
}

const CLONE_FLAG: Record<Namespace, string> = {
  ipc: 'CLONE_NEWIPC',
  uts: 'CLONE_NEWUTS',
  net: 'CLONE_NEWNET',
  pid: 'CLONE_NEWPID',
  cgroup: 'CLONE_NEWCGROUP',
  mnt: 'CLONE_NEWNS',
  user: 'CLONE_NEWUSER',
};

export interface TargetFacts {
  pid: number;
  start: number;
  /** inode of its mount namespace: the key its graft is known by */
  mntNs: number;
  /** it has a user namespace of its own (the mknod path cannot work there) */
  ownUserNs: boolean;
  /** host ids that its root user maps to */
  rootUid: number;
  rootGid: number;
  /** namespaces that differ from crashcart's own */
  differs: Record<Namespace, boolean>;
}

export function inspectTarget(pid: number, opts: { allowHost?: boolean; what?: string } = {}): TargetFacts {
  const what = opts.what ?? `process ${pid}`;
  const stat = readStat(pid);
  const start = stat?.start;
  let mntNs: number;
  try {
    mntNs = statSync(`/proc/${pid}/ns/mnt`).ino;
  } catch (e) {
    if (start === undefined || errnoCode(e) === 'ENOENT') {
      throw new CrashcartError(`${what} is gone (pid ${pid} has no /proc entry)`, { hint: 'is it still running?' });
    }
    throw new CrashcartError(`cannot inspect ${what}: stat '/proc/${pid}/ns/mnt': ${errnoCode(e)}`, {
      hint: 'crashcart must run as root on the host, outside any container, with ptrace access to the target',
      cause: e,
    });
  }
  if (start === undefined || !stat) {
    throw new CrashcartError(`${what} is gone (pid ${pid} has no /proc entry)`, { hint: 'is it still running?' });
  }
  if (stat.state === 'Z') {
    throw new CrashcartError(`${what} has exited (pid ${pid} is a zombie)`, { hint: 'pick a running process' });
  }
  if (stat.flags & PF_KTHREAD) {
    throw new CrashcartError(`${what} is a kernel thread (${stat.comm}): it has no user space to enter`, { hint: "give the PID of a container's process" });
  }
  const differs = Object.fromEntries(
    NAMESPACES.map((ns) => [ns, namespaceInode(pid, ns) !== fixedNamespaceInode('self', ns)]),
  ) as Record<Namespace, boolean>;
  // The host's mount namespace is PID 1's: crashcart may itself run in a container (the
  // image, with the host's PID namespace), where every host process differs from its own.
  if ((!differs.mnt || mntNs === fixedNamespaceInode(1, 'mnt')) && !opts.allowHost) {
    throw new CrashcartError(`${what} shares the host's mount namespace: it is not in a container`, {
      hint: 'grafting there would create /dev/crashcart on the host; pass --allow-host if that is what you want',
    });
  }
  let rootUid = 0;
  let rootGid = 0;
  if (differs.user) {
    const uid = mapToHost(readIdMap(pid, 'uid'), 0);
    const gid = mapToHost(readIdMap(pid, 'gid'), 0);
    if (uid === undefined || gid === undefined) {
      throw new CrashcartError(`${what} has a user namespace in which root is not mapped`, {
        hint: 'crashcart needs the container to map uid and gid 0 (see /proc/PID/uid_map)',
      });
    }
    rootUid = uid;
    rootGid = gid;
  }
  return { pid, start, mntNs, ownUserNs: differs.user, rootUid, rootGid, differs };
}

/** File descriptors on a target, closed together. */
export class TargetHandles {
  readonly ns = new Map<Namespace, number>();
  root = -1;
  cwd = -1;
  cgroupProcs: number[] = [];
  /** the cgroup.procs files opened, in the order of cgroupProcs */
  cgroupFiles: string[] = [];

  constructor(readonly facts: TargetFacts) {}

  /** Opens what a graft needs: the mount namespace and the root. */
  static forGraft(facts: TargetFacts): TargetHandles {
    const h = new TargetHandles(facts);
    try {
      h.ns.set('mnt', openProc(facts.pid, 'ns/mnt'));
      h.root = openProc(facts.pid, 'root');
      h.checkSameProcess();
      return h;
    } catch (e) {
      h.close();
      throw e;
    }
  }

  /** Opens what running a command needs: every namespace that differs, root, cwd, cgroups. */
  static forSpawn(facts: TargetFacts, opts: { joinCgroup: boolean; useCwd: boolean }): TargetHandles {
    const h = new TargetHandles(facts);
    try {
      for (const ns of NAMESPACES) if (facts.differs[ns]) h.ns.set(ns, openProc(facts.pid, `ns/${ns}`));
      h.root = openProc(facts.pid, 'root');
      if (opts.useCwd) h.cwd = openProc(facts.pid, 'cwd');
      if (opts.joinCgroup) {
        const files = cgroupProcsFiles(readCgroups(facts.pid), hostCgroupMounts());
        for (const file of files) {
          try {
            h.cgroupProcs.push(openSync(file, fsConstants.O_WRONLY));
            h.cgroupFiles.push(file);
          } catch (e) {
            // A hierarchy the host does not let us write to is skipped, as runc exec does
            // for missing ones; the namespaces still apply.
            if (errnoCode(e) !== 'ENOENT' && errnoCode(e) !== 'EACCES' && errnoCode(e) !== 'EROFS') throw e;
          }
        }
      }
      h.checkSameProcess();
      return h;
    } catch (e) {
      h.close();
      throw e;
    }
  }

  /** The namespaces to enter, in setns order: user last (after it crashcart has no
   *  privileges left outside the container). */
  namespaceOrder(): Namespace[] {
    const order: Namespace[] = ['ipc', 'uts', 'net', 'pid', 'cgroup', 'mnt', 'user'];
    return order.filter((ns) => this.ns.has(ns));
  }

  namespaceList(): Array<[number, number]> {
    const c = nativeConstants();
    return this.namespaceOrder().map((ns) => [this.ns.get(ns)!, c[CLONE_FLAG[ns]]]);
  }

  get mntNsFd(): number {
    return this.ns.get('mnt') ?? -1;
  }

  // The pid may have been reused between looking it up and opening its files.
  private checkSameProcess(): void {
    if (startTime(this.facts.pid) !== this.facts.start) {
      throw new CrashcartError(`process ${this.facts.pid} exited while crashcart was opening it`, {
        hint: 'is the container restarting?',
      });
    }
  }

  close(): void {
    for (const fd of [...this.ns.values(), this.root, this.cwd, ...this.cgroupProcs]) {
      if (fd >= 0) closeSync(fd);
    }
    this.ns.clear();
    this.root = this.cwd = -1;
    this.cgroupProcs = [];
    this.cgroupFiles = [];
  }
}

function openProc(pid: number, rel: string): number {
  const path = `/proc/${pid}/${rel}`;
  try {
    return openSync(path, fsConstants.O_RDONLY);
  } catch (e) {
    throw new CrashcartError(`cannot open ${path}: ${errnoCode(e) ?? String(e)}`, {
      hint: errnoCode(e) === 'ENOENT' ? 'the process is gone' : 'crashcart must run as root on the host',
      cause: e,
    });
  }
}
