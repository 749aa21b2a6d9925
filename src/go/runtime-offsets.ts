// Where a Go process keeps what a sample of one of its threads should carry: the goroutine
// (its id and its pprof labels), found from the thread through the runtime's own structures.
// User space works out the offsets per binary and hands them to BPF per process.
//
// The chain BPF follows (amd64; on arm64 the g pointer is in register x28 instead of TLS):
//   g = *(fs_base + tls.offset)                   the goroutine running on the thread
//   if g == g.m.g0 || g == g.m.gsignal: g = g.m.curg   (scheduler or signal stack: the user
//                                                    goroutine is m.curg, 0 when there is none)
//   goid = *(u64 *)(g + g.goid)
//   p = *(g + g.labels)                           a *labelMap, 0 when the goroutine has none
//   Go 1.21–1.23: labelMap is map[string]string:
//     h = *(p)                                    the *hmap the map variable holds
//     walk 2^h.B buckets at h.buckets and, when h.oldbuckets != 0, 2^(B-1) old buckets (2^B
//     when flags & sameSizeGrow), each with its overflow chain; a cell i is live when
//     tophash[i] >= minTopHash, its key at keys + 16*i, its value at values + 16*i (Go strings:
//     data pointer, then length). Evacuated and empty cells have tophash < minTopHash, so
//     both arrays together list every label exactly once.
//   Go 1.24+: labelMap is struct { []label } sorted by key:
//     array = *(p + 0), len = *(p + 8); label i at array + 32*i: key {ptr, len} then value.
//   (1.24 also replaced the runtime's maps with Swiss tables; labels left maps in the same
//   release, so no Swiss table is ever walked.)
//
// Goroutine-level off-CPU walks every goroutine instead: runtime.allgs (allgs.ts finds it) is a
// []*g; of each g it reads atomicstatus (u32), waitreason (u8, wait-reasons.ts names it),
// g.sched's sp, pc and bp and g.stack's bounds, and unwinds a parked goroutine with frame
// pointers from sched.pc and sched.bp (readAllGoroutines and goroutineStack in
// goroutine-reader.ts are the reference).
//
// Offsets come from the binary's DWARF when it has some (what the toolchain really laid out,
// whatever the release or GOEXPERIMENT), else from a table per Go minor release that the tests
// check against DWARF of real binaries of every supported release, amd64 and arm64 (the layouts
// agree). Patch releases have not moved these fields: 1.23.x and 1.24.x added fields to
// runtime.m, but only after curg.
//
// TLS on amd64: a Go binary linked by Go's own linker keeps g at -8(FS): statically linked,
// the runtime points FS at m.tls+8 itself (runtime·settls); dynamically linked (cgo, -buildmode=
// pie), runtime.tlsg is the executable's only TLS variable, so the C library places it at
// fs_base-8. With external linking, the system linker lays the executable's TLS block out and
// C code may add its own TLS variables: g is at runtime.tlsg's offset in the PT_TLS block minus
// the block's aligned size (x86-64 TLS variant II). That needs the symbol table; a stripped
// binary whose TLS block holds more than tlsg leaves the offset unknown. Go code in a shared
// library (-buildmode=c-shared) has a TLS offset chosen at load time: unknown here too.

import type { ElfFile, ElfSection } from '../elf/elf-file.js';
import { EM_AARCH64, EM_X86_64, ET_DYN, SHT_NOBITS, SHT_SYMTAB } from '../elf/elf-file.js';
import { DwarfInfo, type DwarfType } from '../elf/dwarf.js';

/** The oldest and newest Go minor releases whose layouts are known (1.21 … 1.27). */
export const GO_MIN_MINOR = 21;
export const GO_MAX_MINOR = 27;

export interface GoGOffsets {
  /** runtime.g.goid (uint64). */
  goid: number;
  /** runtime.g.m (*m). */
  m: number;
  /** runtime.g.labels (unsafe.Pointer to runtime/pprof's *labelMap). */
  labels: number;
  /** runtime.g.stack.lo and .hi (uintptr): the goroutine's stack is [lo, hi). */
  stackLo: number;
  stackHi: number;
  /**
   * runtime.g.sched.sp, .pc and .bp (uintptr; g.sched is a gobuf): where a goroutine that is not
   * running resumes, with its frame pointer. 1.25 removed gobuf.ret, which moved bp.
   */
  schedSp: number;
  schedPc: number;
  schedBp: number;
  /** runtime.g.atomicstatus (uint32): _Gwaiting etc., ORed with _Gscan while being scanned. */
  atomicstatus: number;
  /** runtime.g.waitreason (uint8): why a _Gwaiting goroutine waits, see wait-reasons.ts. */
  waitreason: number;
}

export interface GoMOffsets {
  /** runtime.m.g0 (*g): the scheduler's goroutine. */
  g0: number;
  /** runtime.m.procid (uint64): the thread id. */
  procid: number;
  /** runtime.m.gsignal (*g): the signal handlers' goroutine. */
  gsignal: number;
  /** runtime.m.curg (*g): the user goroutine running on this M, 0 when none. */
  curg: number;
}

/** A Go string header: data pointer and length. */
export interface GoStringLayout {
  size: number;
  ptr: number;
  len: number;
}

/** Go 1.21–1.23: g.labels → *labelMap → (map[string]string) *hmap. */
export interface GoMapLabels {
  format: 'map';
  hmap: { count: number; flags: number; B: number; buckets: number; oldbuckets: number };
  /** bucket<string,string>: 8 cells of tophash, then 8 keys, 8 values, the overflow pointer. */
  bucket: { size: number; cells: number; tophash: number; keys: number; values: number; overflow: number };
  /** Cells with a smaller tophash are empty or evacuated. */
  minTopHash: number;
  /** hmap.flags bit: growing to the same size (old buckets: 2^B, else 2^(B-1)). */
  sameSizeGrow: number;
  string: GoStringLayout;
}

/** Go 1.24+: g.labels → *labelMap → struct { list []label }, sorted by key. */
export interface GoSliceLabels {
  format: 'slice';
  /** The slice header at the start of labelMap. */
  slice: { array: number; len: number; cap: number };
  /** One label: key and value strings. */
  label: { size: number; key: number; value: number };
  string: GoStringLayout;
}

export type GoLabelsLayout = GoMapLabels | GoSliceLabels;

/** Where a thread's current g is. */
export type GoTlsG =
  | {
      arch: 'amd64';
      /** g is at fs_base + offset; undefined when the binary does not tell (see `how`). */
      offset: number | undefined;
      how: 'runtime-tls' | 'tlsg-symbol' | 'only-tls-variable' | 'unknown-stripped' | 'unknown-shared-library';
    }
  | { arch: 'arm64'; register: 'x28' };

export interface GoRuntimeOffsets {
  /** The release as given, normalized: '1.22.12' ('1.26' when no patch was given). */
  goVersion: string;
  minor: number;
  /** 'dwarf' when g's and m's offsets were read from the binary's DWARF, else 'table'. */
  source: 'dwarf' | 'table';
  /**
   * Where the labels layout came from: 'table' also for binaries with DWARF but without
   * runtime/pprof, whose goroutines have no labels anyway.
   */
  labelsFrom: 'dwarf' | 'table';
  g: GoGOffsets;
  m: GoMOffsets;
  labels: GoLabelsLayout;
  tls: GoTlsG;
}

interface TableEntry {
  g: GoGOffsets;
  m: GoMOffsets;
}

const M_UP_TO_124: GoMOffsets = { g0: 0, procid: 72, gsignal: 80, curg: 192 };
const M_FROM_125: GoMOffsets = { g0: 0, procid: 64, gsignal: 72, curg: 184 };

/** Fields of runtime.g that no supported release has moved: g.stack first, g.m, g.sched's sp and pc. */
const G_FIXED = { m: 48, stackLo: 0, stackHi: 8, schedSp: 56, schedPc: 64 } as const;

/**
 * runtime.g and runtime.m per Go minor release (amd64 and arm64 agree). 1.23 added
 * g.syscallbp before goid (and atomicstatus, waitreason); 1.25 removed gobuf.ret, shrinking
 * g.sched (moving sched.bp and everything after g.sched) and m.morebuf (before procid, gsignal
 * and curg) by a word; 1.26 added fields between g.goid and g.labels (1.22's and 1.24's
 * additions there fit into padding).
 */
const TABLE: Record<number, TableEntry> = {
  21: { g: { ...G_FIXED, schedBp: 104, atomicstatus: 144, goid: 152, waitreason: 176, labels: 344 }, m: M_UP_TO_124 },
  22: { g: { ...G_FIXED, schedBp: 104, atomicstatus: 144, goid: 152, waitreason: 176, labels: 344 }, m: M_UP_TO_124 },
  23: { g: { ...G_FIXED, schedBp: 104, atomicstatus: 152, goid: 160, waitreason: 184, labels: 352 }, m: M_UP_TO_124 },
  24: { g: { ...G_FIXED, schedBp: 104, atomicstatus: 152, goid: 160, waitreason: 184, labels: 352 }, m: M_UP_TO_124 },
  25: { g: { ...G_FIXED, schedBp: 96, atomicstatus: 144, goid: 152, waitreason: 176, labels: 344 }, m: M_FROM_125 },
  26: { g: { ...G_FIXED, schedBp: 96, atomicstatus: 144, goid: 152, waitreason: 176, labels: 352 }, m: M_FROM_125 },
  27: { g: { ...G_FIXED, schedBp: 96, atomicstatus: 144, goid: 152, waitreason: 176, labels: 352 }, m: M_FROM_125 },
};

const GO_STRING: GoStringLayout = { size: 16, ptr: 0, len: 8 };

const MAP_LABELS: GoMapLabels = {
  format: 'map',
  hmap: { count: 0, flags: 8, B: 9, buckets: 16, oldbuckets: 24 },
  bucket: { size: 272, cells: 8, tophash: 0, keys: 8, values: 136, overflow: 264 },
  minTopHash: 5,
  sameSizeGrow: 8,
  string: GO_STRING,
};

const SLICE_LABELS: GoSliceLabels = {
  format: 'slice',
  slice: { array: 0, len: 8, cap: 16 },
  label: { size: 32, key: 0, value: 16 },
  string: GO_STRING,
};

/** Labels moved from a map to a sorted slice in this release. */
const SLICE_LABELS_SINCE = 24;

export interface ParsedGoVersion {
  minor: number;
  patch: number | undefined;
  /** The version without "go" and without suffixes: '1.22.12'. */
  text: string;
}

/**
 * Reads "go1.22.12", "1.22.12", "go1.26rc1" or "go1.24.1 X:nodwarf5" (what runtime.Version and
 * the build info say); undefined for anything else, ranges ("go1.20-go1.21") included.
 */
export function parseGoVersion(v: string): ParsedGoVersion | undefined {
  const m = /^(?:go)?1\.(\d+)(?:\.(\d+)|(?:rc|beta)\d+)?(?=$|\s)/.exec(v.trim());
  if (!m) return undefined;
  const minor = Number(m[1]);
  const patch = m[2] === undefined ? undefined : Number(m[2]);
  return { minor, patch, text: patch === undefined ? `1.${minor}` : `1.${minor}.${patch}` };
}

/** The table's g and m offsets for a Go minor release, undefined when unsupported. */
export function goRuntimeTable(minor: number): TableEntry | undefined {
  const e = TABLE[minor];
  return e && { g: { ...e.g }, m: { ...e.m } };
}

/**
 * The offsets BPF needs to find the goroutine of a thread of this Go binary and its labels.
 * `goVersion` is the release that built it (from its build info, see go-buildinfo.ts).
 * Undefined for releases outside 1.21–1.27 and for architectures other than amd64 and arm64.
 * `opts.dwarf`: the binary's DWARF when the caller has read it already, or null to skip DWARF
 * and take the table's answer. Never throws.
 */
export function goRuntimeOffsets(elf: ElfFile, goVersion: string, opts: { dwarf?: DwarfInfo | null } = {}): GoRuntimeOffsets | undefined {
  try {
    const v = parseGoVersion(goVersion);
    if (!v || v.minor < GO_MIN_MINOR || v.minor > GO_MAX_MINOR) return undefined;
    const tls = goTlsG(elf);
    if (!tls) return undefined;
    const table = goRuntimeTable(v.minor)!;
    const defaultLabels = v.minor >= SLICE_LABELS_SINCE ? SLICE_LABELS : MAP_LABELS;
    const dwarf = opts.dwarf === null ? undefined : (opts.dwarf ?? DwarfInfo.fromElf(elf));
    const fromDwarf = dwarf && dwarfOffsets(dwarf, defaultLabels);
    const base = { goVersion: v.text, minor: v.minor, tls };
    if (fromDwarf) return { ...base, source: 'dwarf', ...fromDwarf };
    return { ...base, source: 'table', g: table.g, m: table.m, labels: clone(defaultLabels), labelsFrom: 'table' };
  } catch {
    return undefined;
  }
}

/** g and m from DWARF; the labels layout from DWARF where the types are there, else `fallback`. */
function dwarfOffsets(d: DwarfInfo, fallback: GoLabelsLayout): Pick<GoRuntimeOffsets, 'g' | 'm' | 'labels' | 'labelsFrom'> | undefined {
  const g = d.findStruct('runtime.g');
  const m = d.findStruct('runtime.m');
  if (!g || !m) return undefined;
  const at = (t: DwarfType, name: string): number | undefined => d.member(t, name)?.offset;
  const nested = (t: DwarfType, outer: string, inner: string): number | undefined => {
    const o = d.member(t, outer);
    const i = o && d.member(d.resolve(o.type), inner);
    return o && i ? o.offset + i.offset : undefined;
  };
  const gOff = {
    goid: at(g, 'goid'),
    m: at(g, 'm'),
    labels: at(g, 'labels'),
    stackLo: nested(g, 'stack', 'lo'),
    stackHi: nested(g, 'stack', 'hi'),
    schedSp: nested(g, 'sched', 'sp'),
    schedPc: nested(g, 'sched', 'pc'),
    schedBp: nested(g, 'sched', 'bp'),
    atomicstatus: at(g, 'atomicstatus'),
    waitreason: at(g, 'waitreason'),
  };
  const mOff = { g0: at(m, 'g0'), procid: at(m, 'procid'), gsignal: at(m, 'gsignal'), curg: at(m, 'curg') };
  if (!allDefined(gOff) || !allDefined(mOff)) return undefined;
  const labels = dwarfLabels(d);
  return labels ? { g: gOff, m: mOff, labels, labelsFrom: 'dwarf' } : { g: gOff, m: mOff, labels: clone(fallback), labelsFrom: 'table' };
}

/**
 * What runtime/pprof's labelMap is in this binary, from DWARF: a map[string]string (then the
 * layout of its header, hash<string,string>, and of its buckets) or a struct that holds the
 * slice of labels. Undefined when a type is missing, as in binaries without runtime/pprof
 * (whose goroutines never have labels). labelMap is found by name in the runtime/pprof unit,
 * everything else through references, so no other unit is walked.
 */
function dwarfLabels(d: DwarfInfo): GoLabelsLayout | undefined {
  const lm = d.resolve(d.findType('runtime/pprof.labelMap'));
  if (lm?.kind === 'map') {
    const hash = d.resolve(d.pointee(lm));
    const bucket = d.resolve(d.pointee(d.member(hash, 'buckets')?.type));
    if (!hash || !bucket || bucket.size === undefined) return undefined;
    const field = (t: DwarfType, ...names: string[]): number | undefined => names.map((n) => d.member(t, n)?.offset).find((o) => o !== undefined);
    const hmap = { count: field(hash, 'count'), flags: field(hash, 'flags'), B: field(hash, 'B'), buckets: field(hash, 'buckets'), oldbuckets: field(hash, 'oldbuckets') };
    const cells = d.resolve(d.member(bucket, 'tophash')?.type)?.count;
    const b = { size: bucket.size, cells, tophash: field(bucket, 'tophash'), keys: field(bucket, 'keys'), values: field(bucket, 'values', 'elems'), overflow: field(bucket, 'overflow') };
    if (!allDefined(hmap) || !allDefined(b)) return undefined;
    return { ...clone(MAP_LABELS), hmap, bucket: b };
  }
  if (lm?.kind === 'struct') {
    // labelMap embeds LabelSet (1.24–1.25) or label.Set (1.26+), whose only field is the slice.
    const inner = lm.members?.[0];
    const list = inner && d.resolve(inner.type)?.members?.[0];
    const slice = list && d.resolve(list.type);
    const label = slice?.kind === 'slice' ? d.resolve(slice.elem) : undefined;
    const [key, value] = label?.members ?? [];
    if (!inner || !list || !slice || !label || label.size === undefined || !key || !value) return undefined;
    const base = inner.offset + list.offset;
    const part = (n: string): number | undefined => {
      const o = d.member(slice, n)?.offset;
      return o === undefined ? undefined : base + o;
    };
    const hdr = { array: part('array'), len: part('len'), cap: part('cap') };
    if (!allDefined(hdr)) return undefined;
    return { ...clone(SLICE_LABELS), slice: hdr, label: { size: label.size, key: key.offset, value: value.offset } };
  }
  return undefined;
}

/**
 * Where the g of a thread lives (see the header comment). Undefined for architectures other
 * than amd64 and arm64.
 */
export function goTlsG(elf: ElfFile): GoTlsG | undefined {
  if (!elf.is64) return undefined;
  if (elf.machine === EM_AARCH64) return { arch: 'arm64', register: 'x28' };
  if (elf.machine !== EM_X86_64) return undefined;
  const PT_INTERP = 3;
  const PT_TLS = 7;
  const tls = elf.segments.find((p) => p.type === PT_TLS);
  const interp = elf.segments.some((p) => p.type === PT_INTERP);
  if (elf.type === ET_DYN && !interp) return { arch: 'amd64', offset: undefined, how: 'unknown-shared-library' };
  if (!tls) return { arch: 'amd64', offset: -8, how: 'runtime-tls' };
  const blockSize = alignUp(tls.memsz, tls.align);
  const tlsg = tlsSymbolValue(elf, 'runtime.tlsg');
  if (tlsg !== undefined) return { arch: 'amd64', offset: tlsg - blockSize, how: 'tlsg-symbol' };
  if (tls.memsz <= 8) return { arch: 'amd64', offset: -blockSize, how: 'only-tls-variable' };
  return { arch: 'amd64', offset: undefined, how: 'unknown-stripped' };
}

/** st_value (the offset in the TLS block) of the STT_TLS symbol `name` in .symtab. */
function tlsSymbolValue(elf: ElfFile, name: string): number | undefined {
  const STT_TLS = 6;
  return symtabValue(elf, name, STT_TLS);
}

/**
 * st_value of the symbol `name` in .symtab (of symbol type `type` when given): a link-time
 * address for data and functions, an offset in the TLS block for STT_TLS. Undefined when the
 * binary has no .symtab (stripped) or no such symbol.
 */
export function symtabValue(elf: ElfFile, name: string, type?: number): number | undefined {
  const ENT = 24;
  const symtab = elf.sections.find((s) => s.type === SHT_SYMTAB);
  if (!symtab || symtab.type === SHT_NOBITS || symtab.entsize !== ENT) return undefined;
  const strtab = elf.sections[symtab.link];
  if (!strtab || strtab.type === SHT_NOBITS) return undefined;
  // Where the name is in the string table first (it may end a longer name: linkers merge
  // tails), then the symbols that point there. Reading the string at every symbol's offset was
  // one read per symbol: millions of them for a big or hostile table, in the agent's main thread.
  const at = namePositions(elf, strtab, Buffer.from(name + '\0', 'latin1'));
  if (at.size === 0) return undefined;
  const chunk = Buffer.allocUnsafe(ENT * 4096);
  const count = Math.floor(symtab.size / ENT);
  for (let first = 0; first < count; first += 4096) {
    const n = Math.min(4096, count - first);
    const buf = elf.read(symtab.offset + first * ENT, n * ENT, chunk);
    for (let i = 0; i < n; i++) {
      const o = i * ENT;
      if (type !== undefined && (buf[o + 4] & 0xf) !== type) continue;
      if (at.has(buf.readUInt32LE(o))) return Number(buf.readBigUInt64LE(o + 8));
    }
  }
  return undefined;
}

/** Offsets of `want` in the string table `strtab` (its first 64), read a window at a time. */
function namePositions(elf: ElfFile, strtab: ElfSection, want: Buffer): Set<number> {
  const found = new Set<number>();
  const WINDOW = 1 << 20;
  const window = Buffer.allocUnsafe(WINDOW + want.length);
  for (let start = 0; start < strtab.size && found.size < 64; start += WINDOW) {
    const len = Math.min(WINDOW + want.length - 1, strtab.size - start);
    const buf = elf.read(strtab.offset + start, len, window);
    for (let p = buf.indexOf(want); p >= 0 && p < WINDOW && found.size < 64; p = buf.indexOf(want, p + 1)) found.add(start + p);
  }
  return found;
}

function alignUp(n: number, align: number): number {
  return align > 1 ? Math.ceil(n / align) * align : n;
}

function allDefined<T extends Record<string, number | undefined>>(o: T): o is { [K in keyof T]: number } & T {
  return Object.values(o).every((x) => x !== undefined);
}

function clone<T>(o: T): T {
  return structuredClone(o);
}
