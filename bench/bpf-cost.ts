// Cost of the on-CPU BPF program per run (kernel.bpf_stats_enabled): run_time_ns / run_cnt
// while sampling one workload process. Called by the benchmark runner; prints nothing.

import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { enableBpfStats, openOnCpuSampler } from '../src/native.js';

export type BpfCostWorkload = 'cpu' | 'syscall';

export interface BpfCostResult {
  /** Program runs (every cpu-clock tick on every CPU, whoever was running). */
  runCount: number;
  /** run_time_ns / run_cnt. */
  nsPerRun: number;
  /** Sample records emitted for the workload. */
  samples: number;
  /** samples / runCount: the share of runs that did the full work of a sample. */
  sampleShare: number;
  /** The same for bpftrace's profile sampler, run at the same time (with `peer`). */
  peerNsPerRun?: number;
}

/**
 * The peer: bpftrace's classic profiler, `profile:hz:F { @[kstack, ustack] = count(); }` for
 * the same pids, i.e. two 127-frame kernel stack walks per sample and a map update: the naive
 * sampler the 2.4 µs reference figure describes.
 */
export class BpftracePeer {
  private constructor(
    private readonly child: ReturnType<typeof spawn>,
    private readonly progIds: number[],
    private readonly progType: string,
  ) {}

  static start(frequency: number, pids: number[]): Promise<BpftracePeer> {
    const filter = pids.map((p) => `pid == ${p}`).join(' || ');
    return BpftracePeer.run(`profile:hz:${frequency} /${filter}/ { @[kstack, ustack] = count(); }`, 'perf_event');
  }

  /** Runs a bpftrace script whose programs are of kernel type `progType`, once they are loaded. */
  static async run(script: string, progType: string): Promise<BpftracePeer> {
    const before = new Set(progsOf(progType).map((p) => p.id));
    const child = spawn('bpftrace', ['-e', script], { stdio: 'ignore' });
    let exited = false;
    child.once('exit', () => (exited = true));
    // Its programs: the ones of that type that were not there before it started. (Its
    // "Attaching" line is no signal: piped stdout is block-buffered.)
    let ids: number[] = [];
    for (let waited = 0; ids.length === 0 && !exited && waited < 30_000; waited += 100) {
      await new Promise((done) => setTimeout(done, 100));
      ids = progsOf(progType).filter((p) => !before.has(p.id)).map((p) => p.id);
    }
    if (ids.length === 0) {
      child.kill('SIGKILL');
      throw new Error(`bench: bpftrace did not load its ${progType} program`);
    }
    // Loaded comes just before attached.
    await new Promise((done) => setTimeout(done, 300));
    return new BpftracePeer(child, ids, progType);
  }

  /** Summed run time and count of its programs so far. */
  stats(): { ns: number; runs: number } {
    let ns = 0;
    let runs = 0;
    for (const p of progsOf(this.progType)) {
      if (!this.progIds.includes(p.id)) continue;
      ns += p.run_time_ns ?? 0;
      runs += p.run_cnt ?? 0;
    }
    return { ns, runs };
  }

  stop(): void {
    // SIGKILL: on SIGINT bpftrace would print (and symbolize) every stack it counted.
    this.child.kill('SIGKILL');
  }
}

function progsOf(type: string): Array<{ id: number; run_time_ns?: number; run_cnt?: number }> {
  const all = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as Array<{
    id: number;
    type: string;
    run_time_ns?: number;
    run_cnt?: number;
  }>;
  return all.filter((p) => p.type === type);
}

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// A user stack ~18 frames deep (main, 16 x depth, leaf), built with frame pointers.
const CPU_SOURCE = `
volatile unsigned long sink;
__attribute__((noinline)) void leaf(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }
__attribute__((noinline)) void depth(int d, unsigned long n) { if (d == 0) leaf(n); else depth(d - 1, n); sink++; }
int main(void) { for (;;) depth(15, 1000000); }
`;

// Mostly in the kernel: small reads from /dev/zero under a ~13-frame user stack.
const SYSCALL_SOURCE = `
#include <fcntl.h>
#include <unistd.h>
volatile long sink;
__attribute__((noinline)) void work(int fd, char *buf) { for (int i = 0; i < 1000; i++) sink += read(fd, buf, 64); }
__attribute__((noinline)) void depth(int d, int fd, char *buf) { if (d == 0) work(fd, buf); else depth(d - 1, fd, buf); sink++; }
int main(void) { int fd = open("/dev/zero", O_RDONLY); char buf[64]; for (;;) depth(10, fd, buf); }
`;

function buildWorkload(workload: BpfCostWorkload): string {
  const dir = join(repoRoot, 'bench', '.work');
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `bpf-cost-${workload}.c`);
  const bin = join(dir, `bpf-cost-${workload}`);
  writeFileSync(src, workload === 'cpu' ? CPU_SOURCE : SYSCALL_SOURCE);
  execFileSync('gcc', ['-O2', '-fno-omit-frame-pointer', '-o', bin, src], { stdio: 'pipe' });
  return bin;
}

export async function measureBpfCost(opts: {
  frequency: number;
  seconds: number;
  workload: BpfCostWorkload;
  userWalk?: 'auto' | 'bpf_get_stack';
  /** Run bpftrace's profiler on the same pids at the same time and measure it too. */
  peer?: boolean;
}): Promise<BpfCostResult> {
  const bin = buildWorkload(opts.workload);
  // One job per CPU, so that (nearly) every program run is a real sample: with idle CPUs the
  // cheap early-return runs would pull the average down.
  const children = cpus().map(() => spawn(bin, [], { stdio: 'ignore' }));
  const exited = Promise.all(children.map((c) => new Promise<void>((done) => c.once('exit', () => done()))));
  let stats: { close(): void } | undefined;
  let peer: BpftracePeer | undefined;
  try {
    stats = enableBpfStats();
    const pids = children.map((c) => c.pid).filter((p): p is number => p !== undefined);
    if (pids.length !== children.length) throw new Error(`bpf-cost: cannot start ${bin}`);
    if (opts.peer) peer = await BpftracePeer.start(opts.frequency, pids);
    const sampler = openOnCpuSampler({ frequency: opts.frequency, pids, userWalk: opts.userWalk });
    sampler.start(() => {});
    const peerBefore = peer?.stats();
    await new Promise((done) => setTimeout(done, opts.seconds * 1000));
    const prog = sampler.programStats();
    const peerAfter = peer?.stats();
    sampler.stop();
    const runCount = Number(prog.runCount);
    const samples = sampler.stats().samples;
    const peerRuns = peerAfter && peerBefore ? peerAfter.runs - peerBefore.runs : 0;
    return {
      runCount,
      nsPerRun: runCount > 0 ? Number(prog.runTimeNs) / runCount : 0,
      samples,
      sampleShare: runCount > 0 ? samples / runCount : 0,
      peerNsPerRun: peerRuns > 0 ? (peerAfter!.ns - peerBefore!.ns) / peerRuns : undefined,
    };
  } finally {
    // Whatever failed (loading, attaching), the workloads must not outlive the measurement.
    peer?.stop();
    stats?.close();
    for (const c of children) c.kill('SIGKILL');
    await exited;
  }
}
