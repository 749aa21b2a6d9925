// A small ELF64/ELF32 little-endian reader that reads only what is asked for, with positional
// reads on a file descriptor: a 200 MB binary costs a few kilobytes to open. Everything that
// is read is checked against the file size first, and malformed input throws ElfError.

import { closeSync, fstatSync, readSync } from 'node:fs';
import { openUntrusted } from '../untrusted-file.js';

export class ElfError extends Error {
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'ElfError';
  }
}

/**
 * The path no longer opens the file asked for (ElfFile.open with an identity): it is gone, or
 * its name now stands for another file. Nothing was read from what it names now.
 */
export class FileGoneError extends ElfError {
  constructor(path: string, message: string) {
    super(path, message);
    this.name = 'FileGoneError';
  }
}

export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_NOTE = 7;
export const SHT_NOBITS = 8;
export const SHT_DYNSYM = 11;
export const SHF_COMPRESSED = 0x800;

export const PT_LOAD = 1;
export const PT_NOTE = 4;
export const PF_X = 1;

export const ET_EXEC = 2;
export const ET_DYN = 3;

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
}

export interface ElfSegment {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

/** Bytes of a GNU build id at most (sha256 is 32; lld's --build-id=0x<hex> could be any length). */
export const MAX_BUILD_ID = 64;
/** Bytes of a Go build id at most (four base64 hashes and slashes: 83 in practice). */
export const MAX_GO_BUILD_ID = 1024;

const MAX_SECTIONS = 65535;
const MAX_SEGMENTS = 4096;
/**
 * Section names are cut here. Every name this code looks for is short; without a bound, 65535
 * section headers naming one megabyte of a string table without a zero made 64 GB of names
 * (a 2 MB file aborted the process).
 */
const MAX_SECTION_NAME = 256;
/** Bytes of the section name table read at most: names that start past them are ''. */
const MAX_SHSTRTAB = 16 << 20;
/**
 * Header entries are 56 or 64 bytes (32 or 40 in ELF32); the size is the file's to say, and
 * 4096 program headers of 65535 bytes each are a 268 MB read (65535 section headers: 4 GB).
 */
const MAX_HEADER_ENTRY = 256;

/** Device, inode, size and modification time: whether a path still names the file it named. */
export function fileIdentity(st: { dev: number; ino: number; size: number; mtimeMs: number }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
}

/**
 * An open ELF file. Call close() when done (or use ElfFile.withFile). Addresses and offsets are
 * JS numbers: user-space virtual addresses and file sizes fit in 53 bits.
 */
export class ElfFile {
  readonly is64: boolean;
  readonly type: number;
  readonly machine: number;
  readonly entry: number;
  readonly sections: ElfSection[];
  readonly segments: ElfSegment[];
  readonly size: number;
  /** Device, inode, size and modification time: tells whether a path still names this file. */
  readonly identity: string;
  private fd: number;
  private buildIdCache: string | null | undefined;

  private constructor(readonly path: string, fd: number) {
    this.fd = fd;
    const st = fstatSync(fd);
    this.size = st.size;
    this.identity = fileIdentity(st);
    const ident = this.read(0, 64 > this.size ? this.size : 64);
    if (ident.length < 16 || ident[0] !== 0x7f || ident[1] !== 0x45 || ident[2] !== 0x4c || ident[3] !== 0x46) {
      throw new ElfError(path, 'not an ELF file (bad magic)');
    }
    const cls = ident[4];
    if (cls !== 1 && cls !== 2) throw new ElfError(path, `unsupported ELF class ${cls}`);
    if (ident[5] !== 1) throw new ElfError(path, 'big-endian ELF files are not supported');
    this.is64 = cls === 2;
    const hdrSize = this.is64 ? 64 : 52;
    if (ident.length < hdrSize) throw new ElfError(path, 'truncated ELF header');
    const h = ident;
    this.type = h.readUInt16LE(16);
    this.machine = h.readUInt16LE(18);
    let phoff: number, shoff: number, phentsize: number, phnum: number, shentsize: number, shnum: number, shstrndx: number;
    if (this.is64) {
      this.entry = num(h.readBigUInt64LE(24));
      phoff = num(h.readBigUInt64LE(32));
      shoff = num(h.readBigUInt64LE(40));
      phentsize = h.readUInt16LE(54);
      phnum = h.readUInt16LE(56);
      shentsize = h.readUInt16LE(58);
      shnum = h.readUInt16LE(60);
      shstrndx = h.readUInt16LE(62);
    } else {
      this.entry = h.readUInt32LE(24);
      phoff = h.readUInt32LE(28);
      shoff = h.readUInt32LE(32);
      phentsize = h.readUInt16LE(42);
      phnum = h.readUInt16LE(44);
      shentsize = h.readUInt16LE(46);
      shnum = h.readUInt16LE(48);
      shstrndx = h.readUInt16LE(50);
    }
    this.segments = this.readSegments(phoff, phentsize, phnum);
    this.sections = this.readSections(shoff, shentsize, shnum, shstrndx);
  }

  /**
   * Opens `path`; throws ElfError for anything that is not a readable ELF file. Only a regular
   * file is opened (a FIFO or a device put where a binary was never blocks or is touched; see
   * untrusted-file.ts); with `identity`, only the file that had it (fileIdentity), and nothing
   * is read from another: FileGoneError when the path does not open that file.
   */
  static open(path: string, identity?: string): ElfFile {
    let fd: number;
    try {
      const opened = openUntrusted(path);
      fd = opened.fd;
      if (identity !== undefined && fileIdentity(opened.stats) !== identity) {
        closeSync(fd);
        throw new FileGoneError(path, 'no longer the file that was read');
      }
    } catch (e) {
      if (e instanceof ElfError) throw e;
      const message = `cannot open: ${(e as Error).message}`;
      throw identity === undefined ? new ElfError(path, message) : new FileGoneError(path, message);
    }
    try {
      return new ElfFile(path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Reads the ELF file open on `fd`, which it then owns (close() closes it), named `path`. */
  static fromDescriptor(fd: number, path: string): ElfFile {
    try {
      return new ElfFile(path, fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  static withFile<T>(path: string, fn: (elf: ElfFile) => T, identity?: string): T {
    const elf = ElfFile.open(path, identity);
    try {
      return fn(elf);
    } finally {
      elf.close();
    }
  }

  close(): void {
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }

  /**
   * Reads `length` bytes at file offset `offset`; throws if that lies outside the file. With
   * `into`, the bytes land at its start and a view of them is returned: loops that scan a big
   * section chunk by chunk reuse one buffer instead of leaving megabytes of garbage behind.
   */
  read(offset: number, length: number, into?: Buffer): Buffer {
    if (this.fd < 0) throw new ElfError(this.path, 'file is closed');
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new ElfError(this.path, `read of ${length} bytes at offset ${offset} is outside the file (size ${this.size})`);
    }
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, length - done, offset + done);
      if (n <= 0) throw new ElfError(this.path, `short read at offset ${offset + done}`);
      done += n;
    }
    return buf;
  }

  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** The bytes of a section (empty for SHT_NOBITS). Compressed sections throw. */
  sectionData(s: ElfSection | string): Buffer {
    const sec = typeof s === 'string' ? this.section(s) : s;
    if (!sec) throw new ElfError(this.path, `no section ${String(s)}`);
    if (sec.type === SHT_NOBITS) return Buffer.alloc(0);
    if (sec.flags & SHF_COMPRESSED) throw new ElfError(this.path, `section ${sec.name} is compressed (not supported)`);
    return this.read(sec.offset, sec.size);
  }

  /** Executable PT_LOAD segments. */
  get textSegments(): ElfSegment[] {
    return this.segments.filter((p) => p.type === PT_LOAD && (p.flags & PF_X) !== 0);
  }

  /**
   * Maps a file offset (from /proc/PID/maps: mapping.offset + addr - mapping.start) to the ELF
   * virtual address used by symbol tables and unwind tables.
   */
  fileOffsetToVaddr(off: number): number | undefined {
    for (const p of this.segments) {
      if (p.type === PT_LOAD && off >= p.offset && off < p.offset + p.filesz) return off - p.offset + p.vaddr;
    }
    return undefined;
  }

  vaddrToFileOffset(vaddr: number): number | undefined {
    for (const p of this.segments) {
      if (p.type === PT_LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz) return vaddr - p.vaddr + p.offset;
    }
    return undefined;
  }

  /**
   * The GNU build id as lower-case hex, or '' when the file carries none. Ids are 8 to 32 bytes
   * (xxhash, md5, sha1, sha256); one longer than MAX_BUILD_ID counts as none: it is a cache key
   * and a profile attribute, and a cut one would name another file.
   */
  get buildId(): string {
    if (this.buildIdCache === undefined) this.buildIdCache = this.findNote('GNU', 3, MAX_BUILD_ID)?.toString('hex') ?? null;
    return this.buildIdCache ?? '';
  }

  /** Go's build id (note "Go", type 4), or '' (also when longer than MAX_GO_BUILD_ID). */
  get goBuildId(): string {
    return this.findNote('Go', 4, MAX_GO_BUILD_ID)?.toString('latin1') ?? '';
  }

  /**
   * The descriptor of the first note with this owner and type, from note sections or PT_NOTE;
   * notes whose descriptor is longer than `maxDesc` are passed over.
   */
  findNote(owner: string, type: number, maxDesc = Infinity): Buffer | undefined {
    let areas: Array<[number, number]> = [];
    for (const s of this.sections) if (s.type === SHT_NOTE) areas.push([s.offset, s.size]);
    if (areas.length === 0) for (const p of this.segments) if (p.type === PT_NOTE) areas.push([p.offset, p.filesz]);
    areas = withinBudget(areas, (a) => Math.min(a[1], 1 << 20), this.size);
    for (const [off, size] of areas) {
      if (size <= 0 || size > 1 << 20) continue;
      let data: Buffer;
      try {
        data = this.read(off, size);
      } catch {
        continue;
      }
      let p = 0;
      while (p + 12 <= data.length) {
        const namesz = data.readUInt32LE(p);
        const descsz = data.readUInt32LE(p + 4);
        const ntype = data.readUInt32LE(p + 8);
        const nameOff = p + 12;
        const descOff = nameOff + align4(namesz);
        const next = descOff + align4(descsz);
        if (descOff + descsz > data.length || namesz > data.length) break;
        // The owner is NUL-terminated and may be NUL-padded: Go writes "Go\0\0" (namesz 4).
        if (ntype === type && descsz <= maxDesc && namesz <= align4(owner.length + 1)) {
          const name = data.toString('latin1', nameOff, nameOff + namesz).replace(/\0+$/, '');
          if (name === owner) return Buffer.from(data.subarray(descOff, descOff + descsz));
        }
        p = next;
      }
    }
    return undefined;
  }

  private readSegments(phoff: number, phentsize: number, phnum: number): ElfSegment[] {
    const out: ElfSegment[] = [];
    if (phnum === 0 || phoff === 0) return out;
    if (phnum > MAX_SEGMENTS) throw new ElfError(this.path, `too many program headers (${phnum})`);
    const want = this.is64 ? 56 : 32;
    if (phentsize < want || phentsize > MAX_HEADER_ENTRY) throw new ElfError(this.path, `bad program header size ${phentsize}`);
    const buf = this.read(phoff, phentsize * phnum);
    for (let i = 0; i < phnum; i++) {
      const o = i * phentsize;
      if (this.is64) {
        out.push({
          type: buf.readUInt32LE(o),
          flags: buf.readUInt32LE(o + 4),
          offset: num(buf.readBigUInt64LE(o + 8)),
          vaddr: num(buf.readBigUInt64LE(o + 16)),
          filesz: num(buf.readBigUInt64LE(o + 32)),
          memsz: num(buf.readBigUInt64LE(o + 40)),
          align: num(buf.readBigUInt64LE(o + 48)),
        });
      } else {
        out.push({
          type: buf.readUInt32LE(o),
          offset: buf.readUInt32LE(o + 4),
          vaddr: buf.readUInt32LE(o + 8),
          filesz: buf.readUInt32LE(o + 16),
          memsz: buf.readUInt32LE(o + 20),
          flags: buf.readUInt32LE(o + 24),
          align: buf.readUInt32LE(o + 28),
        });
      }
    }
    return out;
  }

  private readSections(shoff: number, shentsize: number, shnum: number, shstrndx: number): ElfSection[] {
    if (shoff === 0) return [];
    const want = this.is64 ? 64 : 40;
    if (shentsize < want || shentsize > MAX_HEADER_ENTRY) throw new ElfError(this.path, `bad section header size ${shentsize}`);
    if (shnum === 0) {
      // Extended numbering: the real count is in section 0's sh_size.
      const s0 = this.read(shoff, shentsize);
      shnum = this.is64 ? num(s0.readBigUInt64LE(32)) : s0.readUInt32LE(20);
    }
    if (shnum > MAX_SECTIONS) throw new ElfError(this.path, `too many sections (${shnum})`);
    const buf = this.read(shoff, shentsize * shnum);
    const raw: Array<ElfSection & { nameOff: number }> = [];
    for (let i = 0; i < shnum; i++) {
      const o = i * shentsize;
      if (this.is64) {
        raw.push({
          index: i,
          name: '',
          nameOff: buf.readUInt32LE(o),
          type: buf.readUInt32LE(o + 4),
          flags: num(buf.readBigUInt64LE(o + 8)),
          addr: num(buf.readBigUInt64LE(o + 16)),
          offset: num(buf.readBigUInt64LE(o + 24)),
          size: num(buf.readBigUInt64LE(o + 32)),
          link: buf.readUInt32LE(o + 40),
          info: buf.readUInt32LE(o + 44),
          entsize: num(buf.readBigUInt64LE(o + 56)),
        });
      } else {
        raw.push({
          index: i,
          name: '',
          nameOff: buf.readUInt32LE(o),
          type: buf.readUInt32LE(o + 4),
          flags: buf.readUInt32LE(o + 8),
          addr: buf.readUInt32LE(o + 12),
          offset: buf.readUInt32LE(o + 16),
          size: buf.readUInt32LE(o + 20),
          link: buf.readUInt32LE(o + 24),
          info: buf.readUInt32LE(o + 28),
          entsize: buf.readUInt32LE(o + 36),
        });
      }
    }
    if (shstrndx === 0xffff && raw.length > 0) shstrndx = raw[0].link;
    const strs = raw[shstrndx];
    if (strs && strs.type !== SHT_NOBITS && strs.offset + strs.size <= this.size) {
      const names = this.read(strs.offset, Math.min(strs.size, MAX_SHSTRTAB));
      for (const s of raw) s.name = cstring(names, s.nameOff, 'utf8', MAX_SECTION_NAME);
    }
    for (const s of raw) {
      if (s.type !== SHT_NOBITS && s.size > 0 && s.offset + s.size > this.size) {
        throw new ElfError(this.path, `section ${s.name || s.index} extends past the end of the file`);
      }
    }
    return raw.map(({ nameOff: _n, ...s }) => s);
  }
}

/**
 * The leading `areas` whose sizes add up to at most `budget` bytes (the file's size, for the
 * callers that scan areas of a file). Real segments, note sections and symbol tables do not
 * overlap, so they never add up to more than the file; a header table that names the same
 * megabytes 4096 times (program headers) or 65535 times (section headers) would make a scan
 * read the file that many times over: 1024 PT_LOAD headers over a 2 MB Go binary took 2.5 s
 * to find its build info, and over a 200 MB one would take minutes.
 */
export function withinBudget<T>(areas: readonly T[], size: (a: T) => number, budget: number): T[] {
  const out: T[] = [];
  let total = 0;
  for (const a of areas) {
    total += Math.max(0, size(a));
    if (total > budget) break;
    out.push(a);
  }
  return out;
}

/** A NUL-terminated string at `off` (to the end of the buffer when unterminated), of at most `max` bytes. */
export function cstring(buf: Buffer, off: number, encoding: BufferEncoding = 'utf8', max = Infinity): string {
  if (off < 0 || off >= buf.length) return '';
  const limit = Math.min(buf.length, off + max);
  let end = buf.subarray(off, limit).indexOf(0);
  end = end < 0 ? limit : off + end;
  return buf.toString(encoding, off, end);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function num(v: bigint): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return Number.MAX_SAFE_INTEGER;
  return Number(v);
}
