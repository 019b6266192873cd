// A read-only reader of bbolt database files (the format libpod keeps its state in), enough
// to walk buckets and read values. Layout (go.etcd.io/bbolt): fixed-size pages, each with a
// 16-byte header (id u64, flags u16, count u16, overflow u32); pages 0 and 1 are metas (the
// valid one with the higher txid is current); buckets are B+trees of branch and leaf pages,
// small buckets are stored inline in their parent's leaf value.
//
// The file is read whole, without bolt's flock: a writer never overwrites the pages the
// current meta reaches (copy-on-write, then the meta), so a snapshot is consistent unless two
// commits land during the read. Such a torn read shows as a page whose id is wrong or a
// malformed element, and throws BoltError; the caller may read again.
import { readFileSync } from 'node:fs';

export class BoltError extends Error {}

const MAGIC = 0xed0cdaed;
const PAGE_HEADER = 16;
const ELEMENT = 16;
const BRANCH = 0x01;
const LEAF = 0x02;
const META = 0x04;
const BUCKET_LEAF = 0x01;

/** A bucket: its keys, each with a value or a nested bucket. */
export interface Bucket {
  get(key: string): Buffer | undefined;
  bucket(key: string): Bucket | undefined;
  /** keys of nested buckets */
  buckets(): string[];
  /** keys with plain values */
  keys(): string[];
}

interface Entry {
  key: string;
  value: Buffer;
  isBucket: boolean;
}

/** FNV-1a 64, the meta page checksum. */
function fnv64a(buf: Buffer): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of buf) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h;
}

interface Meta {
  pageSize: number;
  root: number;
  txid: bigint;
}

function readMeta(file: Buffer, offset: number): Meta | undefined {
  if (file.length < offset + PAGE_HEADER + 64) return undefined;
  const flags = file.readUInt16LE(offset + 8);
  const m = offset + PAGE_HEADER;
  if (!(flags & META) || file.readUInt32LE(m) !== MAGIC || file.readUInt32LE(m + 4) !== 2) return undefined;
  if (fnv64a(file.subarray(m, m + 56)) !== file.readBigUInt64LE(m + 56)) return undefined;
  return { pageSize: file.readUInt32LE(m + 8), root: Number(file.readBigUInt64LE(m + 16)), txid: file.readBigUInt64LE(m + 48) };
}

export class BoltFile {
  private readonly pageSize: number;
  readonly root: Bucket;

  constructor(private readonly file: Buffer, what = 'bolt file') {
    const first = readMeta(file, 0);
    // the second meta sits one page further; its size is in the first (or 4096 when torn)
    const second = readMeta(file, first?.pageSize ?? 4096);
    const metas = [first, second].filter((m): m is Meta => m !== undefined);
    if (metas.length === 0) throw new BoltError(`${what}: no valid meta page (not a bolt database, or torn)`);
    const meta = metas.reduce((a, b) => (b.txid > a.txid ? b : a));
    this.pageSize = meta.pageSize;
    this.root = this.bucketAt(meta.root, undefined);
  }

  static open(path: string): BoltFile {
    return new BoltFile(readFileSync(path), path);
  }

  /** The page at `id`, checked against its own header. */
  private page(id: number): Buffer {
    const off = id * this.pageSize;
    if (!Number.isSafeInteger(off) || off + PAGE_HEADER > this.file.length) throw new BoltError(`page ${id} is past the end of the file`);
    if (Number(this.file.readBigUInt64LE(off)) !== id) throw new BoltError(`page ${id} has another page's header (torn read)`);
    const overflow = this.file.readUInt32LE(off + 12);
    return this.file.subarray(off, Math.min(this.file.length, off + (overflow + 1) * this.pageSize));
  }

  /** Every leaf entry of the tree whose root is `page`, in key order. */
  private entries(page: Buffer, depth = 0): Entry[] {
    if (depth > 64) throw new BoltError('bucket tree too deep (corrupt)');
    const flags = page.readUInt16LE(8);
    const count = page.readUInt16LE(10);
    if (PAGE_HEADER + count * ELEMENT > page.length) throw new BoltError('page elements past its end (corrupt)');
    const out: Entry[] = [];
    for (let i = 0; i < count; i++) {
      const e = PAGE_HEADER + i * ELEMENT;
      if (flags & BRANCH) {
        out.push(...this.entries(this.page(Number(page.readBigUInt64LE(e + 8))), depth + 1));
      } else if (flags & LEAF) {
        const elFlags = page.readUInt32LE(e);
        const pos = e + page.readUInt32LE(e + 4);
        const ksize = page.readUInt32LE(e + 8);
        const vsize = page.readUInt32LE(e + 12);
        if (pos + ksize + vsize > page.length) throw new BoltError('leaf element past its page (corrupt)');
        out.push({
          key: page.toString('latin1', pos, pos + ksize),
          value: page.subarray(pos + ksize, pos + ksize + vsize),
          isBucket: (elFlags & BUCKET_LEAF) !== 0,
        });
      } else {
        throw new BoltError(`page of unexpected kind 0x${flags.toString(16)} in a bucket tree (corrupt)`);
      }
    }
    return out;
  }

  /** A bucket from its root page id, or (root 0) the inline page in `value`. */
  private bucketAt(root: number, value: Buffer | undefined): Bucket {
    const page = root === 0 && value ? value.subarray(16) : this.page(root);
    const map = new Map(this.entries(page).map((e) => [e.key, e]));
    return {
      get: (key) => {
        const e = map.get(key);
        return e && !e.isBucket ? e.value : undefined;
      },
      bucket: (key) => {
        const e = map.get(key);
        if (!e?.isBucket) return undefined;
        if (e.value.length < 16) throw new BoltError(`bucket ${key}: short header (corrupt)`);
        return this.bucketAt(Number(e.value.readBigUInt64LE(0)), e.value);
      },
      buckets: () => [...map.values()].filter((e) => e.isBucket).map((e) => e.key),
      keys: () => [...map.values()].filter((e) => !e.isBucket).map((e) => e.key),
    };
  }
}
