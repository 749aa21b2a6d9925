// The kernel's copy of the unwind tables (src/unwind/kernel-tables.ts): real files converted in
// the real worker and written into a real sampler's maps; the trie keys and the allocator
// checked against their definitions.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';
import { fileIdentity } from '../src/elf/elf-file.js';
import { describe, it } from 'node:test';
import { openOnCpuSampler } from '../src/native.js';
import { ProcessTable } from '../src/process-table.js';
import { ExtentAllocator, KernelTables, prefixKeys } from '../src/unwind/kernel-tables.js';
import convertInPlace, { type ConvertedTable, type ConvertTask } from '../src/unwind/table-worker.js';

/** The [start, end) ranges the keys cover, for `pid`, in order. */
function coveredRanges(keys: Buffer, pid: number): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  for (let k = 0; k < keys.length; k += 16) {
    const prefixlen = keys.readUInt32LE(k);
    assert.equal(keys.readUInt32BE(k + 4), pid);
    const bits = BigInt(96 - prefixlen);
    const addr = keys.readBigUInt64BE(k + 8);
    assert.equal(addr & ((1n << bits) - 1n), 0n, 'a block is aligned to its size');
    out.push([addr, addr + (1n << bits)]);
  }
  return out;
}

describe('unwind table trie keys', () => {
  it('cover a mapping exactly, with aligned blocks, few of them', () => {
    const cases: Array<[number, number]> = [
      [0x7f0000001000, 0x7f0000002000],
      [0x55d4c3a00000, 0x55d4c3bf2000],
      [0x400000, 0x4a1234],
      [0x7ffd1234f000, 0x7ffd12351000],
    ];
    for (const [start, end] of cases) {
      const r = coveredRanges(prefixKeys(4242, start, end), 4242);
      assert.equal(r[0][0], BigInt(start));
      assert.equal(r[r.length - 1][1], BigInt(end));
      for (let i = 1; i < r.length; i++) assert.equal(r[i][0], r[i - 1][1], 'no gap, no overlap');
      // At most two blocks per bit of the range's size: the decomposition is the minimal one.
      assert.ok(r.length <= 2 * 48, `${r.length} keys`);
    }
  });
});

describe('extent allocator', () => {
  it('allocates first fit and merges freed neighbours back', () => {
    const a = new ExtentAllocator(100);
    const x = a.alloc(30)!;
    const y = a.alloc(30)!;
    const z = a.alloc(30)!;
    assert.deepEqual([x.first, y.first, z.first], [0, 30, 60]);
    assert.equal(a.alloc(11), undefined, 'only 10 left');
    a.free(y);
    assert.equal(a.alloc(31), undefined, 'the hole is 30');
    a.free(x);
    const w = a.alloc(55)!;
    assert.equal(w.first, 0, 'x and y merged into one free extent');
    a.free(w);
    a.free(z);
    assert.equal(a.available, 100);
    assert.equal(a.alloc(100)!.first, 0, 'all merged');
  });
});

describe('kernel unwind tables', () => {
  it('loads a process\'s files once, shares them, and forgets its mappings', async () => {
    const sampler = openOnCpuSampler({ frequency: 49, pids: [process.pid] });
    try {
      assert.equal(sampler.info().userWalk, 'tables');
      const tables = new KernelTables({ writer: sampler, capacity: sampler.info().unwind });
      const procs = new ProcessTable();
      const a = spawn('sleep', ['30']);
      const b = spawn('sleep', ['30']);
      try {
        await new Promise((r) => setTimeout(r, 100));
        for (const p of [a, b]) tables.sync(p.pid!, procs.ensure(p.pid!)!);
        await tables.settled();
        const s = tables.stats;
        // sleep, libc, ld.so, the vDSO: each converted once for both processes.
        assert.ok(s.filesLoaded >= 3, `loaded ${s.filesLoaded}`);
        assert.equal(s.processesReady, 2);
        assert.ok(tables.isReady(a.pid!) && tables.isReady(b.pid!));
        assert.ok(s.rowsUsed > 1000 && s.pagesUsed > 0 && s.prefixes > 0);
        assert.ok(s.cfiBytes > 0);
        const loaded = s.filesLoaded;
        const bytes = tables.mapBytes;
        assert.ok(bytes > s.rowsUsed * 8);

        tables.forget(a.pid!);
        assert.equal(tables.stats.processesReady, 1);
        assert.ok(tables.stats.prefixes > 0 && tables.stats.prefixes < s.prefixes + 1);
        tables.forget(b.pid!);
        assert.equal(tables.stats.prefixes, 0, 'every trie entry removed');
        // Tables stay for the next process that maps the same files: not converted again.
        const c = spawn('sleep', ['30']);
        await new Promise((r) => setTimeout(r, 100));
        tables.sync(c.pid!, procs.ensure(c.pid!)!);
        await tables.settled();
        assert.equal(tables.stats.filesLoaded, loaded);
        assert.ok(tables.isReady(c.pid!));
        c.kill();
        await tables.close();
        assert.ok(bytes > 0);
      } finally {
        a.kill();
        b.kill();
      }
    } finally {
      sampler.stop();
    }
  });

  it('counts a file whose table does not fit, and makes room by dropping unused ones', async () => {
    // Room for libstdc++ (~34,000 rows) or libc (~28,000), not both; nowhere near node (~370,000).
    const sampler = openOnCpuSampler({ frequency: 49, pids: [process.pid], unwindRows: 40_000, unwindPages: 40_000 });
    try {
      const tables = new KernelTables({ writer: sampler, capacity: sampler.info().unwind });
      const procs = new ProcessTable();
      const lib = (name: string) => procs.ensure(process.pid)!.mappings.find((m) => m.file && m.path.includes(name))!.file!;
      // No process maps a prepared file: its table may go when another needs the room.
      tables.prepare([lib('libstdc++')]);
      await tables.settled();
      assert.equal(tables.stats.filesLoaded, 1);
      const cxxRows = tables.stats.rowsUsed;
      assert.ok(cxxRows > 20_000, `libstdc++ has ${cxxRows} rows`);
      tables.prepare([lib('libc.so')]);
      await tables.settled();
      assert.equal(tables.stats.filesEvicted, 1, 'libstdc++ made room for libc');
      assert.ok(tables.stats.rowsUsed > 0 && tables.stats.rowsUsed !== cxxRows);

      // node's own mappings: its executable fits nowhere, counted; the process is walked anyway.
      tables.sync(process.pid, procs.ensure(process.pid)!);
      await tables.settled();
      assert.ok(tables.stats.filesNotFitting >= 1, 'node did not fit');
      assert.ok(tables.isReady(process.pid), 'its other files have tables');
      assert.ok(tables.stats.rowsUsed <= 40_000);
      tables.forget(process.pid);
      assert.equal(tables.stats.prefixes, 0);
      await tables.close();
    } finally {
      sampler.stop();
    }
  });
  it('never converts another file through a descriptor the process table closed and reused', async () => {
    const sampler = openOnCpuSampler({ frequency: 49, pids: [process.pid] });
    const held: number[] = [];
    try {
      // Conversions wait for the gate, as they wait behind others in the worker on a busy node.
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const done: Array<{ task: ConvertTask; table: ConvertedTable }> = [];
      const convert = async (task: ConvertTask): Promise<ConvertedTable> => {
        await gate;
        const table = convertInPlace(task);
        done.push({ task, table });
        return table;
      };
      const tables = new KernelTables({ writer: sampler, capacity: sampler.info().unwind, convert });
      const procs = new ProcessTable();
      const a = spawn('sleep', ['30']);
      await new Promise((r) => setTimeout(r, 100));
      const sleepFile = procs.ensure(a.pid!)!.mappings.find((m) => m.file && m.path.endsWith('/sleep'))!.file!;
      tables.sync(a.pid!, procs.ensure(a.pid!)!);
      // It exits before its turn comes: the process table closes its files, and the next files
      // opened take their descriptor numbers (the lowest free ones).
      a.kill();
      procs.forget(a.pid!);
      tables.forget(a.pid!);
      procs.sweep();
      for (let i = 0; i < 8; i++) held.push(openSync(process.execPath, 'r'));
      assert.ok(held.includes(Number(sleepFile.openPath.split('/').pop())), 'the descriptor was reused');
      open();
      await tables.settled();
      assert.ok(done.length >= 3, `${done.length} conversions`);
      // Every table came from the file it was asked for (the vDSO's stays open), and sleep's,
      // whose number now names node, from none.
      for (const { task, table } of done) {
        if (table.gone) assert.equal(table.rows.byteLength, 0);
        else assert.equal(fileIdentity(statSync(task.openPath)), task.identity, `${task.openPath} was converted from what it names now`);
      }
      const sleepJob = done.find((d) => d.task.openPath === sleepFile.openPath);
      assert.ok(sleepJob?.table.gone, 'sleep was not converted from node');
      const gone = done.filter((d) => d.table.gone).length;
      assert.ok(gone >= 3, `${gone} conversions found their file closed (sleep, libc, ld.so)`);
      assert.equal(tables.stats.filesWithoutTable, 0, 'a closed file is not counted as one without a table');
      const loadedBefore = tables.stats.filesLoaded;

      // The next process that maps sleep has it converted from its new descriptor.
      const b = spawn('sleep', ['30']);
      try {
        await new Promise((r) => setTimeout(r, 100));
        tables.sync(b.pid!, procs.ensure(b.pid!)!);
        await tables.settled();
        assert.ok(tables.isReady(b.pid!));
        assert.ok(tables.stats.filesLoaded >= loadedBefore + 3, `${tables.stats.filesLoaded - loadedBefore} files converted for the second sleep`);
        const sleepAgain = done.find((d) => d.task.identity === sleepFile.identity && !d.table.gone);
        assert.ok(sleepAgain && sleepAgain.table.rows.byteLength > 0, 'sleep converted from its new descriptor');
      } finally {
        b.kill();
      }
      await tables.close();
    } finally {
      for (const fd of held) closeSync(fd);
      sampler.stop();
    }
  });
});
