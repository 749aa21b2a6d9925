// Host-side cost of the kernel's unwind tables: converting each file's CFI into rows
// (src/unwind/table-builder.ts), per MB of .eh_frame, and the bytes the rows take in the maps,
// computed per file and measured in a real sampler's maps with several runtimes running.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile } from '../src/elf/elf-file.js';
import { openOnCpuSampler } from '../src/native.js';
import { ProcessTable } from '../src/process-table.js';
import { KernelTables } from '../src/unwind/kernel-tables.js';
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

export interface LiveTables {
  /** What ran, each a process the tables were loaded for. */
  names: string[];
  files: number;
  rows: number;
  /** Bytes of the maps in use: rows, page index, trie entries. */
  usedBytes: number;
  /** Bytes the maps hold for their whole capacity (arrays are allocated when created). */
  allocatedBytes: number;
  convertMs: number;
}

/**
 * The tables in the kernel while node, python3 (libc and libstdc++ with them) and a Rust
 * release binary run: a real sampler's maps, filled by KernelTables as the agent does.
 */
export async function measureLiveTables(work: string): Promise<LiveTables> {
  const rsSrc = join(work, 'tables-rust.rs');
  const rsBin = join(work, 'tables-rust');
  writeFileSync(rsSrc, 'fn main() { std::thread::sleep(std::time::Duration::from_secs(20)); println!("{}", std::hint::black_box(1)); }\n');
  execFileSync('rustc', ['-O', '-o', rsBin, rsSrc], { stdio: 'pipe' });
  const kids = [
    { name: 'node', p: spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)']) },
    { name: 'python3', p: spawn('python3', ['-c', 'import time; time.sleep(20)']) },
    // The C++ runtime mapped by a program of its own: node links it statically on some builds.
    { name: 'libstdc++ (via a C++ program)', p: spawn('sh', ['-c', `exec ${cxxSleeper(work)}`]) },
    { name: 'Rust', p: spawn(rsBin) },
  ];
  const sampler = openOnCpuSampler({ frequency: 49, pids: [process.pid] });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const info = sampler.info();
    const tables = new KernelTables({ writer: sampler, capacity: info.unwind });
    const procs = new ProcessTable();
    for (const k of kids) tables.sync(k.p.pid!, procs.ensure(k.p.pid!)!);
    await tables.settled();
    const c = info.unwind;
    const out: LiveTables = {
      names: kids.map((k) => k.name),
      files: tables.stats.filesLoaded,
      rows: tables.stats.rowsUsed,
      usedBytes: tables.mapBytes,
      allocatedBytes: c.rows * 8 + c.pages * 4 + c.files * 24,
      convertMs: tables.stats.convertMs,
    };
    await tables.close();
    return out;
  } finally {
    sampler.stop();
    for (const k of kids) k.p.kill('SIGKILL');
  }
}

function cxxSleeper(work: string): string {
  const src = join(work, 'tables-cxx.cc');
  const bin = join(work, 'tables-cxx');
  writeFileSync(src, '#include <iostream>\n#include <thread>\nint main() { std::this_thread::sleep_for(std::chrono::seconds(20)); std::cout << 1 << std::endl; }\n');
  execFileSync('g++', ['-O2', '-o', bin, src], { stdio: 'pipe' });
  return bin;
}
