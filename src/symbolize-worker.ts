// The tinypool worker that does the heavy part of symbolization: reading symbol tables and Go
// line tables. It keeps the parsed tables of recently used files, so the next window's new
// addresses in the same binary cost a binary search, not a re-parse.

import { ElfFile } from './elf/elf-file.js';
import { findDebugFile, type DebugFile } from './elf/debug-file.js';
import { SymbolTable } from './elf/elf-symbols.js';
import { closeFileRanges } from './elf/file-bytes.js';
import { collectGarbage } from './gc.js';

export interface WorkerFrame {
  name: string;
  file?: string;
  line?: number;
  inlined?: boolean;
  kind: 'native' | 'go';
}

export interface FileTask {
  fileKey: string;
  /** A path any thread can open (the process table hands out `/proc/self/fd/N`). */
  openPath: string;
  /** The binary's path inside its root, for .gnu_debuglink lookups. */
  displayPath: string;
  /** Root prefix of the process that mapped it (`/proc/PID/root`), or ''. */
  root: string;
  vaddrs: number[];
}

export interface FileResult {
  fileKey: string;
  /** Parallel to the task's vaddrs; null where no symbol covers the address. */
  frames: Array<WorkerFrame[] | null>;
  /** Set when the file could not be read; frames are then all null. */
  error?: string;
}

interface GoTable {
  lookup(vaddr: number): Array<{ name: string; file: string; line: number }> | undefined;
  moveTo(path: string): void;
}

interface Loaded {
  symbols: SymbolTable;
  /** Symbols of the separate debug file, for stripped binaries. */
  debugSymbols?: SymbolTable;
  go?: GoTable;
  error?: string;
}

const MAX_CACHED_FILES = 32;
const cache = new Map<string, Loaded>();

type Demangle = (name: string) => string;
let demangle: Demangle | undefined;
let goOpen: ((elf: ElfFile) => GoTable | undefined) | undefined;
let modulesLoaded = false;

// The demangler and the Go table reader are separate modules; if one of them fails to load,
// symbolization still works with mangled names / symbol tables only.
async function loadModules(): Promise<void> {
  if (modulesLoaded) return;
  modulesLoaded = true;
  try {
    const m = await import('./demangle.js');
    demangle = m.demangle;
  } catch {
    demangle = undefined;
  }
  try {
    const m = await import('./elf/gopclntab.js');
    goOpen = (elf) => m.GoPclnTab.open(elf);
  } catch {
    goOpen = undefined;
  }
}

function load(task: FileTask): Loaded {
  let elf: ElfFile;
  try {
    elf = ElfFile.open(task.openPath);
  } catch (e) {
    return { symbols: emptyTable(), error: (e as Error).message };
  }
  try {
    const out: Loaded = { symbols: SymbolTable.fromElf(elf, demangle) };
    if (goOpen && (elf.section('.gopclntab') || elf.goBuildId)) {
      try {
        // The Go table reads its pages through the path later: the file can be closed now.
        out.go = goOpen(elf);
      } catch {
        out.go = undefined;
      }
    }
    if (!elf.sections.some((s) => s.name === '.symtab' && s.size > 0)) {
      out.debugSymbols = debugSymbols(elf, task);
    }
    return out;
  } catch (e) {
    return { symbols: emptyTable(), error: (e as Error).message };
  } finally {
    elf.close();
  }
}

function debugSymbols(elf: ElfFile, task: FileTask): SymbolTable | undefined {
  if (task.displayPath.startsWith('[')) return undefined;
  // The root of an exited process is gone; the host root still serves host binaries, and the
  // build id / CRC checks keep a wrong file from matching.
  const roots = task.root ? [task.root, ''] : [''];
  for (const root of roots) {
    let found: DebugFile | undefined;
    try {
      found = findDebugFile(elf, { root, binaryPath: task.displayPath });
    } catch {
      found = undefined;
    }
    if (!found) continue;
    try {
      return SymbolTable.fromElf(found.elf, demangle);
    } catch {
      continue;
    } finally {
      found.elf.close();
    }
  }
  return undefined;
}

let empty: SymbolTable | undefined;
function emptyTable(): SymbolTable {
  if (!empty) {
    // A table with no entries: built from nothing rather than special-casing every lookup.
    empty = SymbolTable.empty();
  }
  return empty;
}

function getLoaded(task: FileTask): Loaded {
  let l = cache.get(task.fileKey);
  if (l) {
    cache.delete(task.fileKey);
    cache.set(task.fileKey, l);
    // The main thread may hand the same file out under another /proc/self/fd path now.
    l.symbols.moveTo(task.openPath);
    l.go?.moveTo(task.openPath);
    return l;
  }
  l = load(task);
  cache.set(task.fileKey, l);
  while (cache.size > MAX_CACHED_FILES) {
    cache.delete(cache.keys().next().value as string);
  }
  return l;
}

function symbolizeOne(l: Loaded, vaddr: number): WorkerFrame[] | null {
  if (l.go) {
    let rows: Array<{ name: string; file: string; line: number }> | undefined;
    try {
      rows = l.go.lookup(vaddr);
    } catch {
      rows = undefined;
    }
    if (rows && rows.length > 0) {
      return rows.map((r, i) => {
        const f: WorkerFrame = { name: r.name, kind: 'go' };
        if (r.file) f.file = r.file;
        if (r.line > 0) f.line = r.line;
        if (i < rows!.length - 1) f.inlined = true;
        return f;
      });
    }
  }
  const hit = l.debugSymbols?.lookup(vaddr) ?? l.symbols.lookup(vaddr);
  return hit ? [{ name: hit.name, kind: 'native' }] : null;
}

/** Tinypool entry point: one task is a list of files, each with the addresses to look up. */
export default async function symbolizeFiles(task: { files: FileTask[] }): Promise<FileResult[]> {
  await loadModules();
  const out: FileResult[] = [];
  for (const ft of task.files) {
    const l = getLoaded(ft);
    const frames = new Array<WorkerFrame[] | null>(ft.vaddrs.length);
    try {
      for (let i = 0; i < ft.vaddrs.length; i++) frames[i] = l.error ? null : symbolizeOne(l, ft.vaddrs[i]);
    } finally {
      // A worker that is terminated runs no cleanup: hold no file open between tasks.
      release(l);
    }
    out.push(l.error ? { fileKey: ft.fileKey, frames, error: l.error } : { fileKey: ft.fileKey, frames });
  }
  closeFileRanges();
  // What parsing dropped (section copies, pages, scratch arrays) is freed before the worker
  // waits for the next window, rather than held until its heap happens to grow.
  collectGarbage();
  return out;
}

/** The tables read names from their files: give those back (at the end of every task). */
function release(l: Loaded): void {
  l.symbols.release();
  l.debugSymbols?.release();
}

/** Drops every cached table (tests, memory pressure). */
export function clearWorkerCache(): void {
  cache.clear();
}
