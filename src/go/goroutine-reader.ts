// The goroutine of a thread and its pprof labels, read from the process's memory with the
// offsets of runtime-offsets.ts: the same pointer chain the BPF sampler follows, written out in
// user space where it is easy to test against live Go processes (and to read a process that
// is stopped, e.g. from a core dump). Every read is bounded; a bad pointer ends the walk.

import type { GoMapLabels, GoRuntimeOffsets, GoSliceLabels } from './runtime-offsets.js';

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
  const p = u64(read, g + o.g.labels);
  const lim = { maxLabels: limits.maxLabels ?? 64, maxString: limits.maxString ?? 256, maxBuckets: limits.maxBuckets ?? 256 };
  let labels: Array<[string, string]> = [];
  if (p) labels = o.labels.format === 'slice' ? sliceLabels(read, p, o.labels, lim) : mapLabels(read, p, o.labels, lim);
  return { g, goid, viaCurg, labels };
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
