// Writes and checks the ext3 image. The filesystem is made by mke2fs -d from a staging
// directory, so building never needs a mount or a loop device.
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { causeLine, imageError } from './errors.js';

export { checkExt3 } from './ext3-check.js';

export interface TreeSize {
  /** Files, directories and symlinks, the root included. */
  entries: number;
  /** 1 KiB blocks the contents need: file data, directory blocks, long symlink targets. */
  dataKiB: number;
  /** Every path below the root, '/'-rooted, sorted. */
  paths: string[];
}

// mke2fs copies names verbatim and the debugfs command file quotes them: keep them plain
// ('~' for Debian versions in library names: libisc-9.18.49-1~deb12u3-Debian.so).
const SAFE_NAME = /^[A-Za-z0-9_.+[\]~-]+$/;

export async function measureTree(root: string): Promise<TreeSize> {
  const size: TreeSize = { entries: 0, dataKiB: 0, paths: [] };
  const walk = async (abs: string, rel: string): Promise<void> => {
    const st = await lstat(abs);
    size.entries++;
    if (rel) size.paths.push(rel);
    if (st.isDirectory()) {
      const names = (await readdir(abs)).sort();
      // ext2 dirent: 8 bytes + name padded to 4, plus "." and ".."
      let bytes = 24;
      for (const name of names) {
        if (!SAFE_NAME.test(name)) throw imageError('EBUILD', `unsupported file name '${name}' in ${rel || '/'}`, { hint: 'names in the image may use letters, digits and _ . + [ ] ~ - only' });
        bytes += 8 + Math.ceil(name.length / 4) * 4;
        await walk(join(abs, name), `${rel}/${name}`);
      }
      size.dataKiB += Math.ceil(bytes / 1024) + 1; // +1: the htree index block
    } else if (st.isSymbolicLink()) {
      // targets under 60 bytes live in the inode itself
      if ((await readlink(abs)).length >= 60) size.dataKiB += 1;
    } else if (st.isFile()) {
      // mke2fs stores no block that is all zeros (ELF padding, hollowed data)
      size.dataKiB += await nonZeroKiB(abs);
    } else {
      throw imageError('EBUILD', `unsupported file type at ${rel}`, { hint: 'an image holds files, directories and symlinks only' });
    }
  };
  await walk(root, '');
  return size;
}

/** The 1 KiB blocks of a file that hold anything but zeros (what mke2fs -d writes of it). */
async function nonZeroKiB(path: string): Promise<number> {
  const buf = await readFile(path);
  const zero = Buffer.alloc(1024);
  let n = 0;
  for (let at = 0; at < buf.length; at += 1024) {
    const block = buf.subarray(at, at + 1024);
    if (!block.equals(zero.subarray(0, block.length))) n++;
  }
  return n;
}

/**
 * Inode and block counts for a tree: 10% + 32 spare inodes (mke2fs needs a few of its own,
 * and a tight count fails with "Could not allocate inode"); blocks for the data plus 2% for
 * indirect blocks, 256-byte inodes at 4 per block, and 1.5 MiB for the 1 MiB journal and the
 * group metadata.
 */
export function ext3Geometry(t: Pick<TreeSize, 'entries' | 'dataKiB'>): { inodes: number; blocks: number } {
  const inodes = t.entries + Math.ceil(t.entries / 10) + 32;
  const blocks = Math.ceil(t.dataKiB * 1.02 + inodes / 4 + 1536);
  return { inodes, blocks };
}

/** A stable UUID derived from `seed`, so identical inputs give identical superblocks. */
export function uuidFrom(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  h[6] = (h[6]! & 0x0f) | 0x40; // version 4 layout
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// A private mke2fs.conf: the host's /etc/mke2fs.conf must not change what we produce.
const MKE2FS_CONF = `[defaults]
	base_features = sparse_super,large_file,filetype,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 1024
	inode_size = 256
	inode_ratio = 4096
[fs_types]
	ext3 = {
		features = has_journal
	}
`;

export interface WriteExt3Options {
  /** Directory whose contents become the filesystem root. */
  tree: string;
  /** File to create; must not be used by anyone else (the caller renames it into place). */
  output: string;
  /** Scratch directory for mke2fs.conf and the debugfs script. */
  scratch: string;
  size: TreeSize;
  epoch: number;
  /** Seed for the filesystem UUID and directory hash seed. */
  seed: string;
  label?: string;
}

export async function writeExt3(o: WriteExt3Options): Promise<{ blocks: number; inodes: number }> {
  const { execa } = await import('execa'); // loaded here: an attach only checks images
  const { inodes, blocks } = ext3Geometry(o.size);
  const conf = join(o.scratch, 'mke2fs.conf');
  await writeFile(conf, MKE2FS_CONF);
  // E2FSPROGS_FAKE_TIME pins the superblock and mke2fs-made inode times
  const env = { LC_ALL: 'C', MKE2FS_CONFIG: conf, E2FSPROGS_FAKE_TIME: String(o.epoch) };
  const ext = [
    'root_owner=0:0',
    `hash_seed=${uuidFrom(`hash:${o.seed}`)}`,
    'no_copy_xattrs', // host labels (SELinux, capabilities) have no place in the toolkit
    'nodiscard',
  ].join(',');
  const args = [
    '-q', '-F', '-t', 'ext3', '-b', '1024', '-I', '256', '-N', String(inodes), '-m', '0',
    '-J', 'size=1', '-O', '^resize_inode', '-E', ext, '-U', uuidFrom(`uuid:${o.seed}`),
    '-L', o.label ?? 'crashcart', '-d', o.tree, o.output, String(blocks),
  ];
  try {
    await execa('mke2fs', args, { env, stdin: 'ignore' });
  } catch (err) {
    throw imageError('EBUILD', `mke2fs ${o.output} failed: ${causeLine(err)}`, { hint: 'check the free space there; run with -v for the whole output', cause: err });
  }

  // mke2fs -d copies ctime (which cannot be set on the staging files) and owners from the
  // staging tree; debugfs overwrites them on every inode so the image is reproducible and
  // root-owned even when built by another user.
  const script = join(o.scratch, 'debugfs.cmds');
  const lines: string[] = [];
  for (const p of ['/', '/lost+found', ...o.size.paths]) {
    for (const [field, value] of [['uid', '0'], ['gid', '0'], ['atime', `@${o.epoch}`], ['ctime', `@${o.epoch}`], ['mtime', `@${o.epoch}`]]) {
      lines.push(`set_inode_field "${p}" ${field} ${value}`);
    }
  }
  await writeFile(script, `${lines.join('\n')}\n`);
  let stderr: string;
  try {
    ({ stderr } = await execa('debugfs', ['-w', '-f', script, o.output], { env, stdin: 'ignore' }));
  } catch (err) {
    throw imageError('EBUILD', `debugfs ${o.output} failed: ${causeLine(err)}`, { hint: 'run with -v for the whole output', cause: err });
  }
  // debugfs exits 0 even when a command fails; its only expected stderr line is the banner
  const errors = stderr.split('\n').filter((l) => l.trim() && !/^debugfs \d/.test(l));
  if (errors.length) throw imageError('EBUILD', `debugfs ${o.output} failed: ${errors[0]}`, { hint: 'is e2fsprogs complete? crashcart doctor checks the build tools' });

  try {
    await execa('e2fsck', ['-f', '-n', o.output], { env: { LC_ALL: 'C' }, stdin: 'ignore' });
  } catch (err) {
    throw imageError('EBUILD', `e2fsck found errors in the new image ${o.output}: ${causeLine(err)}`, { hint: 'nothing was kept; run with -v for the whole output', cause: err });
  }
  return { blocks, inodes };
}
