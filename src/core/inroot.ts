// Reading a target's files from the host without letting the target steer the read: the
// path is resolved by the kernel inside the target's root (see native/inroot.cc), the file
// must be a regular one, and only so much of it is read.
import { closeSync, fstatSync, readSync, type Stats } from 'node:fs';
import { errnoCode } from './errors.js';
import { openInRoot } from '../native/index.js';

/** More than any passwd or group file a container needs: a crafted huge one is cut off. */
const MAX_BYTES = 4 << 20;

/** The text of `path` inside the root `rootFd`, or undefined when it is missing or not a regular file. */
export function readInRoot(rootFd: number, path: string, maxBytes = MAX_BYTES): string | undefined {
  return readBytesInRoot(rootFd, path, maxBytes)?.toString('utf8');
}

/** The first `maxBytes` of `path` inside the root `rootFd`, or undefined as for readInRoot. */
export function readBytesInRoot(rootFd: number, path: string, maxBytes = MAX_BYTES): Buffer | undefined {
  let fd: number;
  try {
    fd = openInRoot({ rootFd, path, kind: 'read' });
  } catch (e) {
    if (['ENOENT', 'ENOTDIR', 'ELOOP', 'EXDEV', 'EACCES', 'ENXIO'].includes(errnoCode(e) ?? '')) return undefined;
    throw e;
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const buf = Buffer.alloc(maxBytes);
    let got = 0;
    while (got < maxBytes) {
      const n = readSync(fd, buf, got, maxBytes - got, null);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** Does `path` exist inside the root `rootFd` (resolved inside it)? */
export function existsInRoot(rootFd: number, path: string): boolean {
  try {
    closeSync(openInRoot({ rootFd, path, kind: 'path' }));
    return true;
  } catch {
    return false;
  }
}

/** What `path` inside the root `rootFd` is (resolved inside it), or undefined when it is not there. */
export function statInRoot(rootFd: number, path: string): Stats | undefined {
  let fd: number;
  try {
    fd = openInRoot({ rootFd, path, kind: 'path' });
  } catch {
    return undefined;
  }
  try {
    return fstatSync(fd);
  } finally {
    closeSync(fd);
  }
}
