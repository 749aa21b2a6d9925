// A per-file cache of unwind information for the leaf repair. Files are identified by a key
// chosen by the caller (build id, or device:inode — whatever the process table uses) and opened
// by a path that works now (e.g. /proc/PID/map_files/...). The first rule asked of a file opens
// its .eh_frame (+ .eh_frame_hdr) and Go pclntab, which are read a page at a time when a rule is
// asked (see file-bytes.ts), and reads its .debug_frame, if any, into memory; each (file, vaddr)
// answer is cached, so the per-sample cost is two Map lookups.
// Memory is bounded: least recently used files are dropped past maxFiles or maxBytes, and a
// file's rule cache is reset past maxRulesPerFile.

import { ElfFile } from '../elf/elf-file.js';
import { GoPclnTab } from '../elf/gopclntab.js';
import { CfiTable, DW_REG_RSP, type UnwindRule } from './eh-frame.js';
import type { RuleLookup } from './leaf-repair.js';

export interface UnwindTablesOptions {
  /** Files kept loaded (default 256). */
  maxFiles?: number;
  /** Unwind-table bytes kept in memory over all files (default 256 MiB). */
  maxBytes?: number;
  /** Cached rules per file before that cache is reset (default 65536). */
  maxRulesPerFile?: number;
}

interface FileEntry {
  cfi: CfiTable | undefined;
  go: GoPclnTab | undefined;
  goText: [number, number] | undefined;
  bytes: number;
  rules: Map<number, UnwindRule | null>;
  error?: string;
}

/** Where a runtime address lives: what UnwindTables needs to find its rule. */
export interface FileAddress {
  fileKey: string;
  openPath: string;
  vaddr: number;
}

const goRules = new Map<number, UnwindRule>();

/**
 * The rule for Go code on amd64 with `spDelta` bytes pushed since entry: the return address is
 * at sp + spDelta, and once the frame exists (spDelta > 0) the caller's BP is saved just below
 * it (the Go ABI always keeps frame pointers on amd64).
 */
export function goUnwindRule(spDelta: number): UnwindRule {
  let r = goRules.get(spDelta);
  if (!r) {
    r = {
      cfa: { kind: 'reg', reg: DW_REG_RSP, offset: spDelta + 8 },
      ra: { kind: 'offset', offset: -8 },
      bp: spDelta > 0 ? { kind: 'offset', offset: -16 } : { kind: 'same' },
    };
    if (goRules.size < 4096) goRules.set(spDelta, r);
  }
  return r;
}

export class UnwindTables {
  private files = new Map<string, FileEntry>();
  private bytes = 0;
  private lastKey = '';
  private readonly maxFiles: number;
  private readonly maxBytes: number;
  private readonly maxRules: number;
  /** Counters for diagnostics. */
  readonly stats = { hits: 0, misses: 0, filesLoaded: 0, filesEvicted: 0, loadErrors: 0 };

  constructor(opts: UnwindTablesOptions = {}) {
    this.maxFiles = opts.maxFiles ?? 256;
    this.maxBytes = opts.maxBytes ?? 256 << 20;
    this.maxRules = opts.maxRulesPerFile ?? 65536;
  }

  /**
   * The unwind rule at ELF virtual address `vaddr` of the file `fileKey` (opened through
   * `openPath` the first time), or undefined when there is none. Never throws.
   */
  ruleAt(fileKey: string, openPath: string, vaddr: number): UnwindRule | undefined {
    const f = this.entry(fileKey, openPath);
    const cached = f.rules.get(vaddr);
    if (cached !== undefined) {
      this.stats.hits++;
      return cached ?? undefined;
    }
    this.stats.misses++;
    // The tables read pages through the path on demand; the caller's path works now.
    f.cfi?.moveTo(openPath);
    f.go?.moveTo(openPath);
    const rule = resolve(f, vaddr);
    if (f.rules.size >= this.maxRules) f.rules.clear();
    f.rules.set(vaddr, rule ?? null);
    return rule;
  }

  /** The load error of a file, if loading it failed (for diagnostics). */
  errorOf(fileKey: string): string | undefined {
    return this.files.get(fileKey)?.error;
  }

  /** Drops a file (e.g. when the process table learns it was replaced). */
  forget(fileKey: string): void {
    const f = this.files.get(fileKey);
    if (f) {
      this.bytes -= f.bytes;
      this.files.delete(fileKey);
      if (this.lastKey === fileKey) this.lastKey = '';
    }
  }

  get loadedFiles(): number {
    return this.files.size;
  }

  get loadedBytes(): number {
    return this.bytes;
  }

  private entry(fileKey: string, openPath: string): FileEntry {
    let f = this.files.get(fileKey);
    if (f) {
      if (fileKey !== this.lastKey) {
        // Move to the most recent end of the LRU order.
        this.files.delete(fileKey);
        this.files.set(fileKey, f);
        this.lastKey = fileKey;
      }
      return f;
    }
    f = load(openPath);
    if (f.error) this.stats.loadErrors++;
    else this.stats.filesLoaded++;
    this.files.set(fileKey, f);
    this.lastKey = fileKey;
    this.bytes += f.bytes;
    this.evict(fileKey);
    return f;
  }

  private evict(keep: string): void {
    for (const [k, f] of this.files) {
      if (this.files.size <= this.maxFiles && this.bytes <= this.maxBytes) break;
      if (k === keep) continue;
      this.files.delete(k);
      this.bytes -= f.bytes;
      this.stats.filesEvicted++;
    }
  }
}

/**
 * A RuleLookup for repairUserStack from an address resolver (the process table's
 * runtime address → file and ELF vaddr).
 */
export function ruleLookupFor(tables: UnwindTables, resolveAddress: (addr: bigint) => FileAddress | undefined): RuleLookup {
  return (addr) => {
    const a = resolveAddress(addr);
    return a ? tables.ruleAt(a.fileKey, a.openPath, a.vaddr) : undefined;
  };
}

function load(openPath: string): FileEntry {
  const entry: FileEntry = { cfi: undefined, go: undefined, goText: undefined, bytes: 0, rules: new Map() };
  let elf: ElfFile | undefined;
  try {
    elf = ElfFile.open(openPath);
    try {
      entry.cfi = CfiTable.fromElf(elf);
    } catch (e) {
      entry.error = (e as Error).message;
    }
    entry.go = GoPclnTab.open(elf);
    if (entry.go) entry.goText = entry.go.textRange;
    entry.bytes = (entry.cfi?.byteSize ?? 0) + (entry.go?.byteSize ?? 0);
  } catch (e) {
    entry.error = (e as Error).message;
  } finally {
    elf?.close();
  }
  return entry;
}

function resolve(f: FileEntry, vaddr: number): UnwindRule | undefined {
  try {
    // Go code first: Go's linker writes no .eh_frame for it, while cgo binaries carry C code
    // with .eh_frame outside the Go text range.
    if (f.go && f.goText && vaddr >= f.goText[0] && vaddr < f.goText[1]) {
      const d = f.go.spDelta(vaddr);
      if (d !== undefined && d >= 0) return goUnwindRule(d);
    }
    return f.cfi?.ruleAt(vaddr);
  } catch {
    return undefined;
  }
}
