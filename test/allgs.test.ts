// runtime.allgs, every goroutine of a Go process, found in the binary and walked in live
// processes. findAllgs: for every supported release, linked statically, as a PIE and with cgo
// (external linking), the symbol table's address, and the same address from runtime.allgadd's
// machine code once the symbol table is gone. Then readAllGoroutines and goroutineStack, the
// reference for the BPF walker: goroutines parked in known ways must be found with their
// status, wait reason and a frame-pointer stack from the function that parked down to
// runtime.goexit, in binaries with and without symbols, at fixed addresses and in PIEs.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { ElfFile, type ElfSection } from '../src/elf/elf-file.js';
import { GoPclnTab } from '../src/elf/gopclntab.js';
import { findAllgs, findFunction, loadBias, ripRelativeTargets } from '../src/go/allgs.js';
import { goroutineStack, readAllGoroutines, type GoroutineState } from '../src/go/goroutine-reader.js';
import { goRuntimeOffsets, symtabValue } from '../src/go/runtime-offsets.js';
import { G_SYSCALL, G_WAITING, goStatusName, goWaitReasons } from '../src/go/wait-reasons.js';
import { buildGoModule, execAsync, firstLine, GO_RELEASES, memoryOf, pool, workDir } from './helpers.js';

/** Releases whose programs are also run (with the local toolchain's). */
const LIVE_RELEASES = ['1.21.13', '1.24.13', '1.27.4'];

// Four goroutines parked in known ways, each in its own function; each prints its goid (from
// runtime.Stack's "goroutine N [running]:") before it parks. main then reads stdin (a
// blocking read: a goroutine in a syscall) and exits when it closes.
const MAIN_GO = `package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

func goid() string {
	buf := make([]byte, 64)
	n := runtime.Stack(buf, false)
	return strings.Fields(string(buf[:n]))[1]
}

//go:noinline
func recvWait(ch chan int, out chan<- string) {
	out <- goid()
	<-ch
}

//go:noinline
func sleepWait(out chan<- string) {
	out <- goid()
	time.Sleep(time.Hour)
}

//go:noinline
func lockWait(mu *sync.Mutex, out chan<- string) {
	out <- goid()
	mu.Lock()
}

//go:noinline
func selectWait(out chan<- string) {
	out <- goid()
	select {}
}

func main() {
	var mu sync.Mutex
	mu.Lock()
	ch := make(chan int)
	out := make(chan string, 1)
	go recvWait(ch, out)
	recv := <-out
	go sleepWait(out)
	sleep := <-out
	go lockWait(&mu, out)
	lock := <-out
	go selectWait(out)
	sel := <-out
	fmt.Println(recv, sleep, lock, sel)
	os.Stdin.Read(make([]byte, 1))
	close(ch)
}
`;

// A C function called at start-up: the program links externally, through the system linker.
const CGO_GO = `package main

/*
static int answer(void) { return 42; }
*/
import "C"

func init() { _ = C.answer() }
`;

/** The goroutines MAIN_GO parks, in the order it prints their goids. */
const PARKED = [
  { fn: 'main.recvWait', reason: 'chan receive' },
  { fn: 'main.sleepWait', reason: 'sleep' },
  { fn: 'main.lockWait', reason: 'sync.Mutex.Lock' },
  { fn: 'main.selectWait', reason: 'select (no cases)' },
];

type Variant = 'static' | 'pie' | 'cgo' | 'arm64';

interface Build {
  release: string;
  variant: Variant;
  /** Symbol table, as linked. */
  full: string;
  /** Linked with -ldflags='-s -w'. */
  goStripped: string;
  /** `full` with binutils strip: the same bytes at the same addresses, without .symtab. */
  stripped: string;
}

const dir = workDir('allgs');
const children: ChildProcessWithoutNullStreams[] = [];

function goEnv(toolchain: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: toolchain, CGO_ENABLED: '0', GOARCH: 'amd64', ...extra };
}

const withElf = <T>(bin: string, fn: (elf: ElfFile) => T): T => ElfFile.withFile(bin, fn);

/** The section of `elf` holding `addr`. */
function sectionOf(elf: ElfFile, addr: number): ElfSection | undefined {
  return elf.sections.find((s) => s.addr !== 0 && addr >= s.addr && addr < s.addr + s.size);
}

/** Frames (innermost first, inlined ones expanded) of return addresses `pcs` of `bin` at `bias`. */
function symbolize(tab: GoPclnTab, pcs: number[], bias: number): string[][] {
  return pcs.map((pc) => (tab.lookup(pc - bias - 1) ?? [{ name: `?0x${pc.toString(16)}` }]).map((f) => f.name));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Runs `bin`, finds its allgs with findAllgs (adding the load bias) and checks every goroutine
 * it parked: waiting, for its reason, its stack from gopark through its main.* function to
 * runtime.goexit. Returns how the address was found.
 */
async function checkLive(bin: string, release: string): Promise<{ how: string; goroutines: number; bias: number }> {
  const child = spawn(bin, [], { stdio: 'pipe' });
  children.push(child);
  const goids = (await firstLine(child, bin)).trim().split(/\s+/).map(Number);
  assert.equal(goids.length, PARKED.length);
  const pid = child.pid!;
  const { o, allgs, tab } = withElf(bin, (elf) => ({ o: goRuntimeOffsets(elf, `go${release}`), allgs: findAllgs(elf), tab: GoPclnTab.open(elf) }));
  assert.ok(o && allgs && tab, `${bin}: offsets ${!!o}, allgs ${!!allgs}, pclntab ${!!tab}`);
  const bias = loadBias(pid, bin);
  assert.ok(bias !== undefined, 'no load bias');
  const reasons = goWaitReasons(o.minor)!;
  const mem = memoryOf(pid);
  try {
    // The goroutines park soon after printing (the mutex spins a little first).
    let all: GoroutineState[] = [];
    let mine: Array<GoroutineState | undefined> = [];
    for (let i = 0; i < 200; i++) {
      all = readAllGoroutines(mem.read, allgs.address + bias, o) ?? [];
      mine = goids.map((id) => all.find((g) => g.goid === id));
      const main = all.find((g) => g.goid === 1);
      if (main?.status === G_SYSCALL && mine.every((g, k) => g && g.status === G_WAITING && reasons[g.waitreason] === PARKED[k].reason)) break;
      await sleep(25);
    }
    assert.ok(all.length >= 5, `${all.length} goroutines in allgs`);
    // main reads stdin in a system call: from Go 1.23 entersyscall saves bp too, so its stack
    // walks down to goexit as well (before, g.sched.bp is left from an older switch).
    const main = all.find((g) => g.goid === 1);
    assert.ok(main, 'no main goroutine');
    assert.equal(goStatusName(main.status), 'syscall');
    if (o.minor >= 23) {
      const frames = symbolize(tab, goroutineStack(mem.read, main), bias);
      const text = frames.map((f) => f.join(' < ')).join(' | ');
      assert.ok(frames.flat().includes('main.main'), `main: ${text}`);
      assert.equal(frames.at(-1)!.at(-1), 'runtime.goexit', `main: ${text}`);
    }
    const live = all.filter((g) => goStatusName(g.status) !== 'dead');
    assert.equal(new Set(live.map((g) => g.goid)).size, live.length, 'goids repeat');
    for (const [k, p] of PARKED.entries()) {
      const g = mine[k];
      assert.ok(g, `${p.fn}: goroutine ${goids[k]} not in allgs`);
      const what = `${p.fn} (goroutine ${g.goid})`;
      assert.equal(goStatusName(g.status), 'waiting', what);
      assert.equal(reasons[g.waitreason], p.reason, `${what}: wait reason ${g.waitreason}`);
      assert.ok(g.stack.lo < g.sched.sp && g.sched.sp < g.stack.hi, `${what}: sched.sp outside its stack`);
      const frames = symbolize(tab, goroutineStack(mem.read, g), bias);
      const names = frames.flat();
      const text = frames.map((f) => f.join(' < ')).join(' | ');
      assert.equal(frames[0].at(-1), 'runtime.gopark', `${what}: resumes outside gopark: ${text}`);
      assert.ok(names.includes(p.fn), `${what}: ${text}`);
      assert.equal(frames.at(-1)!.at(-1), 'runtime.goexit', `${what}: does not end with goexit: ${text}`);
    }
    return { how: allgs.how, goroutines: all.length, bias };
  } finally {
    mem.close();
    child.stdin.end();
  }
}

/** Entry and end of runtime.allgadd, from the pclntab. */
function allgadd(elf: ElfFile): { entry: number; end: number } | undefined {
  const tab = GoPclnTab.open(elf);
  return tab && findFunction(tab, 'runtime.allgadd');
}

describe('allgs', () => {
  const builds: Build[] = [];
  const live: Array<{ release: string; variant: Variant; full: string; goStripped: string }> = [];
  const missing = new Set<string>();
  let local = '';

  before(async () => {
    local = (await execAsync('go', ['env', 'GOVERSION'], { env: goEnv('local') })).trim().replace(/^go/, '');
    const versions = await pool(3, GO_RELEASES.map((r) => () => execAsync('go', ['version'], { env: goEnv(`go${r}`) }).then(() => true, () => false)));
    GO_RELEASES.forEach((r, i) => versions[i] || missing.add(r));
    const cgoFiles = { 'main.go': MAIN_GO, 'cgo.go': CGO_GO };
    const jobs: Array<() => Promise<void>> = [];
    const add = (release: string, toolchain: string, variant: Variant, into: (b: Build) => void): void => {
      const env = goEnv(toolchain, variant === 'cgo' ? { CGO_ENABLED: '1' } : variant === 'arm64' ? { GOARCH: 'arm64' } : {});
      const flags = variant === 'pie' ? ['-buildmode=pie'] : [];
      const files = variant === 'cgo' ? cgoFiles : { 'main.go': MAIN_GO };
      const name = `${variant}-${release}`;
      jobs.push(async () => {
        const [full, goStripped] = await Promise.all([
          buildGoModule(dir, name, files, { flags, env }),
          buildGoModule(dir, `${name}-s`, files, { flags: [...flags, '-ldflags=-s -w'], env }),
        ]);
        // The host's binutils know no arm64: there the -s -w build stands in.
        let stripped = goStripped;
        if (variant !== 'arm64') await execAsync('strip', ['-o', (stripped = `${full}-strip`), full]);
        into({ release, variant, full, goStripped, stripped });
      });
    };
    for (const r of GO_RELEASES) {
      if (missing.has(r)) continue;
      for (const v of ['static', 'pie', 'cgo'] as const) add(r, `go${r}`, v, (b) => builds.push(b));
    }
    for (const r of [GO_RELEASES[0], GO_RELEASES.at(-1)!]) if (!missing.has(r)) add(r, `go${r}`, 'arm64', (b) => builds.push(b));
    for (const v of ['static', 'pie'] as const) add(local, 'local', v, (b) => live.push(b));
    await pool(Math.max(2, availableParallelism()), jobs);
    for (const b of builds) if (LIVE_RELEASES.includes(b.release) && (b.variant === 'static' || b.variant === 'pie')) live.push(b);
    const order = (a: { release: string; variant: string }, b: { release: string; variant: string }): number =>
      a.release.localeCompare(b.release, 'en', { numeric: true }) || a.variant.localeCompare(b.variant);
    builds.sort(order);
    live.sort(order);
  });

  after(() => {
    for (const c of children) c.kill('SIGKILL');
  });

  it('has a toolchain for every supported release', (t) => {
    if (missing.size > 0) t.skip(`not available: ${[...missing].join(', ')}`);
    assert.equal(builds.filter((b) => b.variant !== 'arm64').length, 3 * GO_RELEASES.length);
  });

  it('takes the address from the symbol table, and finds the same one in allgadd\'s code once it is stripped', () => {
    for (const b of builds) {
      const what = `${b.variant} ${b.release}`;
      const sym = withElf(b.full, (elf) => symtabValue(elf, 'runtime.allgs'));
      assert.ok(sym, `${what}: no runtime.allgs symbol`);
      assert.deepEqual(withElf(b.full, (elf) => findAllgs(elf)), { address: sym, how: 'symtab' }, what);
      withElf(b.full, (elf) => assert.ok(['.bss', '.data'].includes(sectionOf(elf, sym)?.name ?? ''), `${what}: allgs in ${sectionOf(elf, sym)?.name}`));
      const found = withElf(b.stripped, (elf) => findAllgs(elf));
      // arm64 code is not scanned: without symbols there is no answer.
      if (b.variant === 'arm64') assert.equal(found, undefined, what);
      else assert.deepEqual(found, { address: sym, how: 'allgadd-code' }, what);
    }
  });

  it('finds allgs in binaries linked with -s -w, where the recorded flags move the data', () => {
    // The build info records -ldflags, so a -s -w build's read-only data is longer than its
    // twin's and what follows may move: the same variable is at the same offset in the
    // same (equally long) section, and allgadd's code is the same size at the same address.
    let moved = 0;
    for (const b of builds) {
      const what = `${b.variant} ${b.release}`;
      const [sym, fullSec, fullFn] = withElf(b.full, (elf) => {
        const a = symtabValue(elf, 'runtime.allgs')!;
        return [a, sectionOf(elf, a)!, allgadd(elf)] as const;
      });
      const [found, strippedSec, strippedFn] = withElf(b.goStripped, (elf) => [findAllgs(elf), elf.section(fullSec.name), allgadd(elf)] as const);
      assert.deepEqual(strippedFn, fullFn, `${what}: runtime.allgadd moved`);
      assert.ok(strippedSec, `${what}: no ${fullSec.name}`);
      assert.equal(strippedSec.size, fullSec.size, `${what}: ${fullSec.name} changed size`);
      const expected = sym - fullSec.addr + strippedSec.addr;
      if (expected !== sym) moved++;
      if (b.variant === 'arm64') assert.equal(found, undefined, what);
      else assert.deepEqual(found, { address: expected, how: 'allgadd-code' }, what);
    }
    assert.ok(moved > 0, 'no -s -w build moved its data: the comparison proved less than it could');
  });

  it('reads RIP-relative operands with and without immediates, wherever a byte could start one', () => {
    const at = 0x401000;
    const code = Buffer.from([
      0x48, 0x8b, 0x0d, 0x10, 0x00, 0x00, 0x00, // MOVQ 0x10(RIP), CX: ends at +7
      0x48, 0x83, 0x3d, 0x20, 0x00, 0x00, 0x00, 0x00, // CMPQ 0x20(RIP), $0: imm8, ends at +15
      0x4c, 0x89, 0x05, 0xf0, 0xff, 0xff, 0xff, // MOVQ R8, -0x10(RIP): ends at +22
      0x48, 0x8b, 0x45, 0x08, // MOVQ 8(BP), AX: mod=01, not RIP-relative
      0x48, 0x8d, 0x05, 0x00, 0x00, // cut short: no disp32
    ]);
    assert.deepEqual([...ripRelativeTargets(code, at)].sort(), [at + 7 + 0x10, at + 15 + 0x20, at + 22 - 0x10].sort());
  });

  it('finds no allgs in a binary that is not Go', () => {
    assert.equal(withElf(process.execPath, (elf) => findAllgs(elf)), undefined);
  });

  it('reads every parked goroutine, its wait reason and its stack through allgs in live processes', { skip: process.arch !== 'x64' && 'needs amd64' }, async () => {
    assert.ok(live.length >= 2 * (LIVE_RELEASES.filter((r) => !missing.has(r)).length + 1));
    const results = await pool(4, live.flatMap((b) => [b.full, b.goStripped].map((bin) => async () => {
      try {
        const r = await checkLive(bin, b.release);
        assert.equal(r.how, bin === b.full ? 'symtab' : 'allgadd-code');
        if (b.variant === 'static') assert.equal(r.bias, 0, 'a static binary moved');
        else assert.notEqual(r.bias, 0, 'a PIE at its link address');
        return `${b.variant} ${b.release}${bin === b.full ? '' : ' -s -w'}: ${r.goroutines} goroutines`;
      } catch (e) {
        (e as Error).message = `${b.variant} ${b.release} ${bin}: ${(e as Error).message}`;
        throw e;
      }
    })));
    assert.equal(results.length, 2 * live.length);
  });
});
