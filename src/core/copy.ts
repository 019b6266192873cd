// The copying of `crashcart cp`: a source of entries (a directory tree walked through fds,
// or a tar stream) and a sink (a directory tree written through fds, or a tar stream).
//
// A container is hostile, and crashcart is host root: no path string is ever resolved twice
// and no symlink is ever followed below the place the copy starts from. The walk opens each
// name with one openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) step from the directory fd it
// came from (O_PATH, the symlink itself when it is one) and reads the very inode it found
// (reopened through /proc/self/fd); the writer resolves every parent the same way below the
// destination's fd, makes every new name with O_EXCL (a file, a symlink, a FIFO under a
// temporary name, then renamed over the old one: a symlink there is replaced, never
// followed). The place itself is resolved by the caller inside the container's root
// (openat2 RESOLVE_IN_ROOT), see cp.ts.
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fchmodSync, fstatSync, readSync, writeSync, type BigIntStats } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { CrashcartError, errnoCode } from './errors.js';
import { END_OF_ARCHIVE, encodeHeader, padding, readTar, type EntryType } from './tar.js';
import {
  fchown,
  linkAt,
  mkdirAt,
  mkfifoAt,
  openAt,
  readDir,
  readLink,
  renameAt,
  reopen,
  symlinkAt,
  unlinkAt,
  utimes,
  type Timespec,
} from '../native/index.js';

export interface Entry {
  /** path components below the copy's top; [] is the top itself */
  path: string[];
  type: EntryType;
  /** permission bits, 0o7777 */
  mode: number;
  /** as the container sees them (the ids a tar carries) */
  uid: number;
  gid: number;
  size: number;
  atime: Timespec;
  mtime: Timespec;
  /** symlink: its target; hardlink: the path (below the top) of the entry it links to */
  link?: string;
  devMajor?: number;
  devMinor?: number;
  /** file: its bytes, read once before the next entry is asked for */
  content?: () => AsyncIterable<Buffer>;
}

export interface CopyStats {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  skipped: number;
}

export const newStats = (): CopyStats => ({ files: 0, dirs: 0, symlinks: 0, bytes: 0, skipped: 0 });

const CHUNK = 1 << 20;

function typeOf(st: BigIntStats): EntryType | 'socket' {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  return 'socket';
}

const spec = (sec: bigint, ns: bigint): Timespec => [Number(sec), Number(ns % 1_000_000_000n)];
const ts = (ns: bigint): Timespec => spec(ns / 1_000_000_000n, ns);

/** Maps a host id to the id the container sees (its user namespace's map, inverted). */
export type IdView = (uid: number, gid: number) => [number, number];

export interface WalkOptions {
  /** host ids -> the ids entries carry */
  view: IdView;
  /** a name that could not be copied, and why: one warning line */
  skip: (path: string[], why: string) => void;
}

async function* readFd(fd: number): AsyncGenerator<Buffer> {
  try {
    const buf = Buffer.allocUnsafe(CHUNK);
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, null);
      if (n === 0) return;
      yield Buffer.from(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Walks the tree whose top is `topFd` (an O_PATH fd, not followed), pre-order. With
 * `contents`, the top is a directory whose children are the entries (the top itself is not
 * one). Hard links within the tree come as 'hardlink' entries after their first name.
 */
export async function* walkTree(topFd: number, o: WalkOptions & { contents?: boolean }): AsyncGenerator<Entry> {
  const seen = new Map<string, string>();
  async function* visit(fd: number, path: string[]): AsyncGenerator<Entry> {
    const st = fstatSync(fd, { bigint: true });
    const type = typeOf(st);
    if (type === 'socket') {
      o.skip(path, 'a socket is not copied');
      return;
    }
    const [uid, gid] = o.view(Number(st.uid), Number(st.gid));
    const base = { path, mode: Number(st.mode) & 0o7777, uid, gid, size: 0, atime: ts(st.atimeNs), mtime: ts(st.mtimeNs) };
    if (type === 'file' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = seen.get(key);
      if (first !== undefined) {
        yield { ...base, type: 'hardlink', link: first };
        return;
      }
      seen.set(key, path.join('/'));
    }
    if (type === 'file') {
      const size = Number(st.size);
      yield { ...base, type, size, content: () => readFd(reopen(fd, 'read')) };
    } else if (type === 'symlink') {
      yield { ...base, type, link: readLink(fd) };
    } else if (type === 'char' || type === 'block') {
      const rdev = Number(st.rdev);
      yield { ...base, type, devMajor: Math.floor(rdev / 256) & 0xfff, devMinor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00) };
    } else if (type === 'fifo') {
      yield { ...base, type };
    } else {
      if (path.length > 0 || !o.contents) yield { ...base, type };
      const dirFd = reopen(fd, 'dir');
      try {
        const names = readDir(dirFd).map((e) => e.name).sort();
        for (const name of names) {
          let child: number;
          try {
            child = openAt({ dirFd, path: name, kind: 'path' });
          } catch (e) {
            // gone, or replaced, since the directory was read
            o.skip([...path, name], `it changed while being copied (${errnoCode(e) ?? (e as Error).message})`);
            continue;
          }
          try {
            yield* visit(child, [...path, name]);
          } finally {
            closeSync(child);
          }
        }
      } finally {
        closeSync(dirFd);
      }
    }
  }
  yield* visit(topFd, []);
}

/** The members of a tar stream as entries; names are made safe (no '..', no leading '/'). */
export async function* tarEntries(stream: AsyncIterable<Buffer>, skip: (name: string, why: string) => void): AsyncGenerator<Entry> {
  for await (const m of readTar(stream, skip)) {
    const h = m.header;
    const path = safeComponents(h.name);
    if (path === undefined) {
      skip(h.name, "its name leads out of the destination ('..')");
      continue;
    }
    const mtime: Timespec = [Math.floor(h.mtime), Math.round((h.mtime % 1) * 1e9)];
    const atime: Timespec = h.atime === undefined ? mtime : [Math.floor(h.atime), Math.round((h.atime % 1) * 1e9)];
    const entry: Entry = { path, type: h.type, mode: h.mode, uid: h.uid, gid: h.gid, size: h.size, atime, mtime, devMajor: h.devMajor, devMinor: h.devMinor };
    if (h.type === 'symlink') entry.link = h.linkName;
    if (h.type === 'hardlink') {
      const target = safeComponents(h.linkName);
      if (target === undefined || target.length === 0) {
        skip(h.name, `its hard link target '${h.linkName}' is outside the archive`);
        continue;
      }
      entry.link = target.join('/');
    }
    if (h.type === 'file') entry.content = () => m.content();
    yield entry;
  }
}

/** 'a/./b/' -> ['a', 'b']; '/etc' -> ['etc']; anything with '..' -> undefined. */
export function safeComponents(name: string): string[] | undefined {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return parts.includes('..') ? undefined : parts;
}

/** Writes entries as a tar stream, each under `top` ('' for none: contents only). */
export async function writeTar(entries: AsyncIterable<Entry>, out: Writable, top: string, stats: CopyStats): Promise<void> {
  // a reader that went away (`| head`) is an error to report, not an uncaught exception
  let broken: Error | undefined;
  const onError = (e: Error) => (broken = e);
  out.on('error', onError);
  const check = () => {
    if (broken) throw new CrashcartError(`cannot write the tar stream to stdout: ${errnoCode(broken) ?? broken.message}`, { hint: 'its reader went away before the end', cause: broken });
  };
  const write = async (b: Buffer) => {
    check();
    if (!out.write(b)) await Promise.race([once(out, 'drain'), once(out, 'error')]).catch(onError);
    check();
  };
  for await (const e of entries) {
    const name = [...(top ? [top] : []), ...e.path].join('/') || '.';
    const linkName = e.type === 'hardlink' ? [...(top ? [top] : []), e.link!].join('/') : (e.link ?? '');
    await write(encodeHeader({
      name: e.type === 'dir' ? `${name}/` : name,
      type: e.type,
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: e.type === 'file' ? e.size : 0,
      mtime: e.mtime[0],
      linkName,
      devMajor: e.devMajor ?? 0,
      devMinor: e.devMinor ?? 0,
    }));
    count(stats, e);
    if (e.type !== 'file') continue;
    // the size is in the header already: a file that grew is cut, one that shrank is padded
    let left = e.size;
    for await (const chunk of e.content!()) {
      if (left === 0) continue;
      const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
      await write(part);
      left -= part.length;
    }
    if (left > 0) await write(Buffer.alloc(left));
    stats.bytes += e.size;
    await write(padding(e.size));
  }
  await write(END_OF_ARCHIVE);
  out.removeListener('error', onError);
}

function count(stats: CopyStats, e: Entry): void {
  if (e.type === 'dir') stats.dirs++;
  else if (e.type === 'symlink') stats.symlinks++;
  else stats.files++;
}

export interface SinkOptions {
  /** the directory the copy goes into (an fd resolved by the caller) */
  intoFd: number;
  /** the name the top entry takes in it; undefined: the top is intoFd itself (its contents
   *  are merged into it) */
  topName?: string;
  /** how paths show in messages: 'web:/tmp/x' */
  display: string;
  /** entry ids -> the host ids to own the new files; undefined: leave them crashcart's (root) */
  owner?: (uid: number, gid: number) => [number, number];
  /** -a: all mode bits and the entries' times (else permission bits, and now) */
  archive: boolean;
  skip: (path: string[], why: string) => void;
}

/** A write that failed, with the path as the user sees it: cp.ts explains EROFS. */
export class CopyWriteError extends CrashcartError {
  constructor(readonly target: string, readonly syscallCode: string | undefined, message: string, hint: string, cause: unknown) {
    super(message, { hint, cause });
  }
}

/** Writes entries below `intoFd`; returns what was written. */
export async function writeTree(entries: AsyncIterable<Entry>, o: SinkOptions, stats: CopyStats): Promise<void> {
  const dirTimes: Array<{ rel: string; atime: Timespec; mtime: Timespec }> = [];
  const shown = (rel: string[]) => {
    const below = o.topName === undefined ? rel : rel.slice(1);
    return below.length ? `${o.display.replace(/\/$/, '')}/${below.join('/')}` : o.display;
  };
  const fail = (rel: string[], e: unknown, what: string): never => {
    const code = errnoCode(e);
    const path = shown(rel);
    if (code === 'ELOOP' || code === 'EXDEV') {
      throw new CopyWriteError(path, code, `cannot ${what} ${path}: a symlink is in the way`, 'crashcart never follows a symlink below the destination; copy to a path without one', e);
    }
    throw new CopyWriteError(path, code, `cannot ${what} ${path}: ${(e as Error).message}`, 'check the destination', e);
  };

  let parentKey: string | undefined;
  let parentFd = -1;
  const closeParent = () => {
    if (parentFd >= 0 && parentFd !== o.intoFd) closeSync(parentFd);
    parentFd = -1;
    parentKey = undefined;
  };
  // The directory a new name goes into, resolved below intoFd (never through a symlink);
  // directories a tar stream did not list are made on the way.
  const parentOf = (rel: string[]): number => {
    const key = rel.join('/');
    if (key === parentKey) return parentFd;
    closeParent();
    if (rel.length === 0) {
      parentFd = o.intoFd;
    } else {
      try {
        parentFd = openAt({ dirFd: o.intoFd, path: key, kind: 'path' });
        const st = fstatSync(parentFd);
        if (!st.isDirectory()) {
          closeSync(parentFd);
          parentFd = -1;
          throw Object.assign(new Error(`${shown(rel)} is not a directory`), { code: st.isSymbolicLink() ? 'ELOOP' : 'ENOTDIR' });
        }
      } catch (e) {
        if (errnoCode(e) !== 'ENOENT') fail(rel, e, 'write into');
        const up = parentOf(rel.slice(0, -1));
        makeDir(up, rel, 0o755, 0, 0, undefined);
        closeParent();
        return parentOf(rel);
      }
    }
    parentKey = key;
    return parentFd;
  };
  const own = (fd: number, uid: number, gid: number) => {
    if (!o.owner) return;
    const [u, g] = o.owner(uid, gid);
    fchown({ fd, uid: u, gid: g });
  };
  const modeOf = (mode: number) => mode & (o.archive ? 0o7777 : 0o777);
  const makeDir = (up: number, rel: string[], mode: number, uid: number, gid: number, e: Entry | undefined) => {
    const name = rel[rel.length - 1]!;
    try {
      mkdirAt({ dirFd: up, name, mode: 0o700 });
    } catch (err) {
      fail(rel, err, 'create the directory');
    }
    const fd = openAt({ dirFd: up, path: name, kind: 'dir' });
    try {
      own(fd, uid, gid);
      fchmodSync(fd, modeOf(mode));
    } finally {
      closeSync(fd);
    }
    stats.dirs++;
    if (e && o.archive) dirTimes.push({ rel: rel.join('/'), atime: e.atime, mtime: e.mtime });
  };
  const existing = (up: number, name: string): BigIntStats | undefined => {
    try {
      const fd = openAt({ dirFd: up, path: name, kind: 'path' });
      try {
        return fstatSync(fd, { bigint: true });
      } finally {
        closeSync(fd);
      }
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
  };

  try {
    for await (const e of entries) {
      const rel = o.topName === undefined ? e.path : [o.topName, ...e.path];
      if (rel.length === 0) continue; // the destination directory itself: it exists
      if (e.type === 'char' || e.type === 'block') {
        o.skip(e.path, 'device nodes are not copied');
        stats.skipped++;
        continue;
      }
      const up = parentOf(rel.slice(0, -1));
      const name = rel[rel.length - 1]!;
      let there: BigIntStats | undefined;
      try {
        there = existing(up, name);
      } catch (err) {
        fail(rel, err, 'look at');
      }
      if (e.type === 'dir') {
        if (there?.isDirectory()) {
          if (o.archive) dirTimes.push({ rel: rel.join('/'), atime: e.atime, mtime: e.mtime });
          continue;
        }
        if (there) throw new CopyWriteError(shown(rel), undefined, `cannot overwrite non-directory ${shown(rel)} with a directory`, 'remove it first, or copy elsewhere', undefined);
        makeDir(up, rel, e.mode, e.uid, e.gid, e);
        continue;
      }
      if (there?.isDirectory()) {
        throw new CopyWriteError(shown(rel), undefined, `cannot overwrite directory ${shown(rel)} with non-directory`, 'remove it first, or copy elsewhere', undefined);
      }
      // a new name under a temporary one, then renamed over the old: never through it
      const temp = `.crashcart-cp-${randomBytes(6).toString('hex')}`;
      let made = false;
      try {
        if (e.type === 'file') {
          let fd: number;
          try {
            fd = openAt({ dirFd: up, path: temp, kind: 'create', mode: 0o600 });
          } catch (err) {
            fail(rel, err, 'create');
          }
          made = true;
          try {
            for await (const chunk of e.content!()) {
              for (let off = 0; off < chunk.length;) off += writeSync(fd!, chunk, off);
              stats.bytes += chunk.length;
            }
            own(fd!, e.uid, e.gid);
            fchmodSync(fd!, modeOf(e.mode));
            if (o.archive) utimes({ dirFd: fd!, atime: e.atime, mtime: e.mtime });
          } finally {
            closeSync(fd!);
          }
        } else {
          try {
            if (e.type === 'symlink') symlinkAt({ dirFd: up, name: temp, target: e.link! });
            else if (e.type === 'fifo') mkfifoAt({ dirFd: up, name: temp, mode: 0o600 });
            else {
              const from = openAt({ dirFd: o.intoFd, path: (o.topName === undefined ? [e.link!] : [o.topName, e.link!]).join('/'), kind: 'path' });
              try {
                linkAt({ fd: from, dirFd: up, name: temp });
              } finally {
                closeSync(from);
              }
            }
          } catch (err) {
            fail(rel, err, 'create');
          }
          made = true;
          if (e.type !== 'hardlink') {
            const fd = openAt({ dirFd: up, path: temp, kind: 'path' });
            try {
              own(fd, e.uid, e.gid);
              // fchmod refuses O_PATH fds; chmod through /proc/self/fd reaches this very inode
              if (e.type === 'fifo') chmodSync(`/proc/self/fd/${fd}`, modeOf(e.mode));
            } finally {
              closeSync(fd);
            }
            if (o.archive) utimes({ dirFd: up, name: temp, atime: e.atime, mtime: e.mtime });
          }
        }
        try {
          renameAt({ dirFd: up, from: temp, to: name, noReplace: false });
        } catch (err) {
          fail(rel, err, 'replace');
        }
        made = false;
        count(stats, e);
      } finally {
        if (made) {
          try {
            unlinkAt({ dirFd: up, name: temp, dir: false });
          } catch { /* already gone */ }
        }
      }
    }
    // directories' times last, deepest first: writing into them changed them
    for (const d of dirTimes.reverse()) {
      const fd = openAt({ dirFd: o.intoFd, path: d.rel, kind: 'dir' });
      try {
        utimes({ dirFd: fd, atime: d.atime, mtime: d.mtime });
      } finally {
        closeSync(fd);
      }
    }
  } finally {
    closeParent();
  }
}
