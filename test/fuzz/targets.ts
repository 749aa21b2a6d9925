// Every parser that reads bytes a profiled process controls, each as a fuzz target: what it is
// given (a file, a text, raw bytes), which seeds it takes, the work it does on one input (the
// calls the profiler makes, with the same addresses for a seed and its mutations), and which
// errors count as a clean answer. Adding a parser is adding one entry to TARGETS.
// Targets run in the fuzz worker (worker.ts); what they return is checked for over-long strings.

import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { ElfError, ElfFile } from '../../src/elf/elf-file.js';
import { readDebugLink } from '../../src/elf/debug-file.js';
import { SymbolTable } from '../../src/elf/elf-symbols.js';
import { DwarfInfo } from '../../src/elf/dwarf.js';
import { readDebugSection } from '../../src/elf/dwarf-sections.js';
import { GoPclnTab } from '../../src/elf/gopclntab.js';
import { formatGoBuildInfo, parseModInfo, readGoBuildId, readGoBuildInfo } from '../../src/elf/go-buildinfo.js';
import { closeFileRanges } from '../../src/elf/file-bytes.js';
import { CfiError, CfiTable, evalDwarfExpr } from '../../src/unwind/eh-frame.js';
import { UnwindTables, ruleLookupFor } from '../../src/unwind/unwind-tables.js';
import { repairUserStack } from '../../src/unwind/leaf-repair.js';
import { demangle } from '../../src/demangle.js';
import { goRuntimeOffsets, parseGoVersion, type GoRuntimeOffsets } from '../../src/go/runtime-offsets.js';
import { findAllgs, findFunction } from '../../src/go/allgs.js';
import { goroutineStack, readAllGoroutines, readGoroutine, type ReadMemory } from '../../src/go/goroutine-reader.js';
import { parseMaps, parseUids } from '../../src/process-table.js';
import { PerfMap } from '../../src/perf-map.js';
import { parseFuseMounts } from '../../src/untrusted-file.js';
import { idsFromCgroup } from '../../src/container-id.js';
import symbolizeFiles, { clearWorkerCache } from '../../src/symbolize-worker.js';
import type { SeedTag } from './seeds.js';

/** What a target gets besides its input: set up by the harness per seed. */
export interface TargetContext {
  /** Virtual addresses to look up (from the seed: function starts and points across the text). */
  probes: number[];
  /** Go offsets for the memory targets. */
  offsets?: GoRuntimeOffsets;
  /** A file with unwind tables, for the stack targets. */
  unwindFile?: string;
  /** Base address of a memory image. */
  base?: number;
  /** The input is a file's path (set by the harness for ELF inputs). */
  file?: boolean;
}

export interface Target {
  name: string;
  input: 'elf' | 'text' | 'bytes';
  /** Seeds with any of these tags. */
  seeds: SeedTag[];
  /** One input's work; returns what the profiler would keep. */
  run(input: string | Buffer, ctx: TargetContext): unknown | Promise<unknown>;
  /** Errors that are the parser's documented, clean answer to a bad input. */
  typed?: (e: unknown) => boolean;
  /**
   * Longest string allowed in the result when not the harness's STRING_BOUND: a number, or
   * 'input-line' for parsers that hand back pieces of their input's lines (a /proc file's
   * paths are the kernel's, and bounded by it).
   */
  stringBound?: number | 'input-line';
}

const elfError = (e: unknown) => e instanceof ElfError;
const DWARF_NAMES = ['runtime.g', 'runtime.m', 'runtime/pprof.labelMap', 'node', 'shape', 'table', 'handle_t', 'ns::engine', 'ns::widget<double, 3>', '_IO_FILE'];

export const TARGETS: Target[] = [
  {
    name: 'elf-file',
    input: 'elf',
    seeds: ['elf'],
    typed: elfError,
    run(path, { probes }) {
      return ElfFile.withFile(path as string, (elf) => ({
        sections: elf.sections.map((s) => [s.name, s.type, s.size]),
        segments: elf.segments.length,
        text: elf.textSegments.length,
        buildId: elf.buildId,
        goBuildId: elf.goBuildId,
        link: readDebugLink(elf),
        offsets: probes.slice(0, 64).map((a) => elf.vaddrToFileOffset(a)),
        vaddrs: probes.slice(0, 64).map((a) => elf.fileOffsetToVaddr(a & 0xfffff)),
      }));
    },
  },
  {
    name: 'elf-symbols',
    input: 'elf',
    seeds: ['symbols'],
    typed: elfError,
    run(path, { probes }) {
      const table = ElfFile.withFile(path as string, (elf) => SymbolTable.fromElf(elf, demangle));
      try {
        return probes.map((a) => table.lookup(a)?.name);
      } finally {
        table.release();
      }
    },
  },
  {
    name: 'dwarf',
    input: 'elf',
    seeds: ['dwarf'],
    typed: elfError,
    run(path) {
      return ElfFile.withFile(path as string, (elf) => {
        const sections = ['info', 'abbrev', 'str', 'line_str', 'str_offsets', 'line'].map((n) => readDebugSection(elf, n)?.length);
        const d = DwarfInfo.fromElf(elf);
        if (!d) return { sections };
        const out: unknown[] = [sections, d.unitCount, d.versions, d.hasDwarf64];
        for (const n of DWARF_NAMES) {
          const t = d.findStruct(n) ?? d.findType(n);
          if (!t) continue;
          out.push(t.name, t.size, t.count);
          for (const m of t.members ?? []) {
            const r = d.resolve(m.type);
            out.push(m.name, m.offset, m.typeName, r?.kind, r?.name, d.pointee(m.type)?.name, d.member(r, 'next')?.offset);
          }
        }
        return out;
      });
    },
  },
  {
    name: 'eh-frame',
    input: 'elf',
    seeds: ['cfi'],
    typed: (e) => e instanceof ElfError || e instanceof CfiError,
    run(path, { probes }) {
      return ElfFile.withFile(path as string, (elf) => {
        const out: unknown[] = [];
        for (const inMemory of [false, true]) {
          const t = CfiTable.fromElf(elf, inMemory);
          if (!t) continue;
          out.push(t.sources, t.byteSize);
          for (const a of probes) {
            try {
              const r = t.ruleAt(a);
              out.push(r?.cfa.kind, t.fdeRange(a));
              // Expressions come from the file: evaluate them as the stack walk would.
              const reg = (n: number) => BigInt(0x7ffc_0000_0000 + n * 8);
              const mem = (p: bigint) => p & 0xffff_ffffn;
              if (r?.cfa.kind === 'expr') out.push(evalDwarfExpr(r.cfa.expr, reg, mem));
              for (const rr of [r?.ra, r?.bp]) if (rr && (rr.kind === 'expr' || rr.kind === 'val_expr')) out.push(evalDwarfExpr(rr.expr, reg, mem, 0x7ffc_0000_1000n));
            } catch (e) {
              if (!(e instanceof CfiError)) throw e;
            }
          }
        }
        closeFileRanges();
        return out;
      });
    },
  },
  {
    name: 'unwind-tables',
    input: 'elf',
    seeds: ['cfi', 'go'],
    run(path, { probes }) {
      const tables = new UnwindTables();
      const out = probes.map((a) => tables.ruleAt('fuzz', path as string, a)?.cfa.kind);
      closeFileRanges();
      return [out, tables.errorOf('fuzz')];
    },
  },
  {
    name: 'gopclntab',
    input: 'elf',
    seeds: ['go', 'c'],
    typed: elfError,
    run(path, { probes }) {
      try {
        const tab = ElfFile.withFile(path as string, (elf) => GoPclnTab.open(elf));
        if (!tab) return undefined;
        const [lo, hi] = tab.textRange;
        const addrs = [...probes, ...Array.from({ length: 64 }, (_, i) => lo + Math.floor(((hi - lo) * i) / 64))];
        const out: unknown[] = [tab.version, tab.versionRange, tab.funcCount, tab.byteSize, lo, hi];
        for (const a of addrs) out.push(tab.lookup(a), tab.funcAt(a)?.name, tab.spDelta(a));
        out.push(findFunction(tab, 'runtime.allgadd'));
        return out;
      } finally {
        // The table reads pages through a shared set of open files; the profiler closes them after each task.
        closeFileRanges();
      }
    },
  },
  {
    name: 'go-buildinfo',
    input: 'elf',
    seeds: ['go', 'c'],
    typed: elfError,
    run(path) {
      return ElfFile.withFile(path as string, (elf) => {
        const info = readGoBuildInfo(elf);
        closeFileRanges();
        return [info && formatGoBuildInfo(info), readGoBuildId(elf)];
      });
    },
  },
  {
    name: 'go-runtime',
    input: 'elf',
    seeds: ['go'],
    typed: elfError,
    run(path) {
      return ElfFile.withFile(path as string, (elf) => {
        const info = readGoBuildInfo(elf);
        const version = info && parseGoVersion(info.goVersion) ? info.goVersion : 'go1.26.0';
        const out = [goRuntimeOffsets(elf, version), findAllgs(elf)];
        closeFileRanges();
        return out;
      });
    },
  },
  {
    name: 'symbolize-worker',
    input: 'elf',
    seeds: ['elf'],
    async run(path, { probes }) {
      const res = await symbolizeFiles({ files: [{ fileKey: String(path), openPath: path as string, displayPath: '/nonexistent/fuzz', root: '', vaddrs: probes }] });
      clearWorkerCache();
      return res;
    },
  },
  {
    name: 'demangle',
    input: 'text',
    seeds: ['names'],
    // The demangler's own output cap; the symbol table cuts what it shows to STRING_BOUND.
    stringBound: 1 << 13,
    run(text) {
      // Names it leaves alone come back as given: only what it made counts.
      return (text as string).split('\n').map((n) => {
        const d = demangle(n);
        return d === n ? '' : d;
      });
    },
  },
  {
    name: 'proc-maps',
    input: 'text',
    stringBound: 'input-line',
    seeds: ['maps'],
    run(text) {
      return parseMaps(text as string);
    },
  },
  {
    name: 'proc-mountinfo',
    input: 'text',
    stringBound: 'input-line',
    seeds: ['mountinfo'],
    run(text) {
      return parseFuseMounts(text as string);
    },
  },
  {
    name: 'proc-status',
    input: 'text',
    seeds: ['status'],
    run(text) {
      return parseUids(text as string);
    },
  },
  {
    // Written as the process would, read as the profiler does: a first part, then what was
    // appended, then lookups of the addresses its lines name (and of some no line names).
    name: 'perf-map',
    input: 'text',
    seeds: ['perfmap'],
    run(text) {
      const t = text as string;
      const path = join(tmpdir(), `flamewire-fuzz-perf-${process.pid}-${threadId}.map`);
      const cut = t.indexOf('\n', t.length >> 1) + 1;
      writeFileSync(path, t.slice(0, cut), 'latin1');
      const map = new PerfMap(path);
      try {
        map.refresh();
        appendFileSync(path, t.slice(cut), 'latin1');
        map.refresh();
        const names: Array<string | undefined> = [];
        for (const line of t.split('\n', 64)) {
          const a = parseInt(line.slice(0, 16), 16);
          if (Number.isFinite(a)) names.push(map.lookup(a)?.name, map.lookup(a + 1)?.name, map.lookup(a - 1)?.name);
        }
        return { names, stats: map.stats };
      } finally {
        map.close();
        rmSync(path, { force: true });
      }
    },
  },
  {
    name: 'proc-cgroup',
    input: 'text',
    stringBound: 'input-line',
    seeds: ['cgroup'],
    run(text) {
      return idsFromCgroup(text as string);
    },
  },
  {
    name: 'go-modinfo',
    input: 'text',
    stringBound: 'input-line',
    seeds: ['modinfo'],
    run(text) {
      return parseModInfo(text as string);
    },
  },
  {
    name: 'leaf-repair',
    input: 'bytes',
    seeds: [],
    run(bytes, ctx) {
      // The sample (registers, frame-pointer walk, stack snapshot) as stackSample() lays it out.
      const b = bytes as Buffer;
      const w = (i: number) => b.readBigUInt64LE(i * 8);
      const nfp = Number(w(3) & 0xfn);
      const userStack = new BigUint64Array(nfp);
      for (let i = 0; i < nfp; i++) userStack[i] = w(4 + i);
      const sample = { userRegs: { ip: w(0), sp: w(1), bp: w(2) }, userStack, stackSnapshot: b.subarray(20 * 8) };
      const tables = new UnwindTables();
      const lookup = ruleLookupFor(tables, (addr) => ({ fileKey: 'stack', openPath: ctx.unwindFile!, vaddr: Number(addr) }));
      const out = Array.from(repairUserStack(sample, lookup, { maxCfiFrames: 16 }));
      closeFileRanges();
      return out.map(String);
    },
  },
  {
    name: 'dwarf-expr',
    input: 'bytes',
    seeds: [],
    run(bytes) {
      // Length-prefixed expressions; registers and memory answer from the address.
      const b = bytes as Buffer;
      const out: unknown[] = [];
      for (let p = 0; p < b.length; ) {
        const n = b[p]!;
        const expr = b.subarray(p + 1, p + 1 + n);
        p += 1 + n;
        out.push(evalDwarfExpr(expr, (r) => BigInt(r) * 0x1000n + 0x7ff0_0000n, (a) => (a * 2654435761n) & 0xffff_ffff_ffffn, 0x7ff0_1000n)?.toString());
      }
      return out;
    },
  },
  {
    name: 'goroutines',
    input: 'bytes',
    seeds: [],
    run(bytes, ctx) {
      const image = bytes as Buffer;
      const base = ctx.base!;
      const o = ctx.offsets!;
      const read: ReadMemory = (addr, length) => {
        const off = addr - base;
        if (!(off >= 0) || length < 0 || length > 1 << 20 || off + length > image.length) return undefined;
        return image.subarray(off, off + length);
      };
      const all = readAllGoroutines(read, base, o) ?? [];
      const out: unknown[] = [all.length];
      for (const g of all.slice(0, 64)) out.push(g.goid, g.labels, goroutineStack(read, g), readGoroutine(read, g.g, o));
      return out;
    },
  },
];

/**
 * Not a parser: one plain linear pass over an input (read it, search it once for bytes it does
 * not hold; split a text into lines), the yardstick for the time bound next to the seed's own
 * time. A parser may rightly fall back to scanning its whole input a few times (a pclntab found
 * by its magic, a Go version by a regular expression); doing so once per lookup is the bug.
 */
export const LINEAR_PASS: Target = {
  name: 'linear-pass',
  input: 'text',
  seeds: [],
  run(input, ctx) {
    if (ctx.file) {
      const b = readFileSync(input as string);
      return b.indexOf('\xff Go buildinf:\xff\xff', 0, 'latin1');
    }
    if (typeof input !== 'string') return (input as Buffer).indexOf('\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8', 0, 'latin1');
    // Text parsers match regular expressions per line (or per piece of one): a pass that tries
    // one at every position of every line is their linear pass.
    let n = 0;
    for (const line of input.split('\n')) if (/[/-][0-9a-f]{8}[g-z]|^\S+\s+\S+$/.test(line)) n++;
    return n;
  },
};

export function targetNamed(name: string): Target {
  const t = name === LINEAR_PASS.name ? LINEAR_PASS : TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`no fuzz target ${name}`);
  return t;
}
