// JIT symbol maps (/tmp/perf-PID.map): one `START SIZE name` line per generated function, hex
// addresses, written by V8 (--perf-basic-prof), the JVM (perf-map-agent), .NET, LuaJIT …
//
// The file belongs to the profiled process, which may be hostile, and grows while it runs (a
// long-lived V8 writes hundreds of megabytes). So:
// - it is opened as an untrusted file (untrusted-file.ts): inside the process's root, a regular
//   file only (a FIFO would block for ever), owned by the process's user;
// - it is read incrementally: each refresh reads only what was appended since the last one
//   (up to a byte budget; the rest waits for the next refresh), and complete lines only;
// - memory is bounded: an entry is 26 bytes of typed arrays (start, end, where its name is in
//   the file, the name's length), the names stay in the file and are read when an address is
//   looked up (through the descriptor kept open, so a deleted map still answers), at most
//   `maxEntries` entries are kept (past it, the oldest quarter goes: JITs reuse code space, so
//   later lines are the live ones), and a name is at most MAX_NAME bytes;
// - everything skipped is counted (stats): malformed lines, entries evicted, bytes not read yet.

import { closeSync, readSync } from 'node:fs';
import { lastAtOrBelow } from './sorted-search.js';
import { openUntrusted, UntrustedFileError, type OpenUntrustedOptions } from './untrusted-file.js';

/** Entries kept per map by default: 6.5 MiB of typed arrays at most (twice that while a refresh merges). */
export const DEFAULT_MAX_ENTRIES = 1 << 18;
/** New lines are merged into the table this many at a time. */
const BATCH_LINES = 1 << 16;
/** Bytes read per refresh by default. */
export const DEFAULT_READ_BUDGET = 1 << 30;
/** Longest name kept; longer ones are cut (and counted). */
export const MAX_NAME = 1024;
/** A line longer than this is malformed (names are cut, but the line must end somewhere). */
const MAX_LINE = 64 << 10;
const CHUNK = 4 << 20;
const NL = 0x0a;

export interface PerfMapHit {
  name: string;
  offset: number;
}

export interface PerfMapOptions extends OpenUntrustedOptions {
  maxEntries?: number;
  /** Bytes read per refresh at most; what is left is read by the next refreshes. */
  readBudget?: number;
}

export interface PerfMapStats {
  /** Lines read and kept as entries (before eviction). */
  lines: number;
  /** Entries kept now. */
  entries: number;
  /** Lines that did not parse (or were too long). */
  malformed: number;
  /** Entries dropped to stay within maxEntries, oldest first. */
  evicted: number;
  /** Names cut at MAX_NAME bytes. */
  longNames: number;
  /** Bytes of the file read so far. */
  bytesRead: number;
  /** Bytes of the file not read yet (over the read budget, or an unfinished last line). */
  bytesUnread: number;
}

export class PerfMap {
  private fd = -1;
  private dev = -1;
  private ino = -1;
  /** Where the next read starts: just after the last complete line read. */
  private readOffset = 0;
  /** Inside a line longer than MAX_LINE: skip to its end. */
  private skipping = false;
  private size = 0;
  /** The entries, by start address; `spare` is where a merge writes (kept during a refresh only). */
  private table = new Table(0);
  private spare = new Table(0);
  private readonly names = new Map<number, string>();
  private readonly maxEntries: number;
  private readonly readBudget: number;
  private readonly stats_ = { lines: 0, malformed: 0, evicted: 0, longNames: 0 };

  constructor(
    readonly path: string,
    private readonly opts: PerfMapOptions = {},
  ) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.readBudget = Math.max(CHUNK, opts.readBudget ?? DEFAULT_READ_BUDGET);
  }

  /**
   * Reads what was appended since the last refresh (everything, if the file was replaced or
   * truncated). False when there is no map that may be read; a map read before stays usable.
   */
  refresh(): boolean {
    let opened;
    try {
      opened = openUntrusted(this.path, { root: this.opts.root, owners: this.opts.owners });
    } catch (e) {
      if (!(e instanceof UntrustedFileError)) throw e;
      return this.fd >= 0;
    }
    const st = opened.stats;
    if (this.fd >= 0 && st.dev === this.dev && st.ino === this.ino && st.size >= this.readOffset) {
      closeSync(opened.fd);
    } else {
      this.reset();
      this.fd = opened.fd;
      this.dev = st.dev;
      this.ino = st.ino;
    }
    this.size = st.size;
    try {
      this.readAppended();
    } catch {
      // A read error (the file shrank under us): what was read stays, the rest is unread.
    } finally {
      this.spare = new Table(0);
    }
    return true;
  }

  get length(): number {
    return this.table.n;
  }

  get stats(): PerfMapStats {
    return { ...this.stats_, entries: this.table.n, bytesRead: this.readOffset, bytesUnread: Math.max(0, this.size - this.readOffset) };
  }

  lookup(addr: number): PerfMapHit | undefined {
    const t = this.table;
    const i = lastAtOrBelow(t.starts.subarray(0, t.n), addr);
    if (i < 0 || addr >= t.ends[i]) return undefined;
    const name = this.nameOf(i);
    return name === undefined ? undefined : { name, offset: addr - t.starts[i] };
  }

  /** Closes the file; the map is empty until the next refresh. */
  close(): void {
    this.reset();
  }

  private reset(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.dev = this.ino = -1;
    this.readOffset = 0;
    this.size = 0;
    this.skipping = false;
    this.table = new Table(0);
    this.names.clear();
  }

  private nameOf(i: number): string | undefined {
    const off = this.table.offs[i];
    let name = this.names.get(off);
    if (name !== undefined) return name;
    const len = this.table.lens[i];
    const buf = Buffer.allocUnsafe(len);
    let got = 0;
    try {
      while (got < len) {
        const r = readSync(this.fd, buf, got, len - got, off + got);
        if (r <= 0) break;
        got += r;
      }
    } catch {
      return undefined;
    }
    name = buf.toString('utf8', 0, got).trim();
    if (name === '') return undefined;
    if (this.names.size >= 4096) this.names.clear();
    this.names.set(off, name);
    return name;
  }

  private readAppended(): void {
    let budget = this.readBudget;
    const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, this.size - this.readOffset)));
    const batch = new Table(Math.min(BATCH_LINES, 1024));
    while (budget > 0 && this.readOffset < this.size) {
      const want = Math.min(buf.length, this.size - this.readOffset, budget);
      const got = readSync(this.fd, buf, 0, want, this.readOffset);
      if (got <= 0) break;
      budget -= got;
      const view = buf.subarray(0, got);
      let pos = 0;
      if (this.skipping) {
        const nl = view.indexOf(NL);
        if (nl < 0) {
          this.readOffset += got;
          continue;
        }
        this.skipping = false;
        pos = nl + 1;
      }
      const lastNl = view.lastIndexOf(NL);
      if (lastNl < pos) {
        // No complete line in what was read: wait for more, unless the line is already too long.
        if (got - pos > MAX_LINE) {
          this.stats_.malformed++;
          this.skipping = true;
          this.readOffset += got;
          continue;
        }
        this.readOffset += pos;
        break;
      }
      while (pos <= lastNl) {
        const nl = view.indexOf(NL, pos);
        if (nl - pos > MAX_LINE) this.stats_.malformed++;
        else this.parseLine(view, pos, nl, this.readOffset, batch);
        pos = nl + 1;
        if (batch.n === BATCH_LINES) {
          this.merge(batch);
          batch.n = 0;
        }
      }
      this.readOffset += pos;
    }
    if (batch.n > 0) this.merge(batch);
  }

  /** `START SIZE name` in view[from, to); `base` is the file offset of view[0]. */
  private parseLine(view: Buffer, from: number, to: number, base: number, batch: Table): void {
    let p = from;
    const start = hexAt(view, p, to);
    if (start === undefined) return this.malformed();
    p = start.end;
    if (view[p] !== 0x20) return this.malformed();
    const size = hexAt(view, p + 1, to);
    if (size === undefined || size.value <= 0) return this.malformed();
    p = size.end;
    if (view[p] !== 0x20) return this.malformed();
    p++;
    while (p < to && (view[p] === 0x20 || view[p] === 0x09)) p++;
    let end = to;
    while (end > p && (view[end - 1] === 0x0d || view[end - 1] === 0x20)) end--;
    if (end <= p) return this.malformed();
    let len = end - p;
    if (len > MAX_NAME) {
      len = MAX_NAME;
      this.stats_.longNames++;
    }
    this.stats_.lines++;
    batch.push(start.value, start.value + size.value, base + p, len);
  }

  private malformed(): void {
    this.stats_.malformed++;
  }

  /** Adds a batch of new lines (in file order): for one start address the latest line wins. */
  private merge(b: Table): void {
    const order = new Uint32Array(b.n);
    for (let i = 0; i < b.n; i++) order[i] = i;
    // By start, then newest first (the name's file offset grows with every line).
    order.sort((x, y) => b.starts[x] - b.starts[y] || b.offs[y] - b.offs[x]);
    const old = this.table;
    const needed = old.n + b.n;
    const out = this.spare.capacity >= needed ? this.spare : new Table(Math.max(needed, Math.min(2 * needed, this.maxEntries + BATCH_LINES)));
    let i = 0;
    let j = 0;
    let k = 0;
    while (i < old.n || j < b.n) {
      const bi = j < b.n ? order[j] : -1;
      const bStart = bi >= 0 ? b.starts[bi] : Infinity;
      if (i < old.n && old.starts[i] < bStart) {
        out.copyFrom(k++, old, i++);
        continue;
      }
      // The batch's newest line for this start replaces the old entry and the batch's older lines.
      out.copyFrom(k++, b, bi);
      while (j < b.n && b.starts[order[j]] === bStart) j++;
      while (i < old.n && old.starts[i] === bStart) i++;
    }
    out.n = k;
    this.table = out;
    old.n = 0;
    this.spare = old;
    if (k > this.maxEntries) this.evictOldest();
  }

  /** Keeps the newest 3/4 of maxEntries (by where their line is in the file): evictions stay rare. */
  private evictOldest(): void {
    const t = this.table;
    const keep = Math.max(1, Math.floor((this.maxEntries * 3) / 4));
    const cut = t.offs.slice(0, t.n).sort()[t.n - keep];
    let k = 0;
    for (let i = 0; i < t.n; i++) if (t.offs[i] >= cut) t.copyFrom(k++, t, i);
    this.stats_.evicted += t.n - k;
    t.n = k;
    this.names.clear();
  }
}

/** Entries in parallel typed arrays: the sorted table of a map, or a batch of new lines. */
class Table {
  starts: Float64Array;
  ends: Float64Array;
  /** Where the name is in the file; also the line's age (a later line is further on). */
  offs: Float64Array;
  lens: Uint16Array;
  n = 0;

  constructor(readonly capacity: number) {
    this.starts = new Float64Array(capacity);
    this.ends = new Float64Array(capacity);
    this.offs = new Float64Array(capacity);
    this.lens = new Uint16Array(capacity);
  }

  push(start: number, end: number, off: number, len: number): void {
    if (this.n === this.starts.length) this.grow();
    this.starts[this.n] = start;
    this.ends[this.n] = end;
    this.offs[this.n] = off;
    this.lens[this.n] = len;
    this.n++;
  }

  copyFrom(k: number, from: Table, i: number): void {
    this.starts[k] = from.starts[i];
    this.ends[k] = from.ends[i];
    this.offs[k] = from.offs[i];
    this.lens[k] = from.lens[i];
  }

  private grow(): void {
    const cap = Math.max(1024, this.starts.length * 2);
    const grown = <T extends Float64Array | Uint16Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(cap);
      b.set(a);
      return b;
    };
    this.starts = grown(this.starts);
    this.ends = grown(this.ends);
    this.offs = grown(this.offs);
    this.lens = grown(this.lens);
  }
}
/** A hex number (optionally 0x-prefixed, at most 16 digits) at view[p], before `to`. */
function hexAt(view: Buffer, p: number, to: number): { value: number; end: number } | undefined {
  if (p + 1 < to && view[p] === 0x30 && (view[p + 1] === 0x78 || view[p + 1] === 0x58)) p += 2;
  let v = 0;
  const first = p;
  while (p < to) {
    const c = view[p];
    let d: number;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
    else break;
    v = v * 16 + d;
    p++;
  }
  if (p === first || p - first > 16) return undefined;
  return { value: v, end: p };
}
