// Goroutine-level off-CPU time against a Go program whose true split is known (see
// test/fixtures/gowait-workload.go): two labelled goroutines wait 3:1 in two functions each
// (time.Sleep and a channel receive; sync.Mutex.Lock and time.Sleep) and time themselves inside
// those functions. `record --off-cpu` walks the process's goroutines (bpf/gowait.bpf.c) and must
// put each goroutine's waiting time under the right function (share within ±3 points of the
// measured one), with Go's own wait reason, its pprof labels and its goroutine id; the waiting
// time of a goroutine that does nothing but wait must add up to its wall time within 10%. The
// runtime's own goroutines and the scheduler's idle threads must stay out of the profile.
// Checked on the local Go release and on Go 1.21 (labels in a map), stripped and PIE (allgs
// found from runtime.allgadd's code).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { ElfFile } from '../src/elf/elf-file.js';
import { readGoBuildInfo } from '../src/elf/go-buildinfo.js';
import { goProcessOffsets } from '../src/go-processes.js';
import { goroutineStack, readAllGoroutines } from '../src/go/goroutine-reader.js';
import { goRuntimeOffsets } from '../src/go/runtime-offsets.js';
import { G_RUNNABLE, G_WAITING } from '../src/go/wait-reasons.js';
import { openOnCpuSampler, type OnCpuSampler } from '../src/native.js';
import { decodeBatch } from '../src/record-decoder.js';
import { buildGoModule, firstLine, GO_RELEASES, memoryOf, pool, repoRoot, workDir } from './helpers.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('goroutine-waits');
const SOURCE = readFileSync(join(repoRoot, 'test', 'fixtures', 'gowait-workload.go'), 'utf8');
const SPLIT_TOLERANCE = 3;
const TOTAL_TOLERANCE = 0.1;
/**
 * Each function's own time. Looser than the total: every record stands for the time since the
 * walk before, so a walk that came late (the walker thread held off the CPU for 10-20 ms, which
 * happens a few times a run on a busy 2-CPU machine) puts its whole gap on the one function it
 * saw; a function with a quarter of the time feels that most.
 */
const FUNCTION_TOLERANCE = 0.15;
/** Seconds the workload runs. At -F 999 the goroutines are walked ~1000 times a second. */
const SECONDS = '4';

interface Sample {
  frames: string[];
  labels: Map<string, string>;
  goid: number;
  tid: number;
  cpuNs: number;
  offCpuNs: number;
}

interface Recorded {
  samples: Sample[];
  comments: string[];
  /** Per worker: the time it measured inside each function, and its wall time. */
  timeIn: Map<string, Map<string, number>>;
  wall: Map<string, number>;
  stderr: string;
}

function decode(file: string): Pick<Recorded, 'samples' | 'comments'> {
  const p = PprofProfile.decode(gunzipSync(readFileSync(file)));
  const s = (i: unknown): string => p.stringTable.strings[Number(i)]!;
  const fn = new Map(p.function.map((f) => [Number(f.id), s(f.name)]));
  const loc = new Map(p.location.map((l) => [Number(l.id), l.line.map((ln) => fn.get(Number(ln.functionId))!)]));
  const types = p.sampleType.map((t) => s(t.type));
  const samples = p.sample.map((smp) => {
    const labels = new Map<string, string>();
    let goid = 0;
    let tid = 0;
    for (const l of smp.label) {
      if (Number(l.str) !== 0) labels.set(s(l.key), s(l.str));
      if (s(l.key) === 'goroutine') goid = Number(l.num);
      if (s(l.key) === 'thread.id') tid = Number(l.num);
    }
    return {
      frames: smp.locationId.flatMap((id) => loc.get(Number(id))!),
      labels,
      goid,
      tid,
      cpuNs: Number(smp.value[types.indexOf('cpu')]),
      offCpuNs: Number(smp.value[types.indexOf('off_cpu')]),
    };
  });
  return { samples, comments: p.comment.map((c) => s(c)) };
}

function record(bin: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Recorded {
  const out = join(dir, `out-${Date.now()}-${Math.random().toString(36).slice(2)}.pb.gz`);
  const r = spawnSync(process.execPath, [cli, 'record', '--off-cpu', '-F', '999', '-o', out, ...args, '--', bin, SECONDS], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  assert.equal(r.status, 0, `flamewire record failed: ${r.stderr}`);
  const timeIn = new Map<string, Map<string, number>>();
  for (const m of r.stdout.matchAll(/^fn (\S+) (\S+) (\d+)$/gm)) {
    if (!timeIn.has(m[1]!)) timeIn.set(m[1]!, new Map());
    timeIn.get(m[1]!)!.set(m[2]!, Number(m[3]));
  }
  const wall = new Map<string, number>();
  for (const m of r.stdout.matchAll(/^wall (\S+) (\d+)$/gm)) wall.set(m[1]!, Number(m[2]));
  assert.equal(wall.size, 2, `the workload did not report both workers:\n${r.stdout}`);
  return { ...decode(out), timeIn, wall, stderr: r.stderr };
}

const goroutineWait = (s: Sample): boolean => s.labels.has('goroutine.state');
const ofWorker = (w: string) => (s: Sample) => goroutineWait(s) && s.labels.get('worker') === w;

function waited(r: Recorded, keep: (s: Sample) => boolean): number {
  return r.samples.filter(keep).reduce((n, s) => n + s.offCpuNs, 0);
}

/**
 * Worker `w`'s waiting time under `long` and `short`: `long`'s share is the measured one (±3
 * points), which is near 75% (the workload really waited 3:1), and each function's time is
 * the time measured inside it (±15%).
 */
function assertSplit(r: Recorded, w: string, long: string, short: string): void {
  const mine = ofWorker(w);
  const a = waited(r, (s) => mine(s) && s.frames.includes(long));
  const b = waited(r, (s) => mine(s) && s.frames.includes(short));
  assert.ok(a + b > 0, `${w}: no goroutine waits under ${long} or ${short}`);
  const ta = r.timeIn.get(w)?.get(long) ?? 0;
  const tb = r.timeIn.get(w)?.get(short) ?? 0;
  const truth = (100 * ta) / (ta + tb);
  assert.ok(Math.abs(truth - 75) <= 10, `${w}: the workload itself spent ${truth.toFixed(1)}% in ${long} (meant 75%)`);
  for (const [fn, got, want] of [[long, a, ta], [short, b, tb]] as const) {
    assert.ok(Math.abs(got - want) / want <= FUNCTION_TOLERANCE, `${w} ${fn}: ${(got / 1e6).toFixed(0)} ms waited vs ${(want / 1e6).toFixed(0)} ms measured inside it`);
  }
  const pct = (100 * a) / (a + b);
  assert.ok(
    Math.abs(pct - truth) <= SPLIT_TOLERANCE,
    `${w}: ${pct.toFixed(1)}% of the waiting under ${long} and ${short} is under ${long} (truth ${truth.toFixed(1)}% ± ${SPLIT_TOLERANCE})`,
  );
}

/** A goroutine that only waits: its waiting time adds up to its wall time. */
function assertTotal(r: Recorded, w: string): void {
  const wall = r.wall.get(w)!;
  const off = waited(r, ofWorker(w));
  const err = Math.abs(off - wall) / wall;
  assert.ok(err <= TOTAL_TOLERANCE, `${w}: ${(off / 1e6).toFixed(0)} ms waiting vs ${(wall / 1e6).toFixed(0)} ms of wall time (${(err * 100).toFixed(1)}% off)`);
}

/** The wait reasons under `fn` of worker `w`'s goroutine waits (runnable ones have none). */
function reasons(r: Recorded, w: string, fn: string): Set<string> {
  const waiting = r.samples.filter((s) => ofWorker(w)(s) && s.frames.includes(fn) && s.labels.get('goroutine.state') === 'waiting');
  return new Set(waiting.map((s) => s.labels.get('goroutine.wait_reason') ?? ''));
}

function checkWorkload(r: Recorded): void {
  assertSplit(r, 'sleep-chan', 'main.sleepPart', 'main.recvPart');
  assertSplit(r, 'lock-sleep', 'main.lockPart', 'main.sleepPart');
  assertTotal(r, 'sleep-chan');
  assertTotal(r, 'lock-sleep');
  // Go's own words for why, from the goroutine's g.waitreason.
  assert.deepEqual([...reasons(r, 'sleep-chan', 'main.sleepPart')], ['sleep']);
  assert.deepEqual([...reasons(r, 'sleep-chan', 'main.recvPart')], ['chan receive']);
  assert.ok(reasons(r, 'lock-sleep', 'main.lockPart').has('sync.Mutex.Lock'), `lockPart waits: ${[...reasons(r, 'lock-sleep', 'main.lockPart')].join(', ')}`);
  // The goroutine's own stack, from where it parked down to runtime.goexit.
  const sleep = r.samples.find((s) => ofWorker('sleep-chan')(s) && s.frames.includes('main.sleepPart'))!;
  assert.equal(sleep.frames[0], 'runtime.gopark', `leaf: ${sleep.frames.join(' <- ')}`);
  assert.equal(sleep.frames.at(-1), 'runtime.goexit', `root: ${sleep.frames.join(' <- ')}`);
  assert.ok(sleep.frames.includes('time.Sleep'), sleep.frames.join(' <- '));
  // One goroutine id per worker, on every one of its waits; no thread.
  for (const w of ['sleep-chan', 'lock-sleep']) {
    const ids = new Set(r.samples.filter(ofWorker(w)).map((s) => s.goid));
    assert.equal(ids.size, 1, `${w}: goroutine ids ${[...ids].join(',')}`);
    assert.ok([...ids][0]! > 1);
    assert.ok(r.samples.filter(ofWorker(w)).every((s) => s.tid === 0));
  }
  // The runtime's goroutines (GC workers, sweeper, scavenger, ...) wait all the time: left out,
  // and said so.
  // (A goroutine's start function is the caller of runtime.goexit, at the bottom of its stack.)
  const system = r.samples.filter((s) => goroutineWait(s) && s.frames.at(-1) === 'runtime.goexit' && /^runtime\.(?!main$)/.test(s.frames.at(-2) ?? ''));
  assert.deepEqual(system.map((s) => s.frames.at(-2)), []);
  assert.ok(r.comments.some((c) => /Go runtime's own goroutines .* left out: [1-9]/.test(c)), r.comments.join('\n'));
  // Threads idle in the scheduler (no goroutine to run) are not off-CPU time of the program.
  const idle = r.samples.filter((s) => s.labels.has('thread.state') && s.frames.some((f) => /^runtime\.(stopm|findRunnable|findrunnable|sysmon|notesleep|stoplockedm)$/.test(f)));
  assert.deepEqual(idle.map((s) => s.frames.join(' <- ')), []);
  assert.ok(r.comments.some((c) => /Go threads idle in the scheduler, left out: [1-9]\d* blocks/.test(c)), r.comments.join('\n'));
}

// Goroutines parked for good, for comparing the BPF walk with the user-space reference.
const PARKED_GO = `package main

import (
	"fmt"
	"os"
	"sync"
	"time"
)

//go:noinline
func recvWait(ch chan int) { <-ch }

//go:noinline
func sleepWait() { time.Sleep(time.Hour) }

//go:noinline
func lockWait(mu *sync.Mutex) { mu.Lock() }

//go:noinline
func selectWait() { select {} }

func main() {
	var mu sync.Mutex
	mu.Lock()
	ch := make(chan int)
	for i := 0; i < 5; i++ {
		go recvWait(ch)
		go sleepWait()
		go lockWait(&mu)
		go selectWait()
	}
	time.Sleep(200 * time.Millisecond)
	fmt.Println("ready")
	os.Stdin.Read(make([]byte, 1))
}
`;

interface WalkRecord {
  goid: number;
  status: number;
  reason: number;
  ns: number;
  frames: number[];
}

/** Runs `walks` walks of process `pid`'s goroutines by hand and returns their records, per walk. */
function walkByHand(pid: number, walks: number, maxVisits?: number): WalkRecord[][] {
  const go = goProcessOffsets(pid);
  assert.ok(go?.allgs, 'no allgs for the process');
  // A period far longer than the test: only the walks asked for run.
  const sampler: OnCpuSampler = openOnCpuSampler({ frequency: 1, pids: [pid], goWaits: true, goWaitPeriodNs: 60e9, goWaitMaxVisits: maxVisits });
  assert.equal(sampler.info().goWaits, true, 'this kernel cannot walk goroutines');
  const batches: Buffer[] = [];
  sampler.start((b) => batches.push(Buffer.from(b)));
  try {
    sampler.setGoProcess(pid, go);
    for (let i = 0; i < walks; i++) sampler.walkGoroutines();
  } finally {
    sampler.stop();
  }
  // Records come back in walk order; a walk's records share its time stamp.
  const byTime = new Map<bigint, WalkRecord[]>();
  for (const b of batches) {
    decodeBatch(b, {
      sample: (s) => {
        if (s.tid !== 0 || s.pid !== pid) return;
        if (!byTime.has(s.timeNs)) byTime.set(s.timeNs, []);
        byTime.get(s.timeNs)!.push({ goid: s.goid, status: s.taskState & 0xffff, reason: s.taskState >>> 16, ns: s.offCpuNs, frames: [...s.userStack].map(Number) });
      },
    });
  }
  return [...byTime.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map((e) => e[1]);
}


/**
 * Runs PARKED_GO from `bin`, walks its goroutines once in BPF and checks the records against
 * the user-space reader: the same goroutines, each with the same status, wait reason and stack.
 */
async function assertWalkMatchesReference(bin: string, what: string): Promise<void> {
  const child = spawn(bin, [], { stdio: 'pipe' });
  try {
    assert.equal(await firstLine(child, bin), 'ready');
    const pid = child.pid!;
    const [walk] = walkByHand(pid, 1);
    assert.ok(walk, `${what}: the walk emitted nothing`);
    const o = ElfFile.withFile(bin, (elf) => goRuntimeOffsets(elf, readGoBuildInfo(elf)!.goVersion))!;
    const mem = memoryOf(pid);
    try {
      const reference = readAllGoroutines(mem.read, goProcessOffsets(pid)!.allgs!, o)!.filter((g) => g.status === G_WAITING || g.status === G_RUNNABLE);
      const got = new Map(walk.map((r) => [r.goid, r]));
      assert.deepEqual([...got.keys()].sort((a, b) => a - b), reference.map((g) => g.goid).sort((a, b) => a - b), what);
      for (const g of reference) {
        const r = got.get(g.goid)!;
        assert.equal(r.status, g.status, `${what}: goroutine ${g.goid}: status`);
        assert.equal(r.reason, g.waitreason, `${what}: goroutine ${g.goid}: wait reason`);
        assert.deepEqual(r.frames, goroutineStack(mem.read, g), `${what}: goroutine ${g.goid}: stack`);
      }
      // The 20 parked by main, each with its own goid.
      assert.ok(reference.length >= 20, `${what}: only ${reference.length} waiting goroutines`);
    } finally {
      mem.close();
    }
  } finally {
    child.kill();
  }
}

describe('goroutine waits', () => {
  it('walks in BPF exactly what the user-space reader finds, in every Go release, stripped, PIE or not', async () => {
    // Each release's own layout (offsets from the table: stripped binaries have no DWARF) and
    // allgs from runtime.allgadd's code.
    const builds = await pool(2, GO_RELEASES.map((r, i) => () =>
      buildGoModule(dir, `parked-${r}`, { 'main.go': PARKED_GO }, { flags: [...(i % 2 ? ['-buildmode=pie'] : []), '-ldflags=-s -w'], env: { GOTOOLCHAIN: `go${r}` } }),
    ));
    for (const [i, bin] of builds.entries()) await assertWalkMatchesReference(bin, `go${GO_RELEASES[i]}${i % 2 ? ' PIE' : ''}`);
  });

  it('looks at a moving window of allgs when told to visit fewer, each record standing for the rest', async () => {
    const bin = await buildGoModule(dir, 'parked', { 'main.go': PARKED_GO });
    const child = spawn(bin, [], { stdio: 'pipe' });
    try {
      assert.equal(await firstLine(child, bin), 'ready');
      const pid = child.pid!;
      const [all] = walkByHand(pid, 1);
      const waiting = new Set(all!.map((r) => r.goid));
      const walks = walkByHand(pid, 16, 4);
      for (const w of walks) assert.ok(w.length <= 4, `a walk emitted ${w.length} records with 4 visits`);
      // A process's first walk stands for one nominal period (60 s here); with 4 visits, each
      // record stands for allglen / 4 goroutines.
      assert.ok(all!.every((r) => r.ns === 60e9), `weights visiting all: ${all!.map((r) => r.ns).join(',')}`);
      const allglen = walks[0]![0]!.ns / 15e9;
      assert.ok(Number.isInteger(allglen) && allglen >= 21 && allglen <= 64, `first windowed weight ${walks[0]![0]!.ns}`);
      // The window moves on: floor(allglen / 4) walks see no goroutine twice, ceil(allglen / 4)
      // walks (the last one wraps round to the start) see every waiting one.
      const seen = (n: number): number[] => walks.slice(0, n).flatMap((w) => w.map((r) => r.goid));
      const once = seen(Math.floor(allglen / 4));
      assert.equal(new Set(once).size, once.length, `a goroutine was visited twice in one round: ${once.join(',')}`);
      assert.deepEqual([...new Set(seen(Math.ceil(allglen / 4)))].sort((a, b) => a - b), [...waiting].sort((a, b) => a - b));
    } finally {
      child.kill();
    }
  });

  it('shares the goroutines a walk looks at among the Go processes it walks', async () => {
    const bin = await buildGoModule(dir, 'parked', { 'main.go': PARKED_GO });
    const children = [spawn(bin, [], { stdio: 'pipe' }), spawn(bin, [], { stdio: 'pipe' })];
    try {
      for (const c of children) assert.equal(await firstLine(c, bin), 'ready');
      const pids = children.map((c) => c.pid!);
      const sampler = openOnCpuSampler({ frequency: 1, pids, goWaits: true, goWaitPeriodNs: 60e9, goWaitMaxVisits: 8 });
      const perPid = new Map<number, number[]>(pids.map((p) => [p, []]));
      sampler.start((b) => decodeBatch(b, { sample: (x) => void (x.tid === 0 && perPid.get(x.pid)?.push(x.offCpuNs)) }));
      try {
        for (const p of pids) sampler.setGoProcess(p, goProcessOffsets(p)!);
        sampler.walkGoroutines();
      } finally {
        sampler.stop();
      }
      for (const [pid, weights] of perPid) {
        // Four looked at in each (the first four of allgs: main, in a system call, is not
        // emitted), each standing for allglen / 4 goroutines.
        assert.ok(weights.length >= 1 && weights.length <= 4, `process ${pid}: ${weights.length} records`);
        assert.ok(weights.every((w) => w === weights[0] && w % 15e9 === 0 && w / 15e9 >= 21), `process ${pid}: weights ${weights.join(',')}`);
      }
    } finally {
      for (const c of children) c.kill();
    }
  });

  it('walks Go processes that never run: given with -p, and on the whole machine', async () => {
    const bin = await buildGoModule(dir, 'parked', { 'main.go': PARKED_GO });
    const child = spawn(bin, [], { stdio: 'pipe' });
    try {
      assert.equal(await firstLine(child, bin), 'ready');
      for (const target of [['-p', String(child.pid)], []]) {
        const out = join(dir, `idle-${target.length}.pb.gz`);
        const r = spawnSync(process.execPath, [cli, 'record', '-q', '--off-cpu', '-d', '1s', '-o', out, ...target], { encoding: 'utf8', timeout: 60_000 });
        assert.equal(r.status, 0, r.stderr);
        const waits = decode(out).samples.filter((s) => goroutineWait(s) && s.frames.includes('main.sleepWait'));
        const ns = waits.reduce((n, s) => n + s.offCpuNs, 0);
        // Five goroutines asleep for the whole second.
        assert.ok(Math.abs(ns / 5e9 - 1) <= 0.25, `${target.join(' ') || 'whole machine'}: ${(ns / 1e6).toFixed(0)} ms under main.sleepWait`);
      }
    } finally {
      child.kill();
    }
  });

  let local: string;
  let go121: string;
  before(async () => {
    [local, go121] = await Promise.all([
      buildGoModule(dir, 'gowait-local', { 'main.go': SOURCE }),
      buildGoModule(dir, 'gowait-go121-stripped-pie', { 'main.go': SOURCE }, { flags: ['-buildmode=pie', '-ldflags=-s -w'], env: { GOTOOLCHAIN: 'go1.21.13' } }),
    ]);
  });

  it('charges each goroutine its own waiting time, 3:1 where it waited 3:1, with wait reasons and labels', () => {
    checkWorkload(record(local));
  });

  it('leaves out idle scheduler threads with the raw_tp off-CPU flavour too', () => {
    checkWorkload(record(local, [], { FLAMEWIRE_OFF_CPU_FLAVOUR: 'raw_tp' }));
  });

  it('does the same in a stripped PIE built by Go 1.21 (labels in a map, allgs from the code)', () => {
    checkWorkload(record(go121));
  });
});
