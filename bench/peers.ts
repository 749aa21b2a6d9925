// Stacks without frame pointers (issue 16), against peers, in one run: a C job with a deep call
// chain built twice (gcc -O2, and -O2 -fno-omit-frame-pointer), and
//   - flamewire's BPF run time per sample on each build, with the callers' split it recorded
//     (so that the cost is that of right answers);
//   - the OpenTelemetry eBPF profiler on the same no-FP job at the same time: its BPF run time
//     per sample (built from its module source by bench/build-otel-profiler.sh, cached in
//     bench/.peers/; skipped with a note when it cannot be built or run);
//   - perf record --call-graph dwarf: the job's slowdown under it (and under flamewire), and the
//     bytes perf writes per sample, with the split perf's report gives.
// Called by the benchmark runner (FLAMEWIRE_BENCH_ONLY=peers).

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { OnCpuCapture } from '../src/capture.js';
import { enableBpfStats, openOnCpuSampler } from '../src/native.js';
import { renderFolded } from '../src/output/folded.js';
import { kernelTablesFor } from '../src/unwind/kernel-tables.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = join(root, 'bench', '.work');
const cli = join(root, 'dist', 'src', 'cli.js');

/** The peer's version: a release on the Go module proxy. */
export const OTEL_PROFILER_VERSION = 'v0.0.202633';

const FREQUENCY = 999;
/** How long the peer gets to learn of a new job before its cost is measured. */
const PEER_WARM_UP_MS = 5000;
/** chain() frames under the caller; with leaf_work, the caller, main and libc's two: DEPTH + 6. */
const DEPTH = 44;
const LOCALS = 320;

// Every round goes down DEPTH + 1 chain() frames of LOCALS bytes of locals each to leaf_work;
// 3 rounds of 4 through caller_major, 1 through caller_minor. A round count of 0 runs until
// killed. At the end it prints its own wall and CPU time for the work, so that a profiler's
// start-up and shutdown are not counted. The leaf is a multiply chain: its speed does not depend
// on where the loop lands in memory, so the two builds do the same work in the same time.
const DEEP_SOURCE = `
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#define DEPTH ${DEPTH}
#define WORK 100000UL
volatile unsigned long sink;
__attribute__((noinline)) void leaf_work(unsigned long n) { unsigned long x = n; for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + i; sink += x; }
__attribute__((noinline)) void chain(int d, unsigned long n) {
  volatile char locals[${LOCALS}];
  locals[d % ${LOCALS}] = (char)d;
  if (d == 0) leaf_work(n); else chain(d - 1, n);
  sink += locals[(d * 7) % ${LOCALS}];
}
__attribute__((noinline)) void caller_major(unsigned long n) { chain(DEPTH, n); sink += 1; }
__attribute__((noinline)) void caller_minor(unsigned long n) { chain(DEPTH, n); sink += 2; }
static double secs(struct timespec t) { return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  long rounds = argc > 1 ? atol(argv[1]) : 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long r = 0; rounds == 0 || r < rounds; r++) {
    if (r % 4 == 3) caller_minor(WORK); else caller_major(WORK);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("deep: wall %.6f cpu %.6f\\n", secs(t1) - secs(t0),
         ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
  return 0;
}
`;

export type AddRow = (what: string, value: string, target: string, ok: boolean | undefined) => void;

interface Split {
  /** Samples in leaf_work. */
  leaf: number;
  major: number;
  minor: number;
}

const pctOf = (a: number, b: number) => (b > 0 ? (100 * a) / b : 0);
const splitText = (s: Split, of = `${s.leaf} leaf samples`) =>
  pctOf(s.major + s.minor, s.leaf) < 50
    ? `no split: ${pctOf(s.major + s.minor, s.leaf).toFixed(1)}% of ${of} reached a caller`
    : `${pctOf(s.major, s.major + s.minor).toFixed(1)}% (${pctOf(s.major + s.minor, s.leaf).toFixed(0)}% of ${of} reached a caller)`;

function median(a: number[]): number {
  return [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] ?? NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function buildDeep(): { nofp: string; fp: string } {
  mkdirSync(work, { recursive: true });
  const src = join(work, 'deep.c');
  writeFileSync(src, DEEP_SOURCE);
  const nofp = join(work, 'deep-nofp');
  const fp = join(work, 'deep-fp');
  execFileSync('gcc', ['-O2', '-o', nofp, src], { stdio: 'pipe' });
  execFileSync('gcc', ['-O2', '-fno-omit-frame-pointer', '-o', fp, src], { stdio: 'pipe' });
  return { nofp, fp };
}

/** The callers' split of folded stacks (flamewire's folded output). */
function foldedSplit(text: string): Split {
  const s: Split = { leaf: 0, major: 0, minor: 0 };
  for (const line of text.split('\n')) {
    const sp = line.lastIndexOf(' ');
    if (sp < 0 || !line.includes('leaf_work')) continue;
    const n = Number(line.slice(sp + 1));
    s.leaf += n;
    if (line.includes('caller_major')) s.major += n;
    else if (line.includes('caller_minor')) s.minor += n;
  }
  return s;
}

interface BpfProg {
  id: number;
  type: string;
  name?: string;
  run_time_ns?: number;
  run_cnt?: number;
}

function bpfProgs(): BpfProg[] {
  return JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as BpfProg[];
}

interface Sink {
  server: grpc.Server;
  bytes: number;
  requests: number;
  /** Samples in the requests, and those whose stack had all the deep job's frames. */
  samples: number;
  deep: number;
}

interface OtlpRequest {
  dictionary?: { stackTable?: Array<{ locationIndices?: number[] }> };
  resourceProfiles?: Array<{ scopeProfiles?: Array<{ profiles?: Array<{ samples?: Array<{ stackIndex?: number; values?: number[]; timestampsUnixNano?: number[] }> }> }> }>;
}

/** Whether the peer's walks reach the deep job's callers: the frame counts of its stacks. */
function countDeep(r: OtlpRequest, sink: Sink): void {
  const stacks = r.dictionary?.stackTable ?? [];
  for (const rp of r.resourceProfiles ?? [])
    for (const sp of rp.scopeProfiles ?? [])
      for (const p of sp.profiles ?? [])
        for (const s of p.samples ?? []) {
          const n = s.values?.reduce((a, b) => a + b, 0) || s.timestampsUnixNano?.length || 1;
          sink.samples += n;
          if ((stacks[s.stackIndex ?? 0]?.locationIndices?.length ?? 0) >= DEPTH + 6) sink.deep += n;
        }
}

/**
 * The OpenTelemetry eBPF profiler, whole machine, reporting to a loopback OTLP gRPC sink that
 * accepts and counts everything. Its sampling program (native_tracer_entry, perf_event) tail-calls
 * the unwinders (perf_unwind_*, also perf_event programs); the kernel counts a tail call's time in
 * the program that was entered, but its programs' run times are summed anyway.
 */
class OtelPeer {
  private constructor(
    private readonly child: ChildProcess,
    private readonly sink: Sink,
    private readonly progIds: Set<number>,
    private readonly entryId: number,
  ) {}

  /** The peer, or why not (one line). */
  static async start(frequency: number, log: (m: string) => void): Promise<OtelPeer | string> {
    const script = join(root, 'bench', 'build-otel-profiler.sh');
    log(`the OpenTelemetry eBPF profiler ${OTEL_PROFILER_VERSION}: building, or reusing the build in bench/.peers/`);
    const built = spawnSync('bash', [script, OTEL_PROFILER_VERSION], { encoding: 'utf8', timeout: 30 * 60_000, maxBuffer: 64 << 20 });
    const bin = built.stdout?.trim().split('\n').pop() ?? '';
    if (built.status !== 0 || !existsSync(bin)) {
      const why = (built.stderr ?? '').trim().split('\n').filter(Boolean).pop() ?? built.error?.message ?? `exit ${built.status}`;
      return `cannot build it: ${why}`;
    }
    // It reads tracepoint ids from tracefs.
    if (!existsSync('/sys/kernel/tracing/events')) {
      const m = spawnSync('mount', ['-t', 'tracefs', 'nodev', '/sys/kernel/tracing'], { encoding: 'utf8' });
      if (m.status !== 0) return `tracefs is not mounted and cannot be: ${(m.stderr ?? '').trim()}`;
    }
    let otlp: typeof import('../test/otlp-official.js');
    try {
      otlp = await import('../test/otlp-official.js');
    } catch (e) {
      return `no OTLP sink for it: ${(e as Error).message.split('\n')[0]}`;
    }
    const sink = { server: undefined as unknown as grpc.Server, bytes: 0, requests: 0, samples: 0, deep: 0 };
    const { server, port } = await otlp.otlpGrpcServer((req, cb) => {
      sink.bytes += req.length;
      sink.requests++;
      try {
        countDeep(otlp.Request.toObject(otlp.Request.decode(req), { longs: Number }) as OtlpRequest, sink);
      } catch {
        // Another profiles schema than the tests' copy: the depth check stays empty.
      }
      cb(null, null);
    });
    sink.server = server;
    const before = new Set(bpfProgs().map((p) => p.id));
    const child = spawn(bin, ['-collection-agent', `127.0.0.1:${port}`, '-disable-tls', '-samples-per-second', String(frequency)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
    let exited = false;
    child.once('exit', () => (exited = true));
    // Running once its entry program is counting runs.
    for (let waited = 0; !exited && waited < 120_000; waited += 500) {
      await sleep(500);
      const mine = bpfProgs().filter((p) => !before.has(p.id) && p.type === 'perf_event');
      const entry = mine.find((p) => p.name?.startsWith('native_tracer'));
      if (entry && (entry.run_cnt ?? 0) > 0) {
        return new OtelPeer(child, sink, new Set(mine.map((p) => p.id)), entry.id);
      }
    }
    child.kill('SIGKILL');
    server.forceShutdown();
    const last = stderr.trim().split('\n').pop() ?? '';
    return exited ? `it exited: ${last}` : `its sampling program did not run within 120 s: ${last}`;
  }

  /** Summed run time of its perf_event programs, and the runs of its entry program. */
  stats(): { ns: number; runs: number } {
    let ns = 0;
    let runs = 0;
    for (const p of bpfProgs()) {
      if (!this.progIds.has(p.id)) continue;
      ns += p.run_time_ns ?? 0;
      if (p.id === this.entryId) runs = p.run_cnt ?? 0;
    }
    return { ns, runs };
  }

  /** OTLP bytes it sent so far. */
  get sentBytes(): number {
    return this.sink.bytes;
  }

  /** Samples it sent so far, and those with the deep job's whole stack. */
  get sentSamples(): { all: number; deep: number } {
    return { all: this.sink.samples, deep: this.sink.deep };
  }

  async stop(): Promise<void> {
    const done = new Promise<void>((r) => (this.child.exitCode !== null ? r() : this.child.once('exit', () => r())));
    this.child.kill('SIGINT');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await done;
    clearTimeout(t);
    this.sink.server.forceShutdown();
  }
}

interface Window {
  nsPerRun: number;
  runs: number;
  sampleShare: number;
  split: Split;
  peerNsPerRun?: number;
}

/**
 * One job per CPU (so nearly every program run is a sample of it), sampled by flamewire with
 * its kernel unwind tables loaded before sampling starts; the cost over `seconds`.
 */
async function flamewireWindow(bin: string, seconds: number, peer: OtelPeer | undefined): Promise<Window> {
  // The peer learns of a new process from its first samples and converts its tables in user
  // space; until then its program gives up early on the process's samples. Give it time.
  const warmUntil = Date.now() + (peer ? PEER_WARM_UP_MS : 0);
  const children = cpus().map(() => spawn(bin, ['0'], { stdio: 'ignore' }));
  const exited = Promise.all(children.map((c) => new Promise<void>((r) => c.once('exit', () => r()))));
  try {
    const pids = children.map((c) => c.pid).filter((p): p is number => p !== undefined);
    if (pids.length !== children.length) throw new Error(`peers: cannot start ${bin}`);
    const sampler = openOnCpuSampler({ frequency: FREQUENCY, pids });
    const capture = new OnCpuCapture({ frequency: FREQUENCY, oneShot: true });
    try {
      const tables = kernelTablesFor(sampler);
      if (!tables) throw new Error('peers: the sampler does not walk with unwind tables on this kernel');
      capture.kernelTables = tables;
      await sleep(200); // the jobs' libc is mapped
      for (const pid of pids) {
        const info = capture.processes.ensure(pid);
        if (info) tables.sync(pid, info);
      }
      await tables.settled();
      for (let w = 0; tables.stats.processesReady < pids.length && w < 5000; w += 50) await sleep(50);
      await sleep(Math.max(0, warmUntil - Date.now()));
      sampler.start((b) => capture.addBatch(b));
      await sleep(500);
      const a = sampler.programStats();
      const sa = sampler.stats().samples;
      const pa = peer?.stats();
      await sleep(seconds * 1000);
      const b = sampler.programStats();
      const sb = sampler.stats().samples;
      const pb = peer?.stats();
      sampler.stop();
      const runs = Number(b.runCount) - Number(a.runCount);
      const profile = await capture.finish({ timeNanos: 0n, durationNanos: BigInt(seconds * 1e9), comments: [] });
      const peerRuns = pa && pb ? pb.runs - pa.runs : 0;
      return {
        nsPerRun: runs > 0 ? (Number(b.runTimeNs) - Number(a.runTimeNs)) / runs : 0,
        runs,
        sampleShare: runs > 0 ? (sb - sa) / runs : 0,
        split: foldedSplit(renderFolded(profile)),
        peerNsPerRun: peerRuns > 0 ? (pb!.ns - pa!.ns) / peerRuns : undefined,
      };
    } finally {
      await capture.close();
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await exited;
  }
}

interface Timed {
  /** The job's own wall and CPU time for its work. */
  wall: number;
  jobCpu: number;
  /** CPU of everything the shell waited for: the job and the profiler, start-up and output included. */
  allCpu: number;
}

/** Runs `cmd` (which runs the job) under a shell that then reports its children's CPU time. */
async function timed(cmd: string[]): Promise<Timed> {
  const out = await new Promise<string>((r, fail) => {
    let text = '';
    const sh = spawn('sh', ['-c', '"$@" >&2; cat /proc/$$/stat', 'sh', ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    sh.stdout.on('data', (d) => (text += String(d)));
    let err = '';
    sh.stderr.on('data', (d) => (err += String(d)));
    sh.on('exit', () => {
      const m = /deep: wall ([\d.]+) cpu ([\d.]+)/.exec(err);
      if (!m) fail(new Error(`peers: ${cmd[0]} gave no timing: ${err.trim().split('\n').pop()}`));
      else r(`${m[1]} ${m[2]}\n${text}`);
    });
  });
  const [first, stat] = out.split('\n');
  const [wall, jobCpu] = first!.split(' ').map(Number);
  const f = stat!.slice(stat!.lastIndexOf(')') + 2).split(' ');
  return { wall: wall!, jobCpu: jobCpu!, allCpu: (Number(f[13]) + Number(f[14])) / 100 };
}

/** perf's inclusive percentages for the two callers, from its report (children mode). */
function perfSplit(perfData: string): Split | undefined {
  const r = spawnSync('perf', ['report', '-i', perfData, '--stdio', '--children', '--no-demangle', '-g', 'none'], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 300_000,
  });
  const pct = (sym: string) => {
    const m = new RegExp(`^\\s+([\\d.]+)%\\s+[\\d.]+%.*\\b${sym}\\s*$`, 'm').exec(r.stdout ?? '');
    return m ? Number(m[1]) : 0;
  };
  const leaf = pct('leaf_work');
  if (leaf === 0) return undefined;
  // In per mille of the samples, to share splitText with the sample counts.
  return { leaf: Math.round(leaf * 10), major: Math.round(pct('caller_major') * 10), minor: Math.round(pct('caller_minor') * 10) };
}

function perfSamples(perfData: string): number {
  const r = spawnSync('perf', ['report', '-i', perfData, '--stats'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const all = [...(r.stdout ?? '').matchAll(/SAMPLE events:\s+(\d+)/g)].map((m) => Number(m[1]));
  return all.length > 0 ? Math.max(...all) : 0;
}

function hasPerf(): boolean {
  return spawnSync('perf', ['--version'], { stdio: 'ignore' }).status === 0;
}

export async function peers(add: AddRow, log: (m: string) => void, quick: boolean): Promise<void> {
  const { nofp, fp } = buildDeep();
  const frames = DEPTH + 6;
  const job = `${frames}-frame job, ${LOCALS} B of locals a frame, callers 3:1`;
  const reps = quick ? 1 : 3;
  const seconds = quick ? 2 : 4;
  const stats = enableBpfStats();
  let peer: OtelPeer | undefined;
  let peerNote: string | undefined;
  try {
    const started = await OtelPeer.start(FREQUENCY, log).catch((e: unknown) => `cannot run it: ${(e as Error).message.split('\n')[0]}`);
    if (typeof started === 'string') peerNote = started;
    else peer = started;
    if (peerNote) log(`OpenTelemetry eBPF profiler skipped: ${peerNote}`);

    log(`deep stacks: flamewire BPF run time per sample, no FP vs FP${peer ? ', the OpenTelemetry eBPF profiler at the same time' : ''}`);
    const runs: Record<'nofp' | 'fp', Window[]> = { nofp: [], fp: [] };
    for (let i = 0; i < reps; i++) {
      for (const k of i % 2 ? (['fp', 'nofp'] as const) : (['nofp', 'fp'] as const)) {
        runs[k].push(await flamewireWindow(k === 'nofp' ? nofp : fp, seconds, peer));
      }
    }
    const sent = peer?.sentBytes ?? 0;
    const sentSamples = peer?.sentSamples ?? { all: 0, deep: 0 };
    const peerAll = peer?.stats();
    await peer?.stop();
    peer = undefined;

    const us = (w: Window[]) => median(w.map((r) => r.nsPerRun)) / 1000;
    const sum = (w: Window[]): Split => w.reduce((a, r) => ({ leaf: a.leaf + r.split.leaf, major: a.major + r.split.major, minor: a.minor + r.split.minor }), { leaf: 0, major: 0, minor: 0 });
    const ratios = runs.nofp.map((r, i) => r.nsPerRun / runs.fp[i]!.nsPerRun);
    const ratio = median(ratios);
    add(
      `Deep stack (${job}): flamewire BPF run time per sample (run_time_ns/run_cnt), -O2 vs -O2 -fno-omit-frame-pointer, one job per CPU, -F ${FREQUENCY}`,
      `no FP ${us(runs.nofp).toFixed(2)} µs, FP ${us(runs.fp).toFixed(2)} µs: no FP/FP ${ratio.toFixed(2)}× (${ratios.map((x) => x.toFixed(2)).join(', ')}); ` +
        `caller_major share no FP ${splitText(sum(runs.nofp))}, FP ${splitText(sum(runs.fp))}; ` +
        `${(100 * median(runs.nofp.map((r) => r.sampleShare))).toFixed(0)}% of runs emitted a sample; median of ${reps} × ${seconds} s`,
      '≤ 2×, split 75 ± 3',
      ratio <= 2 && Math.abs(pctOf(sum(runs.nofp).major, sum(runs.nofp).major + sum(runs.nofp).minor) - 75) <= 3,
    );
    const peerUs = runs.nofp.map((r) => r.peerNsPerRun).filter((x): x is number => x !== undefined);
    if (peerUs.length > 0) {
      const rel = runs.nofp.filter((r) => r.peerNsPerRun !== undefined).map((r) => r.nsPerRun / r.peerNsPerRun!);
      const fpPeer = runs.fp.map((r) => r.peerNsPerRun).filter((x): x is number => x !== undefined);
      add(
        `  OpenTelemetry eBPF profiler ${OTEL_PROFILER_VERSION} (built from source, clang-19) on the same no-FP jobs at the same time, -samples-per-second ${FREQUENCY}: BPF run time per sample (its perf_event programs / native_tracer_entry runs)`,
        `${(median(peerUs) / 1000).toFixed(2)} µs (on the FP build ${(median(fpPeer) / 1000).toFixed(2)} µs); flamewire/OTel ${median(rel).toFixed(2)} (${rel.map((x) => x.toFixed(2)).join(', ')}); ` +
          `${sentSamples.all > 0 ? `${pctOf(sentSamples.deep, sentSamples.all).toFixed(0)}% of the ${sentSamples.all} samples it sent had ≥ ${DEPTH + 6} frames` : 'it sent no samples it could be checked by'}; ` +
          `it sent ${peerAll && peerAll.runs > 0 ? (sent / peerAll.runs).toFixed(0) : '?'} B of OTLP per sample over its whole run`,
        '≤ 1/3',
        median(rel) <= 1 / 3,
      );
    } else {
      add(`  OpenTelemetry eBPF profiler ${OTEL_PROFILER_VERSION}: BPF run time per sample`, `skipped: ${peerNote ?? 'its entry program counted no runs in the windows'}`, '≤ 1/3', undefined);
    }
  } finally {
    await peer?.stop();
    stats.close();
  }

  if (!hasPerf()) {
    add('Deep stack, no FP: slowdown under perf record --call-graph dwarf and flamewire', 'skipped: perf is not installed', '(reported)', undefined);
    return;
  }
  const rounds = String(quick ? 8000 : 24000);
  log(`deep stacks: slowdown of the no-FP job (${rounds} rounds), baseline vs flamewire record vs perf record --call-graph dwarf, -F ${FREQUENCY}`);
  const perfData = join(work, 'deep.perf.data');
  const folded = join(work, 'deep.folded');
  const configs: Record<string, string[]> = {
    baseline: [nofp, rounds],
    flamewire: [process.execPath, cli, 'record', '-q', '-F', String(FREQUENCY), '-o', folded, '--', nofp, rounds],
    perf: ['perf', 'record', '-q', '-F', String(FREQUENCY), '--call-graph', 'dwarf', '-o', perfData, '--', nofp, rounds],
  };
  const t: Record<string, Timed[]> = { baseline: [], flamewire: [], perf: [] };
  const fwSplits: Split[] = [];
  let perfBytes = 0;
  let perfN = 0;
  let perfSp: Split | undefined;
  const sReps = quick ? 1 : 3;
  for (let i = 0; i < sReps; i++) {
    const order = i % 2 ? Object.keys(configs).reverse() : Object.keys(configs);
    for (const name of order) {
      t[name]!.push(await timed(configs[name]!));
      if (name === 'flamewire') fwSplits.push(foldedSplit(readFileSync(folded, 'utf8')));
      if (name === 'perf' && i === sReps - 1) {
        perfBytes = statSync(perfData).size;
        perfN = perfSamples(perfData);
        perfSp = perfSplit(perfData);
      }
    }
  }
  rmSync(perfData, { force: true });
  const rel = (k: string, f: (r: Timed) => number) => median(t[k]!.map((r, i) => f(r) / f(t.baseline[i]!) - 1));
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const fwSplit = fwSplits.reduce((a, s) => ({ leaf: a.leaf + s.leaf, major: a.major + s.major, minor: a.minor + s.minor }), { leaf: 0, major: 0, minor: 0 });
  add(
    `Deep stack, no FP (${job}), one job, ${rounds} rounds: its wall time for the work under the profiler, paired with the baseline run beside it (CPU of job + profiler incl. start-up and output in brackets)`,
    `flamewire record ${pct(rel('flamewire', (r) => r.wall))} (${pct(rel('flamewire', (r) => r.allCpu))}), ` +
      `perf record --call-graph dwarf ${pct(rel('perf', (r) => r.wall))} (${pct(rel('perf', (r) => r.allCpu))}); ` +
      `baseline ${median(t.baseline!.map((r) => r.wall)).toFixed(2)} s; median of ${sReps}`,
    '(reported)',
    undefined,
  );
  add(
    `  perf record --call-graph dwarf (default 8 KiB stack copies): bytes written per sample, and the callers' split each recorded`,
    `perf ${perfN > 0 ? (perfBytes / perfN).toFixed(0) : '?'} B per sample (${(perfBytes / 1e6).toFixed(1)} MB, ${perfN} samples); ` +
      `caller_major share: perf ${perfSp ? splitText(perfSp, 'its leaf samples') : 'no leaf_work samples in its report'}, flamewire record ${splitText(fwSplit)}`,
    '(reported)',
    undefined,
  );
}
