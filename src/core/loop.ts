// One loop device per image, shared by every container it is grafted into. Devices are
// attached read-only with autoclear: the kernel frees one when its last mount and last open
// fd are gone, so nothing here ever needs to detach on the normal path.
import { closeSync, constants as fsConstants, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, existsSync, statSync } from 'node:fs';
import { CrashcartError, errnoCode } from './errors.js';
import { loopAttach, loopStatus, type LoopDevice } from '../native/index.js';

export interface HeldLoop extends LoopDevice {
  /** true when this call bound the device, false when it reused one */
  attached: boolean;
}

interface ImageId {
  dev: number;
  ino: number;
}

/** The file behind loop device N, as sysfs says ('… (deleted)' once removed); undefined if unbound. */
export function loopBackingFile(index: number): string | undefined {
  try {
    return readFileSync(`/sys/block/loop${index}/loop/backing_file`, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Bound loop devices, from sysfs (no device is opened to list them). */
export function boundLoopDevices(): number[] {
  let names: string[];
  try {
    names = readdirSync('/sys/block');
  } catch {
    return [];
  }
  return names
    .filter((n) => /^loop[0-9]+$/.test(n) && existsSync(`/sys/block/${n}/loop/backing_file`))
    .map((n) => Number(n.slice(4)));
}

/**
 * Opens /dev/loopN if it backs this image (whole file, read-only), else undefined. Status is
 * read *after* opening, so a device that autoclear freed (or another image took) in between
 * is never taken for ours; the open fd then holds it.
 */
function openIfBacks(index: number, image: ImageId): number | undefined {
  let fd: number;
  try {
    fd = openSync(`/dev/loop${index}`, fsConstants.O_RDONLY);
  } catch {
    return undefined;
  }
  try {
    const st = loopStatus(fd);
    if (st.backingDevice === image.dev && st.backingInode === image.ino && st.readOnly && st.offset === 0 && st.sizeLimit === 0) {
      return fd;
    }
  } catch {
    // not bound any more (ENXIO)
  }
  closeSync(fd);
  return undefined;
}

/** Opens the loop device that already backs this image, if there is one. */
export function findLoop(image: ImageId): HeldLoop | undefined {
  for (const index of boundLoopDevices()) {
    const fd = openIfBacks(index, image);
    if (fd === undefined) continue;
    const path = `/dev/loop${index}`;
    const rdev = statSync(path).rdev;
    return { fd, index, path, major: devMajor(rdev), minor: devMinor(rdev), attached: false };
  }
  return undefined;
}

/** The loop device for this image: the shared one if it exists, else a new one. */
export function acquireLoop(imagePath: string): HeldLoop {
  let imageFd: number;
  try {
    imageFd = openSync(imagePath, fsConstants.O_RDONLY);
  } catch (e) {
    throw new CrashcartError(`cannot open image ${imagePath}: ${errnoCode(e)}`, { cause: e });
  }
  try {
    // Identified by the open file, so an image replaced (renamed over) meanwhile can't mix.
    const st = fstatSync(imageFd);
    const found = findLoop({ dev: st.dev, ino: st.ino });
    if (found) return found;
    return { ...loopAttach(imageFd, true), attached: true };
  } catch (e) {
    throw new CrashcartError(`cannot attach ${imagePath} to a loop device: ${(e as Error).message}`, {
      hint: errnoCode(e) === 'ENOENT' ? 'load the loop module (modprobe loop)' : 'check that loop devices work here (losetup -f)',
      cause: e,
    });
  } finally {
    closeSync(imageFd); // the loop device keeps its own reference to the file
  }
}

/** Lets go of our hold; with autoclear the device stays only while mounted somewhere. */
export function releaseLoop(loop: HeldLoop): void {
  closeSync(loop.fd);
}

// glibc's dev_t encoding (what fs.Stats.rdev holds), for the small numbers block devices use.
export const devMajor = (dev: number) => (dev >>> 8) & 0xfff;
export const devMinor = (dev: number) => (dev & 0xff) | ((dev >>> 12) & 0xfff00);

/** Which loop device a mount's major:minor is, if it is one (asks sysfs, which knows). */
export function loopIndexOf(major: number, minor: number): number | undefined {
  try {
    const m = /\/loop([0-9]+)$/.exec(readlinkSync(`/sys/dev/block/${major}:${minor}`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Does loop device N back this image? */
export function loopBacks(index: number, image: ImageId): boolean {
  const fd = openIfBacks(index, image);
  if (fd === undefined) return false;
  closeSync(fd);
  return true;
}
