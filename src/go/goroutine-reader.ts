// The goroutine of a thread and its pprof labels, read from the process's memory with the
// offsets of runtime-offsets.ts: the same pointer chain the BPF sampler follows, written out in
// user space where it is easy to test against live Go processes (and to read a process that
// is stopped, e.g. from a core dump). Every read is bounded; a bad pointer ends the walk.
// Also every goroutine of the process through runtime.allgs (allgs.ts finds it), with its state
// and where it is parked, and the frame-pointer walk of a parked goroutine's stack: the
// reference for the BPF walker of goroutine-level off-CPU.

import type { GoMapLabels, GoRuntimeOffsets, GoSliceLabels } from './runtime-offsets.js';
import { G_SCAN } from './wait-reasons.js';

/** Reads `length` bytes at `addr` of the target; undefined when that memory is not readable. */
export type ReadMemory = (addr: number, length: number) => Buffer | undefined;

export interface GoroutineLimits {
  /** Labels read at most (default 64). */
  maxLabels?: number;
  /** Bytes read of a key or value at most (default 256); longer ones are cut. */
  maxString?: number;
  /** Buckets plus overflow buckets visited at most, for Go ≤1.23 maps (default 256). */
  maxBuckets?: number;
}

export interface Goroutine {
  /** Address of the runtime.g. */
  g: number;
  goid: number;
  /** The thread was on its scheduler (g0) or signal stack: g is m.curg. */
  viaCurg: boolean;
  /** Labels as stored (sorted by key from Go 1.24; in map order before). */
  labels: Array<[string, string]>;
}

/** The g pointer of a thread on amd64: the word at fs_base + offset. */
export function goGFromTls(read: ReadMemory, fsBase: number, o: GoRuntimeOffsets): number | undefined {
  if (o.tls.arch !== 'amd64' || o.tls.offset === undefined) return undefined;
  return u64(read, fsBase + o.tls.offset);
}

/**
 * The user goroutine for a thread whose current g is `gp` (from TLS on amd64, register x28 on
 * arm64): when the thread runs on g0 or gsignal, the goroutine is m.curg; undefined when there
 * is none (an idle M) or memory cannot be read.
 */
export function readGoroutine(read: ReadMemory, gp: number, o: GoRuntimeOffsets, limits: GoroutineLimits = {}): Goroutine | undefined {
  if (!gp) return undefined;
  const m = u64(read, gp + o.g.m);
  let g = gp;
  let viaCurg = false;
  if (m) {
    const g0 = u64(read, m + o.m.g0);
    const gsignal = u64(read, m + o.m.gsignal);
    if (g === g0 || g === gsignal) {
      g = u64(read, m + o.m.curg) ?? 0;
      viaCurg = true;
      if (!g) return undefined;
    }
  }
  const goid = u64(read, g + o.g.goid);
  if (goid === undefined) return undefined;
  return { g, goid, viaCurg, labels: readLabels(read, u64(read, g + o.g.labels), o, limits) };
}

/** The labels behind g.labels (`p`, the *labelMap; 0 or undefined: none). */
function readLabels(read: ReadMemory, p: number | undefined, o: GoRuntimeOffsets, limits: GoroutineLimits): Array<[string, string]> {
  if (!p) return [];
  const lim = { maxLabels: limits.maxLabels ?? 64, maxString: limits.maxString ?? 256, maxBuckets: limits.maxBuckets ?? 256 };
  return o.labels.format === 'slice' ? sliceLabels(read, p, o.labels, lim) : mapLabels(read, p, o.labels, lim);
}

/** One goroutine of runtime.allgs, as its runtime.g says. */
export interface GoroutineState {
  /** Address of the runtime.g. */
  g: number;
  goid: number;
  /** g.atomicstatus without the _Gscan bit: G_WAITING etc. (wait-reasons.ts). */
  status: number;
  /** The _Gscan bit was set: the garbage collector was scanning the stack. */
  scan: boolean;
  /** g.waitreason, meaningful for G_WAITING: an index into goWaitReasons(minor). */
  waitreason: number;
  /** g.sched: where a goroutine that is not running resumes; bp is its frame pointer then. */
  sched: { sp: number; pc: number; bp: number };
  /** g.stack: the goroutine's stack is [lo, hi). */
  stack: { lo: number; hi: number };
  labels: Array<[string, string]>;
}

/** Goroutines read at most by readAllGoroutines unless told otherwise. */
const MAX_GOROUTINES = 1 << 20;

/**
 * Every goroutine in runtime.allgs (at `allgsAddr` in the process: the link-time address plus
 * the load bias), in allgs order, dead ones included (status G_DEAD; the runtime reuses them).
 * At most `opts.max` (default 2^20); a g that cannot be read is left out. Undefined when the
 * slice header cannot be read. The process runs on while this reads, so a goroutine's fields
 * may come from different moments: a reference for tests, not a snapshot.
 */
export function readAllGoroutines(
  read: ReadMemory,
  allgsAddr: number,
  o: GoRuntimeOffsets,
  opts: { max?: number } & GoroutineLimits = {},
): GoroutineState[] | undefined {
  const hdr = read(allgsAddr, 16);
  if (!hdr) return undefined;
  const array = num(hdr.readBigUInt64LE(0));
  const len = Math.min(num(hdr.readBigUInt64LE(8)), opts.max ?? MAX_GOROUTINES);
  const out: GoroutineState[] = [];
  if (!array || len <= 0) return out;
  const G = o.g;
  const span = Math.max(G.goid, G.m, G.labels, G.stackLo, G.stackHi, G.schedSp, G.schedPc, G.schedBp, G.atomicstatus, G.waitreason) + 8;
  const PER_READ = 4096;
  for (let first = 0; first < len; first += PER_READ) {
    const n = Math.min(PER_READ, len - first);
    const ptrs = read(array + first * 8, n * 8);
    if (!ptrs) break;
    for (let i = 0; i < n; i++) {
      const g = num(ptrs.readBigUInt64LE(i * 8));
      const b = g ? read(g, span) : undefined;
      if (!b) continue;
      const w = (off: number): number => num(b.readBigUInt64LE(off));
      const status = b.readUInt32LE(G.atomicstatus);
      out.push({
        g,
        goid: w(G.goid),
        status: status & ~G_SCAN,
        scan: (status & G_SCAN) !== 0,
        waitreason: b[G.waitreason],
        sched: { sp: w(G.schedSp), pc: w(G.schedPc), bp: w(G.schedBp) },
        stack: { lo: w(G.stackLo), hi: w(G.stackHi) },
        labels: readLabels(read, w(G.labels), o, opts),
      });
    }
  }
  return out;
}

/**
 * The stack of a goroutine that is not running, as return addresses, innermost first: the
 * frame-pointer walk Go's own fpTracebackPCs does, starting where the goroutine resumes.
 * The first pc is g.sched.pc, then, with fp = g.sched.bp, the return address at fp+8 and the
 * next fp at *fp, until fp is 0, the frame [fp, fp+16) leaves [stack.lo, stack.hi), fp does not
 * grow (callers' frames are higher up), or `maxFrames` pcs. A goroutine started by `go` ends with
 * runtime.goexit (its return address, goexit+1). Symbolize pc-1 for every frame: each one is a
 * return address, sched.pc included (mcall's, inside runtime.gopark, for a parked goroutine).
 * g.sched means something only when the goroutine is not running (_Gwaiting, _Grunnable,
 * _Gpreempted, _Gsyscall); in _Gsyscall before Go 1.23, entersyscall saved pc and sp but not bp,
 * so the frames after the first come from a stale bp. [] when sched.pc is 0.
 */
export function goroutineStack(read: ReadMemory, gr: Pick<GoroutineState, 'sched' | 'stack'>, maxFrames = 127): number[] {
  const pcs: number[] = [];
  if (!gr.sched.pc || maxFrames <= 0) return pcs;
  pcs.push(gr.sched.pc);
  const { lo, hi } = gr.stack;
  let fp = gr.sched.bp;
  let prev = 0;
  while (pcs.length < maxFrames && fp !== 0 && fp >= lo && fp + 16 <= hi && fp > prev) {
    const frame = read(fp, 16);
    if (!frame) break;
    const ret = num(frame.readBigUInt64LE(8));
    if (!ret) break;
    pcs.push(ret);
    prev = fp;
    fp = num(frame.readBigUInt64LE(0));
  }
  return pcs;
}

/** Go 1.24+: *labelMap is { array, len, cap } of {key, value string}. */
function sliceLabels(read: ReadMemory, p: number, L: GoSliceLabels, lim: Required<GoroutineLimits>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const array = u64(read, p + L.slice.array);
  const len = u64(read, p + L.slice.len);
  if (!array || !len) return out;
  for (let i = 0; i < Math.min(len, lim.maxLabels); i++) {
    const cell = read(array + i * L.label.size, L.label.size);
    if (!cell) break;
    const k = goString(read, cell, L.label.key + L.string.ptr, L.label.key + L.string.len, lim.maxString);
    const v = goString(read, cell, L.label.value + L.string.ptr, L.label.value + L.string.len, lim.maxString);
    if (k === undefined || v === undefined) break;
    out.push([k, v]);
  }
  return out;
}

/** Go ≤1.23: *labelMap holds the *hmap of a map[string]string; live cells of both bucket arrays. */
function mapLabels(read: ReadMemory, p: number, L: GoMapLabels, lim: Required<GoroutineLimits>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const h = u64(read, p);
  if (!h) return out;
  const hdr = read(h, Math.max(L.hmap.count, L.hmap.buckets, L.hmap.oldbuckets) + 8);
  if (!hdr) return out;
  const count = num(hdr.readBigUInt64LE(L.hmap.count));
  const B = hdr[L.hmap.B];
  const flags = hdr[L.hmap.flags];
  const buckets = num(hdr.readBigUInt64LE(L.hmap.buckets));
  const old = num(hdr.readBigUInt64LE(L.hmap.oldbuckets));
  if (B > 16) return out;
  let budget = lim.maxBuckets;
  const walk = (base: number, n: number): void => {
    for (let i = 0; i < n && budget > 0; i++) {
      let b = base + i * L.bucket.size;
      while (b && budget-- > 0) {
        const cell = read(b, L.bucket.size);
        if (!cell) return;
        for (let c = 0; c < L.bucket.cells; c++) {
          if (cell[L.bucket.tophash + c] < L.minTopHash) continue;
          const ko = L.bucket.keys + c * L.string.size;
          const vo = L.bucket.values + c * L.string.size;
          const k = goString(read, cell, ko + L.string.ptr, ko + L.string.len, lim.maxString);
          const v = goString(read, cell, vo + L.string.ptr, vo + L.string.len, lim.maxString);
          if (k === undefined || v === undefined) continue;
          out.push([k, v]);
          if (out.length >= Math.min(count, lim.maxLabels)) return;
        }
        b = num(cell.readBigUInt64LE(L.bucket.overflow));
      }
    }
  };
  if (buckets && count > 0) walk(buckets, 2 ** B);
  if (old && out.length < Math.min(count, lim.maxLabels)) walk(old, flags & L.sameSizeGrow ? 2 ** B : 2 ** Math.max(0, B - 1));
  return out;
}

function goString(read: ReadMemory, buf: Buffer, ptrAt: number, lenAt: number, max: number): string | undefined {
  const ptr = num(buf.readBigUInt64LE(ptrAt));
  const len = num(buf.readBigUInt64LE(lenAt));
  if (len === 0) return '';
  if (!ptr) return undefined;
  return read(ptr, Math.min(len, max))?.toString('utf8');
}

function u64(read: ReadMemory, addr: number): number | undefined {
  const b = read(addr, 8);
  return b ? num(b.readBigUInt64LE(0)) : undefined;
}

function num(v: bigint): number {
  return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
}
