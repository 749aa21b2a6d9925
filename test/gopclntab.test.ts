import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile } from '../src/elf/elf-file.js';
import { closeFileRanges, dropCachedPages, fileBytesStats } from '../src/elf/file-bytes.js';
import { GoPclnTab } from '../src/elf/gopclntab.js';
import { MAX_NAME_LENGTH, NAME_CUT_MARK } from '../src/elf/names.js';
import { buildGo, workDir } from './helpers.js';

// The program under test: `caller` is kept out of line and `small` is inlined into it.
const PROGRAM = `package main

import (
	"fmt"
	"os"
)

func small(x int) int {
	return x*x + 3 // SMALL_LINE
}

//go:noinline
func caller(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += small(i) // CALL_LINE
	}
	buf := make([]byte, 64)
	buf[n%64] = byte(s)
	return s + int(buf[3])
}

//go:noinline
func frameless(a, b int) int {
	return a*b + a
}

func main() {
	fmt.Fprintln(os.Stdout, caller(len(os.Args)+10), frameless(len(os.Args), 3))
}
`;

// The oracle: Go's own debug/gosym over the same binary. For every function it prints the
// entry, end and name, and pc→file:line at three addresses.
const ORACLE = `package main

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
)

func main() {
	f, err := elf.Open(os.Args[1])
	if err != nil { panic(err) }
	pcln, err := f.Section(".gopclntab").Data()
	if err != nil { panic(err) }
	text := f.Section(".text").Addr
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(pcln, text))
	if err != nil { panic(err) }
	for _, fn := range tab.Funcs {
		fmt.Printf("F\\t%x\\t%x\\t%s\\n", fn.Entry, fn.End, fn.Name)
		for _, pc := range []uint64{fn.Entry, fn.Entry + (fn.End-fn.Entry)/2, fn.End - 1} {
			file, line, g := tab.PCToLine(pc)
			name := ""
			if g != nil { name = g.Name }
			fmt.Printf("L\\t%x\\t%d\\t%s\\t%s\\n", pc, line, name, file)
		}
	}
}
`;

interface Oracle {
  funcs: Array<{ entry: number; end: number; name: string }>;
  lines: Array<{ pc: number; line: number; name: string; file: string }>;
}

function runOracle(oracleBin: string, target: string): Oracle {
  const out = execFileSync(oracleBin, [target], { maxBuffer: 256 << 20 }).toString();
  const o: Oracle = { funcs: [], lines: [] };
  for (const l of out.split('\n')) {
    const p = l.split('\t');
    if (p[0] === 'F') o.funcs.push({ entry: parseInt(p[1], 16), end: parseInt(p[2], 16), name: p[3] });
    else if (p[0] === 'L') o.lines.push({ pc: parseInt(p[1], 16), line: Number(p[2]), name: p[3], file: p[4] });
  }
  return o;
}

function compareWithOracle(tab: GoPclnTab, o: Oracle): void {
  assert.ok(o.funcs.length > 500, `oracle listed only ${o.funcs.length} functions`);
  for (const f of o.funcs) {
    const got = tab.funcAt(f.entry);
    assert.ok(got, `no function at 0x${f.entry.toString(16)} (${f.name})`);
    assert.equal(got.name, f.name);
    assert.equal(got.entry, f.entry);
  }
  for (const l of o.lines) {
    if (l.line < 0) {
      // Alignment padding after a function's last instruction, or a marker symbol without a
      // line table (go:textfipsstart): gosym answers garbage there, we answer no line.
      assert.equal(tab.lookup(l.pc)?.[0].line ?? 0, 0);
      continue;
    }
    const frames = tab.lookup(l.pc);
    assert.ok(frames && frames.length > 0, `no frames at 0x${l.pc.toString(16)}`);
    // debug/gosym knows nothing of inlining: its file:line is the innermost position, its name
    // the physical function.
    assert.equal(frames[frames.length - 1].name, l.name, `name at 0x${l.pc.toString(16)}`);
    assert.equal(frames[0].line, l.line, `line at 0x${l.pc.toString(16)} (${l.name})`);
    assert.equal(frames[0].file, l.file, `file at 0x${l.pc.toString(16)} (${l.name})`);
  }
}

function lineOf(marker: string): number {
  return PROGRAM.split('\n').findIndex((l) => l.includes(marker)) + 1;
}

/** `go tool objdump -s <re>` lines as { pc, text }. */
function objdump(bin: string, re: string): Array<{ pc: number; text: string }> {
  const out = execFileSync('go', ['tool', 'objdump', '-s', re, bin], { maxBuffer: 64 << 20 }).toString();
  const rows: Array<{ pc: number; text: string }> = [];
  for (const l of out.split('\n')) {
    const m = /^\s+\S+:\d+\s+0x([0-9a-f]+)\s+[0-9a-f]+\s+(.*)$/.exec(l);
    if (m) rows.push({ pc: parseInt(m[1], 16), text: m[2].trim() });
  }
  return rows;
}

describe('gopclntab', () => {
  const dir = workDir('gopclntab');
  let bin = '';
  let stripped = '';
  let oracle = '';

  before(() => {
    bin = buildGo(dir, 'prog', PROGRAM);
    stripped = buildGo(dir, 'prog-stripped', PROGRAM, ['-ldflags=-s -w']);
    execFileSync('strip', [stripped]);
    oracle = buildGo(dir, 'oracle', ORACLE);
  });

  it('matches debug/gosym on names and pc→file:line for every function', () => {
    const tab = ElfFile.withFile(bin, (elf) => GoPclnTab.open(elf));
    assert.ok(tab);
    assert.equal(tab.version, '1.20');
    compareWithOracle(tab, runOracle(oracle, bin));
  });

  it('matches debug/gosym on a binary built with -s -w and then stripped', () => {
    const tab = ElfFile.withFile(stripped, (elf) => GoPclnTab.open(elf));
    assert.ok(tab);
    compareWithOracle(tab, runOracle(oracle, stripped));
  });

  it('finds the table by its header when the section is not named .gopclntab', () => {
    const renamed = join(dir, 'prog-renamed');
    copyFileSync(stripped, renamed);
    const bytes = readFileSync(renamed);
    const at = bytes.lastIndexOf(Buffer.from('.gopclntab\0'));
    assert.ok(at > 0);
    bytes.write('.xopclntab', at, 'latin1');
    writeFileSync(renamed, bytes);
    const tab = ElfFile.withFile(renamed, (elf) => {
      assert.equal(elf.section('.gopclntab'), undefined);
      return GoPclnTab.open(elf);
    });
    assert.ok(tab);
    compareWithOracle(tab, runOracle(oracle, stripped));
  });

  it('finds the table and runtime.text without section headers', () => {
    const bare = join(dir, 'prog-no-sections');
    const bytes = readFileSync(stripped);
    bytes.writeBigUInt64LE(0n, 40); // e_shoff
    bytes.writeUInt16LE(0, 60); // e_shnum
    bytes.writeUInt16LE(0, 62); // e_shstrndx
    writeFileSync(bare, bytes);
    const tab = ElfFile.withFile(bare, (elf) => {
      assert.equal(elf.sections.length, 0);
      return GoPclnTab.open(elf);
    });
    assert.ok(tab);
    compareWithOracle(tab, runOracle(oracle, stripped));
  });

  it('expands inlined frames, innermost first', () => {
    for (const b of [bin, stripped]) {
      const tab = ElfFile.withFile(b, (elf) => GoPclnTab.open(elf))!;
      // Stripped binaries have no symbols for objdump: take the range from debug/gosym.
      const fn = runOracle(oracle, b).funcs.find((f) => f.name === 'main.caller')!;
      assert.ok(fn);
      let found = false;
      for (let pc = fn.entry; pc < fn.end; pc++) {
        const frames = tab.lookup(pc)!;
        if (frames.length === 2 && frames[0].name === 'main.small') {
          assert.equal(frames[0].line, lineOf('SMALL_LINE'));
          assert.equal(frames[1].name, 'main.caller');
          assert.equal(frames[1].line, lineOf('CALL_LINE'));
          assert.match(frames[0].file, /main\.go$/);
          found = true;
        }
      }
      assert.ok(found, `no pc of main.caller expanded to main.small in ${b}`);
    }
  });

  it('gives the SP delta per the Go amd64 prologue (go tool objdump)', () => {
    const tab = ElfFile.withFile(bin, (elf) => GoPclnTab.open(elf))!;
    const rows = objdump(bin, '^main\\.caller$');
    assert.equal(tab.spDelta(rows[0].pc), 0, 'entry');
    const push = rows.findIndex((r) => /^PUSHQ BP$/.test(r.text));
    assert.ok(push >= 0, 'no PUSHQ BP in caller');
    assert.equal(tab.spDelta(rows[push].pc), 0, 'at PUSHQ BP');
    assert.equal(tab.spDelta(rows[push + 1].pc), 8, 'after PUSHQ BP');
    const sub = rows.findIndex((r) => /^SUBQ \$0x[0-9a-f]+, SP$/.test(r.text));
    assert.ok(sub > push);
    const size = parseInt(/\$0x([0-9a-f]+)/.exec(rows[sub].text)![1], 16);
    assert.equal(tab.spDelta(rows[sub + 1].pc), size + 8, 'after SUBQ: frame size + saved BP');
    const ret = rows.findIndex((r) => r.text === 'RET');
    assert.equal(tab.spDelta(rows[ret].pc), 0, 'at RET');

    // A frameless leaf never moves SP.
    const leaf = objdump(bin, '^main\\.frameless$');
    assert.ok(!leaf.some((r) => /PUSHQ BP|SUBQ .*SP/.test(r.text)), 'frameless is not frameless');
    for (const r of leaf) assert.equal(tab.spDelta(r.pc), 0);
  });

  it('uses runtime.text, not the .text section, with external linking (cgo)', () => {
    const src = PROGRAM.replace('import (', '// int cadd(int a, int b) { return a + b; }\nimport "C"\n\nimport (').replace(
      'fmt.Fprintln(os.Stdout,',
      'fmt.Fprintln(os.Stdout, C.cadd(1, 2),',
    );
    const ext = buildGo(dir, 'prog-cgo', src, ['-ldflags=-linkmode=external'], { CGO_ENABLED: '1' });
    const syms = execFileSync('nm', [ext]).toString();
    const text = /^([0-9a-f]+) \S runtime\.text$/m.exec(syms)!;
    const textSec = ElfFile.withFile(ext, (e) => e.section('.text')!.addr);
    assert.notEqual(parseInt(text[1], 16), textSec, 'the C runtime should come first in .text');
    const tab = ElfFile.withFile(ext, (elf) => GoPclnTab.open(elf))!;
    let checked = 0;
    for (const m of syms.matchAll(/^([0-9a-f]+) [tT] (main\.\w+|runtime\.\w+)$/gm)) {
      const addr = parseInt(m[1], 16);
      if (m[2] === 'runtime.etext' || m[2] === 'runtime.text') continue;
      const f = tab.funcAt(addr);
      assert.ok(f, `no function at ${m[2]}`);
      assert.equal(f.entry, addr, m[2]);
      checked++;
    }
    assert.ok(checked > 100);
    const caller = /^([0-9a-f]+) \S main\.caller$/m.exec(syms)!;
    assert.equal(tab.lookup(parseInt(caller[1], 16))?.at(-1)?.name, 'main.caller');
  });

  it('never throws on a corrupted table', () => {
    const orig = readFileSync(bin);
    const sec = ElfFile.withFile(bin, (e) => e.section('.gopclntab')!);
    const tab0 = ElfFile.withFile(bin, (e) => GoPclnTab.open(e))!;
    const [lo, hi] = tab0.textRange;
    // A new file each time: a table reads its pages later, and only from the file it opened.
    const fuzzedPath = (it: number) => join(dir, `fuzzed-${it}`);
    let seed = 11;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    for (let it = 0; it < 60; it++) {
      const b = Buffer.from(orig);
      // The header and function table first (where a bad byte hurts most), then anywhere.
      const span = it % 2 ? sec.size : Math.min(sec.size, 4096);
      for (let k = 0; k < 40; k++) b[sec.offset + Math.floor(rnd() * span)] = Math.floor(rnd() * 256);
      const fuzzed = fuzzedPath(it);
      writeFileSync(fuzzed, b);
      const t = ElfFile.withFile(fuzzed, (e) => GoPclnTab.open(e));
      for (let a = lo; a < hi; a += Math.floor((hi - lo) / 200)) {
        t?.lookup(a);
        t?.spDelta(a);
        t?.funcAt(a);
      }
    }
  });

  it('cuts function and file names that never end at 4096 characters, and caches a bounded number of them', () => {
    // A function-name table and a file table without a single zero: every name used to run 64 KiB
    // (40 KB names and 253 MB of them in the name cache, in the issue that found it).
    const bytes = readFileSync(bin);
    const sec = ElfFile.withFile(bin, (e) => e.section('.gopclntab')!);
    const word = (i: number) => Number(bytes.readBigUInt64LE(sec.offset + 8 + i * 8));
    const [funcname, cu, filetab, pctab] = [word(3), word(4), word(5), word(6)];
    bytes.fill(0x41, sec.offset + funcname, sec.offset + cu);
    bytes.fill(0x42, sec.offset + filetab, sec.offset + pctab);
    const named = join(dir, 'endless-names');
    writeFileSync(named, bytes);
    // The same in memory: found by its header, the table is held as a Buffer.
    const renamed = join(dir, 'endless-names-renamed');
    bytes.write('.xopclntab', bytes.lastIndexOf(Buffer.from('.gopclntab\0')), 'latin1');
    writeFileSync(renamed, bytes);
    for (const path of [named, renamed]) {
      const tab = ElfFile.withFile(path, (e) => GoPclnTab.open(e))!;
      assert.ok(tab, path);
      const [lo, hi] = tab.textRange;
      const heap = process.memoryUsage().heapUsed;
      let frames = 0;
      let cut = 0;
      for (let a = lo; a < hi; a += 16) {
        for (const f of tab.lookup(a) ?? []) {
          frames++;
          assert.ok(f.name.length <= MAX_NAME_LENGTH && f.file.length <= MAX_NAME_LENGTH, `${f.name.length}, ${f.file.length}`);
          // Names that start within 4 KiB of the table's end run into the next table instead.
          if (f.name.endsWith(NAME_CUT_MARK) && f.file.endsWith(NAME_CUT_MARK)) cut++;
        }
      }
      assert.ok(frames > 1000 && cut > frames / 2, `${cut} of ${frames} frames cut`);
      assert.ok(tab.byteSize - (path === renamed ? sec.size : 0) < 4 << 20, `${tab.byteSize} bytes held`);
      assert.ok(process.memoryUsage().heapUsed - heap < 64 << 20, 'names took more than 64 MiB of heap');
    }
  });

  it('reads no more of a pc-value table than its function has instructions', () => {
    // Every pc-value entry made "value +1, pc +0": the table never reaches the pc asked for,
    // and each call read up to 4 million entries (the rest of the table) before.
    const bytes = readFileSync(bin);
    const sec = ElfFile.withFile(bin, (e) => e.section('.gopclntab')!);
    const word = (i: number) => Number(bytes.readBigUInt64LE(sec.offset + 8 + i * 8));
    for (let p = sec.offset + word(6); p + 1 < sec.offset + word(7); p += 2) {
      bytes[p] = 0x02;
      bytes[p + 1] = 0x00;
    }
    const stalled = join(dir, 'stalled-pctab');
    writeFileSync(stalled, bytes);
    const time = (path: string) => {
      const tab = ElfFile.withFile(path, (e) => GoPclnTab.open(e))!;
      const [lo, hi] = tab.textRange;
      const entries: number[] = [];
      for (let a = lo; a < hi && entries.length < 400; ) {
        const f = tab.funcAt(a);
        if (!f) break;
        entries.push(f.entry + 1);
        a = f.end;
      }
      let best = Infinity;
      for (let r = 0; r < 3; r++) {
        const t0 = performance.now();
        for (const a of entries) {
          tab.lookup(a);
          tab.spDelta(a);
        }
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    const intact = time(bin);
    const hostile = time(stalled);
    assert.ok(hostile < 10 * intact, `${hostile.toFixed(1)} ms against ${intact.toFixed(1)} ms for the intact table`);
  });

  it('reads the table a page at a time, after the file is closed, and only from the file it opened', () => {
    const path = join(dir, 'paged');
    copyFileSync(bin, path);
    const sec = ElfFile.withFile(path, (e) => e.section('.gopclntab')!);
    const tab = ElfFile.withFile(path, (e) => GoPclnTab.open(e))!;
    // Nothing of the table is held by the table itself: its pages are in the shared cache.
    assert.ok(tab.byteSize < sec.size / 4, `${tab.byteSize} bytes held for a ${sec.size}-byte table`);
    const syms = execFileSync('go', ['tool', 'nm', path], { encoding: 'utf8' });
    const caller = parseInt(/^\s*([0-9a-f]+) T main\.caller$/m.exec(syms)![1], 16);
    dropCachedPages();
    closeFileRanges();
    assert.equal(tab.lookup(caller + 1)?.at(-1)?.name, 'main.caller');
    const after = fileBytesStats();
    assert.ok(after.pages > 0 && after.bytes < sec.size, `${after.pages} pages, ${after.bytes} bytes cached for one lookup`);
    assert.equal(after.openFiles, 1);
    closeFileRanges();
    assert.equal(fileBytesStats().openFiles, 0);

    // Another program at the same path (a binary replaced on disk): no frames, never its names.
    dropCachedPages();
    writeFileSync(path, readFileSync(oracle));
    assert.equal(tab.lookup(caller + 1), undefined);
    assert.equal(tab.spDelta(caller + 1), undefined);
  });

  it('answers undefined outside the text and for non-Go files', () => {
    const tab = ElfFile.withFile(bin, (elf) => GoPclnTab.open(elf))!;
    assert.equal(tab.lookup(0), undefined);
    assert.equal(tab.spDelta(0), undefined);
    assert.equal(tab.lookup(tab.textRange[1] + 100), undefined);
    const node = ElfFile.withFile(process.execPath, (elf) => GoPclnTab.open(elf));
    assert.equal(node, undefined);
  });
});
