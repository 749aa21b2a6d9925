// Symbolizes one window's unique addresses. The main thread only resolves addresses to
// (file, ELF virtual address) through the process table and looks them up in a cache keyed by
// file identity (build id), so a library shared by every process is looked up once. Whatever
// is not cached goes, grouped per file, to tinypool workers that parse the symbol tables.

import { Tinypool } from 'tinypool';
import type { Kallsyms } from './kallsyms.js';
import { baseName, type ProcessMapping, type ProcessTable } from './process-table.js';
import type { FileResult, FileTask } from './symbolize-worker.js';

export type SymbolizedKind = 'native' | 'go' | 'kernel' | 'unknown';

/** One frame; an address can expand to several (inlined functions, innermost first). */
export interface SymbolizedFrame {
  name: string;
  file?: string;
  line?: number;
  /** True when this frame was inlined into the next (outer) frame. */
  inlined?: boolean;
  kind: SymbolizedKind;
}

/** The mapping an address belongs to, for the profile's mapping table. */
export interface SymbolizedMapping {
  /** Unique per process and mapping (`pid:start`), or `kernel:<module>`. */
  key: string;
  start: bigint;
  end: bigint;
  offset: bigint;
  /** Path as the process sees it, or `[vdso]`, `[module]`. */
  file: string;
  buildId: string;
  /** Go's build id of a Go binary. */
  goBuildId?: string;
  hasLines?: boolean;
}

export interface SymbolizedAddress {
  /** Innermost first. Shared with the cache: do not mutate. */
  frames: SymbolizedFrame[];
  mapping?: SymbolizedMapping;
}

export interface SymbolizeRequest {
  /** Unique user addresses per pid (return addresses already adjusted by the caller). */
  user?: Map<number, Iterable<bigint | number>>;
  kernel?: Iterable<bigint>;
}

export interface SymbolizeResult {
  /** Per pid, keyed by the very values that were passed in. */
  user: Map<number, Map<bigint | number, SymbolizedAddress>>;
  kernel: Map<bigint, SymbolizedAddress>;
}

export interface SymbolizerOptions {
  processes: ProcessTable;
  /** Kernel symbols; without them every kernel frame is `[kernel]`. */
  kallsyms?: Kallsyms;
  /** Worker threads (1–2 is plenty: most work is cached). Default 1. */
  workers?: number;
  /** Bound of the (file, address) cache, in addresses. Default 1,000,000. */
  cacheEntries?: number;
  /** How long an idle worker (and the tables it holds) lives. Default 60 s. */
  idleTimeoutMs?: number;
}

export interface SymbolizerStats {
  /** (file, address) pairs answered from the cache / sent to workers, since creation. */
  cacheHits: number;
  cacheMisses: number;
  /** Files handed to workers. */
  filesParsed: number;
  /** Files that could not be read (bounded list of the latest messages). */
  fileErrors: string[];
}

const UNKNOWN: SymbolizedFrame[] = Object.freeze([{ name: '[unknown]', kind: 'unknown' }]) as SymbolizedFrame[];
const KERNEL: SymbolizedFrame[] = Object.freeze([{ name: '[kernel]', kind: 'kernel' }]) as SymbolizedFrame[];
const MAX_ERRORS = 20;

type Cached = SymbolizedFrame[] | null;

interface Pending {
  pid: number;
  addr: bigint | number;
  fileKey: string;
  vaddr: number;
  fallback: () => SymbolizedFrame[];
  mapping: SymbolizedMapping;
}

export class Symbolizer {
  private readonly processes: ProcessTable;
  private readonly kallsyms?: Kallsyms;
  private readonly pool: Tinypool;
  private readonly maxEntries: number;
  /** fileKey → vaddr → frames (null: no symbol). Map order is the LRU order of files. */
  private readonly cache = new Map<string, Map<number, Cached>>();
  private entries = 0;
  private lastTouched = '';
  private readonly mappingInfo = new WeakMap<ProcessMapping, SymbolizedMapping>();
  private readonly kernelMappings = new Map<string, SymbolizedMapping>();
  private readonly kernelCache = new Map<bigint, SymbolizedAddress>();
  private closed = false;
  readonly stats: SymbolizerStats = { cacheHits: 0, cacheMisses: 0, filesParsed: 0, fileErrors: [] };

  constructor(opts: SymbolizerOptions) {
    this.processes = opts.processes;
    this.kallsyms = opts.kallsyms;
    this.maxEntries = opts.cacheEntries ?? 1_000_000;
    this.pool = new Tinypool({
      filename: new URL('./symbolize-worker.js', import.meta.url).href,
      minThreads: 0,
      maxThreads: Math.max(1, Math.min(2, opts.workers ?? 1)),
      idleTimeout: opts.idleTimeoutMs ?? 60_000,
    });
  }

  /** Symbolizes one window: every unique user address per pid and every kernel address. */
  async symbolize(req: SymbolizeRequest): Promise<SymbolizeResult> {
    if (this.closed) throw new Error('symbolizer is closed');
    const user = new Map<number, Map<bigint | number, SymbolizedAddress>>();
    const pending: Pending[] = [];
    const work = new Map<string, { task: FileTask; seen: Set<number> }>();
    for (const [pid, addrs] of req.user ?? []) {
      const out = new Map<bigint | number, SymbolizedAddress>();
      user.set(pid, out);
      this.resolveUser(pid, addrs, out, pending, work);
    }
    const kernel = req.kernel ? this.symbolizeKernel(req.kernel) : new Map<bigint, SymbolizedAddress>();
    if (work.size > 0) await this.runWorkers(work);
    for (const p of pending) {
      const frames = this.cache.get(p.fileKey)?.get(p.vaddr);
      user.get(p.pid)!.set(p.addr, { frames: frames ?? p.fallback(), mapping: p.mapping });
    }
    this.evict();
    return { user, kernel };
  }

  /** Symbolizes the addresses of one process (a window with a single pid). */
  async symbolizeUser<T extends bigint | number>(pid: number, addrs: Iterable<T>): Promise<Map<T, SymbolizedAddress>> {
    const r = await this.symbolize({ user: new Map([[pid, addrs]]) });
    return r.user.get(pid) as Map<T, SymbolizedAddress>;
  }

  /** Kernel addresses through kallsyms; synchronous (the table is loaded once, up front). */
  symbolizeKernel(addrs: Iterable<bigint>): Map<bigint, SymbolizedAddress> {
    const out = new Map<bigint, SymbolizedAddress>();
    const ks = this.kallsyms;
    for (const addr of addrs) {
      let r = this.kernelCache.get(addr);
      if (!r) {
        if (!ks || ks.restricted || ks.length === 0) {
          r = { frames: KERNEL };
        } else {
          const hit = ks.lookup(addr);
          if (!hit) r = { frames: [{ name: '[unknown]', kind: 'kernel' }] };
          else if (hit.module !== undefined) r = { frames: [{ name: hit.name, kind: 'kernel' }], mapping: this.kernelMapping(hit.module) };
          else r = { frames: [{ name: hit.name, kind: 'kernel' }] };
        }
        if (this.kernelCache.size >= this.maxEntries) this.kernelCache.clear();
        this.kernelCache.set(addr, r);
      }
      out.set(addr, r);
    }
    return out;
  }

  /** Terminates the workers. The process table stays open (it belongs to the caller). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
    this.cache.clear();
    this.kernelCache.clear();
  }

  private resolveUser(
    pid: number,
    addrs: Iterable<bigint | number>,
    out: Map<bigint | number, SymbolizedAddress>,
    pending: Pending[],
    work: Map<string, { task: FileTask; seen: Set<number> }>,
  ): void {
    const procs = this.processes;
    let perfMapChecked = false;
    let perfMap: ReturnType<ProcessTable['perfMap']>;
    for (const addr of addrs) {
      const r = procs.resolve(pid, addr);
      if (!r) {
        out.set(addr, { frames: UNKNOWN });
        continue;
      }
      const m = r.mapping;
      const mapping = this.mappingFor(pid, m);
      const file = r.file;
      if (file && !file.error && r.vaddr !== undefined) {
        const vaddr = r.vaddr;
        const byAddr = this.touch(file.key);
        const cached = byAddr?.get(vaddr);
        const fallback = () => [{ name: `${baseName(r.displayPath)}+0x${r.fileOffset.toString(16)}`, kind: 'native' as const }];
        if (cached) {
          this.stats.cacheHits++;
          out.set(addr, { frames: cached, mapping });
          continue;
        }
        if (cached === null) {
          this.stats.cacheHits++;
          out.set(addr, { frames: fallback(), mapping });
          continue;
        }
        this.stats.cacheMisses++;
        let w = work.get(file.key);
        if (!w) {
          w = { task: { fileKey: file.key, openPath: file.openPath, displayPath: file.displayPath, root: file.root, vaddrs: [] }, seen: new Set() };
          work.set(file.key, w);
        }
        if (!w.seen.has(vaddr)) {
          w.seen.add(vaddr);
          w.task.vaddrs.push(vaddr);
        }
        pending.push({ pid, addr, fileKey: file.key, vaddr, fallback, mapping });
        continue;
      }
      if (file) {
        out.set(addr, { frames: [{ name: `${baseName(r.displayPath)}+0x${r.fileOffset.toString(16)}`, kind: 'native' }], mapping });
        continue;
      }
      if (m.kind === 'vdso' || m.kind === 'vsyscall') {
        out.set(addr, { frames: [{ name: m.path, kind: 'native' }], mapping });
        continue;
      }
      // Heap, stack, anonymous memory: JIT-generated code, if the runtime writes a perf map.
      if (!perfMapChecked) {
        perfMapChecked = true;
        perfMap = procs.perfMap(pid);
      }
      const hit = perfMap?.lookup(typeof addr === 'bigint' ? Number(addr) : addr);
      out.set(addr, hit ? { frames: [{ name: hit.name, kind: 'native' }], mapping } : { frames: UNKNOWN, mapping });
    }
  }

  private async runWorkers(work: Map<string, { task: FileTask; seen: Set<number> }>): Promise<void> {
    const runs = [...work.values()].map(async ({ task }) => {
      this.stats.filesParsed++;
      let results: FileResult[];
      try {
        results = (await this.pool.run({ files: [task] })) as FileResult[];
      } catch (e) {
        this.noteError(`${task.displayPath}: ${(e as Error).message}`);
        return;
      }
      for (const res of results) {
        if (res.error) this.noteError(res.error);
        let byAddr = this.cache.get(res.fileKey);
        if (!byAddr) {
          byAddr = new Map();
          this.cache.set(res.fileKey, byAddr);
        }
        for (let i = 0; i < task.vaddrs.length; i++) {
          const fr = res.frames[i] ?? null;
          if (!byAddr.has(task.vaddrs[i])) this.entries++;
          byAddr.set(task.vaddrs[i], fr as Cached);
        }
      }
    });
    await Promise.all(runs);
  }

  private touch(key: string): Map<number, Cached> | undefined {
    const m = this.cache.get(key);
    // Consecutive addresses mostly hit the same file: reorder the LRU only when it changes.
    if (m && key !== this.lastTouched) {
      this.lastTouched = key;
      this.cache.delete(key);
      this.cache.set(key, m);
    }
    return m;
  }

  private evict(): void {
    for (const [key, m] of this.cache) {
      if (this.entries <= this.maxEntries) break;
      this.entries -= m.size;
      this.cache.delete(key);
      if (key === this.lastTouched) this.lastTouched = '';
    }
  }

  private noteError(msg: string): void {
    const errs = this.stats.fileErrors;
    if (errs.length >= MAX_ERRORS) errs.shift();
    errs.push(msg);
  }

  private mappingFor(pid: number, m: ProcessMapping): SymbolizedMapping {
    let info = this.mappingInfo.get(m);
    if (!info) {
      info = {
        key: `${pid}:${m.start.toString(16)}`,
        start: BigInt(m.start),
        end: BigInt(m.end),
        offset: BigInt(m.offset),
        file: m.path === '' ? '[anon]' : m.path,
        buildId: m.file?.buildId ?? '',
        hasLines: m.file?.goBuildId ? true : undefined,
        ...(m.file?.goBuildId ? { goBuildId: m.file.goBuildId } : {}),
      };
      this.mappingInfo.set(m, info);
    }
    return info;
  }

  private kernelMapping(module: string): SymbolizedMapping {
    let info = this.kernelMappings.get(module);
    if (!info) {
      info = { key: `kernel:${module}`, start: 0n, end: 0n, offset: 0n, file: `[${module}]`, buildId: '' };
      this.kernelMappings.set(module, info);
    }
    return info;
  }
}
