// The check every attach makes of the image it is about to mount: the superblock read with
// the synchronous fs (node:fs/promises would load streams and readline on every attach).
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { imageError } from './errors.js';

const SUPERBLOCK_OFFSET = 1024;
const MIN_IMAGE_BYTES = 2048;
const EXT_MAGIC = 0xef53;
// Superblock fields (little endian): s_blocks_count_lo, s_log_block_size, s_magic,
// s_feature_compat, s_feature_incompat.
const SB = { blocks: 4, logBlockSize: 24, magic: 56, compat: 92, incompat: 96 } as const;
const COMPAT_HAS_JOURNAL = 0x4;
const INCOMPAT_RECOVER = 0x4;
// What the kernel's ext3 mounts (fs/ext4: EXT3_FEATURE_INCOMPAT_SUPP, recovery aside).
const INCOMPAT_EXT3 = 0x2 | 0x10; // filetype, meta_bg
const INCOMPAT_NAMES: [number, string][] = [
  [0x1, 'compression'], [0x8, 'journal_dev'], [0x40, 'extents'], [0x80, '64bit'], [0x100, 'mmp'],
  [0x200, 'flex_bg'], [0x400, 'ea_inode'], [0x1000, 'dirdata'], [0x2000, 'metadata_csum_seed'],
  [0x4000, 'large_dir'], [0x8000, 'inline_data'], [0x10000, 'encrypt'], [0x20000, 'casefold'],
];
const BAD_IMAGE_HINT = "give an image made by 'crashcart image build' or pulled with 'crashcart image pull'";

/**
 * Throws EBADIMAGE unless `path` is an ext3 filesystem the kernel can mount read-only as
 * ext3, and whole: a truncated or foreign file would otherwise fail only at mount, with EINVAL.
 */
export async function checkExt3(path: string): Promise<void> {
  const bad = (why: string) => imageError('EBADIMAGE', `image ${path} ${why}`, { hint: BAD_IMAGE_HINT });
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < MIN_IMAGE_BYTES) throw bad(`is not an ext2/3/4 filesystem (only ${size} bytes)`);
    const sb = Buffer.alloc(1024);
    readSync(fd, sb, 0, sb.length, SUPERBLOCK_OFFSET);
    if (sb.readUInt16LE(SB.magic) !== EXT_MAGIC) throw bad('is not an ext2/3/4 filesystem (no superblock magic)');
    const incompat = sb.readUInt32LE(SB.incompat);
    const foreign = INCOMPAT_NAMES.filter(([bit]) => incompat & bit).map(([, name]) => name);
    const unknown = incompat & ~(INCOMPAT_EXT3 | INCOMPAT_RECOVER) & ~INCOMPAT_NAMES.reduce((a, [bit]) => a | bit, 0);
    if (foreign.length || unknown) {
      throw bad(`is not mountable as ext3: it uses ext4 features (${[...foreign, ...(unknown ? [`0x${unknown.toString(16)}`] : [])].join(', ')})`);
    }
    if (!(sb.readUInt32LE(SB.compat) & COMPAT_HAS_JOURNAL)) throw bad('is not mountable as ext3: it has no journal (an ext2 filesystem)');
    if (incompat & INCOMPAT_RECOVER) throw bad('is not mountable read-only: its journal needs recovery (it was not unmounted cleanly)');
    const logBlock = sb.readUInt32LE(SB.logBlockSize);
    const need = logBlock > 6 ? Infinity : sb.readUInt32LE(SB.blocks) * (1024 << logBlock);
    if (size < need) throw bad(`is truncated (${size} bytes; its superblock says ${need})`);
  } finally {
    closeSync(fd);
  }
}
