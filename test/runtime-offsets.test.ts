// The offsets of runtime.g (with those of its stack, its saved registers g.sched, its status
// and wait reason) and runtime.m and the labels layout, for every supported Go release:
// the built-in table must say what the DWARF of a real binary of that release says (amd64 and
// arm64), a stripped binary must get the table's answer, and the whole pointer chain (TLS → g →
// goid and labels, m → g0, gsignal, curg, procid) must find the right goroutine in live
// processes, read through /proc/PID/mem as BPF reads memory, in every way a Go binary can be
// linked on amd64.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { ElfFile } from '../src/elf/elf-file.js';
import { DwarfInfo } from '../src/elf/dwarf.js';
import {
  GO_MAX_MINOR,
  GO_MIN_MINOR,
  goRuntimeOffsets,
  goRuntimeTable,
  parseGoVersion,
  symtabValue,
  type GoRuntimeOffsets,
} from '../src/go/runtime-offsets.js';
import { goGFromTls, readGoroutine, type ReadMemory } from '../src/go/goroutine-reader.js';
import { buildElf, SHT_STRTAB, SHT_SYMTAB } from './fuzz/elf-builder.js';
import { buildC, buildGoModule, execAsync, firstLine, GO_RELEASES, memoryOf, pool, workDir } from './helpers.js';


// Two labelled goroutines, each locked to its thread and asleep in a syscall there (so the
// thread's g is the goroutine): A's 13 labels are its parent's 3 plus 10 (a map with a size
// hint, grown once), B's 27 labels make a map grow three times, the last time on its last
// insert, so that it still has old buckets. A third thread is locked to a goroutine that
// blocked: it sleeps on its g0 with no curg. Goroutines started first make the goids larger.
// Prints "fs tid goid" for A and for B, then "fs tid" for the idle thread, on one line.
const MAIN_GO = `package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
)

func goid() string {
	buf := make([]byte, 64)
	n := runtime.Stack(buf, false)
	return strings.Fields(string(buf[:n]))[1]
}

func labelled(ctx context.Context, kv []string, out chan<- string) {
	runtime.LockOSThread()
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels(kv...)))
	out <- fmt.Sprintf("%x %d %s", fsBase(), syscall.Gettid(), goid())
	for {
		ts := syscall.Timespec{Sec: 3600}
		syscall.Nanosleep(&ts, nil)
	}
}

func main() {
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go wg.Done()
	}
	wg.Wait()
	// Buffered: a sender never blocks, so the only sleep of each thread is the one under test.
	idle := make(chan string, 1)
	go func() {
		runtime.LockOSThread()
		idle <- fmt.Sprintf("%x %d", fsBase(), syscall.Gettid())
		select {}
	}()
	parent := pprof.WithLabels(context.Background(), pprof.Labels("p0", "v0", "p1", "v1", "p2", "v2"))
	var kvA, kvB []string
	for i := 9; i >= 0; i-- {
		kvA = append(kvA, fmt.Sprintf("key%02d", i), strings.Repeat("x", i)+"val")
	}
	for i := 0; i < 27; i++ {
		kvB = append(kvB, fmt.Sprintf("k%02d", i), fmt.Sprintf("v%02d", i))
	}
	a, b := make(chan string, 1), make(chan string, 1)
	go labelled(parent, kvA, a)
	go labelled(context.Background(), kvB, b)
	fmt.Printf("%s %s %s\\n", <-a, <-b, <-idle)
	select {}
}
`;

const FS_AMD64_GO = `package main

import (
	"syscall"
	"unsafe"
)

// fsBase is this thread's FS base (arch_prctl ARCH_GET_FS).
func fsBase() uintptr {
	var fs uintptr
	syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, 0x1003, uintptr(unsafe.Pointer(&fs)), 0)
	return fs
}
`;

const FS_OTHER_GO = `//go:build !amd64

package main

func fsBase() uintptr { return 0 }
`;

// C thread-locals in the executable's TLS block, initialised (.tdata) and not (.tbss), so the
// system linker has more than runtime.tlsg to lay out.
const CGO_TLS_GO = `package main

/*
__thread int ctdata[5] = {1, 2, 3};
__thread long ctbss[3];
static int touch(void) { ctbss[1] = ctdata[2]; return (int)ctbss[1]; }
*/
import "C"

func init() { C.touch() }
`;

const byKey = (a: [string, string], b: [string, string]): number => (a[0] < b[0] ? -1 : 1);
const EXPECTED_A: Array<[string, string]> = [
  ['p0', 'v0'] as [string, string],
  ['p1', 'v1'] as [string, string],
  ['p2', 'v2'] as [string, string],
  ...Array.from({ length: 10 }, (_, i): [string, string] => [`key${String(i).padStart(2, '0')}`, 'x'.repeat(i) + 'val']),
].sort(byKey);
const EXPECTED_B = Array.from({ length: 27 }, (_, i): [string, string] => [`k${String(i).padStart(2, '0')}`, `v${String(i).padStart(2, '0')}`]);

interface Build {
  release: string;
  variant: string;
  bin: string;
  /** The g location the binary should get. */
  how: string;
  /** Whether it can run here (amd64 binaries). */
  runnable: boolean;
}

const dir = workDir('runtime-offsets');
const children: ChildProcessWithoutNullStreams[] = [];

function goEnv(toolchain: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: toolchain, CGO_ENABLED: '0', ...extra };
}

function buildGoProgram(name: string, files: Record<string, string>, flags: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return buildGoModule(dir, name, files, { flags, env });
}

const PROGRAM = { 'main.go': MAIN_GO, 'fs_amd64.go': FS_AMD64_GO, 'fs_other.go': FS_OTHER_GO };

async function startProgram(bin: string): Promise<{ pid: number; fields: string[] }> {
  const child = spawn(bin, [], { stdio: 'pipe' });
  children.push(child);
  const line = await firstLine(child, bin);
  return { pid: child.pid!, fields: line.trim().split(/\s+/) };
}

/** Waits until `tid` sleeps (in its syscall or futex), so its g is what the test expects. */
async function waitSleeping(pid: number, tid: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'S') return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`thread ${tid} of ${pid} never went to sleep`);
}

function u64(read: ReadMemory, addr: number): number {
  const b = read(addr, 8);
  assert.ok(b, `cannot read 0x${addr.toString(16)}`);
  return Number(b.readBigUInt64LE(0));
}

/** Follows every offset in a live process and checks it against what the program printed. */
async function checkLive(bin: string, o: GoRuntimeOffsets): Promise<{ oldBuckets: boolean }> {
  const { pid, fields } = await startProgram(bin);
  const threads = [0, 3].map((i) => ({ fs: parseInt(fields[i], 16), tid: Number(fields[i + 1]), goid: Number(fields[i + 2]) }));
  const idle = { fs: parseInt(fields[6], 16), tid: Number(fields[7]) };
  assert.notEqual(threads[0].goid, threads[1].goid);
  for (const t of [...threads, idle]) await waitSleeping(pid, t.tid);
  const mem = memoryOf(pid);
  let oldBuckets = false;
  try {
    const { read } = mem;
    for (const [i, t] of threads.entries()) {
      const what = i === 0 ? 'A' : 'B';
      // The labelled goroutine, as the sampler sees its thread.
      const gp = goGFromTls(read, t.fs, o);
      assert.ok(gp, `${what}: no g at the TLS offset`);
      const r = readGoroutine(read, gp, o);
      assert.ok(r, `${what}: no goroutine`);
      assert.equal(r.goid, t.goid, `${what}: goid`);
      assert.equal(r.viaCurg, false);
      // Maps list labels in hash order; from 1.24 the slice is sorted by key.
      const labels = o.labels.format === 'map' ? [...r.labels].sort(byKey) : r.labels;
      assert.deepEqual(labels, i === 0 ? EXPECTED_A : EXPECTED_B, `${what}: labels`);
      if (o.labels.format === 'map' && i === 1) oldBuckets ||= u64(read, u64(read, u64(read, gp + o.g.labels)) + o.labels.hmap.oldbuckets) !== 0;
      // Its m: the thread's id, curg is this g, g0 and gsignal belong to the same m.
      const m = u64(read, gp + o.g.m);
      assert.equal(u64(read, m + o.m.procid), t.tid, `${what}: m.procid`);
      assert.equal(u64(read, m + o.m.curg), gp, `${what}: m.curg`);
      for (const [name, g] of [['g0', u64(read, m + o.m.g0)], ['gsignal', u64(read, m + o.m.gsignal)]] as const) {
        assert.ok(g && g !== gp, name);
        assert.equal(u64(read, g + o.g.m), m, `${what}: ${name}.m`);
        assert.equal(u64(read, g + o.g.goid), 0, `${what}: ${name}.goid`);
      }
    }
    // The idle thread sleeps on its g0 and has no user goroutine.
    const ig = goGFromTls(read, idle.fs, o);
    assert.ok(ig, 'no g on the idle thread');
    const im = u64(read, ig + o.g.m);
    assert.equal(u64(read, im + o.m.g0), ig, 'the idle thread runs on g0');
    assert.equal(u64(read, im + o.m.procid), idle.tid, 'idle m.procid');
    assert.equal(readGoroutine(read, ig, o), undefined, 'an idle M has no goroutine');
  } finally {
    mem.close();
  }
  return { oldBuckets };
}

/** The size of each runtime.g field of GoGOffsets (field path in DWARF → bytes). */
const G_FIELD_SIZES: Record<string, number> = {
  goid: 8,
  m: 8,
  labels: 8,
  stackLo: 8,
  stackHi: 8,
  schedSp: 8,
  schedPc: 8,
  schedBp: 8,
  atomicstatus: 4,
  waitreason: 1,
};

/** What the binary's DWARF says those fields' sizes are. */
function gFieldSizes(bin: string): Record<string, number | undefined> {
  const d = ElfFile.withFile(bin, (elf) => DwarfInfo.fromElf(elf));
  assert.ok(d, `${bin}: no DWARF`);
  const g = d.findStruct('runtime.g');
  const size = (...path: string[]): number | undefined => {
    let t = g;
    for (const name of path) t = d.resolve(d.member(t, name)?.type);
    return t?.size;
  };
  return {
    goid: size('goid'),
    m: size('m'),
    labels: size('labels'),
    stackLo: size('stack', 'lo'),
    stackHi: size('stack', 'hi'),
    schedSp: size('sched', 'sp'),
    schedPc: size('sched', 'pc'),
    schedBp: size('sched', 'bp'),
    atomicstatus: size('atomicstatus'),
    waitreason: size('waitreason'),
  };
}

function offsetsOf(bin: string, release: string, opts: { dwarf?: DwarfInfo | null } = {}): GoRuntimeOffsets | undefined {
  return ElfFile.withFile(bin, (elf) => goRuntimeOffsets(elf, `go${release}`, opts));
}

describe('runtime-offsets', () => {
  const builds: Build[] = [];
  const missing = new Map<string, string>();
  let local = '';
  const isAmd64 = process.arch === 'x64';

  before(async () => {
    local = (await execAsync('go', ['env', 'GOVERSION'], { env: goEnv('local') })).trim().replace(/^go/, '');
    // Toolchains come from the module proxy once, then from the module cache.
    const versions = await pool(3, GO_RELEASES.map((r) => () => execAsync('go', ['version'], { env: goEnv(`go${r}`) }).then(() => '', (e: Error) => e.message)));
    GO_RELEASES.forEach((r, i) => versions[i] && missing.set(r, versions[i]));
    const jobs: Array<() => Promise<void>> = [];
    const add = (release: string, variant: string, flags: string[], env: NodeJS.ProcessEnv, how: string, runnable: boolean, files: Record<string, string> = PROGRAM): void => {
      jobs.push(async () => {
        const bin = await buildGoProgram(`${variant}-${release}`, files, flags, env);
        builds.push({ release, variant, bin, how, runnable });
      });
    };
    for (const r of GO_RELEASES) {
      if (missing.has(r)) continue;
      add(r, 'amd64', [], goEnv(`go${r}`, { GOARCH: 'amd64' }), 'runtime-tls', isAmd64);
      add(r, 'stripped', ['-ldflags=-s -w'], goEnv(`go${r}`, { GOARCH: 'amd64' }), 'runtime-tls', isAmd64);
      add(r, 'arm64', [], goEnv(`go${r}`, { GOARCH: 'arm64' }), 'x28', false);
    }
    // The ways to link on amd64, with the local toolchain: the system linker lays out TLS.
    const cgo = { ...PROGRAM, 'cgo_tls.go': CGO_TLS_GO };
    const localEnv = (e: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => goEnv('local', { GOARCH: 'amd64', ...e });
    add(local, 'pie', ['-buildmode=pie', '-ldflags=-linkmode=internal'], localEnv(), 'only-tls-variable', isAmd64);
    add(local, 'external', ['-ldflags=-linkmode=external'], localEnv({ CGO_ENABLED: '1' }), 'tlsg-symbol', isAmd64);
    add(local, 'pie-external', ['-buildmode=pie', '-ldflags=-linkmode=external'], localEnv({ CGO_ENABLED: '1' }), 'tlsg-symbol', isAmd64);
    add(local, 'cgo-tls', [], localEnv({ CGO_ENABLED: '1' }), 'tlsg-symbol', isAmd64, cgo);
    add(local, 'cgo-tls-stripped', ['-ldflags=-s -w'], localEnv({ CGO_ENABLED: '1' }), 'unknown-stripped', false, cgo);
    add(local, 'no-pprof', [], localEnv(), 'runtime-tls', false, { 'main.go': 'package main\n\nfunc main() { println("hi") }\n' });
    await pool(Math.max(2, availableParallelism()), jobs);
  });

  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  const byVariant = (variant: string): Build[] => builds.filter((b) => b.variant === variant).sort((a, b) => a.release.localeCompare(b.release, 'en', { numeric: true }));

  it('has a toolchain for every supported release', (t) => {
    if (missing.size > 0) t.skip(`not available: ${[...missing].map(([r, e]) => `${r} (${e.split('\n')[0]})`).join(', ')}`);
    const minors = GO_RELEASES.map((r) => parseGoVersion(r)!.minor);
    for (let m = GO_MIN_MINOR; m <= GO_MAX_MINOR; m++) assert.ok(minors.includes(m), `no release of 1.${m} in the test`);
  });

  it('has a table entry for every supported release that matches its DWARF, on amd64 and arm64', () => {
    const checked: string[] = [];
    for (const b of [...byVariant('amd64'), ...byVariant('arm64')]) {
      const fromDwarf = offsetsOf(b.bin, b.release);
      const fromTable = offsetsOf(b.bin, b.release, { dwarf: null });
      assert.ok(fromDwarf && fromTable, `${b.variant} ${b.release}: no offsets`);
      assert.equal(fromDwarf.source, 'dwarf', `${b.variant} ${b.release}`);
      assert.equal(fromDwarf.labelsFrom, 'dwarf', `${b.variant} ${b.release}`);
      assert.equal(fromTable.source, 'table');
      assert.equal(fromTable.labelsFrom, 'table');
      const pick = (o: GoRuntimeOffsets) => ({ g: o.g, m: o.m, labels: o.labels });
      assert.deepEqual(pick(fromTable), pick(fromDwarf), `${b.variant} ${b.release}: table and DWARF disagree`);
      assert.deepEqual({ g: fromDwarf.g, m: fromDwarf.m }, goRuntimeTable(fromDwarf.minor));
      assert.equal(fromDwarf.labels.format, fromDwarf.minor >= 24 ? 'slice' : 'map');
      // Every field of g, with the width BPF reads it at (goroutine-level off-CPU reads the
      // status as a u32, the wait reason as a u8, the rest as u64).
      assert.deepEqual(Object.keys(fromDwarf.g).sort(), Object.keys(G_FIELD_SIZES).sort());
      assert.deepEqual(gFieldSizes(b.bin), G_FIELD_SIZES, `${b.variant} ${b.release}: field sizes`);
      checked.push(`${b.variant} ${b.release}`);
    }
    assert.equal(checked.length, 2 * (GO_RELEASES.length - missing.size));
  });

  it('gives a stripped binary the table, with source "table"', () => {
    for (const b of byVariant('stripped')) {
      const full = builds.find((x) => x.variant === 'amd64' && x.release === b.release)!;
      const o = offsetsOf(b.bin, b.release);
      assert.ok(o);
      assert.equal(o.source, 'table', b.release);
      const dwarf = offsetsOf(full.bin, b.release)!;
      assert.deepEqual({ g: o.g, m: o.m, labels: o.labels, tls: o.tls }, { g: dwarf.g, m: dwarf.m, labels: dwarf.labels, tls: dwarf.tls });
    }
  });

  it('finds g through TLS on amd64 the way each link mode laid it out, and in x28 on arm64', () => {
    for (const b of builds) {
      const o = offsetsOf(b.bin, b.release);
      assert.ok(o, `${b.variant} ${b.release}`);
      if (b.how === 'x28') {
        assert.deepEqual(o.tls, { arch: 'arm64', register: 'x28' });
        continue;
      }
      assert.equal(o.tls.arch, 'amd64');
      if (o.tls.arch !== 'amd64') continue;
      assert.equal(o.tls.how, b.how, `${b.variant} ${b.release}`);
      // Go's own layouts put g at -8; the system linker may not (the live test checks those).
      if (b.how === 'unknown-stripped') assert.equal(o.tls.offset, undefined);
      else if (b.how === 'tlsg-symbol') assert.equal(typeof o.tls.offset, 'number');
      else assert.equal(o.tls.offset, -8, `${b.variant} ${b.release}`);
      if (b.variant === 'cgo-tls') assert.notEqual(o.tls.offset, -8, 'C thread-locals moved runtime.tlsg');
    }
  });

  it('finds the goroutine, its id, its labels and its m in live processes of every release', { skip: !isAmd64 && 'needs amd64' }, async () => {
    const live = builds.filter((b) => b.runnable);
    assert.ok(live.length >= GO_RELEASES.length - missing.size);
    const grown = await pool(4, live.map((b) => async () => {
      const o = offsetsOf(b.bin, b.release);
      assert.ok(o, `${b.variant} ${b.release}`);
      try {
        return (await checkLive(b.bin, o)).oldBuckets;
      } catch (e) {
        (e as Error).message = `${b.variant} ${b.release}: ${(e as Error).message}`;
        throw e;
      }
    }));
    // B's map is caught growing (old buckets still there) in the map releases.
    const mapReleases = live.filter((b) => parseGoVersion(b.release)!.minor < 24);
    if (mapReleases.length > 0) assert.ok(grown.some((g) => g), 'no label map had old buckets: the old-bucket walk went untested');
  });

  it('falls back to the table for what the DWARF lacks', () => {
    const cdir = workDir('runtime-offsets');
    const c = buildC(cdir, 'plain', 'struct s { int a; }; struct s v; int main(void) { return v.a; }\n', ['-g']);
    const b = byVariant('amd64').at(-1)!;
    const dwarf = ElfFile.withFile(c, (elf) => DwarfInfo.fromElf(elf));
    assert.ok(dwarf);
    const o = offsetsOf(b.bin, b.release, { dwarf });
    assert.equal(o?.source, 'table');
    assert.deepEqual({ g: o.g, m: o.m }, goRuntimeTable(o.minor));
    // A Go program without runtime/pprof: g and m from DWARF, the labels layout from the table.
    const np = byVariant('no-pprof')[0];
    const fromDwarf = offsetsOf(np.bin, np.release);
    const fromTable = offsetsOf(np.bin, np.release, { dwarf: null });
    assert.ok(fromDwarf && fromTable);
    assert.equal(fromDwarf.source, 'dwarf');
    assert.equal(fromDwarf.labelsFrom, 'table');
    assert.deepEqual(fromDwarf.labels, fromTable.labels);
  });

  it('knows the supported releases and reads versions as Go writes them', () => {
    assert.deepEqual(parseGoVersion('go1.22.12'), { minor: 22, patch: 12, text: '1.22.12' });
    assert.deepEqual(parseGoVersion('1.24.1 X:nodwarf5'), { minor: 24, patch: 1, text: '1.24.1' });
    assert.deepEqual(parseGoVersion('go1.26rc1'), { minor: 26, patch: undefined, text: '1.26' });
    assert.equal(parseGoVersion('go1.20-go1.21'), undefined);
    assert.equal(parseGoVersion('devel +abc'), undefined);
    const b = byVariant('amd64')[0];
    for (const v of ['go1.20.14', 'go1.28.0', 'go1.27+', 'go2.0', '']) assert.equal(offsetsOf(b.bin, v.replace(/^go/, '')), undefined, v);
    for (let m = GO_MIN_MINOR; m <= GO_MAX_MINOR; m++) assert.ok(goRuntimeTable(m), `1.${m}`);
    assert.equal(goRuntimeTable(GO_MIN_MINOR - 1), undefined);
    assert.equal(goRuntimeTable(GO_MAX_MINOR + 1), undefined);
  });

  it('finds a symbol by its name in the string table first, not with one read per symbol', () => {
    // 200,000 STT_OBJECT symbols; runtime.allgs is the last, its name the tail of a longer one
    // (linkers merge tails) and across the 1 MiB window of the string table search.
    const n = 200_000;
    const syms = Buffer.alloc((n + 1) * 24);
    const strtab = Buffer.alloc((1 << 20) + 64, 0x61);
    strtab[0] = 0;
    strtab[1] = 0x78; // "x\0" at 1: every other symbol's name
    strtab[2] = 0;
    const at = (1 << 20) - 10;
    strtab.write('xruntime.allgs\0', at - 1, 'latin1');
    for (let i = 1; i <= n; i++) {
      syms.writeUInt32LE(i === n ? at : 1, i * 24);
      syms[i * 24 + 4] = 0x11; // STB_GLOBAL, STT_OBJECT
      syms.writeBigUInt64LE(BigInt(0x500000 + i * 8), i * 24 + 8);
    }
    const path = join(workDir('runtime-offsets'), 'many-objects');
    writeFileSync(path, buildElf({ sections: [{ name: '.strtab', type: SHT_STRTAB, data: strtab }, { name: '.symtab', type: SHT_SYMTAB, link: 1, entsize: 24, data: syms }] }));
    const time = (f: () => unknown) => {
      let best = Infinity;
      for (let r = 0; r < 3; r++) {
        const t0 = performance.now();
        f();
        best = Math.min(best, performance.now() - t0);
      }
      return best;
    };
    ElfFile.withFile(path, (elf) => {
      assert.equal(symtabValue(elf, 'runtime.allgs', 1), 0x500000 + n * 8);
      assert.equal(symtabValue(elf, 'runtime.allg', 1), undefined);
      const lookup = time(() => symtabValue(elf, 'runtime.allgs', 1));
      const readAll = time(() => readFileSync(path));
      // One read per symbol was about 40 times reading the whole file here.
      assert.ok(lookup < 20 * readAll, `${lookup.toFixed(1)} ms, reading the file ${readAll.toFixed(1)} ms`);
    });
  });
});
