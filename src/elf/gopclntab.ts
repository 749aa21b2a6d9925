// Go's pclntab: the runtime's own table of functions, pc→file:line, pc→SP delta and inlining,
// present in every Go binary even when stripped (the runtime needs it for tracebacks and GC).
// Supported layouts: Go 1.20+ (magic 0xfffffff1, what Go 1.20–1.27 write), 1.18–1.19
// (0xfffffff0) and 1.16–1.17 (0xfffffffa). The table is found through the .gopclntab section
// (.data.rel.ro.gopclntab in PIEs before 1.26), or, for binaries without it (external linking
// puts it inside .data.rel.ro, some tools strip section headers), by searching the loaded
// segments for a header whose fields check out.
// Function entries are offsets from runtime.text (1.18+), read from runtime.firstmoduledata:
// the header's copy is unrelocated in some PIEs and 1.26+ no longer write it; the .text section
// is only the last resort (external linking puts C code first). Inline trees live in go:func.*,
// at moduledata.gofunc (1.18+; inside the pclntab from 1.26) or behind absolute pointers
// (1.16–1.17). 1.27 grew the module data, which moved gofunc (see findModuledata).
// The table is read on demand, a page at a time, through a small page cache (file-bytes.ts):
// a big Go binary's table is tens of megabytes, and a window needs a few pages of it. The
// ElfFile may be closed after open(); lookups reopen the file by its path and check that it is
// still the same file. Tables found by searching the segments (no section) are held in memory.
// Malformed tables, and files that are gone, make lookups return undefined, never throw.

import type { ElfFile } from './elf-file.js';
import { BufferBytes, FileBytes, type Bytes } from './file-bytes.js';
import { PF_X, PT_LOAD, SHF_COMPRESSED, SHT_NOBITS, withinBudget } from './elf-file.js';
import { readGoBuildId } from './go-buildid.js';
import { MAX_NAME_BYTES, boundName, cutName } from './names.js';

const MAGIC_120 = 0xfffffff1;
const MAGIC_118 = 0xfffffff0;
const MAGIC_116 = 0xfffffffa;

const PCDATA_INL_TREE_INDEX = 2;
const FUNCDATA_INL_TREE = 3;
const MAX_INLINE_DEPTH = 64;
/** The region read for go:func.* data when it is not inside the pclntab itself. */
const MAX_GOFUNC_BYTES = 256 << 20;
/** Names kept per table (the symbolizer caches its answers anyway)... */
const MAX_CACHED_NAMES = 4096;
/** ...and their characters: names are bounded (names.ts), but 4096 of the longest are 32 MB. */
const MAX_CACHED_NAME_CHARS = 1 << 20;

export interface GoFrame {
  name: string;
  file: string;
  line: number;
}

type Version = '1.16' | '1.18' | '1.20';

interface Layout {
  version: Version;
  /** The runtime.moduledata layout that was recognised (1.20+ only; see findModuledata). */
  moduledata?: '1.20' | '1.26' | '1.27';
  quantum: number;
  ptrSize: number;
  nfunc: number;
  textStart: number;
  /** The header's text start (0 when the header has none: before 1.18, and 1.26+). */
  headerText: number;
  funcnameOff: number;
  cuOff: number;
  filetabOff: number;
  pctabOff: number;
  functabOff: number;
}

/**
 * The functions at the top of every Go stack: their callers are not Go frames. mcall is one: it
 * runs its callee (the scheduler, on g0) for a goroutine it has just left, and Go's tracebacks
 * stop there. Up to Go 1.22 it leaves BP pointing into that goroutine's frames, which a walk
 * would follow and blame on it time the scheduler spent with no goroutine.
 */
const OUTERMOST_FUNCS = new Set(['runtime.goexit', 'runtime.mstart', 'runtime.rt0_go', 'runtime.mstart0', 'runtime.mcall']);
/**
 * Functions that run their callees on another stack (cgo calls and the system stack) and leave
 * BP pointing at the frame they came from: the walk follows BP across. (The caller of a
 * frameless one, e.g. systemstack's, is skipped, as every frame-pointer walk does; morestack
 * clears BP, and the stack ends there, as Go's own tracebacks do.)
 */
const STACK_SWITCH_FUNCS = new Set(['runtime.asmcgocall', 'runtime.asmcgocall_no_g', 'runtime.systemstack', 'runtime.morestack']);

export class GoPclnTab {
  private readonly funcFields: { nameOff: number; pcsp: number; pcfile: number; pcln: number; npcdata: number; cuOffset: number; nfuncdata: number; pcdata: number };
  private readonly inlSize: number;
  private readonly inlNameOff: number;
  private readonly inlParentPc: number;
  private nameCache = new Map<number, string>();
  private nameCacheChars = 0;

  private constructor(
    private readonly data: Bytes,
    private readonly vaddr: number,
    private readonly L: Layout,
    /** go:func.* bytes and their vaddr (1.18+), for inline trees. */
    private readonly gofunc: { data: Bytes; base: number; vaddr: number } | undefined,
  ) {
    if (L.version === '1.16') {
      this.funcFields = { nameOff: 8, pcsp: 20, pcfile: 24, pcln: 28, npcdata: 32, cuOffset: 36, nfuncdata: 43, pcdata: 44 };
    } else if (L.version === '1.18') {
      this.funcFields = { nameOff: 4, pcsp: 16, pcfile: 20, pcln: 24, npcdata: 28, cuOffset: 32, nfuncdata: 39, pcdata: 40 };
    } else {
      this.funcFields = { nameOff: 4, pcsp: 16, pcfile: 20, pcln: 24, npcdata: 28, cuOffset: 32, nfuncdata: 43, pcdata: 44 };
    }
    // inlinedCall: Go 1.20+ {funcID u8, _ [3]u8, nameOff i32, parentPc i32, startLine i32};
    // before: {parent i16, funcID u8, _ u8, file i32, line i32, func_ i32, parentPc i32}.
    if (L.version === '1.20') {
      this.inlSize = 16;
      this.inlNameOff = 4;
      this.inlParentPc = 8;
    } else {
      this.inlSize = 20;
      this.inlNameOff = 12;
      this.inlParentPc = 16;
    }
  }

  /** The pclntab of `elf`, or undefined when the file has none (not Go, or unsupported version). */
  static open(elf: ElfFile): GoPclnTab | undefined {
    try {
      return openTable(elf);
    } catch {
      return undefined;
    }
  }

  /** Go version family of the table layout. */
  get version(): string {
    return this.L.version;
  }

  /**
   * The Go releases that write a table like this one: "go1.16-go1.17", "go1.18-go1.19",
   * "go1.20-go1.25", "go1.26", "go1.27+"; "go1.20+" when the module data was not found.
   */
  get versionRange(): string {
    if (this.L.version === '1.16') return 'go1.16-go1.17';
    if (this.L.version === '1.18') return 'go1.18-go1.19';
    switch (this.L.moduledata) {
      case '1.20':
        return 'go1.20-go1.25';
      case '1.26':
        return 'go1.26';
      case '1.27':
        return 'go1.27+';
      default:
        return 'go1.20+';
    }
  }

  /** Number of functions. */
  get funcCount(): number {
    return this.L.nfunc;
  }

  /** Bytes held in memory by this table alone (for cache accounting); pages read from the file are in a shared, bounded cache. */
  get byteSize(): number {
    const held = (b: Bytes | undefined) => (b instanceof BufferBytes ? b.length : 0);
    return held(this.data) + (this.gofunc && this.gofunc.data !== this.data ? held(this.gofunc.data) : 0) + this.nameCache.size * 64 + this.nameCacheChars * 2;
  }

  /** Reads through `path` from now on (another name for the same file, e.g. a new /proc/self/fd). */
  moveTo(path: string): void {
    if (this.data instanceof FileBytes) this.data.moveTo(path);
    if (this.gofunc?.data instanceof FileBytes) this.gofunc.data.moveTo(path);
  }

  /** [start, end) of the text covered by the function table. */
  get textRange(): [number, number] {
    const n = this.L.nfunc;
    return [this.entryAt(0), this.entryAt(n)];
  }

  /** The entry address and name of the function containing vaddr. */
  funcAt(vaddr: number): { entry: number; end: number; name: string } | undefined {
    try {
      const i = this.findFunc(vaddr);
      if (i < 0) return undefined;
      const f = this.funcOffset(i);
      return { entry: this.entryAt(i), end: this.entryAt(i + 1), name: this.funcName(f) };
    } catch {
      return undefined;
    }
  }

  /**
   * Source frames at `vaddr`, innermost (inlined) first, the physical function last. undefined
   * when no function covers the address.
   */
  lookup(vaddr: number): GoFrame[] | undefined {
    try {
      const i = this.findFunc(vaddr);
      if (i < 0) return undefined;
      const f = this.funcOffset(i);
      const entry = this.entryAt(i);
      const end = this.entryAt(i + 1);
      const frames: GoFrame[] = [];
      let pc = vaddr;
      const tree = this.inlineTree(f);
      if (tree) {
        for (let depth = 0; depth < MAX_INLINE_DEPTH; depth++) {
          const ix = this.pcdataValue(f, entry, end, PCDATA_INL_TREE_INDEX, pc);
          if (ix === undefined || ix < 0) break;
          const rec = tree.off + ix * this.inlSize;
          if (ix >= 1 << 24 || rec + this.inlSize > tree.buf.length) break;
          const nameOff = tree.buf.i32(rec + this.inlNameOff);
          const parentPc = tree.buf.i32(rec + this.inlParentPc);
          frames.push({ name: this.nameAt(nameOff), ...this.fileLine(f, entry, end, pc) });
          const next = entry + parentPc;
          if (next === pc) break;
          pc = next;
        }
      }
      frames.push({ name: this.funcName(f), ...this.fileLine(f, entry, end, pc) });
      return frames;
    } catch {
      return undefined;
    }
  }

  /**
   * Bytes the function has pushed below its entry SP at `vaddr` (pcsp). The return address is
   * at sp + spDelta; 0 at the entry and everywhere in a frameless leaf.
   */
  spDelta(vaddr: number): number | undefined {
    try {
      const i = this.findFunc(vaddr);
      if (i < 0) return undefined;
      const f = this.funcOffset(i);
      return this.pcvalue(this.u32(f + this.funcFields.pcsp), this.entryAt(i), this.entryAt(i + 1), vaddr);
    } catch {
      return undefined;
    }
  }

  /**
   * Every function's stack-pointer deltas as ranges (the pcsp tables): emit(from, to, spDelta)
   * with the bytes pushed below the entry SP over [from, to), or spDelta 'end' over the whole of
   * a function no Go stack goes past (runtime.goexit, mstart, rt0_go), 'switch' over a function
   * that switches stacks (STACK_SWITCH_FUNCS). A function whose table cannot be read is skipped.
   */
  forEachSpDelta(emit: (from: number, to: number, spDelta: number | 'end' | 'switch') => void): void {
    const n = this.L.nfunc;
    for (let i = 0; i < n; i++) {
      try {
        const entry = this.entryAt(i);
        const end = this.entryAt(i + 1);
        const f = this.funcOffset(i);
        const name = this.funcName(f);
        if (OUTERMOST_FUNCS.has(name) || STACK_SWITCH_FUNCS.has(name)) {
          emit(entry, end, OUTERMOST_FUNCS.has(name) ? 'end' : 'switch');
          continue;
        }
        this.pcvalueRanges(this.u32(f + this.funcFields.pcsp), entry, end, (from, to, val) => {
          if (from < end) emit(from, Math.min(to, end), val);
          return to >= end;
        });
      } catch {
        // an unreadable function: no rows, frame pointers there
      }
    }
  }

  // ---- internals ------------------------------------------------------------------------------

  private u32(off: number): number {
    if (off < 0 || off + 4 > this.data.length) throw new RangeError(`pclntab read at ${off} out of range`);
    return this.data.u32(off);
  }

  private uptr(off: number): number {
    if (this.L.ptrSize === 4) return this.u32(off);
    if (off < 0 || off + 8 > this.data.length) throw new RangeError(`pclntab read at ${off} out of range`);
    return this.data.u64(off);
  }

  /** Entry vaddr of function i (i = nfunc gives the end of the text). */
  private entryAt(i: number): number {
    const L = this.L;
    if (L.version === '1.16') return this.uptr(L.functabOff + i * 2 * L.ptrSize);
    return L.textStart + this.u32(L.functabOff + i * 8);
  }

  private funcOffset(i: number): number {
    const L = this.L;
    const off = L.version === '1.16' ? this.uptr(L.functabOff + (i * 2 + 1) * L.ptrSize) : this.u32(L.functabOff + i * 8 + 4);
    return L.functabOff + off;
  }

  private findFunc(vaddr: number): number {
    const n = this.L.nfunc;
    if (vaddr < this.entryAt(0) || vaddr >= this.entryAt(n)) return -1;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.entryAt(mid) <= vaddr) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  private funcName(f: number): string {
    return this.nameAt(this.data.i32(this.check(f + this.funcFields.nameOff, 4)));
  }

  private check(off: number, len: number): number {
    if (off < 0 || off + len > this.data.length) throw new RangeError(`pclntab read at ${off} out of range`);
    return off;
  }

  private nameAt(nameOff: number): string {
    let s = this.nameCache.get(nameOff);
    if (s === undefined) {
      s = this.cstr(this.L.funcnameOff + nameOff);
      if (this.nameCache.size >= MAX_CACHED_NAMES || this.nameCacheChars + s.length > MAX_CACHED_NAME_CHARS) {
        this.nameCache.clear();
        this.nameCacheChars = 0;
      }
      this.nameCache.set(nameOff, s);
      this.nameCacheChars += s.length;
    }
    return s;
  }

  /**
   * The name (function or file) at `off`, bounded by names.ts: a table whose names do not end
   * (a corrupt or hostile funcnametab) gives cut, marked names, never names as long as itself.
   */
  private cstr(off: number): string {
    if (off < 0 || off >= this.data.length) return '';
    const end = this.data.indexOfZero(off, MAX_NAME_BYTES);
    if (end >= 0) return boundName(this.data.utf8(off, end));
    const stop = Math.min(this.data.length, off + MAX_NAME_BYTES);
    const s = this.data.utf8(off, stop);
    return stop < this.data.length ? cutName(s) : boundName(s);
  }

  private fileLine(f: number, entry: number, end: number, pc: number): { file: string; line: number } {
    const ff = this.funcFields;
    const line = this.pcvalue(this.u32(f + ff.pcln), entry, end, pc) ?? 0;
    const fileIx = this.pcvalue(this.u32(f + ff.pcfile), entry, end, pc);
    let file = '?';
    if (fileIx !== undefined && fileIx >= 0) {
      const cu = this.u32(f + ff.cuOffset);
      const off = this.u32(this.L.cuOff + (cu + fileIx) * 4);
      if (off !== 0xffffffff) file = this.cstr(this.L.filetabOff + off);
    }
    return { file, line };
  }

  /** The value of pcdata table `table` at pc, or undefined when the function has none. */
  private pcdataValue(f: number, entry: number, end: number, table: number, pc: number): number | undefined {
    const ff = this.funcFields;
    const n = this.u32(f + ff.npcdata);
    if (table >= n) return undefined;
    const off = this.u32(f + ff.pcdata + table * 4);
    if (off === 0) return undefined;
    return this.pcvalue(off, entry, end, pc);
  }

  /** The inline tree of a function: the buffer holding it and the offset of entry 0. */
  private inlineTree(f: number): { buf: Bytes; off: number } | undefined {
    const ff = this.funcFields;
    const npcdata = this.u32(f + ff.npcdata);
    const nfuncdata = this.data.u8(this.check(f + ff.nfuncdata, 1));
    if (nfuncdata <= FUNCDATA_INL_TREE) return undefined;
    const fdStart = f + ff.pcdata + npcdata * 4;
    if (this.L.version === '1.16') {
      const p = this.funcdataPtr116(fdStart, FUNCDATA_INL_TREE);
      // Go 1.16–1.17 store absolute pointers, into go.func.* in .rodata (read at open()).
      if (p === 0) return undefined;
      const g = this.gofunc;
      if (g && p >= g.vaddr && p - g.vaddr < g.data.length) return { buf: g.data, off: p - g.vaddr };
      const inTable = p - this.vaddr;
      return inTable >= 0 && inTable < this.data.length ? { buf: this.data, off: inTable } : undefined;
    }
    const rel = this.u32(fdStart + FUNCDATA_INL_TREE * 4);
    if (rel === 0xffffffff || !this.gofunc) return undefined;
    const off = this.gofunc.base + rel;
    if (off >= this.gofunc.data.length) return undefined;
    return { buf: this.gofunc.data, off };
  }

  /** Go 1.16–1.17: funcdata pointer `i` of the function whose pcdata offsets end at fdStart. */
  private funcdataPtr116(fdStart: number, i: number): number {
    const aligned = Math.ceil(fdStart / this.L.ptrSize) * this.L.ptrSize;
    return this.uptr(aligned + i * this.L.ptrSize);
  }

  /**
   * Go 1.16–1.17: the lowest inline-tree pointer of any function (the start of what go.func.*
   * data lookups need), 0 when there is none.
   */
  lowestInlineTree116(): number {
    let low = 0;
    const ff = this.funcFields;
    for (let i = 0; i < this.L.nfunc; i++) {
      try {
        const f = this.funcOffset(i);
        if (this.data.u8(this.check(f + ff.nfuncdata, 1)) <= FUNCDATA_INL_TREE) continue;
        const p = this.funcdataPtr116(f + ff.pcdata + this.u32(f + ff.npcdata) * 4, FUNCDATA_INL_TREE);
        if (p !== 0 && (low === 0 || p < low)) low = p;
      } catch {
        // a bad entry: skip it
      }
    }
    return low;
  }

  /** Decodes a pc-value table at pctab offset `off` for the function [entry, end): the value at `target`. */
  private pcvalue(off: number, entry: number, end: number, target: number): number | undefined {
    let found: number | undefined;
    this.pcvalueRanges(off, entry, end, (_from, to, val) => {
      if (target >= to) return false;
      found = val;
      return true;
    });
    return found;
  }

  /**
   * Calls visit(from, to, value) for each range of a pc-value table at pctab offset `off` of the
   * function [entry, end), in order, until it returns true.
   */
  private pcvalueRanges(off: number, entry: number, end: number, visit: (from: number, to: number, val: number) => boolean): void {
    if (off === 0) return;
    const d = this.data;
    let p = this.L.pctabOff + off;
    let val = -1;
    let pc = entry;
    let first = true;
    // Every entry covers at least one quantum of the function [entry, end): a table that does
    // not advance (pc deltas of 0) ends after as many entries as the function has quanta, not
    // after 4 million reads per call, several calls per frame.
    const maxSteps = Math.min(1 << 22, Math.max(0, Math.ceil((end - entry) / this.L.quantum)) + 1);
    for (let steps = 0; steps < maxSteps; steps++) {
      // uvarint value delta (zig-zag), then uvarint pc delta in quanta
      let uv = 0;
      let mul = 1;
      for (;;) {
        if (p >= d.length) return;
        const b = d.u8(p++);
        uv += (b & 0x7f) * mul;
        if ((b & 0x80) === 0) break;
        mul *= 128;
        if (mul > 2 ** 35) return;
      }
      if (uv === 0 && !first) return;
      first = false;
      val += uv % 2 === 1 ? -((uv + 1) / 2) : uv / 2;
      let pcd = 0;
      mul = 1;
      for (;;) {
        if (p >= d.length) return;
        const b = d.u8(p++);
        pcd += (b & 0x7f) * mul;
        if ((b & 0x80) === 0) break;
        mul *= 128;
        if (mul > 2 ** 35) return;
      }
      const from = pc;
      pc += pcd * this.L.quantum;
      if (visit(from, pc, val)) return;
    }
  }

  /** @internal used by open(). */
  static create(
    data: Bytes,
    vaddr: number,
    L: Layout,
    gofunc: { data: Bytes; base: number; vaddr: number } | undefined,
  ): GoPclnTab {
    return new GoPclnTab(data, vaddr, L, gofunc);
  }
}

// ---- locating the table -------------------------------------------------------------------------

function parseHeader(d: Bytes, textSection: number | undefined): Layout | undefined {
  if (d.length < 16) return undefined;
  const magic = d.u32(0);
  let version: Version;
  if (magic === MAGIC_120) version = '1.20';
  else if (magic === MAGIC_118) version = '1.18';
  else if (magic === MAGIC_116) version = '1.16';
  else return undefined;
  if (d.u8(4) !== 0 || d.u8(5) !== 0) return undefined;
  const quantum = d.u8(6);
  const ptrSize = d.u8(7);
  if (![1, 2, 4].includes(quantum) || (ptrSize !== 4 && ptrSize !== 8)) return undefined;
  const words = version === '1.16' ? 7 : 8;
  if (d.length < 8 + words * ptrSize) return undefined;
  const w = (i: number) => (ptrSize === 8 ? d.u64(8 + i * 8) : d.u32(8 + i * 4));
  const nfunc = w(0);
  let i = 2;
  let headerText = 0;
  if (version !== '1.16') headerText = w(i++);
  const L: Layout = {
    version,
    quantum,
    ptrSize,
    nfunc,
    // Provisional: openTable() settles it (module data, then header, then this).
    textStart: textSection ?? headerText,
    headerText,
    funcnameOff: w(i++),
    cuOff: w(i++),
    filetabOff: w(i++),
    pctabOff: w(i++),
    functabOff: w(i++),
  };
  // Validate: offsets inside the data and in the order the linker writes them.
  if (nfunc <= 0 || nfunc > 10_000_000) return undefined;
  const offs = [L.funcnameOff, L.cuOff, L.filetabOff, L.pctabOff, L.functabOff];
  for (let k = 0; k < offs.length; k++) {
    if (offs[k] < 8 + words * ptrSize || offs[k] >= d.length) return undefined;
    if (k > 0 && offs[k] < offs[k - 1]) return undefined;
  }
  const ftEntry = version === '1.16' ? 2 * ptrSize : 8;
  if (L.functabOff + (nfunc + 1) * ftEntry > d.length) return undefined;
  // The first function's own entry field must agree with the function table.
  if (version === '1.16') {
    const e0 = ptrSize === 8 ? d.u64(L.functabOff) : d.u32(L.functabOff);
    const f0 = ptrSize === 8 ? d.u64(L.functabOff + ptrSize) : d.u32(L.functabOff + ptrSize);
    const fo = L.functabOff + f0;
    if (fo + 8 > d.length) return undefined;
    const fe = ptrSize === 8 ? d.u64(fo) : d.u32(fo);
    if (fe !== e0) return undefined;
  } else {
    const e0 = d.u32(L.functabOff);
    const fo = L.functabOff + d.u32(L.functabOff + 4);
    if (fo + 4 > d.length || d.u32(fo) !== e0) return undefined;
  }
  return L;
}

function openTable(elf: ElfFile): GoPclnTab | undefined {
  const textSec = elf.section('.text');
  const textAddr = textSec && textSec.addr !== 0 ? textSec.addr : undefined;
  let data: Bytes | undefined;
  let vaddr = 0;
  let L: Layout | undefined;
  // PIE binaries from Go 1.25 and older have it in .data.rel.ro.gopclntab when linked internally
  // (and unnamed, inside .data.rel.ro, when linked externally).
  const sec = elf.section('.gopclntab') ?? elf.section('.data.rel.ro.gopclntab');
  if (sec && sec.type !== SHT_NOBITS && sec.size > 0 && (sec.flags & SHF_COMPRESSED) === 0 && sec.offset + sec.size <= elf.size) {
    data = new FileBytes(elf.path, elf.identity, sec.offset, sec.size);
    vaddr = sec.addr;
    L = parseHeader(data, textAddr);
  }
  if (!L) {
    // Reading every segment is only worth it for files that say they are Go.
    if (!sec && readGoBuildId(elf) === '' && !elf.section('.go.buildinfo')) return undefined;
    const found = searchMagic(elf, textAddr);
    if (!found) return undefined;
    ({ data, vaddr, L } = found);
  }
  if (L.version === '1.16') {
    // No go:func base in 1.16–1.17: funcdata are absolute pointers. Read from the lowest inline
    // tree to the end of its segment.
    const low = GoPclnTab.create(data!, vaddr, L, undefined).lowestInlineTree116();
    return GoPclnTab.create(data!, vaddr, L, low ? gofuncRegion(elf, data!, vaddr, low) : undefined);
  }
  const md = findModuledata(elf, data!, vaddr, L);
  // moduledata.text is runtime.text, what function offsets are relative to. With external
  // linking the .text section starts with the C runtime's code, so the section address is only
  // the last resort; before 1.26 the header has a copy (1.26+ leave that field 0).
  if (md?.text) L.textStart = md.text;
  else if (L.headerText && inText(elf, L.headerText)) L.textStart = L.headerText;
  L.moduledata = md?.layout;
  return GoPclnTab.create(data!, vaddr, L, md?.region);
}

/** Scans loaded segments for a plausible pclntab header. */
function searchMagic(elf: ElfFile, textAddr: number | undefined): { data: Bytes; vaddr: number; L: Layout } | undefined {
  const magics = [MAGIC_120, MAGIC_118, MAGIC_116].map((m) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(m);
    return b;
  });
  const loads = elf.segments.filter((seg) => seg.type === PT_LOAD && seg.filesz >= 64 && seg.filesz <= 1 << 30);
  for (const seg of withinBudget(loads, (x) => x.filesz, elf.size)) {
    const data = elf.read(seg.offset, seg.filesz);
    for (const m of magics) {
      let at = data.indexOf(m);
      while (at >= 0) {
        // The table is pointer-aligned.
        if (at % 4 === 0) {
          const sub = new BufferBytes(data.subarray(at));
          const L = parseHeader(sub, textAddr);
          if (L) return { data: new BufferBytes(Buffer.from(sub.buf)), vaddr: seg.vaddr + at, L };
        }
        at = data.indexOf(m, at + 1);
      }
    }
  }
  return undefined;
}

function inText(elf: ElfFile, vaddr: number): boolean {
  return elf.segments.some((p) => p.type === PT_LOAD && (p.flags & PF_X) !== 0 && vaddr >= p.vaddr && vaddr < p.vaddr + p.memsz);
}

/**
 * Finds runtime.firstmoduledata (it starts with a pointer to the pclntab, then funcnametab's
 * slice whose data pointer is pclntab + funcnameOffset) and reads its gofunc field, the base of
 * go:func.* that funcdata offsets are relative to, and its text field (runtime.text).
 *
 * Word indexes (pointer-sized words from the start): text is 22 in every release. gofunc is 38
 * in 1.18–1.19; 1.20 added covctrs/ecovctrs before it, so 40 in 1.20–1.26; 1.27 added
 * typedesclen, itaboffset and itabsize, so 43. 1.26 added epclntab right after gofunc and moved
 * go:func.* into the pclntab's range, which tells the layouts apart: gofunc lies in
 * [pclntab, epclntab) with epclntab the word after it (43/44 for 1.27, 40/41 for 1.26).
 */
function findModuledata(
  elf: ElfFile,
  table: Bytes,
  tableVaddr: number,
  L: Layout,
): { region: { data: Bytes; base: number; vaddr: number } | undefined; text: number; layout: Layout['moduledata'] } | undefined {
  const ps = L.ptrSize;
  const want = Buffer.alloc(ps * 2);
  const put = (b: Buffer, off: number, v: number) => (ps === 8 ? b.writeBigUInt64LE(BigInt(v), off) : b.writeUInt32LE(v, off));
  put(want, 0, tableVaddr);
  put(want, ps, tableVaddr + L.funcnameOff);
  const textWord = 22;
  const lastWord = 44;
  const candidates = ['.go.module', '.noptrdata', '.data', '.data.rel.ro'];
  const areas: Array<{ offset: number; size: number }> = [];
  for (const name of candidates) {
    const s = elf.section(name);
    if (s && s.type !== SHT_NOBITS && s.size > 0) areas.push({ offset: s.offset, size: s.size });
  }
  if (areas.length === 0) {
    for (const p of elf.segments) if (p.type === PT_LOAD && p.filesz > 0 && p.filesz < 1 << 30) areas.push({ offset: p.offset, size: p.filesz });
  }
  for (const a of withinBudget(areas, (x) => x.size, elf.size)) {
    const buf = elf.read(a.offset, a.size);
    let at = buf.indexOf(want);
    while (at >= 0) {
      if (at % ps === 0 && at + (lastWord + 1) * ps <= buf.length) {
        const word = (i: number) => (ps === 8 ? Number(buf.readBigUInt64LE(at + i * ps)) : buf.readUInt32LE(at + i * ps));
        // gofunc in [pclntab, epclntab), epclntab no further than the table reaches.
        const inTable = (g: number) => {
          const end = word(g + 1);
          return end > tableVaddr && end <= tableVaddr + table.length && word(g) >= tableVaddr && word(g) < end;
        };
        const layout: Layout['moduledata'] = L.version === '1.18' ? undefined : inTable(43) ? '1.27' : inTable(40) ? '1.26' : '1.20';
        const gofunc = word(L.version === '1.18' ? 38 : layout === '1.27' ? 43 : 40);
        const text = word(textWord);
        const region = gofuncRegion(elf, table, tableVaddr, gofunc);
        // On disk a PIE's moduledata may hold unrelocated zeros (if a linker leaves the value
        // to the dynamic relocation): keep text only if it lies in executable code.
        const plausibleText = inText(elf, text) ? text : 0;
        if (region || plausibleText) return { region, text: plausibleText, layout };
      }
      at = buf.indexOf(want, at + 1);
    }
  }
  return undefined;
}

function gofuncRegion(elf: ElfFile, table: Bytes, tableVaddr: number, gofunc: number): { data: Bytes; base: number; vaddr: number } | undefined {
  if (gofunc === 0) return undefined;
  // Go 1.26+ place go:func.* inside the pclntab's range: share the buffer.
  if (gofunc >= tableVaddr && gofunc < tableVaddr + table.length) return { data: table, base: gofunc - tableVaddr, vaddr: tableVaddr };
  for (const p of elf.segments) {
    if (p.type === PT_LOAD && gofunc >= p.vaddr && gofunc < p.vaddr + p.filesz) {
      const len = Math.min(p.vaddr + p.filesz - gofunc, MAX_GOFUNC_BYTES);
      if (p.offset + (gofunc - p.vaddr) + len > elf.size) return undefined;
      return { data: new FileBytes(elf.path, elf.identity, p.offset + (gofunc - p.vaddr), len), base: 0, vaddr: gofunc };
    }
  }
  return undefined;
}
