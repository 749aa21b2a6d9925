// The tinypool worker that turns one mapped file's unwind information into the kernel's rows
// (table-builder.ts): it reads every CFI entry of the file, the heaviest host-side step of the
// table walk, so it runs off the thread that drains the ring buffer.

import { ElfFile, FileGoneError } from '../elf/elf-file.js';
import { closeFileRanges } from '../elf/file-bytes.js';
import { GoPclnTab } from '../elf/gopclntab.js';
import { CfiTable } from './eh-frame.js';
import { buildUnwindTable, type UnwindTableStats } from './table-builder.js';

export interface ConvertTask {
  /** A path any thread can open (the process table hands out `/proc/self/fd/N`). */
  openPath: string;
  /** fileIdentity() of the file meant: another file now behind openPath is not read. */
  identity: string;
}

/** A file's table in the kernel's layout; `error` when the file could not be read at all. */
export interface ConvertedTable {
  pcBase: number;
  pageShift: number;
  /** struct fw_unwind_row[], little-endian. */
  rows: Uint8Array;
  /** __u32[] page index, little-endian. */
  pages: Uint8Array;
  stats: UnwindTableStats;
  /** Bytes of .eh_frame and .debug_frame read. */
  cfiBytes: number;
  ms: number;
  error?: string;
  /** openPath no longer opened the file meant (closed, and the descriptor perhaps reused). */
  gone?: boolean;
}

export default function convert(task: ConvertTask): ConvertedTable {
  const t0 = performance.now();
  try {
    return ElfFile.withFile(task.openPath, (elf) => {
      let cfi: CfiTable | undefined;
      let error: string | undefined;
      try {
        cfi = CfiTable.fromElf(elf, true);
      } catch (e) {
        error = (e as Error).message;
      }
      const go = GoPclnTab.open(elf);
      const t = buildUnwindTable(cfi, go);
      const rows = new Uint32Array(t.pcs.length * 2);
      for (let i = 0; i < t.pcs.length; i++) {
        rows[2 * i] = t.pcs[i];
        rows[2 * i + 1] = t.rules[i];
      }
      const cfiBytes = (elf.section('.eh_frame')?.size ?? 0) + (elf.section('.debug_frame')?.size ?? 0);
      return {
        pcBase: t.pcBase,
        pageShift: t.pageShift,
        rows: new Uint8Array(rows.buffer),
        pages: new Uint8Array(t.pages.buffer, t.pages.byteOffset, t.pages.byteLength),
        stats: t.stats,
        cfiBytes,
        ms: performance.now() - t0,
        // A file with Go rows or some CFI still has a table; an unreadable .eh_frame is only
        // an error when nothing else was found.
        error: t.pcs.length === 0 ? error : undefined,
      };
    }, task.identity);
  } catch (e) {
    const empty = new Uint8Array(0);
    return {
      pcBase: 0,
      pageShift: 0,
      rows: empty,
      pages: empty,
      stats: { cfiRows: 0, unsupportedRows: 0, badEntries: 0, highRows: 0 },
      cfiBytes: 0,
      ms: performance.now() - t0,
      error: (e as Error).message,
      gone: e instanceof FileGoneError || undefined,
    };
  } finally {
    closeFileRanges();
  }
}
