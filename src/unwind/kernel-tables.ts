// The kernel's copy of the unwind tables (bpf/oncpu.h; walked by bpf/capture.bpf.h): each mapped
// file's rows are converted once per identity (the process table's file key) in a worker, placed
// in the shared row and page arrays, and each process's executable mappings go into the LPM trie
// that takes the walk from an address to its file. A process is marked ready once every file it
// maps has been converted (or found to have no table): until then its samples are walked by
// frame pointers and keep the stack top for the leaf repair.
//
// Memory is bounded by the maps' capacities: a file that does not fit, after the tables no
// process maps any more have been dropped (least recently used first), gets none and is walked
// by frame pointers; every such miss is counted.

import { Tinypool } from 'tinypool';
import { logger } from '../logger.js';
import type { OnCpuSampler } from '../native.js';
import type { MappedFile, ProcessInfo } from '../process-table.js';
import { offsetToVaddr } from '../process-table.js';
import { PF_X, type ElfSegment } from '../elf/elf-file.js';
import type { ConvertedTable, ConvertTask } from './table-worker.js';

/** What the sampler offers for the tables (src/native.ts). */
export interface UnwindMapWriter {
  writeUnwind(which: 'rows' | 'pages' | 'files', first: number, values: Buffer): void;
  updateUnwindMappings(add: Buffer, remove: Buffer): void;
  setUnwindPid(pid: number, ready: boolean): void;
  setTableWakeups(on: boolean): void;
}

export interface UnwindCapacity {
  rows: number;
  pages: number;
  files: number;
  mappings: number;
}

export interface KernelTablesOptions {
  writer: UnwindMapWriter;
  capacity: UnwindCapacity;
  /** Converts a file (default: the table worker); tests may convert in place or later. */
  convert?: (task: ConvertTask) => Promise<ConvertedTable>;
  /** Worker lifetime when idle (default 2 s). */
  idleTimeoutMs?: number;
}

export interface KernelTablesStats {
  filesLoaded: number;
  /** Files with no unwind information at all, or unreadable. */
  filesWithoutTable: number;
  /** Files whose table did not fit in the maps (walked by frame pointers). */
  filesNotFitting: number;
  filesEvicted: number;
  /** Mapping prefixes the trie had no room for. */
  mappingsNotFitting: number;
  rowsUsed: number;
  pagesUsed: number;
  prefixes: number;
  processesReady: number;
  /** Bytes of CFI converted and the time it took (worker time). */
  cfiBytes: number;
  convertMs: number;
}

/** FW_UNWIND_NO_FILE. */
const NO_FILE = 0xffffffff;
const KEY_BYTES = 16;
const VALUE_BYTES = 32;
const FILE_BYTES = 24;

type FileStateKind = 'converting' | 'loaded' | 'none';

interface FileState {
  key: string;
  state: FileStateKind;
  slot: number;
  rows: Extent | undefined;
  pages: Extent | undefined;
  /** Processes whose mappings name this file; at 0 a loaded table stays until its room is needed. */
  refs: number;
  /** Processes waiting for the conversion. */
  waiting: Set<number>;
  /** The process table's file this was converted from. */
  source: MappedFile;
  /** The conversion found the file closed (swept) before it could read it. */
  gone?: boolean;
}

interface Extent {
  first: number;
  count: number;
}

interface MappingEntry {
  start: number;
  end: number;
  bias: bigint;
  file: FileState | undefined;
  keys: Buffer;
}

interface PidState {
  /** `${start}:${end}:${bias}:${file key}` → the entry in the trie. */
  entries: Map<string, MappingEntry>;
  /** The mappings last asked for, applied once no file of them is converting. */
  wanted: ProcessInfo | undefined;
  files: Set<FileState>;
  ready: boolean;
}

export class KernelTables {
  private readonly files = new Map<string, FileState>();
  private readonly pids = new Map<number, PidState>();
  private readonly rows: ExtentAllocator;
  private readonly pages: ExtentAllocator;
  private readonly freeSlots: number[];
  private pool: Tinypool | undefined;
  private readonly convert: (task: ConvertTask) => Promise<ConvertedTable>;
  private closed = false;
  readonly stats: KernelTablesStats = {
    filesLoaded: 0,
    filesWithoutTable: 0,
    filesNotFitting: 0,
    filesEvicted: 0,
    mappingsNotFitting: 0,
    rowsUsed: 0,
    pagesUsed: 0,
    prefixes: 0,
    processesReady: 0,
    cfiBytes: 0,
    convertMs: 0,
  };
  /** Conversions in flight (tests wait for them). */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(private readonly opts: KernelTablesOptions) {
    this.rows = new ExtentAllocator(opts.capacity.rows);
    this.pages = new ExtentAllocator(opts.capacity.pages);
    this.freeSlots = Array.from({ length: opts.capacity.files }, (_, i) => opts.capacity.files - 1 - i);
    this.convert = opts.convert ?? ((task) => this.workerPool().run(task) as Promise<ConvertedTable>);
    // A sample of a process not synced yet gets user space here within milliseconds.
    this.quietly('asking for wakeups', () => opts.writer.setTableWakeups(true));
  }

  /** Whether the process's mappings are all in the kernel (its samples use the tables). */
  isReady(pid: number): boolean {
    return this.pids.get(pid)?.ready === true;
  }

  /** The processes synced and not forgotten. */
  processIds(): number[] {
    return [...this.pids.keys()];
  }

  /** Whether the process is known here at all (synced at least once, ready or not). */
  has(pid: number): boolean {
    return this.pids.has(pid);
  }

  /**
   * Brings the kernel's view of `pid` in line with `info` (its mappings as the process table
   * read them): converts the files not seen yet, then writes its mappings and marks it ready.
   */
  sync(pid: number, info: ProcessInfo): void {
    if (this.closed) return;
    let st = this.pids.get(pid);
    if (!st) this.pids.set(pid, (st = { entries: new Map(), wanted: undefined, files: new Set(), ready: false }));
    st.wanted = info;
    const files = new Set<FileState>();
    for (const m of info.mappings) {
      const f = m.file && !m.file.error && m.perms.includes('x') ? this.fileFor(m.file) : undefined;
      if (f) files.add(f);
    }
    for (const f of files) if (!st.files.has(f)) f.refs++;
    for (const f of st.files) if (!files.has(f)) f.refs--;
    st.files = files;
    let pending = false;
    for (const f of files) {
      if (f.state === 'converting') {
        f.waiting.add(pid);
        pending = true;
      }
    }
    if (!pending) this.apply(pid, st);
  }

  /**
   * Converts files no process maps yet (a command's executable and the shared libraries it
   * will likely map), so that its first samples find their tables loaded.
   */
  prepare(files: MappedFile[]): void {
    if (this.closed) return;
    for (const f of files) if (!f.error) this.fileFor(f);
  }

  /** The process is gone, or its image was replaced: its mappings leave the kernel. */
  forget(pid: number): void {
    const st = this.pids.get(pid);
    if (!st) return;
    this.pids.delete(pid);
    const remove = Buffer.concat([...st.entries.values()].map((e) => e.keys));
    this.stats.prefixes -= remove.length / KEY_BYTES;
    if (st.ready) this.stats.processesReady--;
    this.quietly('forgetting a process', () => {
      this.opts.writer.setUnwindPid(pid, false);
      if (remove.length > 0) this.opts.writer.updateUnwindMappings(Buffer.alloc(0), remove);
    });
    for (const f of st.files) {
      f.waiting.delete(pid);
      f.refs--;
    }
  }

  /** Resolves once every conversion asked for so far is done and applied (tests, bench). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Bytes the kernel's tables use now (rows, page index, trie entries approximately). */
  get mapBytes(): number {
    return this.stats.rowsUsed * 8 + this.stats.pagesUsed * 4 + this.stats.prefixes * (KEY_BYTES + VALUE_BYTES);
  }

  async close(): Promise<void> {
    if (!this.closed) this.quietly('ending wakeups', () => this.opts.writer.setTableWakeups(false));
    this.closed = true;
    await this.settled().catch(() => {});
    await this.pool?.destroy();
    this.pool = undefined;
  }

  private workerPool(): Tinypool {
    this.pool ??= new Tinypool({
      filename: new URL('./table-worker.js', import.meta.url).href,
      minThreads: 0,
      maxThreads: 1,
      // Conversions come in bursts (a new process, a new library): the worker's heap goes back
      // soon after, and a small young generation keeps its peak down (node's table: ~35 MB).
      idleTimeout: this.opts.idleTimeoutMs ?? 2_000,
      resourceLimits: { maxYoungGenerationSizeMb: 4 },
    });
    return this.pool;
  }

  private fileFor(file: MappedFile): FileState {
    let f = this.files.get(file.key);
    if (f) {
      // Most recently used at the end: eviction takes from the front.
      this.files.delete(file.key);
      this.files.set(file.key, f);
      return f;
    }
    f = { key: file.key, state: 'converting', slot: -1, rows: undefined, pages: undefined, refs: 0, waiting: new Set(), source: file };
    this.files.set(file.key, f);
    const fs = f;
    // The worker opens the file when its turn comes: by then the process table may have closed
    // it (no process maps it) and the descriptor may be another file's, which the identity
    // refuses.
    const job = this.convert({ openPath: file.openPath, identity: file.identity })
      .then((t) => this.loaded(fs, t))
      .catch((e) => {
        logger().debug({ file: file.displayPath, err: (e as Error).message }, 'cannot convert unwind table');
        fs.state = 'none';
        this.stats.filesWithoutTable++;
      })
      .finally(() => {
        this.inFlight.delete(job);
        this.wake(fs);
      });
    this.inFlight.add(job);
    return f;
  }

  private loaded(f: FileState, t: ConvertedTable): void {
    this.stats.cfiBytes += t.cfiBytes;
    this.stats.convertMs += t.ms;
    const nRows = t.rows.byteLength / 8;
    const nPages = t.pages.byteLength / 4;
    if (t.gone) {
      // Nothing was read: the next process to map the file converts it from its new descriptor.
      if (this.files.get(f.key) === f) this.files.delete(f.key);
      f.state = 'none';
      f.gone = true;
      return;
    }
    if (this.closed || t.error !== undefined || nRows === 0 || this.files.get(f.key) !== f) {
      f.state = 'none';
      this.stats.filesWithoutTable++;
      return;
    }
    let rows: Extent | undefined;
    let pages: Extent | undefined;
    let slot: number | undefined;
    for (;;) {
      rows ??= this.rows.alloc(nRows);
      pages ??= this.pages.alloc(nPages);
      slot ??= this.freeSlots.pop();
      if (rows && pages && slot !== undefined) break;
      if (!this.evictOne(f)) {
        if (rows) this.rows.free(rows);
        if (pages) this.pages.free(pages);
        if (slot !== undefined) this.freeSlots.push(slot);
        f.state = 'none';
        this.stats.filesNotFitting++;
        logger().debug({ rows: nRows }, 'an unwind table does not fit in the maps: frame pointers there');
        return;
      }
    }
    const ok = this.quietly('writing an unwind table', () => {
      const w = this.opts.writer;
      w.writeUnwind('rows', rows.first, Buffer.from(t.rows.buffer, t.rows.byteOffset, t.rows.byteLength));
      w.writeUnwind('pages', pages.first, Buffer.from(t.pages.buffer, t.pages.byteOffset, t.pages.byteLength));
      const fe = Buffer.alloc(FILE_BYTES);
      fe.writeUInt32LE(rows.first, 0);
      fe.writeUInt32LE(nRows, 4);
      fe.writeUInt32LE(pages.first, 8);
      fe.writeUInt32LE(nPages, 12);
      fe.writeUInt32LE(t.pcBase >>> 0, 16);
      fe.writeUInt32LE(t.pageShift, 20);
      w.writeUnwind('files', slot, fe);
    });
    if (!ok) {
      this.rows.free(rows);
      this.pages.free(pages);
      this.freeSlots.push(slot);
      f.state = 'none';
      this.stats.filesWithoutTable++;
      return;
    }
    f.rows = rows;
    f.pages = pages;
    f.slot = slot;
    f.state = 'loaded';
    this.stats.filesLoaded++;
    this.stats.rowsUsed += nRows;
    this.stats.pagesUsed += nPages;
  }

  /** The processes that waited for f: those with no other conversion pending are applied. */
  private wake(f: FileState): void {
    const waiting = [...f.waiting];
    f.waiting.clear();
    for (const pid of waiting) {
      const st = this.pids.get(pid);
      // Its file was found closed, but the process maps it from a descriptor opened since: again.
      if (f.gone && st?.wanted?.mappings.some((m) => m.file?.key === f.key && m.file !== f.source)) {
        this.sync(pid, st.wanted);
        continue;
      }
      if (!st || [...st.files].some((g) => g.state === 'converting')) continue;
      this.apply(pid, st);
    }
  }

  /** Drops the least recently used table no process maps (not `keep`); false when none. */
  private evictOne(keep: FileState): boolean {
    for (const f of this.files.values()) {
      if (f === keep || f.refs > 0 || f.state !== 'loaded') continue;
      this.drop(f);
      this.stats.filesEvicted++;
      return true;
    }
    return false;
  }

  private drop(f: FileState): void {
    this.files.delete(f.key);
    if (f.state !== 'loaded') return;
    this.rows.free(f.rows!);
    this.pages.free(f.pages!);
    this.freeSlots.push(f.slot);
    this.stats.rowsUsed -= f.rows!.count;
    this.stats.pagesUsed -= f.pages!.count;
    f.state = 'none';
  }

  /** Writes the process's wanted mappings into the trie (the difference only) and marks it ready. */
  private apply(pid: number, st: PidState): void {
    const info = st.wanted;
    if (!info || this.closed) return;
    const want = new Map<string, MappingEntry>();
    for (const m of info.mappings) {
      if (!m.perms.includes('x') || m.kind === 'vsyscall') continue;
      const file = m.file && !m.file.error ? this.files.get(m.file.key) : undefined;
      const loaded = file?.state === 'loaded' ? file : undefined;
      let bias = 0n;
      if (loaded && m.file) {
        const vaddr = mappingVaddr(m.file.segments, m.offset, m.end - m.start);
        if (vaddr === undefined) continue;
        bias = BigInt(m.start) - BigInt(vaddr);
      }
      const id = `${m.start}:${m.end}:${bias}:${loaded?.key ?? ''}`;
      want.set(id, st.entries.get(id) ?? { start: m.start, end: m.end, bias, file: loaded, keys: prefixKeys(pid, m.start, m.end) });
    }
    const removed = [...st.entries].filter(([id]) => !want.has(id)).map(([, e]) => e.keys);
    const added = [...want].filter(([id]) => !st.entries.has(id)).map(([, e]) => e);
    const addBuf = Buffer.alloc(added.reduce((n, e) => n + (e.keys.length / KEY_BYTES) * (KEY_BYTES + VALUE_BYTES), 0));
    let at = 0;
    for (const e of added) {
      const value = Buffer.alloc(VALUE_BYTES);
      value.writeBigUInt64LE(BigInt(e.start), 0);
      value.writeBigUInt64LE(BigInt(e.end), 8);
      value.writeBigUInt64LE(BigInt.asUintN(64, e.bias), 16);
      value.writeUInt32LE(e.file ? e.file.slot : NO_FILE, 24);
      for (let k = 0; k < e.keys.length; k += KEY_BYTES) {
        e.keys.copy(addBuf, at, k, k + KEY_BYTES);
        value.copy(addBuf, at + KEY_BYTES);
        at += KEY_BYTES + VALUE_BYTES;
      }
    }
    const removeBuf = Buffer.concat(removed);
    const ok = this.quietly('writing a process\'s mappings', () => this.opts.writer.updateUnwindMappings(addBuf, removeBuf));
    if (!ok) this.stats.mappingsNotFitting += addBuf.length / (KEY_BYTES + VALUE_BYTES);
    this.stats.prefixes += addBuf.length / (KEY_BYTES + VALUE_BYTES) - removeBuf.length / KEY_BYTES;
    st.entries = want;
    if (!st.ready && this.quietly('marking a process ready', () => this.opts.writer.setUnwindPid(pid, true))) {
      st.ready = true;
      this.stats.processesReady++;
    }
  }

  /** Runs a map update; a failure (the process gone, a full map) is logged, not thrown. */
  private quietly(what: string, fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (e) {
      logger().debug({ err: (e as Error).message }, what);
      return false;
    }
  }
}

/**
 * The LPM trie keys (struct fw_unwind_mapping_key) that cover [start, end) of `pid`: the range
 * split into aligned power-of-two blocks, each one prefix (32 bits of pid + the block's bits).
 */
export function prefixKeys(pid: number, start: number, end: number): Buffer {
  const keys: Buffer[] = [];
  let a = BigInt(start);
  const e = BigInt(end);
  while (a < e) {
    // The largest aligned block at a that stays inside the range.
    let bits = 0n;
    while (bits < 64n && (a & ((1n << (bits + 1n)) - 1n)) === 0n && a + (1n << (bits + 1n)) <= e) bits++;
    const k = Buffer.alloc(KEY_BYTES);
    k.writeUInt32LE(32 + 64 - Number(bits), 0);
    k.writeUInt32BE(pid, 4);
    k.writeBigUInt64BE(a, 8);
    keys.push(k);
    a += 1n << bits;
  }
  return Buffer.concat(keys);
}

/** First-fit allocation of index ranges of one array, merging neighbours on free. */
export class ExtentAllocator {
  /** Free ranges, sorted by first, never adjacent. */
  private free_: Extent[];

  constructor(readonly capacity: number) {
    this.free_ = capacity > 0 ? [{ first: 0, count: capacity }] : [];
  }

  alloc(count: number): Extent | undefined {
    if (count <= 0) return { first: 0, count: 0 };
    for (let i = 0; i < this.free_.length; i++) {
      const f = this.free_[i];
      if (f.count < count) continue;
      const out = { first: f.first, count };
      if (f.count === count) this.free_.splice(i, 1);
      else this.free_[i] = { first: f.first + count, count: f.count - count };
      return out;
    }
    return undefined;
  }

  free(x: Extent): void {
    if (x.count <= 0) return;
    let i = 0;
    while (i < this.free_.length && this.free_[i].first < x.first) i++;
    this.free_.splice(i, 0, { ...x });
    // Merge with the next, then with the previous.
    const cur = this.free_[i];
    const next = this.free_[i + 1];
    if (next && cur.first + cur.count === next.first) {
      cur.count += next.count;
      this.free_.splice(i + 1, 1);
    }
    const prev = this.free_[i - 1];
    if (prev && prev.first + prev.count === cur.first) {
      prev.count += cur.count;
      this.free_.splice(i, 1);
    }
  }

  /** Free entries in total (tests). */
  get available(): number {
    return this.free_.reduce((n, f) => n + f.count, 0);
  }
}

/** The tables for a sampler that walks with them; undefined for one that cannot (old kernels). */
export function kernelTablesFor(sampler: OnCpuSampler): KernelTables | undefined {
  const info = sampler.info();
  if (info.userWalk !== 'tables') return undefined;
  return new KernelTables({ writer: sampler, capacity: info.unwind });
}

/**
 * The ELF virtual address an executable mapping's first byte stands for. The mapping's offset
 * is page aligned, so where the linker packs segments into shared file pages (lld, the linker
 * rustc uses by default: the text segment at file offset 0x16a20, vaddr 0x17a20) that offset
 * also lies in the tail of the read-only segment before, whose vaddr is a page off. The
 * segment mapped here is the executable one that the mapping's file range overlaps.
 */
export function mappingVaddr(segments: ElfSegment[], offset: number, length: number): number | undefined {
  for (const p of segments) {
    if ((p.flags & PF_X) === 0 || p.offset >= offset + length || p.offset + Math.max(p.filesz, 1) <= offset) continue;
    return p.vaddr - (p.offset - offset);
  }
  return offsetToVaddr(segments, offset);
}
