// The tar streams of `crashcart cp -` (docker cp's format): ustar headers, with pax records
// for what ustar cannot hold (long names and link targets, large sizes and ids), read and
// written as streams. The reader also takes GNU long names, base-256 numbers and old
// (pre-POSIX) headers; it never acts on a name itself (see copy.ts for where names go).

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo' | 'char' | 'block';

export interface TarHeader {
  /** the member's name as the archive has it ('etc/passwd', 'dir/') */
  name: string;
  type: EntryType;
  /** permission bits, 0o7777 */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** seconds since the epoch (pax mtime keeps a fraction) */
  mtime: number;
  atime?: number;
  /** symlink: its target; hardlink: the name of the member it links to */
  linkName: string;
  devMajor: number;
  devMinor: number;
}

const BLOCK = 512;

const TYPE_FLAGS: Record<EntryType, string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };

// ---- writing ----

function octal(buf: Buffer, at: number, width: number, value: number): boolean {
  const text = Math.floor(value).toString(8);
  if (text.length > width - 1 || value < 0) return false;
  buf.write(text.padStart(width - 1, '0'), at, width - 1, 'ascii');
  buf[at + width - 1] = 0;
  return true;
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** Splits a long name into ustar's prefix and name fields, or undefined when it cannot be. */
function splitUstar(name: string): [string, string] | undefined {
  const bytes = Buffer.from(name);
  if (bytes.length <= 100) return ['', name];
  for (let i = name.length - 1; i > 0; i--) {
    if (name[i] !== '/') continue;
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest.length > 0) return [prefix, rest];
  }
  return undefined;
}

function rawHeader(h: TarHeader, typeFlag: string, name: string, linkName: string, pax: string[]): Buffer {
  const b = Buffer.alloc(BLOCK);
  const split = splitUstar(name);
  if (!split) pax.push(paxRecord('path', name));
  const [prefix, short] = split ?? ['', Buffer.from(name).subarray(0, 100).toString('latin1')];
  b.write(short, 0, 100, split ? 'utf8' : 'latin1');
  if (!octal(b, 100, 8, h.mode & 0o7777)) octal(b, 100, 8, 0);
  if (!octal(b, 108, 8, h.uid)) {
    pax.push(paxRecord('uid', String(h.uid)));
    octal(b, 108, 8, 0);
  }
  if (!octal(b, 116, 8, h.gid)) {
    pax.push(paxRecord('gid', String(h.gid)));
    octal(b, 116, 8, 0);
  }
  if (!octal(b, 124, 12, h.size)) {
    pax.push(paxRecord('size', String(h.size)));
    octal(b, 124, 12, 0);
  }
  if (!octal(b, 136, 12, Math.max(0, h.mtime))) octal(b, 136, 12, 0);
  if (!Number.isInteger(h.mtime)) pax.push(paxRecord('mtime', h.mtime.toFixed(9).replace(/0+$/, '')));
  b[156] = typeFlag.charCodeAt(0);
  if (Buffer.byteLength(linkName) > 100) pax.push(paxRecord('linkpath', linkName));
  else b.write(linkName, 157, 100, 'utf8');
  b.write('ustar\u000000', 257, 8, 'latin1');
  octal(b, 329, 8, h.devMajor);
  octal(b, 337, 8, h.devMinor);
  b.write(prefix, 345, 155, 'utf8');
  return b;
}

function checksum(b: Buffer): void {
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(`${sum.toString(8).padStart(6, '0')}\u0000 `, 148, 8, 'latin1');
}

/** The header block(s) of one member: a pax 'x' member first when ustar cannot hold it. */
export function encodeHeader(h: TarHeader): Buffer {
  const pax: string[] = [];
  const main = rawHeader(h, TYPE_FLAGS[h.type], h.name, h.linkName, pax);
  checksum(main);
  if (pax.length === 0) return main;
  const body = Buffer.from(pax.join(''));
  const xh = rawHeader({ ...h, size: body.length, mode: 0o644, uid: 0, gid: 0, mtime: Math.floor(h.mtime), devMajor: 0, devMinor: 0 }, 'x', 'PaxHeaders/entry', '', []);
  checksum(xh);
  return Buffer.concat([xh, body, padding(body.length), main]);
}

/** Zero bytes up to the next block. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The two zero blocks that end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

// ---- reading ----

function readNumber(b: Buffer, at: number, width: number): number {
  if (b[at]! & 0x80) {
    // GNU base-256: big-endian, the top bit of the first byte set
    let v = b[at]! & 0x7f;
    for (let i = 1; i < width; i++) v = v * 256 + b[at + i]!;
    return v;
  }
  const text = b.subarray(at, at + width).toString('latin1').replace(/\0.*$/s, '').trim();
  return text === '' ? 0 : parseInt(text, 8);
}

function readString(b: Buffer, at: number, width: number): string {
  const raw = b.subarray(at, at + width);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? width : nul).toString('utf8');
}

function validChecksum(b: Buffer): boolean {
  const stored = readNumber(b, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : b[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

function parsePax(body: string): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 0;
  const bytes = Buffer.from(body, 'utf8');
  while (at < bytes.length) {
    const space = bytes.indexOf(0x20, at);
    if (space < 0) break;
    const len = Number(bytes.subarray(at, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0) break;
    const record = bytes.subarray(space + 1, at + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    at += len;
  }
  return out;
}

export class TarError extends Error {}

/** Reads exact byte counts from a stream of chunks. */
class ByteReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Buffer>) {}

  /** Up to n bytes (fewer only at the end of the stream). */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else if (r.value.length > 0) {
        this.chunks.push(r.value);
        this.buffered += r.value.length;
      }
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    this.chunks = rest.length ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }

  /** The next chunk of at most n bytes, as it comes (for file contents). */
  async some(n: number): Promise<Buffer> {
    if (this.buffered === 0 && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else {
        this.chunks.push(r.value);
        this.buffered += r.value.length;
      }
    }
    return this.read(Math.min(n, Math.max(this.buffered, 1)));
  }
}

export interface TarMember {
  header: TarHeader;
  /** the content, read once, before the next member is asked for */
  content(): AsyncIterable<Buffer>;
}

/**
 * The members of a tar stream, in order. A member's content not read is skipped. Members of
 * types crashcart does not copy (sockets, GNU sparse or volume headers) are reported through
 * `skip` and left out.
 */
export async function* readTar(source: AsyncIterable<Buffer>, skip: (name: string, why: string) => void): AsyncGenerator<TarMember> {
  const r = new ByteReader(source[Symbol.asyncIterator]());
  let globalPax: Record<string, string> = {};
  let pax: Record<string, string> = {};
  let longName: string | undefined;
  let longLink: string | undefined;
  let sawAny = false;
  for (;;) {
    const block = await r.read(BLOCK);
    if (block.length === 0 && !sawAny) throw new TarError('the tar stream is empty');
    if (block.length < BLOCK) throw new TarError('the tar stream ends in the middle of a header');
    if (block.every((x) => x === 0)) return; // end of archive (a second zero block may follow)
    if (!validChecksum(block)) throw new TarError('a tar header has a bad checksum: this is not a tar stream, or it is damaged');
    sawAny = true;
    const flag = String.fromCharCode(block[156]!);
    const size = readNumber(block, 124, 12);
    const ustar = block.subarray(257, 262).toString('latin1') === 'ustar';
    const readBody = async (): Promise<Buffer> => {
      const body = await r.read(size + padding(size).length);
      if (body.length < size) throw new TarError('the tar stream ends in the middle of a member');
      return body.subarray(0, size);
    };
    if (flag === 'x' || flag === 'g') {
      const records = parsePax((await readBody()).toString('utf8'));
      if (flag === 'g') globalPax = { ...globalPax, ...records };
      else pax = { ...pax, ...records };
      continue;
    }
    if (flag === 'L' || flag === 'K') {
      const text = (await readBody()).toString('utf8').replace(/\0+$/, '');
      if (flag === 'L') longName = text;
      else longLink = text;
      continue;
    }
    const p = { ...globalPax, ...pax };
    pax = {};
    const prefix = ustar ? readString(block, 345, 155) : '';
    let name = p.path ?? longName ?? (prefix ? `${prefix}/${readString(block, 0, 100)}` : readString(block, 0, 100));
    const linkName = p.linkpath ?? longLink ?? readString(block, 157, 100);
    longName = longLink = undefined;
    const memberSize = p.size !== undefined ? Number(p.size) : size;
    let type: EntryType | undefined;
    switch (flag) {
      case '0': case '\0': case '7': type = name.endsWith('/') ? 'dir' : 'file'; break;
      case '1': type = 'hardlink'; break;
      case '2': type = 'symlink'; break;
      case '3': type = 'char'; break;
      case '4': type = 'block'; break;
      case '5': type = 'dir'; break;
      case '6': type = 'fifo'; break;
      default: type = undefined;
    }
    // header-only types carry no data whatever their size field says (as Go's reader does)
    const dataSize = type === 'file' || type === undefined ? memberSize : 0;
    let remaining = dataSize;
    let pad = padding(dataSize).length;
    const skipRest = async () => {
      for (let left = remaining + pad; left > 0;) {
        const got = await r.read(Math.min(left, 1 << 20));
        if (got.length === 0) throw new TarError('the tar stream ends in the middle of a member');
        left -= got.length;
      }
      remaining = pad = 0;
    };
    if (type === undefined) {
      skip(name, `tar member type '${flag}' is not copied`);
      await skipRest();
      continue;
    }
    if (name.endsWith('/') && name.length > 1) name = name.replace(/\/+$/, '');
    const header: TarHeader = {
      name,
      type,
      mode: readNumber(block, 100, 8) & 0o7777,
      uid: p.uid !== undefined ? Number(p.uid) : readNumber(block, 108, 8),
      gid: p.gid !== undefined ? Number(p.gid) : readNumber(block, 116, 8),
      size: type === 'file' ? memberSize : 0,
      mtime: p.mtime !== undefined ? Number(p.mtime) : readNumber(block, 136, 12),
      ...(p.atime !== undefined ? { atime: Number(p.atime) } : {}),
      linkName,
      devMajor: readNumber(block, 329, 8),
      devMinor: readNumber(block, 337, 8),
    };
    let consumed = false;
    yield {
      header,
      content: async function* () {
        if (consumed) throw new Error(`tar member ${name}: content read twice`);
        consumed = true;
        while (remaining > 0) {
          const got = await r.some(Math.min(remaining, 1 << 20));
          if (got.length === 0) throw new TarError('the tar stream ends in the middle of a member');
          remaining -= got.length;
          yield got;
        }
      },
    };
    await skipRest();
  }
}
