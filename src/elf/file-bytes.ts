// Byte ranges of a file read on demand, a page at a time, through one small page cache shared by
// every range of the thread. Go's pclntab is the reason: a big Go binary's table is tens of
// megabytes (Parca's: 55 MB), and a symbolizer that reads it whole holds that much per binary
// while only a few pages of it answer a window's addresses. A range reads through the path it
// was opened from and checks the file's identity first, so a recycled /proc/self/fd number or
// a replaced binary gives no bytes (reads throw) rather than another file's.
//
// At most MAX_OPEN files stay open, least recently used closed first; closeFileRanges() closes
// them all (a worker thread at the end of each task: a terminated worker runs no cleanup).

import { closeSync, readSync } from 'node:fs';
import { openUntrusted } from '../untrusted-file.js';
import { fileIdentity } from './elf-file.js';

/** Little-endian reads over some bytes: a Buffer, or a range of a file. */
export interface Bytes {
  readonly length: number;
  u8(off: number): number;
  u32(off: number): number;
  i32(off: number): number;
  /** A 64-bit value as a number (addresses and offsets fit in 53 bits). */
  u64(off: number): number;
  /** Offset of the first 0 byte at or after `off` (at most `max` bytes on), or -1. */
  indexOfZero(off: number, max: number): number;
  utf8(start: number, end: number): string;
  /** `len` bytes at `off`: a view of the memory, or a copy of the file's bytes (holding no page). */
  bytes(off: number, len: number): Buffer;
}

/** Bytes in memory. */
export class BufferBytes implements Bytes {
  constructor(readonly buf: Buffer) {}
  get length(): number {
    return this.buf.length;
  }
  u8(off: number): number {
    const v = this.buf[off];
    if (v === undefined) throw new RangeError(`read at ${off} out of range`);
    return v;
  }
  u32(off: number): number {
    return this.buf.readUInt32LE(off);
  }
  i32(off: number): number {
    return this.buf.readInt32LE(off);
  }
  u64(off: number): number {
    return Number(this.buf.readBigUInt64LE(off));
  }
  indexOfZero(off: number, max: number): number {
    // Only the next max + 1 bytes: a table without zeros must not be scanned to its end per name.
    const end = this.buf.subarray(off, off + max + 1).indexOf(0);
    return end < 0 ? -1 : off + end;
  }
  utf8(start: number, end: number): string {
    return this.buf.toString('utf8', start, end);
  }
  bytes(off: number, len: number): Buffer {
    if (off < 0 || len < 0 || off + len > this.buf.length) throw new RangeError(`read of ${len} at ${off} out of range`);
    return this.buf.subarray(off, off + len);
  }
}

const PAGE_SHIFT = 14;
const PAGE = 1 << PAGE_SHIFT;
/** Pages kept over all ranges of this thread: 256 × 16 KiB = 4 MiB. */
const MAX_PAGES = 256;
const MAX_OPEN = 8;

/** (range id × 2^32 + page index) → page; Map order is the LRU order. */
const pages = new Map<number, Buffer>();
/** Open files, keyed by path + identity; Map order is the LRU order. */
const open = new Map<string, number>();
let nextId = 1;

/** Closes every file a range holds open (the ranges stay usable: they reopen on demand). */
export function closeFileRanges(): void {
  for (const fd of open.values()) closeSync(fd);
  open.clear();
}

/** Drops every cached page (tests; memory pressure). */
export function dropCachedPages(): void {
  pages.clear();
}

/** Pages and open files right now (tests, diagnostics). */
export function fileBytesStats(): { pages: number; bytes: number; openFiles: number } {
  let bytes = 0;
  for (const p of pages.values()) bytes += p.length;
  return { pages: pages.size, bytes, openFiles: open.size };
}

/** `length` bytes at `offset` of the file at `path`, whose identity must stay `identity`. */
export class FileBytes implements Bytes {
  private readonly id = nextId++;
  /** The page last read, kept out of the map lookup for runs of reads in one page. */
  private lastIndex = -1;
  private last: Buffer = Buffer.alloc(0);

  constructor(
    private path: string,
    private readonly identity: string,
    private readonly offset: number,
    readonly length: number,
  ) {}

  /** Reads through `path` from now on (another name for the same file). */
  moveTo(path: string): void {
    this.path = path;
  }

  u8(off: number): number {
    if (off < 0 || off >= this.length) throw new RangeError(`read at ${off} out of range`);
    return this.page(off >>> PAGE_SHIFT)[off & (PAGE - 1)];
  }

  u32(off: number): number {
    const p = this.span(off, 4);
    return p.buf.readUInt32LE(p.at);
  }

  i32(off: number): number {
    const p = this.span(off, 4);
    return p.buf.readInt32LE(p.at);
  }

  u64(off: number): number {
    const p = this.span(off, 8);
    return Number(p.buf.readBigUInt64LE(p.at));
  }

  indexOfZero(off: number, max: number): number {
    const limit = Math.min(this.length, off + max + 1);
    for (let at = off; at < limit; ) {
      const index = at >>> PAGE_SHIFT;
      const page = this.page(index);
      const base = index << PAGE_SHIFT;
      const z = page.indexOf(0, at - base);
      if (z >= 0 && base + z < limit) return base + z;
      at = base + PAGE;
    }
    return -1;
  }

  utf8(start: number, end: number): string {
    const p = this.span(start, end - start);
    return p.buf.toString('utf8', p.at, p.at + end - start);
  }

  bytes(off: number, len: number): Buffer {
    const p = this.span(off, len);
    // A view into a page would keep the whole page alive as long as the caller keeps the bytes.
    const crossed = (off & (PAGE - 1)) + len > PAGE; // span made a copy already
    return crossed ? p.buf : Buffer.from(p.buf.subarray(p.at, p.at + len));
  }

  /** `len` bytes at `off`: a view into one page, or a copy when they cross a page boundary. */
  private span(off: number, len: number): { buf: Buffer; at: number } {
    if (off < 0 || len < 0 || off + len > this.length) throw new RangeError(`read of ${len} at ${off} out of range`);
    const index = off >>> PAGE_SHIFT;
    const at = off & (PAGE - 1);
    if (at + len <= PAGE) return { buf: this.page(index), at };
    const out = Buffer.allocUnsafe(len);
    for (let done = 0; done < len; ) {
      const i = (off + done) >>> PAGE_SHIFT;
      const a = (off + done) & (PAGE - 1);
      const n = Math.min(len - done, PAGE - a);
      this.page(i).copy(out, done, a, a + n);
      done += n;
    }
    return { buf: out, at: 0 };
  }

  private page(index: number): Buffer {
    if (index === this.lastIndex) return this.last;
    const key = this.id * 2 ** 32 + index;
    let p = pages.get(key);
    if (p) {
      pages.delete(key);
    } else {
      const start = index << PAGE_SHIFT;
      p = this.read(this.offset + start, Math.min(PAGE, this.length - start));
      if (pages.size >= MAX_PAGES) pages.delete(pages.keys().next().value as number);
    }
    pages.set(key, p);
    this.lastIndex = index;
    this.last = p;
    return p;
  }

  private read(offset: number, length: number): Buffer {
    const fd = this.fd();
    const buf = Buffer.allocUnsafe(length);
    for (let done = 0; done < length; ) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n <= 0) throw new RangeError(`short read at offset ${offset + done} of ${this.path}`);
      done += n;
    }
    return buf;
  }

  private fd(): number {
    const key = `${this.identity}\0${this.path}`;
    let fd = open.get(key);
    if (fd !== undefined) {
      open.delete(key);
      open.set(key, fd);
      return fd;
    }
    // A regular file only (never blocks on a FIFO put in its place), and only the same one.
    const opened = openUntrusted(this.path);
    fd = opened.fd;
    if (fileIdentity(opened.stats) !== this.identity) {
      closeSync(fd);
      throw new RangeError(`${this.path} is no longer the file that was read`);
    }
    if (open.size >= MAX_OPEN) {
      const [k, old] = open.entries().next().value as [string, number];
      closeSync(old);
      open.delete(k);
    }
    open.set(key, fd);
    return fd;
  }
}
