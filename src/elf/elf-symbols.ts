// Function symbols from .symtab and .dynsym as a sorted, deduplicated table. Big C++ binaries
// carry hundreds of thousands of symbols, so the table is kept in typed arrays and names are
// decoded (and demangled) only when a lookup hits them.

import { ElfError, ElfFile, SHT_DYNSYM, SHT_NOBITS, SHT_SYMTAB, type ElfSection } from './elf-file.js';
import { lastAtOrBelow } from '../sorted-search.js';

const STT_NOTYPE = 0;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const STB_LOCAL = 0;
const STB_GLOBAL = 1;
const STB_WEAK = 2;
const SHN_LORESERVE = 0xff00;
const SHF_EXECINSTR = 0x4;
/** Refuse absurd tables instead of allocating gigabytes for a corrupt header. */
const MAX_SYMBOLS = 20_000_000;

export interface SymbolHit {
  name: string;
  /** Address minus the symbol's start. */
  offset: number;
  /** Start address of the symbol (ELF virtual address). */
  start: number;
}

/** Candidate symbols in parallel typed arrays: objects per symbol cost more than the parse. */
class RawSymbols {
  n = 0;
  readonly addr: Float64Array;
  readonly size: Float64Array;
  /** Upper bound for zero-size symbols: the end of their section. */
  readonly secEnd: Float64Array;
  readonly rank: Uint8Array;
  readonly strtab: Uint8Array;
  readonly nameOff: Uint32Array;
  readonly nameLen: Uint32Array;
  readonly underscores: Uint8Array;

  constructor(capacity: number) {
    this.addr = new Float64Array(capacity);
    this.size = new Float64Array(capacity);
    this.secEnd = new Float64Array(capacity);
    this.rank = new Uint8Array(capacity);
    this.strtab = new Uint8Array(capacity);
    this.nameOff = new Uint32Array(capacity);
    this.nameLen = new Uint32Array(capacity);
    this.underscores = new Uint8Array(capacity);
  }
}

/**
 * A lookup table of function symbols. Build it with SymbolTable.fromElf (in a worker: reading a
 * big symbol table is the expensive part of symbolization).
 */
export class SymbolTable {
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  /** The kept symbols' names, back to back: the string tables themselves are not kept
   * (node's .strtab alone is 7.5 MB, most of it names of data and local symbols). */
  private readonly nameBytes: Buffer;
  private readonly nameOffs: Uint32Array;
  private readonly nameLens: Uint32Array;
  private readonly names: Array<string | undefined>;

  private constructor(
    strtabs: Buffer[],
    raw: RawSymbols,
    order: Uint32Array,
    private readonly demangle: (name: string) => string,
  ) {
    const n = order.length;
    this.starts = new Float64Array(n);
    this.ends = new Float64Array(n);
    this.nameOffs = new Uint32Array(n);
    this.nameLens = new Uint32Array(n);
    this.names = new Array<string | undefined>(n);
    let total = 0;
    for (let i = 0; i < n; i++) total += raw.nameLen[order[i]];
    this.nameBytes = Buffer.allocUnsafe(total);
    let at = 0;
    for (let i = 0; i < n; i++) {
      const k = order[i];
      const addr = raw.addr[k];
      this.starts[i] = addr;
      // Zero-size symbols (hand-written assembly, some linkers) reach up to the next symbol,
      // but never past their own section.
      const next = i + 1 < n ? raw.addr[order[i + 1]] : Infinity;
      this.ends[i] = raw.size[k] > 0 ? addr + raw.size[k] : Math.min(next, raw.secEnd[k]);
      const len = raw.nameLen[k];
      strtabs[raw.strtab[k]].copy(this.nameBytes, at, raw.nameOff[k], raw.nameOff[k] + len);
      this.nameOffs[i] = at;
      this.nameLens[i] = len;
      at += len;
    }
  }

  /** Number of distinct function symbols. */
  get length(): number {
    return this.starts.length;
  }

  /**
   * Reads .symtab and .dynsym of `elf` (either may be missing; both missing gives an empty
   * table). `demangle` is applied to names on lookup.
   */
  static fromElf(elf: ElfFile, demangle: (name: string) => string = (s) => s): SymbolTable {
    const tables = elf.sections.filter((sec) => (sec.type === SHT_SYMTAB || sec.type === SHT_DYNSYM) && sec.size > 0);
    const entsize = elf.is64 ? 24 : 16;
    let total = 0;
    for (const sec of tables) total += Math.floor(sec.size / (sec.entsize || entsize));
    if (total > MAX_SYMBOLS) throw new ElfError(elf.path, `too many symbols (${total})`);
    // Size the candidate store by a counting pass: in big binaries most symbols are data or
    // local labels (node: 78k functions of 185k symbols), and the store is the largest
    // allocation of a parse after the string table.
    let capacity = 0;
    for (const sec of tables) {
      forEachSymbol(elf, sec, (_nameOff, info, shndx, value) => {
        if (isFunctionCandidate(elf, info, shndx, value)) capacity++;
      });
    }
    const raw = new RawSymbols(capacity);
    const strtabs: Buffer[] = [];
    for (const sec of tables) {
      const strSec = elf.sections[sec.link];
      if (!strSec || strSec.type === SHT_NOBITS) continue;
      const strs = elf.sectionData(strSec);
      strtabs.push(strs);
      readSymbols(elf, sec, strtabs.length - 1, strs, raw);
    }
    return new SymbolTable(strtabs, raw, dedupe(raw), demangle);
  }

  /** A table without symbols (for files that could not be read). */
  static empty(): SymbolTable {
    return new SymbolTable([], new RawSymbols(0), new Uint32Array(0), (s) => s);
  }

  /** The function containing `vaddr`, or undefined. */
  lookup(vaddr: number): SymbolHit | undefined {
    const starts = this.starts;
    const found = lastAtOrBelow(starts, vaddr);
    if (found < 0 || vaddr >= this.ends[found]) return undefined;
    return { name: this.nameAt(found), offset: vaddr - starts[found], start: starts[found] };
  }

  private nameAt(i: number): string {
    let name = this.names[i];
    if (name === undefined) {
      const off = this.nameOffs[i];
      const raw = this.nameBytes.toString('utf8', off, off + this.nameLens[i]);
      try {
        name = this.demangle(raw);
      } catch {
        name = raw;
      }
      this.names[i] = name;
    }
    return name;
  }
}

/** Symbol entries are read this many at a time: a big .symtab is never held whole. */
const SYMBOLS_PER_READ = 4096;

type SymbolVisitor = (nameOff: number, info: number, shndx: number, value: number, size: number) => void;

/** Calls `fn` for every entry of a symbol table but the first (the null symbol). */
function forEachSymbol(elf: ElfFile, sec: ElfSection, fn: SymbolVisitor): void {
  const entsize = elf.is64 ? 24 : 16;
  if (sec.entsize !== 0 && sec.entsize < entsize) throw new ElfError(elf.path, `bad symbol entry size ${sec.entsize} in ${sec.name}`);
  const step = sec.entsize || entsize;
  const count = Math.floor(sec.size / step);
  if (count > MAX_SYMBOLS) throw new ElfError(elf.path, `${sec.name} has too many symbols (${count})`);
  for (let first = 0; first < count; first += SYMBOLS_PER_READ) {
    const n = Math.min(SYMBOLS_PER_READ, count - first);
    const data = elf.read(sec.offset + first * step, n * step);
    for (let j = first === 0 ? 1 : 0; j < n; j++) {
      const o = j * step;
      if (elf.is64) {
        // Two 32-bit halves: cheaper than BigInt and exact up to 2^53.
        fn(
          data.readUInt32LE(o),
          data[o + 4],
          data.readUInt16LE(o + 6),
          data.readUInt32LE(o + 8) + data.readUInt32LE(o + 12) * 0x1_0000_0000,
          data.readUInt32LE(o + 16) + data.readUInt32LE(o + 20) * 0x1_0000_0000,
        );
      } else {
        fn(data.readUInt32LE(o), data[o + 12], data.readUInt16LE(o + 14), data.readUInt32LE(o + 4), data.readUInt32LE(o + 8));
      }
    }
  }
}

/** Functions, ifuncs, and untyped symbols in executable sections; the rest is data. */
function isFunctionCandidate(elf: ElfFile, info: number, shndx: number, value: number): boolean {
  if (shndx === 0 || shndx >= SHN_LORESERVE || value === 0) return false;
  const target = elf.sections[shndx];
  if (!target) return false;
  const type = info & 0xf;
  if (type === STT_NOTYPE) return (target.flags & SHF_EXECINSTR) !== 0;
  return type === STT_FUNC || type === STT_GNU_IFUNC;
}

function readSymbols(elf: ElfFile, sec: ElfSection, strtab: number, strs: Buffer, out: RawSymbols): void {
  forEachSymbol(elf, sec, (nameOff, info, shndx, value, size) => {
    if (!isFunctionCandidate(elf, info, shndx, value)) return;
    if (nameOff === 0 || nameOff >= strs.length || out.n >= out.addr.length) return;
    let end = strs.indexOf(0, nameOff);
    if (end < 0) end = strs.length;
    const nameLen = end - nameOff;
    if (nameLen === 0) return;
    const c0 = strs[nameOff];
    // ARM/AArch64 mapping symbols ($x, $d) and assembler-local labels (.L…) are not functions.
    if (c0 === 0x24 /* $ */ || (c0 === 0x2e /* . */ && strs[nameOff + 1] === 0x4c /* L */)) return;
    const target = elf.sections[shndx];
    const k = out.n++;
    out.addr[k] = value;
    out.size[k] = size;
    out.secEnd[k] = target.addr + target.size;
    out.rank[k] = rankOf(info >> 4, info & 0xf);
    out.strtab[k] = strtab;
    out.nameOff[k] = nameOff;
    out.nameLen[k] = nameLen;
    out.underscores[k] = c0 !== 0x5f ? 0 : strs[nameOff + 1] !== 0x5f ? 1 : 2;
  });
}

/** Higher wins when several symbols share an address: global > weak > local, FUNC > NOTYPE. */
function rankOf(bind: number, type: number): number {
  const b = bind === STB_GLOBAL ? 3 : bind === STB_WEAK ? 2 : bind === STB_LOCAL ? 1 : 0;
  return b * 2 + (type === STT_NOTYPE ? 0 : 1);
}

/** Sorted indices of the symbols to keep: one per address, without labels inside functions. */
function dedupe(raw: RawSymbols): Uint32Array {
  const n = raw.n;
  const order = sortByAddress(raw);
  const keep = new Uint32Array(n);
  let kept = 0;
  let coverEnd = -1;
  for (let g = 0; g < n; ) {
    // One group of symbols at the same address: pick the best name, the largest size.
    const addr = raw.addr[order[g]];
    let best = order[g];
    let size = raw.size[best];
    let e = g + 1;
    for (; e < n && raw.addr[order[e]] === addr; e++) {
      const c = order[e];
      if (better(raw, c, best)) best = c;
      if (raw.size[c] > size) size = raw.size[c];
    }
    g = e;
    // A zero-size label inside a sized function is a local label of that function (glibc's
    // assembly has many); keeping it would steal the rest of the function.
    if (size === 0 && addr < coverEnd) continue;
    raw.size[best] = size;
    keep[kept++] = best;
    if (size > 0 && addr + size > coverEnd) coverEnd = addr + size;
  }
  return keep.slice(0, kept);
}

/**
 * Same address: best rank, then the larger size, then fewer leading underscores (perf's choice
 * too: `malloc` over `__libc_malloc`), then the .symtab entry (read first), then table order.
 */
function better(raw: RawSymbols, a: number, b: number): boolean {
  if (raw.rank[a] !== raw.rank[b]) return raw.rank[a] > raw.rank[b];
  if (raw.size[a] !== raw.size[b]) return raw.size[a] > raw.size[b];
  if (raw.underscores[a] !== raw.underscores[b]) return raw.underscores[a] < raw.underscores[b];
  if (raw.strtab[a] !== raw.strtab[b]) return raw.strtab[a] < raw.strtab[b];
  return a < b;
}

/** Indices ordered by address (stable), with a native numeric sort when the keys allow it. */
function sortByAddress(raw: RawSymbols): Uint32Array {
  const n = raw.n;
  const order = new Uint32Array(n);
  if (n === 0) return order;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const a = raw.addr[i];
    if (a < min) min = a;
    if (a > max) max = a;
  }
  // (addr - min) * 2^k + index stays an exact double when the span times the count fits 2^53.
  const shift = 2 ** Math.ceil(Math.log2(n + 1));
  if ((max - min + 1) * shift < Number.MAX_SAFE_INTEGER) {
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = (raw.addr[i] - min) * shift + i;
    keys.sort();
    for (let i = 0; i < n; i++) order[i] = keys[i] % shift;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  return order.sort((x, y) => raw.addr[x] - raw.addr[y] || x - y);
}
