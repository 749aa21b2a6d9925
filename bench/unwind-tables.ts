// Host-side cost of the kernel's unwind tables: converting each file's CFI into rows
// (src/unwind/table-builder.ts), per MB of .eh_frame, and the bytes the rows take in the maps.

import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { ElfFile } from '../src/elf/elf-file.js';
import { CfiTable } from '../src/unwind/eh-frame.js';
import { buildUnwindTable, tableBytes } from '../src/unwind/table-builder.js';

export interface TableCost {
  name: string;
  path: string;
  ehFrameBytes: number;
  rows: number;
  mapBytes: number;
  /** Median conversion time, ms. */
  ms: number;
}

/** The files the issue names: libc, libstdc++, node and python3 (Debian's links the interpreter
 * in; a python built with --enable-shared keeps it in libpython, which is what it then maps). */
export function tableFiles(): Array<[string, string]> {
  const python = existsSync('/usr/bin/python3')
    ? '/usr/bin/python3'
    : execFileSync('python3', ['-c', 'import sys; print(sys.executable)']).toString().trim();
  const out: Array<[string, string]> = [
    ['libc', '/lib/x86_64-linux-gnu/libc.so.6'],
    ['libstdc++', '/usr/lib/x86_64-linux-gnu/libstdc++.so.6'],
    ['node', process.execPath],
    ['python3', python],
  ];
  return out.filter(([, p]) => existsSync(p)).map(([n, p]) => [n, realpathSync(p)]);
}

export function measureTableCost(name: string, path: string, reps: number): TableCost {
  return ElfFile.withFile(path, (elf) => {
    const ehFrameBytes = (elf.section('.eh_frame')?.size ?? 0) + (elf.section('.debug_frame')?.size ?? 0);
    const times: number[] = [];
    let table;
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      // Conversion reads every entry: the sections are read whole, not a page at a time.
      table = buildUnwindTable(CfiTable.fromElf(elf, true)!);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { name, path, ehFrameBytes, rows: table!.pcs.length, mapBytes: tableBytes(table!), ms: times[times.length >> 1] };
  });
}
