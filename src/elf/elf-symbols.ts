// Function symbols from .symtab and .dynsym as a sorted, deduplicated table. Big C++ binaries
// carry hundreds of thousands of symbols, so the table is kept in typed arrays and the string
// tables are never loaded: names are read from the file (and demangled) only when a lookup hits
// them. node's .strtab alone is 7.5 MB, most of it names of data and local symbols.

import { ElfError, ElfFile, SHT_DYNSYM, SHT_NOBITS, SHT_SYMTAB, withinBudget, type ElfSection } from './elf-file.js';
import { lastAtOrBelow } from '../sorted-search.js';
import { boundName, cutName } from './names.js';

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
/**
 * Bytes of one name read at most: the demangler's input limit (longer names are not demangled)
 * and one to tell a cut. What is shown is bounded again, after demangling (names.ts).
 */
const MAX_RAW_NAME = (16 << 10) + 1;
/** Characters of names kept by one table; past this the cache starts over. */
const MAX_CACHED_NAME_CHARS = 4 << 20;

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
  /** Sizes over 4 GiB (only in corrupt files) are cut to 4 GiB. */
  readonly size: Uint32Array;
  /** The symbol's section: its end bounds zero-size symbols. */
  readonly section: Uint16Array;
  readonly rank: Uint8Array;
  readonly strtab: Uint8Array;
  readonly nameOff: Uint32Array;
  readonly underscores: Uint8Array;

  constructor(
    capacity: number,
    /** End address of each section of the file. */
    readonly sectionEnds: Float64Array = new Float64Array(0),
  ) {
    this.addr = new Float64Array(capacity);
    this.size = new Uint32Array(capacity);
    this.section = new Uint16Array(capacity);
    this.rank = new Uint8Array(capacity);
    this.strtab = new Uint8Array(capacity);
    this.nameOff = new Uint32Array(capacity);
    this.underscores = new Uint8Array(capacity);
  }
}

/**
 * Where the kept symbols' names live: the string tables of the file the table was read from.
 * The file is opened when a name is needed and held until release(); a path that no longer
 * names the same file (a recycled /proc/self/fd number, a replaced binary) gives no names
 * rather than names from another file.
 */
class NameSource {
  private readonly scratch = Buffer.allocUnsafe(256);
  private elf: ElfFile | undefined;
  /** `path` could not be opened, or names another file: not tried again until release(). */
  private failed = false;

  constructor(
    private path: string,
    private readonly identity: string,
    private readonly strtabs: ElfSection[],
  ) {}

  /** Reads names through `path` from now on (another name for the same file). */
  moveTo(path: string): void {
    if (path === this.path) return;
    this.release();
    this.path = path;
  }

  /** The name at `off` of string table `strtab`; `more` when it goes on past MAX_RAW_NAME bytes. */
  read(strtab: number, off: number): { text: string; more: boolean } | undefined {
    const sec = this.strtabs[strtab];
    if (!sec || off >= sec.size) return undefined;
    const elf = this.open();
    if (!elf) return undefined;
    let want = Math.min(this.scratch.length, sec.size - off);
    let data = elf.read(sec.offset + off, want, this.scratch);
    let end = data.indexOf(0);
    while (end < 0 && want < sec.size - off && want < MAX_RAW_NAME) {
      want = Math.min(want * 8, sec.size - off, MAX_RAW_NAME);
      data = elf.read(sec.offset + off, want);
      end = data.indexOf(0);
    }
    const more = end < 0 && want < sec.size - off;
    return { text: data.toString('utf8', 0, end < 0 ? data.length : end), more };
  }

  release(): void {
    this.elf?.close();
    this.elf = undefined;
    this.failed = false;
  }

  private open(): ElfFile | undefined {
    if (this.elf) return this.elf;
    if (this.strtabs.length === 0 || this.failed) return undefined;
    try {
      this.elf = ElfFile.open(this.path, this.identity);
    } catch {
      this.failed = true;
      return undefined;
    }
    return this.elf;
  }
}

/** Tables dropped without release() still give their file back. */
const unreleased = new FinalizationRegistry<NameSource>((src) => src.release());

/**
 * A lookup table of function symbols. Build it with SymbolTable.fromElf (in a worker: reading a
 * big symbol table is the expensive part of symbolization). Names are read from the file on
 * lookup, through a handle of the table's own; release() gives it back between batches.
 */
export class SymbolTable {
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  private readonly nameOffs: Uint32Array;
  private readonly nameTabs: Uint8Array;
  private readonly names: Array<string | undefined>;
  private nameChars = 0;

  private constructor(
    private readonly source: NameSource,
    raw: RawSymbols,
    order: Uint32Array,
    private readonly demangle: (name: string) => string,
  ) {
    const n = order.length;
    this.starts = new Float64Array(n);
    this.ends = new Float64Array(n);
    this.nameOffs = new Uint32Array(n);
    this.nameTabs = new Uint8Array(n);
    this.names = new Array<string | undefined>(n);
    for (let i = 0; i < n; i++) {
      const k = order[i];
      const addr = raw.addr[k];
      this.starts[i] = addr;
      // Zero-size symbols (hand-written assembly, some linkers) reach up to the next symbol,
      // but never past their own section.
      const next = i + 1 < n ? raw.addr[order[i + 1]] : Infinity;
      this.ends[i] = raw.size[k] > 0 ? addr + raw.size[k] : Math.min(next, raw.sectionEnds[raw.section[k]]);
      this.nameOffs[i] = raw.nameOff[k];
      this.nameTabs[i] = raw.strtab[k];
    }
    if (n > 0) unreleased.register(this, source, this);
  }

  /** Number of distinct function symbols. */
  get length(): number {
    return this.starts.length;
  }

  /**
   * Reads .symtab and .dynsym of `elf` (either may be missing; both missing gives an empty
   * table). `demangle` is applied to names on lookup. Names are read through `elf.path` when
   * looked up, so `elf` itself may be closed as soon as this returns.
   */
  static fromElf(elf: ElfFile, demangle: (name: string) => string = (s) => s): SymbolTable {
    // Real tables (.symtab, .dynsym) do not overlap: together they are never larger than the file.
    const tables = withinBudget(
      elf.sections.filter((sec) => (sec.type === SHT_SYMTAB || sec.type === SHT_DYNSYM) && sec.size > 0),
      (sec) => sec.size,
      elf.size,
    );
    const entsize = elf.is64 ? 24 : 16;
    let total = 0;
    for (const sec of tables) total += Math.floor(sec.size / (sec.entsize || entsize));
    if (total > MAX_SYMBOLS) throw new ElfError(elf.path, `too many symbols (${total})`);
    // Size the candidate store by a counting pass: in big binaries most symbols are data or
    // local labels (node: 153k candidates of 185k symbols), and the store is the largest
    // allocation of a parse.
    let capacity = 0;
    for (const sec of tables) {
      forEachSymbol(elf, sec, (_nameOff, info, shndx, value) => {
        if (isFunctionCandidate(elf, info, shndx, value)) capacity++;
      });
    }
    const raw = new RawSymbols(capacity, Float64Array.from(elf.sections, (sec) => sec.addr + sec.size));
    const strtabs: ElfSection[] = [];
    for (const sec of tables) {
      const strSec = elf.sections[sec.link];
      if (!strSec || strSec.type === SHT_NOBITS || strSec.offset + strSec.size > elf.size) continue;
      strtabs.push(strSec);
      readSymbols(elf, sec, strtabs.length - 1, strSec.size, raw);
    }
    readNameStarts(elf, strtabs, raw);
    const order = dedupe(raw);
    if (order.length === 0) return SymbolTable.empty();
    return new SymbolTable(new NameSource(elf.path, elf.identity, strtabs), raw, order, demangle);
  }

  /** A table without symbols (for files that could not be read). */
  static empty(): SymbolTable {
    return new SymbolTable(new NameSource('', '', []), new RawSymbols(0), new Uint32Array(0), (s) => s);
  }

  /** The function containing `vaddr`, or undefined. */
  lookup(vaddr: number): SymbolHit | undefined {
    const starts = this.starts;
    const found = lastAtOrBelow(starts, vaddr);
    if (found < 0 || vaddr >= this.ends[found]) return undefined;
    const name = this.nameAt(found);
    return name === undefined ? undefined : { name, offset: vaddr - starts[found], start: starts[found] };
  }

  /** Closes the file names are read from; the next lookup that needs a name opens it again. */
  release(): void {
    this.source.release();
  }

  /** Reads names through `path` from now on: the same file under another name. */
  moveTo(path: string): void {
    this.source.moveTo(path);
  }

  /**
   * The name of symbol i, demangled and bounded (names.ts): a string table without zeros gives
   * cut, marked names, and a name cut before demangling is shown as it is (it cannot demangle).
   */
  private nameAt(i: number): string | undefined {
    let name = this.names[i];
    if (name === undefined) {
      let raw: { text: string; more: boolean } | undefined;
      try {
        raw = this.source.read(this.nameTabs[i], this.nameOffs[i]);
      } catch {
        raw = undefined;
      }
      if (raw === undefined) return undefined;
      if (raw.more) name = cutName(raw.text);
      else {
        try {
          name = boundName(this.demangle(raw.text));
        } catch {
          name = boundName(raw.text);
        }
      }
      if (this.nameChars + name.length > MAX_CACHED_NAME_CHARS) {
        this.names.fill(undefined);
        this.nameChars = 0;
      }
      this.names[i] = name;
      this.nameChars += name.length;
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
  const chunk = Buffer.allocUnsafe(Math.min(SYMBOLS_PER_READ, count) * step);
  for (let first = 0; first < count; first += SYMBOLS_PER_READ) {
    const n = Math.min(SYMBOLS_PER_READ, count - first);
    const data = elf.read(sec.offset + first * step, n * step, chunk);
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

function readSymbols(elf: ElfFile, sec: ElfSection, strtab: number, strtabSize: number, out: RawSymbols): void {
  forEachSymbol(elf, sec, (nameOff, info, shndx, value, size) => {
    if (!isFunctionCandidate(elf, info, shndx, value)) return;
    if (nameOff === 0 || nameOff >= strtabSize || out.n >= out.addr.length) return;
    const k = out.n++;
    out.addr[k] = value;
    out.size[k] = Math.min(size, 0xffff_ffff);
    out.section[k] = shndx;
    out.rank[k] = rankOf(info >> 4, info & 0xf);
    out.strtab[k] = strtab;
    out.nameOff[k] = nameOff;
  });
}

/** Bytes of a string table read per step of the sequential pass over it. */
const STRTAB_WINDOW = 64 << 10;

/**
 * The first two bytes of every candidate's name decide whether it is a function at all
 * ($x/$d mapping symbols, .L labels, empty names) and break ties between aliases. Names are
 * not in symbol order, so the candidates are visited in string-table order and each table is
 * read once, front to back, through one small window; the rejected candidates are dropped.
 */
function readNameStarts(elf: ElfFile, strtabs: ElfSection[], raw: RawSymbols): void {
  const n = raw.n;
  if (n === 0) return;
  let span = 0;
  for (const sec of strtabs) span = Math.max(span, sec.size);
  const order = sortIndices(n, (i) => raw.strtab[i] * (span + 1) + raw.nameOff[i]);
  const window = Buffer.allocUnsafe(STRTAB_WINDOW + 1);
  const keep = new Uint8Array(n);
  let table = -1;
  let winStart = 0;
  let winLen = 0;
  for (let k = 0; k < n; k++) {
    const i = order[k];
    const t = raw.strtab[i];
    const off = raw.nameOff[i];
    const sec = strtabs[t];
    if (t !== table || off + 1 >= winStart + winLen) {
      table = t;
      winStart = off;
      winLen = Math.min(window.length, sec.size - off);
      elf.read(sec.offset + off, winLen, window);
    }
    const c0 = window[off - winStart];
    const c1 = off + 1 < winStart + winLen ? window[off + 1 - winStart] : 0;
    // ARM/AArch64 mapping symbols ($x, $d) and assembler-local labels (.L…) are not functions.
    if (c0 === 0 || c0 === 0x24 /* $ */ || (c0 === 0x2e /* . */ && c1 === 0x4c /* L */)) continue;
    keep[i] = 1;
    raw.underscores[i] = c0 !== 0x5f ? 0 : c1 !== 0x5f ? 1 : 2;
  }
  // Drop the rejected ones in place, keeping table order (ties prefer the earlier entry).
  let m = 0;
  for (let i = 0; i < n; i++) {
    if (!keep[i]) continue;
    raw.addr[m] = raw.addr[i];
    raw.size[m] = raw.size[i];
    raw.section[m] = raw.section[i];
    raw.rank[m] = raw.rank[i];
    raw.strtab[m] = raw.strtab[i];
    raw.nameOff[m] = raw.nameOff[i];
    raw.underscores[m] = raw.underscores[i];
    m++;
  }
  raw.n = m;
}

/** Higher wins when several symbols share an address: global > weak > local, FUNC > NOTYPE. */
function rankOf(bind: number, type: number): number {
  const b = bind === STB_GLOBAL ? 3 : bind === STB_WEAK ? 2 : bind === STB_LOCAL ? 1 : 0;
  return b * 2 + (type === STT_NOTYPE ? 0 : 1);
}

/** Sorted indices of the symbols to keep: one per address, without labels inside functions. */
function dedupe(raw: RawSymbols): Uint32Array {
  const n = raw.n;
  const order = sortIndices(n, (i) => raw.addr[i]);
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

/**
 * Indices 0..n-1 ordered by `key` (stable), with a native numeric sort when the keys allow it.
 * Keys are integers (addresses, offsets) up to 2^53.
 */
function sortIndices(n: number, key: (i: number) => number): Uint32Array {
  const order = new Uint32Array(n);
  if (n === 0) return order;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const a = key(i);
    if (a < min) min = a;
    if (a > max) max = a;
  }
  // (key - min) * 2^k + index stays an exact double when the span times the count fits 2^53.
  const shift = 2 ** Math.ceil(Math.log2(n + 1));
  if ((max - min + 1) * shift < Number.MAX_SAFE_INTEGER) {
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = (key(i) - min) * shift + i;
    keys.sort();
    for (let i = 0; i < n; i++) order[i] = keys[i] % shift;
    return order;
  }
  for (let i = 0; i < n; i++) order[i] = i;
  return order.sort((x, y) => key(x) - key(y) || x - y);
}
