// Go binaries from the newest patch of every minor release from 1.16 (the oldest pclntab layout
// we read) to the newest the module proxy serves, each built plain, stripped (-ldflags=-s -w),
// as a PIE, with cgo (external linking) and with cgo as a PIE, plus the two cgo builds run
// through strip(1). Oracles: debug/gosym in a program built with the newest release (function
// table and pc→file:line), the test program's own runtime (runtime.CallersFrames: the innermost
// frame of an address, inlined or not, and whole inline-expanded stacks it records with
// runtime.Callers), `go version -m` and `go tool buildid`. Toolchains are downloaded through
// GOTOOLCHAIN once and stay in the module cache, compiled packages in the build cache; a
// release that cannot be had is skipped with a message.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { isDeepStrictEqual, promisify } from 'node:util';
import { ElfFile } from '../src/elf/elf-file.js';
import { GoPclnTab } from '../src/elf/gopclntab.js';
import { readGoBuildInfo, formatGoBuildInfo } from '../src/elf/go-buildinfo.js';
import { buildGoModule, buildGosymOracle, type GosymAnswer, pool, workDir } from './helpers.js';

const run = promisify(execFile);

/**
 * The newest patch release of each minor on the module proxy when this was written
 * (`curl https://proxy.golang.org/golang.org/toolchain/@v/list`). 1.16–1.17 write the first
 * table layout and the old pointer form of .go.buildinfo, 1.18–1.19 the second layout, 1.20+
 * the third; 1.26 stopped storing the text start in the table header and moved the module data
 * to .go.module; 1.27 grew the module data (so go:func.* moved in it).
 */
const RELEASES = ['1.16.15', '1.17.13', '1.18.10', '1.19.13', '1.20.14', '1.21.13', '1.22.12', '1.23.12', '1.24.13', '1.25.14', '1.26.11', '1.27.4'];

type Variant = 'plain' | 'stripped' | 'pie' | 'cgo' | 'cgo-stripped' | 'cgo-pie' | 'cgo-pie-stripped';
const VARIANTS: Variant[] = ['plain', 'stripped', 'pie', 'cgo', 'cgo-stripped', 'cgo-pie', 'cgo-pie-stripped'];
/** Variants made by running strip(1) on another one, which keeps every address. */
const STRIPPED_FROM: Partial<Record<Variant, Variant>> = { 'cgo-stripped': 'cgo', 'cgo-pie-stripped': 'cgo-pie' };

// ---- the program under test -----------------------------------------------------------------
// Several packages and files; util.Outer→Mid→Inner is a three-deep inline chain whose innermost
// call goes to Probe, which records the stack; a method inlined and one kept out of line; a
// closure; generic functions (with a stand-in before Go 1.18); a C function with cgo.

const UTIL = `// Package util holds a three-deep chain of inlinable calls whose innermost one calls Probe.
package util

import "runtime"

// Capture turns Probe on: it then records the stack of every call.
var Capture bool

// Stacks are what Probe recorded (runtime.Callers, skipping Probe itself).
var Stacks [][]uintptr

//go:noinline
func Probe() {
	if Capture {
		pcs := make([]uintptr, 64)
		n := runtime.Callers(2, pcs)
		Stacks = append(Stacks, pcs[:n])
	}
}

func Inner(x int) int {
	Probe()
	return x*3 + 1
}

func Mid(x int) int {
	return Inner(x) * 2
}

func Outer(x int) int {
	return Mid(x) + 5
}
`;

const GEOM = `// Package geom has a value type with an inlined method and one that stays out of line.
package geom

import (
	"math"

	"example.com/prog/util"
)

type Vec struct{ X, Y float64 }

func (v Vec) Len() float64 { return math.Sqrt(v.X*v.X + v.Y*v.Y) }

func (v Vec) Mul(k float64) Vec {
	util.Probe()
	return Vec{v.X * k, v.Y * k}
}

//go:noinline
func Scale(v Vec, k float64) Vec {
	w := v.Mul(k)
	return Vec{w.X + v.Len(), w.Y}
}
`;

const GEOM_SUM = `//go:build go1.18
// +build go1.18

package geom

import "example.com/prog/util"

type Number interface{ ~int | ~int64 | ~float64 }

func Sum[T Number](xs []T) T {
	var s T
	for _, x := range xs {
		s += x
	}
	util.Probe()
	return s
}
`;

const COUNTER = `package main

import "example.com/prog/util"

// Counter lives in a second file of package main.
type Counter struct{ n, calls int }

func (c *Counter) Add(x int) {
	c.n += x
	c.calls++
}

//go:noinline
func (c *Counter) Total() int {
	util.Probe()
	return c.n + c.calls
}
`;

const GENERIC = `//go:build go1.18
// +build go1.18

package main

import (
	"strconv"

	"example.com/prog/geom"
)

// Map is generic: each shape it is used with is its own function in the binary.
func Map[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

//go:noinline
func viaGenerics(n, total int, y float64) int {
	strs := Map([]int{1, 2, n}, func(x int) string { return strconv.Itoa(x + total) })
	lens := Map(strs, func(s string) int { return len(s) })
	return geom.Sum(lens) + int(geom.Sum([]float64{1.5, y}))
}
`;

const NO_GENERIC = `//go:build !go1.18
// +build !go1.18

package main

import "strconv"

//go:noinline
func viaGenerics(n, total int, y float64) int {
	return len(strconv.Itoa(n+total)) + int(y)
}
`;

const CGO = `//go:build cgo
// +build cgo

package main

// static int cadd(int a, int b) { return a + b; }
import "C"

func cAdd(a, b int) int { return int(C.cadd(C.int(a), C.int(b))) }
`;

const NO_CGO = `//go:build !cgo
// +build !cgo

package main

func cAdd(a, b int) int { return a + b }
`;

const MAIN = `package main

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strconv"
	"strings"

	"example.com/prog/geom"
	"example.com/prog/util"
)

//go:noinline
func work(n int) int {
	c := &Counter{}
	for i := 0; i < n+3; i++ {
		c.Add(util.Outer(i))
	}
	v := geom.Vec{X: float64(n), Y: 2}
	total := c.Total() + int(v.Len()) + int(geom.Scale(v, 3).X)
	twice := func(x int) int {
		util.Probe()
		return 2 * x
	}
	total += twice(n)
	total += viaGenerics(n, total, v.Y)
	return total + cAdd(n, 2)
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "oracle" {
		oracle(os.Args[2])
		return
	}
	fmt.Println(work(len(os.Args)))
}

// oracle answers with the runtime's own symbolization. Argument: the link-time address of
// main.main, to take a PIE's load bias off. Stdin: link-time addresses, one per line, hex.
// Output: "P addr function file line" per address (its innermost frame as
// runtime.CallersFrames sees it), then each stack Probe recorded: "S", then
// "F addr inlined function file line" per frame up to main.main.
func oracle(mainAddr string) {
	linked, _ := strconv.ParseUint(mainAddr, 16, 64)
	bias := runtime.FuncForPC(reflect.ValueOf(main).Pointer()).Entry() - uintptr(linked)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		a, err := strconv.ParseUint(strings.TrimSpace(in.Text()), 16, 64)
		if err != nil {
			continue
		}
		// CallersFrames takes return addresses and looks one byte back.
		fr, _ := runtime.CallersFrames([]uintptr{uintptr(a) + bias + 1}).Next()
		fmt.Fprintf(out, "P\\t%x\\t%s\\t%s\\t%d\\n", a, fr.Function, fr.File, fr.Line)
	}
	util.Capture = true
	work(4)
	for _, st := range util.Stacks {
		fmt.Fprintln(out, "S")
		frames := runtime.CallersFrames(st)
		for {
			fr, more := frames.Next()
			inl := 0
			if fr.Func == nil {
				inl = 1
			}
			fmt.Fprintf(out, "F\\t%x\\t%d\\t%s\\t%s\\t%d\\n", fr.PC-bias, inl, fr.Function, fr.File, fr.Line)
			if !more || fr.Function == "main.main" {
				break
			}
		}
	}
}
`;

const PROGRAM: Record<string, string> = {
  'main.go': MAIN,
  'counter.go': COUNTER,
  'generic.go': GENERIC,
  'nogeneric.go': NO_GENERIC,
  'cgo.go': CGO,
  'nocgo.go': NO_CGO,
  'util/util.go': UTIL,
  'geom/geom.go': GEOM,
  'geom/sum.go': GEOM_SUM,
};

interface RuntimeFrame {
  pc: number;
  inlined: boolean;
  name: string;
  file: string;
  line: number;
}

interface RuntimeOracle {
  /** Innermost frame per address. */
  points: Array<{ pc: number; name: string; file: string; line: number }>;
  stacks: RuntimeFrame[][];
}

function parseRuntime(out: string): RuntimeOracle {
  const o: RuntimeOracle = { points: [], stacks: [] };
  for (const l of out.split('\n')) {
    const p = l.split('\t');
    if (p[0] === 'P') o.points.push({ pc: parseInt(p[1], 16), name: p[2], file: p[3], line: Number(p[4]) });
    else if (p[0] === 'S') o.stacks.push([]);
    else if (p[0] === 'F') o.stacks.at(-1)!.push({ pc: parseInt(p[1], 16), inlined: p[2] === '1', name: p[3], file: p[4], line: Number(p[5]) });
  }
  return o;
}

/** The runtime prints generic functions with their shape arguments as "[...]". */
function printName(name: string): string {
  const i = name.indexOf('[');
  const j = name.lastIndexOf(']');
  return i >= 0 && j > i ? name.slice(0, i) + '[...]' + name.slice(j + 1) : name;
}

// ---- building the matrix ----------------------------------------------------------------------

interface Built {
  release: string;
  variant: Variant;
  /** The binary, or why there is none: no toolchain (skip), or a failed build (error). */
  path?: string;
  skip?: string;
  error?: string;
  /** The binary whose oracle answers hold for this one (strip(1) keeps every address). */
  oracleOf: string;
}

const dir = workDir('go-versions');
const matrix = new Map<string, Built>();
let gosym: Map<string, GosymAnswer | Error> = new Map();
let runGosym: (paths: string[]) => Promise<Map<string, GosymAnswer | Error>> = async () => new Map();
let newest = '';

const key = (release: string, variant: Variant) => `${release}/${variant}`;

/** Whether GOTOOLCHAIN=go<release> works here (downloads it through the proxy the first time). */
async function toolchain(release: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('go', ['version'], { env: { ...process.env, GOTOOLCHAIN: `go${release}`, GOFLAGS: '-mod=mod' }, timeout: 300_000 });
    return stdout.includes(`go${release} `) ? undefined : `go version said ${stdout.trim()}`;
  } catch (e) {
    return `GOTOOLCHAIN=go${release} is not available: ${((e as Error).message.split('\n').find((l) => /go:|error/.test(l)) ?? (e as Error).message).trim()}`;
  }
}

let building: Promise<void> | undefined;

/** Builds the whole matrix once per run (both suites wait for the same builds). */
function buildAll(): Promise<void> {
  building ??= buildMatrix();
  return building;
}

async function buildMatrix(): Promise<void> {
  const missing = await pool(3, RELEASES.map((r) => () => toolchain(r)));
  const available = RELEASES.filter((_, i) => !missing[i]);
  newest = available.at(-1) ?? '';
  const jobs: Array<() => Promise<void>> = [];
  for (const [i, release] of RELEASES.entries()) {
    for (const variant of VARIANTS) {
      const b: Built = { release, variant, oracleOf: key(release, STRIPPED_FROM[variant] ?? variant) };
      matrix.set(key(release, variant), b);
      if (missing[i]) {
        b.skip = missing[i];
        continue;
      }
      if (STRIPPED_FROM[variant]) continue; // made from the build it strips, below
      const flags = variant === 'stripped' ? ['-ldflags=-s -w'] : variant.endsWith('pie') ? ['-buildmode=pie'] : [];
      // GOFLAGS from the environment may name flags older releases do not know (-buildvcs).
      const env = { GOTOOLCHAIN: `go${release}`, CGO_ENABLED: variant.startsWith('cgo') ? '1' : '0', GOFLAGS: '-mod=mod' };
      jobs.push(async () => {
        try {
          b.path = await buildGoModule(dir, `prog-${release}-${variant}`, PROGRAM, { flags, env, module: 'example.com/prog', go: '1.18' });
        } catch (e) {
          b.error = (e as Error).message;
        }
        const strippedVariant = VARIANTS.find((v) => STRIPPED_FROM[v] === variant);
        if (strippedVariant) {
          const s = matrix.get(key(release, strippedVariant))!;
          if (b.path) {
            s.path = b.path + '-stripped';
            copyFileSync(b.path, s.path);
            execFileSync('strip', [s.path]);
          } else s.error = b.error;
        }
      });
    }
  }
  // The newest release reads the tables of all the others.
  jobs.push(async () => {
    runGosym = await buildGosymOracle(dir, newest ? { GOTOOLCHAIN: `go${newest}` } : {});
  });
  await pool(2, jobs);
  const paths = [...matrix.values()].filter((b) => b.path && !STRIPPED_FROM[b.variant]).map((b) => b.path!);
  gosym = await runGosym(paths);
}

function built(release: string, variant: Variant): { b: Built; oracle: GosymAnswer } | string {
  const b = matrix.get(key(release, variant))!;
  if (b.error) throw new Error(b.error);
  if (!b.path) return b.skip ?? 'not built';
  const o = gosym.get(matrix.get(b.oracleOf)!.path!);
  if (!o) return 'no debug/gosym answer';
  if (o instanceof Error) throw new Error(`debug/gosym could not read ${b.oracleOf}: ${o.message}`);
  return { b, oracle: o };
}

async function runtimeOracle(bin: string, o: GosymAnswer): Promise<RuntimeOracle> {
  const main = o.funcs.find((f) => f.name === 'main.main')!;
  assert.ok(main, 'no main.main in the oracle');
  // Addresses the runtime can be asked about: addr+1 must stay in the function (so not its last
  // byte), and padding after the code has no line.
  const funcOf = (pc: number) => o.funcs[upperBound(o.funcs, pc) - 1];
  const pcs = o.lines.filter((l) => l.line > 0 && l.pc + 1 < (funcOf(l.pc)?.end ?? 0)).map((l) => l.pc.toString(16));
  const child = execFile(bin, ['oracle', main.entry.toString(16)], { maxBuffer: 1 << 28 });
  const out = new Promise<string>((resolve, reject) => {
    let s = '';
    child.stdout!.on('data', (d: Buffer) => (s += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(s) : reject(new Error(`${bin} oracle exited with ${code}`))));
  });
  child.stdin!.end(pcs.join('\n') + '\n');
  const answer = parseRuntime(await out);
  assert.equal(answer.points.length, pcs.length, 'the runtime skipped addresses');
  return answer;
}

function upperBound(funcs: Array<{ entry: number }>, pc: number): number {
  let lo = 0;
  let hi = funcs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (funcs[mid].entry <= pc) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Collects disagreements with an oracle; assertNone() reports their count per kind and the first few. */
class Mismatches {
  private readonly list: Array<{ kind: string; pc: number; got: unknown; want: unknown }> = [];

  check(kind: string, pc: number, got: unknown, want: unknown): void {
    if (!isDeepStrictEqual(got, want)) this.list.push({ kind, pc, got, want });
  }

  assertNone(): void {
    if (this.list.length === 0) return;
    const counts = new Map<string, number>();
    for (const m of this.list) counts.set(m.kind, (counts.get(m.kind) ?? 0) + 1);
    const first = this.list.slice(0, 8).map((m) => `${m.kind} at 0x${m.pc.toString(16)}: got ${JSON.stringify(m.got)}, want ${JSON.stringify(m.want)}`);
    assert.fail(`${this.list.length} disagreements (${[...counts].map(([k, n]) => `${k}: ${n}`).join(', ')}):\n${first.join('\n')}`);
  }
}

function openTable(path: string): GoPclnTab {
  const tab = ElfFile.withFile(path, (elf) => GoPclnTab.open(elf));
  assert.ok(tab, `no pclntab found in ${path}`);
  return tab;
}

// ---- tests ------------------------------------------------------------------------------------

describe('gopclntab across Go releases', () => {
  before(buildAll);

  for (const release of RELEASES) {
    for (const variant of VARIANTS) {
      it(`matches debug/gosym and the runtime on a go${release} ${variant} binary`, async (t) => {
        const r = built(release, variant);
        if (typeof r === 'string') return t.skip(r);
        const { b, oracle } = r;
        const tab = openTable(b.path!);
        // Before 1.18 there were no generics, and the runtime printed names as they are.
        const old = /^1\.1[67]\./.test(release);
        const print = old ? (n: string) => n : printName;
        const family = old ? '1.16' : release.startsWith('1.18') || release.startsWith('1.19') ? '1.18' : '1.20';
        assert.equal(tab.version, family);

        // Disagreements are collected, so that a failure shows how many and of which kind.
        const bad = new Mismatches();

        // Every function: entry, end and name.
        assert.ok(oracle.funcs.length > 1000, `debug/gosym listed only ${oracle.funcs.length} functions`);
        assert.equal(tab.funcCount, oracle.funcs.length);
        for (const f of oracle.funcs) bad.check('function', f.entry, tab.funcAt(f.entry), { entry: f.entry, end: f.end, name: f.name });

        // Sampled addresses: debug/gosym knows nothing of inlining, so its name is the
        // physical function (our outermost frame) and its file:line the innermost position.
        for (const l of oracle.lines) {
          const frames = tab.lookup(l.pc);
          if (l.line <= 0) {
            // Padding after the last instruction, or a marker without a line table.
            bad.check('padding', l.pc, frames?.[0].line ?? 0, 0);
            continue;
          }
          bad.check('gosym', l.pc, frames && { name: frames.at(-1)!.name, file: frames[0].file, line: frames[0].line }, { name: l.name, file: l.file, line: l.line });
        }

        // The runtime's own view: the innermost frame, inlined or not, at the same addresses.
        const rt = await runtimeOracle(b.path!, oracle);
        assert.ok(rt.points.length > 3000, `the runtime answered for ${rt.points.length} addresses`);
        // The runtime has no name for the function whose name is at offset 0 of the name
        // table (funcName treats offset 0 as "no name"): the first function.
        const unnamed = oracle.funcs[0].name;
        let inlinedPoints = 0;
        for (const p of rt.points) {
          const frames = tab.lookup(p.pc);
          if (frames && frames.length > 1) inlinedPoints++;
          const name = p.name === '' ? unnamed : p.name;
          bad.check('runtime', p.pc, frames && { name: print(frames[0].name), file: frames[0].file, line: frames[0].line }, { name, file: p.file, line: p.line });
        }
        assert.ok(inlinedPoints > 100, `only ${inlinedPoints} sampled addresses are in inlined code`);

        // Whole stacks the program recorded: each physical frame with the inlined frames the
        // runtime put before it must be what lookup() expands its address to.
        assert.ok(rt.stacks.length >= 8, `Probe recorded ${rt.stacks.length} stacks`);
        let deepest = 0;
        for (const stack of rt.stacks) {
          let group: RuntimeFrame[] = [];
          for (const fr of stack) {
            group.push(fr);
            if (fr.inlined) continue;
            const frames = tab.lookup(group[0].pc);
            bad.check(
              'stack',
              group[0].pc,
              frames?.map((f) => `${print(f.name)} ${f.file}:${f.line}`),
              group.map((f) => `${f.name} ${f.file}:${f.line}`),
            );
            deepest = Math.max(deepest, group.length);
            group = [];
          }
        }
        bad.assertNone();
        assert.ok(deepest >= 4, `the deepest inline expansion had ${deepest} frames, want Inner, Mid, Outer, work`);
        const names = new Set(rt.stacks.flat().map((f) => f.name));
        for (const n of ['example.com/prog/util.Inner', 'example.com/prog/util.Outer', 'main.(*Counter).Total', 'example.com/prog/geom.Vec.Mul', 'main.work.func1']) {
          assert.ok(names.has(n), `no stack through ${n}: ${[...names].join(', ')}`);
        }
        if (!old) assert.ok(names.has('example.com/prog/geom.Sum[...]'), 'no stack through the generic Sum');
      });
    }
  }

  it('has cgo binaries whose .text starts with C code, so that runtime.text is put to the test', () => {
    // Only the module data (or, before 1.26, the table header) says where Go's text starts in
    // the stripped copies; the .text section would shift every function.
    let checked = 0;
    for (const release of RELEASES) {
      for (const variant of ['cgo', 'cgo-pie'] as const) {
        const r = built(release, variant);
        if (typeof r === 'string') continue;
        const textSec = ElfFile.withFile(r.b.path!, (e) => e.section('.text')!.addr);
        assert.ok(r.oracle.funcs[0].entry > textSec, `go${release} ${variant}: the first Go function starts .text`);
        checked++;
      }
    }
    assert.ok(checked > 0 || !newest, 'no cgo binary was built');
  });
});

describe('go-buildinfo across Go releases', () => {
  before(buildAll);

  for (const release of RELEASES) {
    it(`agrees with go version -m and go tool buildid on go${release} binaries`, async (t) => {
      const bins = VARIANTS.map((v) => matrix.get(key(release, v))!).filter((b) => b.path);
      if (bins.length === 0) return t.skip(matrix.get(key(release, 'plain'))!.skip ?? 'not built');
      const env = { ...process.env, GOTOOLCHAIN: `go${newest}`, GOFLAGS: '-mod=mod' };
      const { stdout } = await run('go', ['version', '-m', ...bins.map((b) => b.path!)], { env, maxBuffer: 16 << 20 });
      const want = splitVersionM(stdout);
      for (const b of bins) {
        const info = ElfFile.withFile(b.path!, (elf) => readGoBuildInfo(elf));
        assert.ok(info, `no build info in ${b.variant}`);
        assert.equal(info.goVersion, `go${release}`, b.variant);
        assert.equal(info.versionFrom, 'buildinfo', b.variant);
        assert.equal(formatGoBuildInfo(info), want.get(b.path!), `${b.variant}: go version -m`);
        const id = (await run('go', ['tool', 'buildid', b.path!], { env })).stdout.trim();
        assert.ok(id.length > 40, `go tool buildid said ${id}`);
        assert.equal(info.buildId, id, `${b.variant}: build id`);
        // What the table alone tells.
        assert.equal(openTable(b.path!).versionRange, expectedRange(release), b.variant);
        // Without the build info blob, the version text in the binary decides.
        if (b.variant === 'stripped' || b.variant === 'cgo-pie-stripped') {
          const copy = withoutBuildInfo(b.path!);
          const fallback = ElfFile.withFile(copy, (elf) => readGoBuildInfo(elf))!;
          assert.deepEqual([fallback.goVersion, fallback.versionFrom, fallback.buildId], [`go${release}`, 'strings', id], `${b.variant} without build info`);
        }
      }
    });
  }
});

/** `go version -m a b c` output, per file, in the form formatGoBuildInfo writes. */
function splitVersionM(out: string): Map<string, string> {
  const res = new Map<string, string>();
  let cur = '';
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const m = /^(\S.*): (go\S+)$/.exec(line);
    if (m) {
      cur = m[1];
      res.set(cur, `${m[2]}\n`);
    } else res.set(cur, res.get(cur) + line + '\n');
  }
  return res;
}

/** The releases that write the same table and module data layout as `release`. */
function expectedRange(release: string): string {
  const minor = Number(release.split('.')[1]);
  if (minor <= 17) return 'go1.16-go1.17';
  if (minor <= 19) return 'go1.18-go1.19';
  if (minor <= 25) return 'go1.20-go1.25';
  return minor === 26 ? 'go1.26' : 'go1.27+';
}

/** A copy of `path` with its "\xff Go buildinf:" magic overwritten. */
function withoutBuildInfo(path: string): string {
  const b = readFileSync(path);
  const magic = Buffer.from('\xff Go buildinf:', 'latin1');
  for (let at = b.indexOf(magic); at >= 0; at = b.indexOf(magic, at + 1)) b[at + 1] = 0x58;
  writeFileSync(path + '-noinfo', b);
  return path + '-noinfo';
}

