// A minimal ELF64 little-endian writer for hand-made hostile files: sections with any name,
// type, flags and contents (or with header fields that lie about them), and optional program
// headers. Offsets are laid out in order; `shoff`, `shnum` and per-section overrides let a case
// say what the real linker would never write.

import { constants as zlibConstants, deflateRawSync } from 'node:zlib';

export interface SectionSpec {
  name: string;
  type: number;
  flags?: number;
  addr?: number;
  data?: Buffer;
  link?: number;
  info?: number;
  entsize?: number;
  /** Written into sh_size instead of data.length (a header that lies). */
  size?: number;
  /** Written into sh_name instead of the name's real offset. */
  nameOff?: number;
  /** Written into sh_offset: the bytes of the section with this index (in `sections`) instead of its own. */
  sameAs?: number;
}

export interface SegmentSpec {
  type: number;
  flags: number;
  /** Index of the section whose bytes the segment covers (offset and size follow it). */
  section?: number;
  offset?: number;
  vaddr: number;
  filesz?: number;
  memsz?: number;
}

export interface ElfSpec {
  type?: number;
  machine?: number;
  sections: SectionSpec[];
  segments?: SegmentSpec[];
  /** The section header string table's contents (default: the names, NUL-terminated). */
  shstrtab?: Buffer;
  /** Override e_shnum (e.g. 0 for extended numbering). */
  shnum?: number;
}

export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_NOTE = 7;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;
export const SHF_COMPRESSED = 0x800;

/** The file's bytes; section 0 (null) and .shstrtab (last) are added. */
export function buildElf(spec: ElfSpec): Buffer {
  const names: number[] = [];
  let strtab = Buffer.alloc(1);
  for (const s of spec.sections) {
    names.push(strtab.length);
    strtab = Buffer.concat([strtab, Buffer.from(s.name + '\0', 'latin1')]);
  }
  const shstrName = strtab.length;
  strtab = Buffer.concat([strtab, Buffer.from('.shstrtab\0', 'latin1')]);
  const shstr = spec.shstrtab ?? strtab;
  const phnum = spec.segments?.length ?? 0;
  let off = 64 + phnum * 56;
  const chunks: Buffer[] = [];
  const offsets: number[] = [];
  const align = (n: number) => (n + 7) & ~7;
  for (const s of spec.sections) {
    off = align(off);
    offsets.push(off);
    chunks.push(s.data ?? Buffer.alloc(0));
    off += (s.data ?? Buffer.alloc(0)).length;
  }
  off = align(off);
  const shstrOff = off;
  off += shstr.length;
  const shoff = align(off);
  const shnum = spec.sections.length + 2;
  const out = Buffer.alloc(shoff + shnum * 64);
  out.write('\x7fELF', 0, 'latin1');
  out[4] = 2;
  out[5] = 1;
  out[6] = 1;
  out.writeUInt16LE(spec.type ?? 3, 16);
  out.writeUInt16LE(spec.machine ?? 62, 18);
  out.writeUInt32LE(1, 20);
  out.writeBigUInt64LE(BigInt(phnum ? 64 : 0), 32);
  out.writeBigUInt64LE(BigInt(shoff), 40);
  out.writeUInt16LE(64, 52);
  out.writeUInt16LE(56, 54);
  out.writeUInt16LE(phnum, 56);
  out.writeUInt16LE(64, 58);
  out.writeUInt16LE(spec.shnum ?? shnum, 60);
  out.writeUInt16LE(shnum - 1, 62);
  spec.sections.forEach((s, i) => chunks[i]!.copy(out, offsets[i]!));
  shstr.copy(out, shstrOff);
  const shdr = (i: number, nameOff: number, type: number, flags: number, addr: number, offset: number, size: number, link = 0, info = 0, entsize = 0) => {
    const o = shoff + i * 64;
    out.writeUInt32LE(nameOff >>> 0, o);
    out.writeUInt32LE(type, o + 4);
    out.writeBigUInt64LE(BigInt(flags), o + 8);
    out.writeBigUInt64LE(BigInt(addr), o + 16);
    out.writeBigUInt64LE(BigInt(offset), o + 24);
    out.writeBigUInt64LE(BigInt(size), o + 32);
    out.writeUInt32LE(link, o + 40);
    out.writeUInt32LE(info, o + 44);
    out.writeBigUInt64LE(1n, o + 48);
    out.writeBigUInt64LE(BigInt(entsize), o + 56);
  };
  spec.sections.forEach((s, i) => {
    const from = s.sameAs ?? i;
    const size = s.size ?? (spec.sections[from]!.data ?? Buffer.alloc(0)).length;
    shdr(i + 1, s.nameOff ?? names[i]!, s.type, s.flags ?? 0, s.addr ?? 0, offsets[from]!, size, s.link, s.info, s.entsize);
  });
  shdr(shnum - 1, shstrName, SHT_STRTAB, 0, 0, shstrOff, shstr.length);
  (spec.segments ?? []).forEach((p, i) => {
    const o = 64 + i * 56;
    const secOff = p.section !== undefined ? offsets[p.section]! : (p.offset ?? 0);
    const secLen = p.section !== undefined ? (spec.sections[p.section]!.data ?? Buffer.alloc(0)).length : (p.filesz ?? 0);
    out.writeUInt32LE(p.type, o);
    out.writeUInt32LE(p.flags, o + 4);
    out.writeBigUInt64LE(BigInt(secOff), o + 8);
    out.writeBigUInt64LE(BigInt(p.vaddr), o + 16);
    out.writeBigUInt64LE(BigInt(p.vaddr), o + 24);
    out.writeBigUInt64LE(BigInt(p.filesz ?? secLen), o + 32);
    out.writeBigUInt64LE(BigInt(p.memsz ?? p.filesz ?? secLen), o + 40);
    out.writeBigUInt64LE(0x1000n, o + 48);
  });
  return out;
}

/** An Elf64_Chdr (ELFCOMPRESS_ZLIB unless told) for an SHF_COMPRESSED section. */
/**
 * A .symtab of `n` global functions (after the null entry), 16 bytes each at 0x1000 + i × 16
 * in section 1, each named at `nameOff(i)` of its string table (default 1: all one name).
 */
export function functionSymbols(n: number, nameOff: (i: number) => number = () => 1): Buffer {
  const syms = Buffer.alloc((n + 1) * 24);
  for (let i = 1; i <= n; i++) {
    const o = i * 24;
    syms.writeUInt32LE(nameOff(i), o);
    syms[o + 4] = 0x12; // STB_GLOBAL, STT_FUNC
    syms.writeUInt16LE(1, o + 6);
    syms.writeBigUInt64LE(BigInt(0x1000 + i * 16), o + 8);
    syms.writeBigUInt64LE(16n, o + 16);
  }
  return syms;
}

export function chdr(size: number, type = 1): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(type, 0);
  b.writeBigUInt64LE(BigInt(size), 8);
  b.writeBigUInt64LE(1n, 16);
  return b;
}

/**
 * A valid zlib stream of `mib` MiB of zeros in about a thousandth of that: each MiB is the same
 * fully flushed deflate block, so the stream is made without compressing anything big.
 */
export function zlibBomb(mib: number): Buffer {
  const block = deflateRawSync(Buffer.alloc(1 << 20), { finishFlush: zlibConstants.Z_FULL_FLUSH });
  const n = mib * (1 << 20);
  const adler = Buffer.alloc(4);
  adler.writeUInt32BE((((n % 65521) << 16) | 1) >>> 0); // Adler-32 of n zeros: a = 1, b = n
  return Buffer.concat([Buffer.from([0x78, 0x9c]), ...new Array<Buffer>(mib).fill(block), Buffer.from([0x03, 0x00]), adler]);
}

/** A .zdebug_ section's contents: "ZLIB", the size (big-endian u64), the stream. */
export function zdebug(size: number, stream: Buffer): Buffer {
  const h = Buffer.alloc(12);
  h.write('ZLIB', 0, 'latin1');
  h.writeBigUInt64BE(BigInt(size), 4);
  return Buffer.concat([h, stream]);
}
