// Just enough of ELF to relocate a toolkit: whether a file is ELF, its interpreter
// (PT_INTERP) and its dynamic entries (DT_NEEDED, DT_RPATH, DT_RUNPATH). 64-bit
// little-endian only, which is what the x86_64 toolkit is made of.
import { imageError } from './errors.js';

export interface ElfInfo {
  /** e_type: 2 ET_EXEC, 3 ET_DYN (shared objects and PIE executables). */
  type: number;
  /** PT_INTERP: the program interpreter; only dynamic executables have one. */
  interp?: string;
  needed: string[];
  rpath?: string;
  runpath?: string;
  soname?: string;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

/** True when `head` starts with the ELF magic. */
export function isElf(head: Buffer): boolean {
  return head.length >= 4 && head[0] === 0x7f && head.toString('latin1', 1, 4) === 'ELF';
}

/**
 * Parses the headers of the ELF file in `buf`; undefined when it is not ELF. Throws for ELF
 * it cannot read (32-bit, big-endian, truncated): those have no place in the toolkit.
 */
export function readElf(buf: Buffer, name = 'file'): ElfInfo | undefined {
  if (!isElf(buf)) return undefined;
  const bad = (why: string) => imageError('EBUILD', `cannot read ELF headers of ${name}: ${why}`, { hint: 'the toolkit is 64-bit x86 ELF only: leave the file out' });
  if (buf[4] !== 2 || buf[5] !== 1) throw bad('not a 64-bit little-endian ELF file');
  if (buf.length < 64) throw bad('truncated ELF header');
  const type = buf.readUInt16LE(16);
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  if (phoff + phnum * phentsize > buf.length) throw bad('program headers outside the file');

  const info: ElfInfo = { type, needed: [] };
  const loads: { vaddr: number; offset: number; filesz: number }[] = [];
  let dynamic: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const ptype = buf.readUInt32LE(ph);
    const offset = Number(buf.readBigUInt64LE(ph + 8));
    const vaddr = Number(buf.readBigUInt64LE(ph + 16));
    const filesz = Number(buf.readBigUInt64LE(ph + 32));
    if (offset + filesz > buf.length) throw bad(`segment ${i} outside the file`);
    if (ptype === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (ptype === PT_DYNAMIC) dynamic = { offset, size: filesz };
    else if (ptype === PT_INTERP) info.interp = cString(buf, offset, offset + filesz);
  }
  if (!dynamic) return info;

  // Dynamic entries name strings by offset into DT_STRTAB, which is a virtual address.
  const entries: [number, number][] = [];
  for (let p = dynamic.offset; p + 16 <= dynamic.offset + dynamic.size; p += 16) {
    const tag = Number(buf.readBigInt64LE(p));
    if (tag === DT_NULL) break;
    entries.push([tag, Number(buf.readBigUInt64LE(p + 8))]);
  }
  const strtabAddr = entries.find(([tag]) => tag === DT_STRTAB)?.[1];
  if (strtabAddr === undefined) throw bad('dynamic section without DT_STRTAB');
  const seg = loads.find((l) => strtabAddr >= l.vaddr && strtabAddr < l.vaddr + l.filesz);
  if (!seg) throw bad('DT_STRTAB outside the loaded segments');
  const strtab = seg.offset + (strtabAddr - seg.vaddr);
  const str = (off: number) => cString(buf, strtab + off, buf.length);
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(str(val));
    else if (tag === DT_RPATH) info.rpath = str(val);
    else if (tag === DT_RUNPATH) info.runpath = str(val);
    else if (tag === DT_SONAME) info.soname = str(val);
  }
  return info;
}

function cString(buf: Buffer, start: number, end: number): string {
  const nul = buf.indexOf(0, start);
  return buf.toString('latin1', start, nul === -1 || nul > end ? end : nul);
}

const SHT_DYNSYM = 11;

/**
 * Where the bytes of the first defined dynamic symbol matching `name` lie in the file: its offset and
 * size. Undefined when the file has no such symbol, or it has no file bytes (.bss).
 */
export function symbolExtent(buf: Buffer, name: RegExp): { offset: number; size: number } | undefined {
  if (!isElf(buf) || buf[4] !== 2 || buf[5] !== 1 || buf.length < 64) return undefined;
  const shoff = Number(buf.readBigUInt64LE(40));
  const shentsize = buf.readUInt16LE(58);
  const shnum = buf.readUInt16LE(60);
  if (shoff === 0 || shoff + shnum * shentsize > buf.length) return undefined;
  const section = (i: number) => {
    const sh = shoff + i * shentsize;
    return { type: buf.readUInt32LE(sh + 4), offset: Number(buf.readBigUInt64LE(sh + 24)), size: Number(buf.readBigUInt64LE(sh + 32)), link: buf.readUInt32LE(sh + 40) };
  };
  for (let i = 0; i < shnum; i++) {
    const sym = section(i);
    if (sym.type !== SHT_DYNSYM || sym.link >= shnum) continue;
    const strtab = section(sym.link);
    for (let p = sym.offset; p + 24 <= sym.offset + sym.size && p + 24 <= buf.length; p += 24) {
      const shndx = buf.readUInt16LE(p + 6);
      if (shndx === 0 || !name.test(cString(buf, strtab.offset + buf.readUInt32LE(p), strtab.offset + strtab.size))) continue;
      const value = Number(buf.readBigUInt64LE(p + 8));
      const size = Number(buf.readBigUInt64LE(p + 16));
      // a virtual address: the segment that loads it says where it is in the file
      const phoff = Number(buf.readBigUInt64LE(32));
      const phentsize = buf.readUInt16LE(54);
      for (let j = 0; j < buf.readUInt16LE(56); j++) {
        const ph = phoff + j * phentsize;
        if (buf.readUInt32LE(ph) !== PT_LOAD) continue;
        const offset = Number(buf.readBigUInt64LE(ph + 8));
        const vaddr = Number(buf.readBigUInt64LE(ph + 16));
        const filesz = Number(buf.readBigUInt64LE(ph + 32));
        if (value >= vaddr && value + size <= vaddr + filesz) return { offset: offset + (value - vaddr), size };
      }
      return undefined;
    }
  }
  return undefined;
}
