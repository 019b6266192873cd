// crashcart cp <target>:PATH DEST | SRC <target>:PATH, '-' for a tar stream (docker cp's
// semantics). Paths in the container are resolved by the kernel inside its root; everything
// after that works on fds (src/core/copy.ts). A stopped container is copied out of through
// a view of its files (openView in src/core/sandbox.ts), never into.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { basename, posix, resolve } from 'node:path';
import { writeAudit } from '../../core/audit.js';
import { CopyWriteError, newStats, tarEntries, walkTree, writeTar, writeTree, type CopyStats, type Entry, type IdView } from '../../core/copy.js';
import { CrashcartError, errnoCode } from '../../core/errors.js';
import { describeTarget } from '../../core/grafts.js';
import { readIdMap, readMountInfo, startTime, type IdMapping, type MountInfo } from '../../core/proc.js';
import { inspectTarget, type TargetFacts } from '../../core/target.js';
import { TarError } from '../../core/tar.js';
import { openInRoot } from '../../native/index.js';
import { resolveTarget, RUNTIMES, type Container, type Target } from '../../runtimes/index.js';
import { describeEnd, displayName, type StoppedContainer } from '../../core/stopped.js';
import { logger, progress, requireRoot, warn } from '../output.js';
import type { CpArgs } from './reach-options.js';

/** One side of a copy: the container's, the host's, or a tar stream. */
export type CpSide = { kind: 'target'; target: string; path: string } | { kind: 'host'; path: string } | { kind: 'stream' };

/**
 * docker cp's rule: '-' is a stream; a word that starts with '/' or '.' is a host path; else
 * TARGET:PATH when it has a ':', else a host path.
 */
export function parseCpSide(word: string): CpSide {
  if (word === '-') return { kind: 'stream' };
  if (word === '') throw new CrashcartError('crashcart cp: an empty path', { hint: 'give TARGET:PATH, a host path, or -' });
  if (word.startsWith('/') || word.startsWith('.')) return { kind: 'host', path: word };
  const colon = word.indexOf(':');
  if (colon < 0) return { kind: 'host', path: word };
  const target = word.slice(0, colon);
  const path = word.slice(colon + 1);
  if (target === '') throw new CrashcartError(`invalid cp argument '${word}': no target before ':'`, { hint: 'give TARGET:PATH, e.g. web:/etc/hosts' });
  // a path relative in the container is relative to its root (docker: its working directory)
  return { kind: 'target', target, path: path === '' ? '/' : path.startsWith('/') ? path : `/${path}` };
}

/** yargs parses a lone '-' as '': put it back where the command line has one. */
export function lonelyDash(args: CpArgs, argv: string[]): CpArgs {
  if (!argv.includes('-')) return args;
  return { ...args, source: args.source === '' ? '-' : args.source, destination: args.destination === '' ? '-' : args.destination };
}

/** Which way, checked before anything is looked up. */
export function cpPlan(source: string, destination: string): { direction: 'in' | 'out'; target: string; inside: string; other: CpSide } {
  const src = parseCpSide(source);
  const dst = parseCpSide(destination);
  if (src.kind === 'target' && dst.kind === 'target') {
    throw new CrashcartError('crashcart cp copies between a container and the host, not between two containers', { hint: 'copy out to the host first, then in' });
  }
  if (src.kind === 'target') return { direction: 'out', target: src.target, inside: src.path, other: dst };
  if (dst.kind === 'target') {
    return { direction: 'in', target: dst.target, inside: dst.path, other: src };
  }
  throw new CrashcartError(`neither '${source}' nor '${destination}' names a container`, { hint: 'give TARGET:PATH on one side, e.g. crashcart cp web:/etc/hosts .' });
}

/** The inverse of a user namespace's map: a host id as the container sees it. */
function toInside(map: IdMapping[], id: number): number {
  const m = map.find((r) => id >= r.outside && id < r.outside + r.count);
  return m === undefined ? id : m.inside + (id - m.outside);
}

function toHost(map: IdMapping[], id: number): number | undefined {
  const m = map.find((r) => id >= r.inside && id < r.inside + r.count);
  return m === undefined ? undefined : m.outside + (id - m.inside);
}

/** The mount an fd is on (its mnt_id, in /proc/self/fdinfo), as the container's mountinfo has it. */
function mountOf(fd: number, mounts: MountInfo[]): MountInfo | undefined {
  const m = /^mnt_id:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  return m ? mounts.find((x) => x.id === Number(m[1])) : undefined;
}

const writable = (m: MountInfo) => m.options.split(',').includes('rw') && !m.superOptions.split(',').includes('ro');

/** Where the container has somewhere to write: places that are directories on a read-write mount. */
function writablePlaces(rootFd: number, mounts: MountInfo[]): string[] {
  const out: string[] = [];
  for (const place of ['/tmp', '/var/tmp', '/dev/shm', '/run']) {
    let fd: number;
    try {
      fd = openInRoot({ rootFd, path: place, kind: 'dir' });
    } catch {
      continue;
    }
    try {
      const m = mountOf(fd, mounts);
      if (m && writable(m)) out.push(place);
    } finally {
      closeSync(fd);
    }
  }
  return out;
}

interface Place {
  /** the directory the copy goes into */
  intoFd: number;
  /** the top entry's name in it; undefined: merged into intoFd itself */
  topName?: string;
  /** where the top lands, as messages show it ('web:/tmp/x') */
  shown: string;
}

/**
 * Where a copy lands, as docker cp decides: into an existing directory (under the source's
 * name, or its contents with SRC/.), over an existing file, or as a new name whose parent
 * exists. Resolved inside `rootFd` (RESOLVE_IN_ROOT: a symlink on the way stays inside).
 */
function place(rootFd: number, path: string, prefix: string, src: { isDir: boolean; contents: boolean; name: string; stream: boolean }): Place {
  const shown = `${prefix}${path}`;
  let fd: number | undefined;
  try {
    fd = openInRoot({ rootFd, path, kind: 'path' });
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw new CrashcartError(`cannot open ${shown}: ${(e as Error).message}`, { hint: 'check the destination path', cause: e });
  }
  if (fd !== undefined) {
    const isDir = fstatSync(fd).isDirectory();
    if (isDir) return src.contents || src.stream ? { intoFd: fd, shown } : { intoFd: fd, topName: src.name, shown: `${prefix}${posix.join(path, src.name)}` };
    closeSync(fd);
    if (src.stream) throw new CrashcartError(`${shown} is not a directory`, { hint: 'a tar stream is extracted into an existing directory' });
    if (src.isDir) throw new CrashcartError(`cannot copy a directory to a file: ${shown}`, { hint: 'give a directory, or a new name' });
  } else if (src.stream) {
    throw new CrashcartError(`${shown} does not exist`, { hint: 'a tar stream is extracted into an existing directory' });
  } else if (path.endsWith('/') && !src.isDir) {
    throw new CrashcartError(`the destination directory ${shown} does not exist`, { hint: 'create it first, or drop the trailing /' });
  }
  const trimmed = path.replace(/\/+$/, '') || '/';
  const parent = posix.dirname(trimmed);
  const name = posix.basename(trimmed);
  if (name === '' || name === '.' || name === '..') throw new CrashcartError(`cannot copy to ${shown}`, { hint: 'give a file or directory name' });
  let parentFd: number;
  try {
    parentFd = openInRoot({ rootFd, path: parent, kind: 'path' });
  } catch (e) {
    throw new CrashcartError(`the parent directory of ${shown} does not exist: ${(e as Error).message}`, { hint: 'create it first', cause: e });
  }
  if (!fstatSync(parentFd).isDirectory()) {
    closeSync(parentFd);
    throw new CrashcartError(`the parent of ${shown} is not a directory`, { hint: 'check the destination path' });
  }
  return { intoFd: parentFd, topName: name, shown: `${prefix}${trimmed}` };
}

/** Copying into a container that does not run: its writable layer is its runtime's to mount. */
export function refuseCopyInto(query: string, notRunning: CrashcartError): CrashcartError {
  return new CrashcartError(`cannot copy into ${query}: ${notRunning.message.replace(/^container \S+ is /, 'it is ')}, and its writable layer belongs to its runtime`, {
    code: 'ENOTRUNNING',
    hint: `start it first, copy out of it (crashcart cp ${query}:PATH DEST), or look at its files with crashcart --stopped ${query}`,
    cause: notRunning,
  });
}

/** What cp copies from or to: a running container, or the files of one that does not run. */
type Found = { running: Target } | { stopped: StoppedContainer };

/**
 * A running container, or, to copy out, a stopped one through the post-mortem resolution
 * (each runtime's describeStopped). Into a stopped one is refused: its writable layer is
 * its runtime's, which mounts it when it starts again. A paused one is neither.
 */
async function findTarget(args: CpArgs, query: string, direction: 'in' | 'out'): Promise<Found> {
  try {
    return { running: await resolveTarget(query, args.runtime, args.namespace === undefined ? {} : { namespace: args.namespace }, { warn }) };
  } catch (e) {
    if (!(e instanceof CrashcartError && e.code === 'ENOTRUNNING')) throw e;
    const { acceptStopped, findStopped } = await import('./stopped.js');
    const accept = (c: Container, q: string) => {
      let target: Target;
      try {
        target = acceptStopped(c, q);
      } catch (refused) {
        // paused or on its way: its processes, and their mounts, still exist
        throw new CrashcartError(e.message, {
          code: 'ENOTRUNNING',
          hint: 'crashcart cp copies between the host and running containers, and out of those that do not run: resume it, or wait until it has stopped',
          cause: refused,
        });
      }
      if (direction === 'in') throw refuseCopyInto(query, e);
      return target;
    };
    try {
      return { stopped: await findStopped(query, { ...(args.runtime !== undefined ? { runtime: args.runtime } : {}), ...(args.namespace !== undefined ? { namespace: args.namespace } : {}), accept }) };
    } catch (err) {
      if ((err as CrashcartError).code === 'ENOTRUNNING') throw err;
      if (direction === 'in') throw refuseCopyInto(query, e);
      // not among the runtimes whose stopped containers crashcart can open (nspawn)
      if ((err as CrashcartError).code === 'ENOMATCH') {
        const able = RUNTIMES.filter((r) => r.describeStopped).map((r) => r.name).join(', ');
        throw new CrashcartError(e.message, { hint: `start it first: crashcart cp opens the files of stopped containers of ${able} only`, cause: err });
      }
      throw err;
    }
  }
}

export async function cp(args: CpArgs): Promise<number> {
  requireRoot('crashcart cp', "it reads and writes inside the container's root");
  const log = logger(args.verbose);
  const plan = cpPlan(args.source, args.destination);
  const found = await findTarget(args, plan.target, plan.direction);
  if ('stopped' in found) return cpStopped(args, plan, found.stopped, log);
  const started = Date.now();
  const target = found.running;
  const what = describeTarget(target);
  const facts = inspectTarget(target.pid, { what });
  const name = target.name ?? target.id;
  const shownInside = `${name}:${plan.inside}`;
  let rootFd: number;
  try {
    rootFd = openSync(`/proc/${target.pid}/root`, 'r');
  } catch (e) {
    throw new CrashcartError(`cannot open /proc/${target.pid}/root: ${errnoCode(e) ?? String(e)}`, { hint: 'is the target still running?', cause: e });
  }
  const hostRoot = openSync('/', 'r');
  log(`${what} (pid ${target.pid}): copying ${plan.direction === 'out' ? 'out of' : 'into'} ${shownInside}`);
  const stats = newStats();
  const skip = (path: string, why: string) => {
    stats.skipped++;
    warn(`skipped ${path}: ${why}`);
  };
  let exitCode = 125;
  try {
    if (startTime(target.pid) !== facts.start) throw new CrashcartError(`${what} exited while crashcart was opening it`, { hint: 'is the container restarting?' });
    const maps = facts.differs.user ? { uid: readIdMap(target.pid, 'uid'), gid: readIdMap(target.pid, 'gid') } : undefined;
    if (plan.direction === 'out') await copyOut(args, plan.inside, shownInside, plan.other, { rootFd, hostRoot, maps, stats, skip });
    else await copyIn(args, plan.inside, shownInside, plan.other, { rootFd, hostRoot, maps, stats, skip, facts, pid: target.pid });
    exitCode = 0;
  } finally {
    closeSync(rootFd);
    closeSync(hostRoot);
    const why = writeAudit(args.audit
      ? {
          event: 'cp',
          target: { runtime: target.runtime, id: target.id, ...(target.name ? { name: target.name } : {}), pid: target.pid },
          copy: { direction: plan.direction, from: args.source, to: args.destination, archive: args.archive, ...stats },
          exitCode,
          durationMs: Date.now() - started,
        }
      : { event: 'cp', noAudit: true });
    if (why) warn(why);
  }
  progress(args.verbose)(`copied ${stats.files} file(s), ${stats.dirs} directory(ies), ${stats.symlinks} symlink(s), ${stats.bytes} bytes${stats.skipped ? `; skipped ${stats.skipped}` : ''}`);
  return 0;
}

/**
 * Out of a container that does not run: its files as the sandbox would show them (all its
 * layers, its volumes read-only), opened in a mount namespace held by a process of
 * crashcart's for the copy only (openView), then the same fd-based copy as for a running one.
 */
async function cpStopped(args: CpArgs, plan: ReturnType<typeof cpPlan>, c: StoppedContainer, log: (line: string) => void): Promise<number> {
  const started = Date.now();
  const name = displayName(c);
  const shownInside = `${name}:${plan.inside}`;
  const { openView } = await import('../../core/sandbox.js');
  log(`${c.runtime} ${c.id} ${describeEnd(c.state)}: copying out of ${shownInside}; layers ${c.layers.join(' ')}`);
  const view = await openView(c, log);
  const stats = newStats();
  const skip = (path: string, why: string) => {
    stats.skipped++;
    warn(`skipped ${path}: ${why}`);
  };
  let exitCode = 125;
  let hostRoot = -1;
  try {
    hostRoot = openSync('/', 'r');
    await copyOut(args, plan.inside, shownInside, plan.other, { rootFd: view.rootFd, hostRoot, stats, skip });
    exitCode = 0;
  } finally {
    if (hostRoot >= 0) closeSync(hostRoot);
    await view.close();
    const why = writeAudit(args.audit
      ? {
          event: 'cp',
          target: { runtime: c.runtime, id: c.id, ...(c.name ? { name: c.name } : {}), pid: 0 },
          copy: { direction: plan.direction, from: args.source, to: args.destination, archive: args.archive, ...stats },
          exitCode,
          durationMs: Date.now() - started,
        }
      : { event: 'cp', noAudit: true });
    if (why) warn(why);
  }
  progress(args.verbose)(`copied ${stats.files} file(s), ${stats.dirs} directory(ies), ${stats.symlinks} symlink(s), ${stats.bytes} bytes${stats.skipped ? `; skipped ${stats.skipped}` : ''}`);
  return 0;
}

interface Ctx {
  rootFd: number;
  hostRoot: number;
  maps?: { uid: IdMapping[]; gid: IdMapping[] };
  stats: CopyStats;
  skip: (path: string, why: string) => void;
}

/** The source's top, not followed unless it ends with '/' or '/.' (as docker cp). */
function openSource(rootFd: number, path: string, shown: string): { fd: number; contents: boolean; isDir: boolean; name: string } {
  const contents = /\/\.$/.test(path) || path === '/' || path === '.';
  let fd: number;
  try {
    fd = openInRoot({ rootFd, path, kind: 'path', nofollow: !path.endsWith('/') && !contents });
  } catch (e) {
    const code = errnoCode(e);
    throw new CrashcartError(`cannot copy ${shown}: ${code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`, { hint: 'check the path', cause: e });
  }
  const isDir = fstatSync(fd).isDirectory();
  if (contents && !isDir) {
    closeSync(fd);
    throw new CrashcartError(`cannot copy the contents of ${shown}: not a directory`, { hint: 'drop the trailing /.' });
  }
  const trimmed = path.replace(/\/\.?$/, '').replace(/\/+$/, '');
  return { fd, contents, isDir, name: basename(trimmed) || '.' };
}

async function copyOut(args: CpArgs, inside: string, shown: string, other: CpSide, c: Ctx): Promise<void> {
  const src = openSource(c.rootFd, inside, shown);
  const view: IdView = (uid, gid) => (c.maps ? [toInside(c.maps.uid, uid), toInside(c.maps.gid, gid)] : [uid, gid]);
  const skip = (path: string[], why: string) => c.skip(`${shown.replace(/\/$/, '')}${path.length ? `/${path.join('/')}` : ''}`, why);
  try {
    const entries = walkTree(src.fd, { view, skip, contents: src.contents && src.isDir });
    if (other.kind === 'stream') {
      await writeTar(entries, process.stdout, src.contents ? '' : src.name, c.stats);
      return;
    }
    const hostPath = resolve((other as { path: string }).path);
    const to = place(c.hostRoot, hostPath + ((other as { path: string }).path.endsWith('/') ? '/' : ''), '', { isDir: src.isDir, contents: src.contents, name: src.name, stream: false });
    try {
      await writeTree(entries, {
        intoFd: to.intoFd,
        ...(to.topName !== undefined ? { topName: to.topName } : {}),
        display: to.shown,
        ...(args.archive ? { owner: (u: number, g: number) => [u, g] as [number, number] } : {}),
        archive: args.archive,
        skip,
      }, c.stats);
    } finally {
      closeSync(to.intoFd);
    }
  } finally {
    closeSync(src.fd);
  }
}

async function copyIn(args: CpArgs, inside: string, shown: string, other: CpSide, c: Ctx & { facts: TargetFacts; pid: number }): Promise<void> {
  let warnedUnmapped = false;
  // new files are the container's root's (mapped), or with -a the ids they had, as the
  // container sees them
  const owner = (uid: number, gid: number): [number, number] => {
    if (!args.archive) return [c.facts.rootUid, c.facts.rootGid];
    if (!c.maps) return [uid, gid];
    const u = toHost(c.maps.uid, uid);
    const g = toHost(c.maps.gid, gid);
    if (u === undefined || g === undefined) {
      if (!warnedUnmapped) warn(`uid ${uid} or gid ${gid} is not mapped in the container's user namespace: such files are its root's`);
      warnedUnmapped = true;
      return [c.facts.rootUid, c.facts.rootGid];
    }
    return [u, g];
  };
  let entries: AsyncIterable<Entry>;
  let srcInfo: { isDir: boolean; contents: boolean; name: string; stream: boolean };
  let srcFd = -1;
  if (other.kind === 'stream') {
    if (process.stdin.isTTY) throw new CrashcartError('crashcart cp - reads a tar stream from stdin, and stdin is a terminal', { hint: 'pipe a tar archive in: tar -c . | crashcart cp - web:/tmp' });
    entries = tarEntries(process.stdin, (n, why) => c.skip(`'${n}' of the tar stream`, why));
    srcInfo = { isDir: true, contents: true, name: '.', stream: true };
  } else {
    const hostPath = resolve((other as { path: string }).path);
    const src = openSource(c.hostRoot, hostPath + (/\/\.?$/.exec((other as { path: string }).path)?.[0] ?? ''), hostPath);
    srcFd = src.fd;
    entries = walkTree(src.fd, { view: (u, g) => [u, g], skip: (p, why) => c.skip([hostPath, ...p].join('/'), why), contents: src.contents && src.isDir });
    srcInfo = { isDir: src.isDir, contents: src.contents, name: src.name, stream: false };
  }
  try {
    const to = place(c.rootFd, inside, shown.slice(0, shown.length - inside.length), srcInfo);
    try {
      const display = to.shown;
      await writeTree(entries, { intoFd: to.intoFd, ...(to.topName !== undefined ? { topName: to.topName } : {}), display, owner, archive: args.archive, skip: (p, why) => c.skip(`${display}/${p.join('/')}`, why) }, c.stats);
    } catch (e) {
      if (e instanceof CopyWriteError && e.syscallCode === 'EROFS') throw readOnly(e, c.rootFd, c.pid, to.intoFd);
      if (e instanceof TarError) throw new CrashcartError(`cannot read the tar stream on stdin: ${e.message}`, { hint: 'pipe a tar archive in (tar -c, docker export, crashcart cp web:/path -)', cause: e });
      throw e;
    } finally {
      closeSync(to.intoFd);
    }
  } finally {
    if (srcFd >= 0) closeSync(srcFd);
  }
}

/** EROFS in words: which mount of the container is read-only, and where it can be written. */
function readOnly(e: CopyWriteError, rootFd: number, pid: number, intoFd: number): CrashcartError {
  let mounts: MountInfo[] = [];
  try {
    mounts = readMountInfo(pid);
  } catch { /* the container is gone: no names to give */ }
  const m = mountOf(intoFd, mounts);
  const places = writablePlaces(rootFd, mounts);
  const mount = m ? `${m.mountPoint} (${m.fsType}, read-only)` : 'a read-only mount';
  return new CrashcartError(`cannot write ${e.target}: it is on ${mount} in the container`, {
    hint: places.length ? `copy to a writable place there instead: ${places.join(', ')}` : 'the container has no writable place crashcart knows of (/tmp, /var/tmp, /dev/shm, /run)',
    cause: e,
  });
}
