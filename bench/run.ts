// `npm run bench`: measures what the foundation issue names and prints one table. Nothing here
// gates on an absolute time; where a peer exists (perf) it runs in the same session and the
// comparison is a ratio.
//
//   FLAMEWIRE_BENCH_QUICK=1 shortens every run (for trying the bench itself, not for figures).
//   FLAMEWIRE_BENCH_ONLY=bpf,throughput,attribution,slowdown,rss,offcpu,go,gowaits,export,agent,tables,peers
//   runs only those. FLAMEWIRE_BENCH_AGENT_MINUTES sets the agent runs' length (default 10),
//   FLAMEWIRE_BENCH_AGENT_BACKENDS=up or down only one of its two runs.

import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OnCpuCapture } from '../src/capture.js';
import { openOnCpuSampler } from '../src/native.js';
import { encodePprof } from '../src/output/pprof.js';
import { measureBpfCost } from './bpf-cost.js';
import { buildGoJob, measureGoCost } from './go-cost.js';
import { timeGoPingPong, type GoWaitsMode, type GoWaitsRun } from './go-waits.js';
import { measureExportCost } from './export-cost.js';
import { measureAgent, type AgentScenario } from './agent-cost.js';
import { measureLiveTables, measureTableCost, tableFiles } from './unwind-tables.js';
import { peers } from './peers.js';
import { peakRssKb, processCpu } from './proc.js';
import { DEFAULT_THRESHOLD_NS, measureSwitchCost, timePingPong, type PingPongProfile, type PingPongRun, type SwitchCostResult, type SwitchFilter } from './offcpu.js';
import { buildSplitWorkload } from '../test/workloads.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = join(root, 'bench', '.work');
// Run as `npx flamewire` runs it: the file itself, so the V8 flags on its #! line apply.
const cli = join(root, 'dist', 'src', 'cli.js');
const quick = process.env.FLAMEWIRE_BENCH_QUICK === '1';
mkdirSync(work, { recursive: true });

interface Row {
  what: string;
  value: string;
  target: string;
  verdict: string;
}
const rows: Row[] = [];
const add = (what: string, value: string, target: string, ok: boolean | undefined) =>
  rows.push({ what, value, target, verdict: ok === undefined ? '' : ok ? 'ok' : 'MISSED' });

// A fixed CPU-bound job with a realistic, varied user stack (recursion of varying depth).
const JOB = `
#include <stdlib.h>
volatile unsigned long sink;
__attribute__((noinline)) void leaf(unsigned long n) { for (unsigned long i = 0; i < n; i++) sink += i * 7; }
__attribute__((noinline)) void depth(int d, unsigned long n) { if (d == 0) leaf(n); else depth(d - 1, n); sink++; }
int main(int argc, char **argv) {
  long rounds = atol(argv[1]);
  for (long r = 0; r < rounds; r++) depth(5 + (int)(r % 13), 200000);
  return 0;
}
`;

function build(): string {
  const src = join(work, 'job.c');
  const bin = join(work, 'job');
  writeFileSync(src, JOB);
  execFileSync('gcc', ['-O2', '-fno-omit-frame-pointer', '-o', bin, src]);
  return bin;
}

function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

/** The issue's measured cost of a naive sampler (two 127-frame stack walks) on this kernel. */
const NAIVE_REFERENCE_NS = 2400;

async function bpfCost(): Promise<void> {
  // Absolute figures swing 2x from minute to minute on this shared VM, so each run also
  // measures peers under the same conditions: bpftrace's profiler (the naive sampler of the
  // issue's reference figure) attached at the same time, and our own program with the kernel's
  // bpf_get_stack walk, alternated. The ratios are what hold; the target scales with them.
  const reps = quick ? 1 : 3;
  for (const workload of ['cpu', 'syscall'] as const) {
    log(`BPF cost per sample (${workload})`);
    const ours: number[] = [];
    const kernels: number[] = [];
    const peers: number[] = [];
    const peerRatios: number[] = [];
    let share = 0;
    for (let i = 0; i < reps; i++) {
      const a = await measureBpfCost({ frequency: 999, seconds: quick ? 2 : 4, workload, peer: true });
      const b = await measureBpfCost({ frequency: 999, seconds: quick ? 2 : 4, workload, userWalk: 'bpf_get_stack' });
      ours.push(a.nsPerRun);
      kernels.push(b.nsPerRun);
      if (a.peerNsPerRun) {
        peers.push(a.peerNsPerRun);
        peerRatios.push(a.nsPerRun / a.peerNsPerRun);
      }
      share = a.sampleShare;
    }
    const o = median(ours);
    const k = median(kernels);
    const p = median(peers);
    const r = median(peerRatios);
    add(
      `BPF cost per sample (run_time_ns/run_cnt), ${workload}-bound job on every CPU, -F 999`,
      `${o.toFixed(0)} ns; bpftrace profile (kstack+ustack) at the same time ${p.toFixed(0)} ns (ours ${(100 * r).toFixed(0)}%); ` +
        `with bpf_get_stack for the user stack ${k.toFixed(0)} ns (${(100 * (o / k)).toFixed(0)}%); ${(100 * share).toFixed(0)}% of runs emitted a sample`,
      '(reported)',
      undefined,
    );
    if (workload === 'cpu') {
      add(
        `  same, scaled to the issue's reference (naive sampler = ${NAIVE_REFERENCE_NS} ns): ours/bpftrace × ${NAIVE_REFERENCE_NS} ns, median of ${reps}`,
        `${(r * NAIVE_REFERENCE_NS).toFixed(0)} ns (ratios ${peerRatios.map((x) => x.toFixed(2)).join(', ')})`,
        '≤ 1500 ns',
        r * NAIVE_REFERENCE_NS <= 1500,
      );
    }
  }
}

/** Max/min - 1 of a set of runs, as a percentage: how noisy the machine was. */
function spread(a: number[]): string {
  return `±${((100 * (Math.max(...a) / Math.min(...a) - 1)) / 2).toFixed(0)}%`;
}

function median(a: number[]): number {
  return [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
}

/** Records a real stream of batches: whole machine, -F 999, while the job runs on every CPU. */
async function recordStream(seconds: number): Promise<Buffer[]> {
  const batches: Buffer[] = [];
  const sampler = openOnCpuSampler({ frequency: 999 });
  sampler.start((b) => batches.push(Buffer.from(b)));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  sampler.stop();
  return batches;
}

async function throughput(job: string): Promise<void> {
  log('user-space throughput on a recorded real stream');
  // The jobs stay alive while the stream is replayed, as in a real run, so their maps can be read.
  const jobs = cpus().map(() => spawn(job, ['1000000'], { stdio: 'ignore' }));
  try {
    const stream = await recordStream(quick ? 1 : 3);
    const replays = quick ? 3 : 20;
    const capture = new OnCpuCapture({ frequency: 999 });
    // Two windows over the same stream: the first pays for starting the symbolizer worker,
    // reading kallsyms and parsing every binary's tables; the second is the steady state of a
    // long recording or of the agent, where those are cached.
    for (const window of ['first window (cold caches)', 'steady state (warm caches)']) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < replays; i++) for (const b of stream) capture.addBatch(b);
      const t1 = process.hrtime.bigint();
      // The window's counts: finish() starts the next window.
      const n = capture.sampleCount;
      const stacks = capture.uniqueStacks;
      const profile = await capture.finish({ timeNanos: 0n, durationNanos: 1n, comments: [] });
      const t2 = process.hrtime.bigint();
      const bytes = encodePprof(profile).length;
      const t3 = process.hrtime.bigint();
      const rate = n / (Number(t3 - t0) / 1e9);
      const steady = window.startsWith('steady');
      add(
        `user space: decode → repair → aggregate → symbolize → pprof, ${window}`,
        `${Math.round(rate).toLocaleString('en-US')} samples/s (${n.toLocaleString('en-US')} samples, ${stacks} stacks, ${capture.processCount} processes; ingest ${ms(t1 - t0)}, symbolize+build ${ms(t2 - t1)}, encode ${ms(t3 - t2)}, ${bytes} B)`,
        steady ? '≥ 100,000 samples/s' : '(one-time costs)',
        steady ? rate >= 100_000 : undefined,
      );
      capture.resetWindow();
    }
    await capture.close();
  } finally {
    for (const j of jobs) j.kill('SIGKILL');
  }
}

function ms(ns: bigint): string {
  return `${(Number(ns) / 1e6).toFixed(0)} ms`;
}

interface JobCost {
  wall: number;
  /** CPU seconds of the jobs (user + system): includes the sampling interrupts charged to them. */
  jobCpu: number;
  /** CPU seconds the profiler itself used while the jobs ran. */
  profilerCpu: number;
}

/** One job per core, optionally under a profiler started first. */
async function timedJobs(job: string, rounds: string, profiler?: string[]): Promise<JobCost> {
  let prof: ReturnType<typeof spawn> | undefined;
  if (profiler) {
    prof = spawn(profiler[0], profiler.slice(1), { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 1500)); // attached and steady
  }
  const p0 = prof ? processCpu(prof.pid!) : 0;
  const t0 = process.hrtime.bigint();
  // The shell waits for the jobs, then reports its children's CPU time (cutime + cstime).
  const jobs = (cpus().map(() => `${job} ${rounds} &`).join(' ') + ' wait; cat /proc/$$/stat');
  const out = await new Promise<string>((r) => {
    let text = '';
    const sh = spawn('sh', ['-c', jobs], { stdio: ['ignore', 'pipe', 'ignore'] });
    sh.stdout.on('data', (d) => (text += String(d)));
    sh.on('exit', () => r(text));
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const f = out.slice(out.lastIndexOf(')') + 2).split(' ');
  const jobCpu = (Number(f[13]) + Number(f[14])) / 100;
  const profilerCpu = prof ? processCpu(prof.pid!) - p0 : 0;
  if (prof) {
    const done = new Promise<void>((r) => prof!.on('exit', () => r()));
    prof.kill('SIGINT');
    await done;
  }
  return { wall, jobCpu, profilerCpu };
}

async function slowdown(job: string): Promise<void> {
  log('slowdown: baseline vs flamewire -F 999 vs perf record -F 999 -a -g');
  // ~6 s per run: a profiler's one-time start-up work (reading maps and unwind tables of
  // the jobs' binaries) is part of the cost, but should not be most of it.
  const rounds = quick ? '10000' : '60000';
  const perfData = join(work, 'perf.data');
  const fwOut = join(work, 'slowdown.pb.gz');
  const configs: Record<string, string[] | undefined> = {
    baseline: undefined,
    flamewire: [cli, 'record', '-q', '-F', '999', '-o', fwOut],
    perf: ['perf', 'record', '-q', '-F', '999', '-a', '-g', '-o', perfData],
  };
  const runs: Record<string, JobCost[]> = { baseline: [], flamewire: [], perf: [] };
  // Many short runs, the three configurations interleaved, so that the machine's drift hits
  // all three alike.
  const reps = quick ? 1 : 7;
  for (let i = 0; i < reps; i++) {
    for (const [name, cmd] of Object.entries(configs)) runs[name].push(await timedJobs(job, rounds, cmd));
  }
  rmSync(perfData, { force: true });
  // Wall time on this shared VM swings by tens of percent from run to run (steal time); CPU
  // time does not. The cost of profiling a CPU-bound job on a busy machine is the extra CPU
  // the jobs burn (interrupts and BPF run on their time) plus what the profiler burns itself.
  const cost = (r: JobCost) => r.jobCpu + r.profilerCpu;
  // Paired: each profiled run against the baseline run next to it in time, so slow drift of
  // the machine cancels out; then the median over the repetitions.
  const rel = (k: string) => runs[k].map((r, i) => cost(r) / cost(runs.baseline[i]) - 1);
  const fwRel = rel('flamewire');
  const pfRel = rel('perf');
  const fw = median(fwRel);
  const pf = median(pfRel);
  const diff = median(fwRel.map((x, i) => x - pfRel[i]));
  const wins = fwRel.filter((x, i) => x <= pfRel[i]).length;
  const base = median(runs.baseline.map(cost));
  const wall = (k: string) => median(runs[k].map((r) => r.wall));
  const prof = (k: string) => median(runs[k].map((r) => r.profilerCpu));
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  add(
    `slowdown of ${cpus().length} CPU-bound jobs, whole machine -F 999 (CPU time: jobs + profiler), paired with the baseline run beside it`,
    `flamewire ${pct(fw)} (profiler ${prof('flamewire').toFixed(2)} s), perf ${pct(pf)} (profiler ${prof('perf').toFixed(2)} s); ` +
      `flamewire − perf ${pct(diff)}, flamewire cheaper in ${wins} of ${reps}; baseline ${base.toFixed(2)} CPU-s (spread ${spread(runs.baseline.map(cost))}); ` +
      `wall ${wall('baseline').toFixed(2)} / ${wall('flamewire').toFixed(2)} / ${wall('perf').toFixed(2)} s; median of ${reps}`,
    'no worse than perf',
    diff <= 0.01,
  );
}

async function peakRss(job: string): Promise<void> {
  const secs = quick ? 10 : 60;
  log(`peak RSS of a ${secs}-second whole-machine record (one job per core running)`);
  const jobs = cpus().map(() => spawn(job, ['100000000'], { stdio: 'ignore' }));
  const out = join(work, 'rss.pb.gz');
  const child = spawn(cli, ['record', '-q', '-d', `${secs}s`, '-o', out], { stdio: 'ignore' });
  let peak = 0;
  const poll = setInterval(() => {
    try {
      peak = Math.max(peak, peakRssKb(child.pid!));
    } catch {
      // exited
    }
  }, 100);
  await new Promise<void>((r) => child.on('exit', () => r()));
  clearInterval(poll);
  for (const j of jobs) j.kill('SIGKILL');
  add(`peak RSS, ${secs} s whole-machine record -F 99`, `${(peak / 1024).toFixed(1)} MB`, '≤ 100 MB', peak / 1024 <= 100);
}

/** Inclusive share of the true 75% caller, flamewire vs perf, on the accuracy workload. */
async function attribution(): Promise<void> {
  log('attribution vs perf on a frameless-leaf 75/25 workload');
  const bin = buildSplitWorkload(work);
  const folded = join(work, 'split.folded');
  execFileSync(process.execPath, [cli, 'record', '-q', '-F', '999', '-o', folded, '--', bin, 'c', '3']);
  let total = 0;
  let major = 0;
  for (const line of readFileSync(folded, 'utf8').split('\n')) {
    const sp = line.lastIndexOf(' ');
    if (sp < 0 || !line.includes('leaf_work')) continue;
    const n = Number(line.slice(sp + 1));
    total += n;
    if (line.includes('caller_major')) major += n;
  }
  const perfData = join(work, 'split.perf.data');
  spawnSync('perf', ['record', '-q', '-F', '999', '-g', '-o', perfData, '--', bin, 'c', '3'], { stdio: 'ignore' });
  const report = spawnSync('perf', ['report', '-i', perfData, '--stdio', '--children', '--no-demangle'], { encoding: 'utf8' }).stdout;
  const m = /^\s+([\d.]+)%\s+[\d.]+%.*\bcaller_major$/m.exec(report);
  rmSync(perfData, { force: true });
  const fwPct = total > 0 ? (100 * major) / total : 0;
  add('attribution: inclusive share of the 75% caller of a frameless leaf', `flamewire ${fwPct.toFixed(1)}%, perf -g ${m ? m[1] : '0.0'}%`, '75 ± 3', Math.abs(fwPct - 75) <= 3);
}

async function offCpu(): Promise<void> {
  // Per-run cost of the sched_switch program, as bpfCost does for the sampler: the job's
  // switches (our pid filter; in the flavour loaded, and in raw_tp), every user thread's (whole
  // machine), and switches the filter turns away (the job outside it: what profiling one
  // process costs the rest of the machine). The bpftrace peer runs beside the first, so the
  // ratio holds when the machine's speed does not.
  const costTrips = quick ? 20_000 : 100_000;
  const costReps = quick ? 1 : 3;
  log(`off-CPU BPF cost per context switch (ping-pong, ${costTrips.toLocaleString('en-US')} round trips)`);
  const cost: Record<SwitchFilter | 'rawTp', SwitchCostResult[]> = { job: [], rawTp: [], machine: [], none: [] };
  for (let i = 0; i < costReps; i++) {
    cost.job.push(await measureSwitchCost({ trips: costTrips, filter: 'job', peer: true }));
    cost.rawTp.push(await measureSwitchCost({ trips: costTrips, filter: 'job', flavour: 'raw_tp' }));
    cost.machine.push(await measureSwitchCost({ trips: costTrips, filter: 'machine' }));
    cost.none.push(await measureSwitchCost({ trips: costTrips, filter: 'none' }));
  }
  const ns = (f: keyof typeof cost) => median(cost[f].map((r) => r.nsPerSwitch));
  const share = (f: keyof typeof cost) => `${(100 * median(cost[f].map((r) => r.wantedShare))).toFixed(0)}%`;
  const peerRatios = cost.job.filter((r) => r.peerNsPerSwitch).map((r) => r.nsPerSwitch / r.peerNsPerSwitch!);
  const peer = median(cost.job.filter((r) => r.peerNsPerSwitch).map((r) => r.peerNsPerSwitch!));
  const job = `2-thread pipe ping-pong on one CPU, ${costTrips.toLocaleString('en-US')} round trips`;
  add(
    `off-CPU BPF cost per context switch (run_time_ns/run_cnt of sched_switch, ${cost.job[0].flavour}), ${job}, -p job`,
    `${ns('job').toFixed(0)} ns (${share('job')} of switches ended a block of the job); ` +
      (peerRatios.length
        ? `bpftrace offcputime (stack ids at switch-out, sum at switch-in, ≥ 100 µs) on the job at the same time ${peer.toFixed(0)} ns ` +
          `(ours ${(100 * median(peerRatios)).toFixed(0)}%; ratios ${peerRatios.map((x) => x.toFixed(2)).join(', ')}); `
        : '') +
      `${(costTrips / median(cost.job.map((r) => r.elapsedS))).toFixed(0)} round trips/s; median of ${costReps}`,
    '(reported)',
    undefined,
  );
  add(
    `  same, ${cost.rawTp[0].flavour} flavour (records parked in a tid-keyed hash map, not task storage)`,
    `${ns('rawTp').toFixed(0)} ns (${share('rawTp')} of switches ended a block of the job)`,
    '(reported)',
    undefined,
  );
  add(
    `  same, whole machine (every user thread's switches captured)`,
    `${ns('machine').toFixed(0)} ns (${share('machine')} of switches ended a block of a user thread)`,
    '(reported)',
    undefined,
  );
  add(`  same, the job outside the pid filter (what a switch of an unwanted thread pays)`, `${ns('none').toFixed(0)} ns`, '(reported)', undefined);

  // Slowdown, on the job's own timing of its round trips: baseline, on-CPU only, off-CPU at
  // the default threshold and at 0 (every block a record), all for the job's pid at -F 99.
  // Paired as in slowdown(), and the order turns round every repetition so that none of the
  // profiled runs always sits next to the baseline. A run is ~1 s and the machine's speed
  // swings by ±15% between neighbouring ones: nine pairs, for a median that holds to a few %.
  const trips = quick ? 30_000 : 120_000;
  const reps = quick ? 1 : 9;
  log(`off-CPU slowdown and records (ping-pong, ${trips.toLocaleString('en-US')} round trips, ${reps} repetitions)`);
  const configs: Array<[string, PingPongProfile | undefined]> = [
    ['baseline', undefined],
    ['onCpu', { offCpu: false }],
    ['offCpu', { offCpu: true }],
    ['offCpu0', { offCpu: true, offCpuThresholdNs: 0 }],
  ];
  const runs: Record<string, PingPongRun[]> = Object.fromEntries(configs.map(([k]) => [k, []]));
  for (let i = 0; i < reps; i++) {
    for (const [name, profile] of i % 2 ? [...configs].reverse() : configs) runs[name][i] = await timePingPong(trips, profile);
  }
  const rel = (k: string) => runs[k].map((r, i) => r.elapsedS / runs.baseline[i].elapsedS - 1);
  const wall = (k: string) => `${median(runs[k].map((r) => r.elapsedS)).toFixed(2)} s`;
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const offShare = median(runs.offCpu.map((r, i) => (r.elapsedS - runs.onCpu[i].elapsedS) / runs.baseline[i].elapsedS));
  add(
    `slowdown of the ping-pong (${trips.toLocaleString('en-US')} round trips on one CPU), -p job -F 99, elapsed time paired with the baseline run beside it`,
    `off-CPU on ${pct(median(rel('offCpu')))} (${wall('offCpu')}), on-CPU only ${pct(median(rel('onCpu')))} (${wall('onCpu')}); ` +
      `off-CPU's share ${pct(offShare)} of the baseline; baseline ${wall('baseline')} (spread ${spread(runs.baseline.map((r) => r.elapsedS))}); median of ${reps}`,
    '(reported)',
    undefined,
  );
  const rate = (k: string, f: (r: PingPongRun) => number) => median(runs[k].map((r) => f(r) / r.elapsedS));
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  add(
    `off-CPU records reaching user space, same runs: default threshold (${DEFAULT_THRESHOLD_NS / 1000} µs) vs 0`,
    `${DEFAULT_THRESHOLD_NS / 1000} µs: ${n(rate('offCpu', (r) => r.offCpuRecords))} records/s, ${n(rate('offCpu', (r) => r.offCpuShort))} shorter blocks/s only counted; ` +
      `0: ${n(rate('offCpu0', (r) => r.offCpuRecords))} records/s (${(rate('offCpu0', (r) => r.bytesRead) / 1e6).toFixed(0)} MB/s of batches), ` +
      `another ${n(rate('offCpu0', (r) => r.offCpuRingBufferFull))}/s dropped (ring buffer full), job ${pct(median(rel('offCpu0')))} (${wall('offCpu0')})`,
    '(reported)',
    undefined,
  );
}

async function goCost(): Promise<void> {
  // What reading the goroutine (id, then three pprof labels) adds to a sample of a Go process.
  const seconds = quick ? 1 : 3;
  const reps = quick ? 1 : 3;
  log(`Go: BPF cost per sample with goroutine ids and labels (${reps} pairs of ${seconds} s)`);
  const bin = buildGoJob(work);
  const runs = [];
  for (let i = 0; i < reps; i++) runs.push(await measureGoCost(bin, seconds));
  const plain = median(runs.map((r) => r.plainNs));
  const go = median(runs.map((r) => r.goNs));
  add(
    'Go: BPF cost per sample (run_time_ns/run_cnt), 2 goroutines under 3 pprof labels, -F 999, -p job',
    `${go.toFixed(0)} ns reading the goroutine id and labels vs ${plain.toFixed(0)} ns without (+${(go - plain).toFixed(0)} ns; ` +
      `pairs ${runs.map((r) => `${r.goNs.toFixed(0)}/${r.plainNs.toFixed(0)}`).join(', ')}); median of ${reps}`,
    '(reported)',
    undefined,
  );
}

async function goWaits(): Promise<void> {
  // Slowdown of a goroutine-switch-heavy Go program with goroutine waits on, paired with a
  // baseline run beside it (the order turns round every repetition), at the record default
  // (-F 99: ~100 walks/s) and at -F 999 (~1000 walks/s). Then the design the issue proposed,
  // uprobes on runtime.gopark and runtime.ready (here in bpftrace, counting only: the least a
  // probe can do), on fewer round trips: a trap per goroutine switch.
  const trips = quick ? 500_000 : 3_000_000;
  const reps = quick ? 1 : 7;
  log(`Go goroutine waits: slowdown of a channel ping-pong (${trips.toLocaleString('en-US')} round trips, ${reps} repetitions)`);
  const configs: Array<[string, GoWaitsMode]> = [
    ['baseline', { kind: 'baseline' }],
    ['F99', { kind: 'flamewire', frequency: 99 }],
    ['F99threads', { kind: 'flamewire', frequency: 99, goWaits: false }],
    ['F999', { kind: 'flamewire', frequency: 999 }],
  ];
  const runs: Record<string, GoWaitsRun[]> = Object.fromEntries(configs.map(([k]) => [k, []]));
  for (let i = 0; i < reps; i++) {
    for (const [name, mode] of i % 2 ? [...configs].reverse() : configs) runs[name]![i] = await timeGoPingPong(trips, mode);
  }
  const rel = (k: string) => median(runs[k]!.map((r, i) => r.nsPerTrip / runs.baseline![i]!.nsPerTrip - 1));
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`;
  const per = (k: string, f: (r: GoWaitsRun) => number, g: (r: GoWaitsRun) => number) => median(runs[k]!.map((r) => f(r) / Math.max(1, g(r))));
  const base = median(runs.baseline!.map((r) => r.nsPerTrip));
  add(
    `Go goroutine waits: slowdown of a channel ping-pong beside 1,000 parked goroutines (${trips.toLocaleString('en-US')} round trips), --off-cpu, -p job, paired with the baseline beside it`,
    `-F 99 ${pct(rel('F99'))} (without goroutine waits ${pct(rel('F99threads'))}), -F 999 ${pct(rel('F999'))}; baseline ${base.toFixed(0)} ns per round trip (spread ${spread(runs.baseline!.map((r) => r.nsPerTrip))}); median of ${reps}`,
    '≤ 5%',
    rel('F99') <= 0.05,
  );
  const walks = (k: string) =>
    `${Math.round(per(k, (r) => r.walks * 1e9, (r) => r.wallNs))} walks/s of ${per(k, (r) => r.visited, (r) => r.walks).toFixed(0)} of ~1,000 goroutines, ` +
    `${(per(k, (r) => r.walkNs, (r) => r.walks) / 1000).toFixed(0)} µs each (${per(k, (r) => r.walkNs, (r) => r.visited).toFixed(0)} ns per goroutine); ` +
    `profiler CPU ${(100 * per(k, (r) => r.cpuNs, (r) => r.wallNs)).toFixed(1)}% of one core`;
  add(
    '  the walks: rate, size, run time of the iterator program (run_time_ns), flamewire process CPU',
    `-F 99: ${walks('F99')} (${(100 * per('F99threads', (r) => r.cpuNs, (r) => r.wallNs)).toFixed(1)}% without goroutine waits); -F 999: ${walks('F999')}`,
    '(reported)',
    undefined,
  );
  const uTrips = quick ? 20_000 : 100_000;
  const uprobes: number[] = [];
  const beside: number[] = [];
  for (let i = 0; i < (quick ? 1 : 3); i++) {
    beside.push((await timeGoPingPong(uTrips, { kind: 'baseline' })).nsPerTrip);
    uprobes.push((await timeGoPingPong(uTrips, { kind: 'uprobes' })).nsPerTrip);
  }
  add(
    `  the uprobe design instead: bpftrace counting runtime.gopark and runtime.ready entries (${uTrips.toLocaleString('en-US')} round trips)`,
    `${median(uprobes).toFixed(0)} ns per round trip vs ${median(beside).toFixed(0)} ns without (${(median(uprobes) / median(beside)).toFixed(0)}× slower)`,
    '(reported)',
    undefined,
  );
}

async function exportCost(): Promise<void> {
  const [procs, stacks] = quick ? [100, 100] : [1000, 1000];
  log(`export: encoding a window of ${procs} processes × ${stacks} stacks, OTLP vs pprof`);
  const c = measureExportCost(procs, stacks);
  const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;
  add(
    `export: one window of ${procs.toLocaleString('en-US')} processes × ${stacks.toLocaleString('en-US')} stacks (20 frames), encode time and bytes`,
    `OTLP request ${c.otlpMs.toFixed(0)} ms, ${mb(c.otlpBytes)} (${mb(c.otlpGzipBytes)} gzipped); ` +
      `pprof per process ${c.pprofPerProcessMs.toFixed(0)} ms, ${mb(c.pprofPerProcessBytes)} gzipped in all; one pprof for the window ${c.pprofWholeMs.toFixed(0)} ms, ${mb(c.pprofWholeBytes)}`,
    '(reported)',
    undefined,
  );
}

async function agentCost(): Promise<void> {
  const minutes = Number(process.env.FLAMEWIRE_BENCH_AGENT_MINUTES ?? (quick ? 1 : 10));
  const backends = (process.env.FLAMEWIRE_BENCH_AGENT_BACKENDS?.split(',') ?? ['up', 'down', 'churn']) as AgentScenario[];
  for (const backend of backends) {
    const what = backend === 'churn' ? 'backend up, a short-lived process started every 250 ms' : `backend ${backend}`;
    log(`agent: ${minutes} min of whole-machine profiling at 19 Hz, ${what}`);
    const a = await measureAgent(backend, minutes * 60);
    add(
      `agent: whole machine, -F 19, 15 s windows, ${minutes} min, ${what}: peak RSS, CPU of one core`,
      `${a.peakRssMb.toFixed(1)} MB, ${(a.cpuShare * 100).toFixed(2)}% (${backend !== 'down' ? `${a.windowsSent} windows delivered` : `${a.retries} failed attempts logged, windows kept in the queue`})`,
      // Under churn the CPU is mostly the new processes' maps and tables: reported, not judged.
      backend === 'churn' ? '≤ 100 MB' : '≤ 100 MB, ≤ 1%',
      a.peakRssMb <= 100 && (backend === 'churn' || a.cpuShare <= 0.01),
    );
  }
}

function printTable(): void {
  const head = { what: 'benchmark', value: 'measured', target: 'target', verdict: '' };
  const all = [head, ...rows];
  const w = (k: keyof Row) => Math.max(...all.map((r) => r[k].length));
  const line = (r: Row) => `| ${r.what.padEnd(w('what'))} | ${r.value.padEnd(w('value'))} | ${r.target.padEnd(w('target'))} | ${r.verdict.padEnd(w('verdict'))} |`;
  const sep = `|${'-'.repeat(w('what') + 2)}|${'-'.repeat(w('value') + 2)}|${'-'.repeat(w('target') + 2)}|${'-'.repeat(w('verdict') + 2)}|`;
  process.stdout.write([line(head), sep, ...rows.map(line)].join('\n') + '\n');
}

async function unwindTables(): Promise<void> {
  log('unwind tables: converting .eh_frame into kernel rows');
  const reps = quick ? 1 : 5;
  const files = tableFiles();
  // A worker converts many files: time them warm (the first file would pay for V8's JIT).
  for (const [name, path] of files) measureTableCost(name, path, 1);
  const costs = files.map(([name, path]) => measureTableCost(name, path, reps));
  let totalBytes = 0;
  for (const c of costs) {
    const mb = c.ehFrameBytes / (1 << 20);
    totalBytes += c.mapBytes;
    add(
      `Unwind tables: conversion of ${c.name} (${(c.ehFrameBytes / 1024).toFixed(0)} KiB of CFI), median of ${reps}`,
      `${(c.ms / mb).toFixed(0)} ms per MB (${c.ms.toFixed(0)} ms); ${c.rows} rows, ${(c.mapBytes / 1024).toFixed(0)} KiB in the maps`,
      '(reported)',
      undefined,
    );
  }
  add(`Unwind tables: map bytes for ${costs.map((c) => c.name).join(' + ')}`, `${(totalBytes / (1 << 20)).toFixed(1)} MiB`, '(reported)', undefined);
  const live = await measureLiveTables(work);
  const mib = (b: number) => `${(b / (1 << 20)).toFixed(1)} MiB`;
  add(
    `Unwind tables in the kernel while ${live.names.join(', ')} run`,
    `${mib(live.usedBytes)} used (${live.files} files, ${live.rows.toLocaleString('en-US')} rows) of ${mib(live.allocatedBytes)} allocated; converted in ${live.convertMs.toFixed(0)} ms of worker time`,
    '(reported)',
    undefined,
  );
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (it loads BPF programs)\n');
    process.exit(1);
  }
  const job = build();
  const only = process.env.FLAMEWIRE_BENCH_ONLY?.split(',');
  const benches: Record<string, () => Promise<void>> = {
    bpf: bpfCost,
    throughput: () => throughput(job),
    attribution,
    slowdown: () => slowdown(job),
    rss: () => peakRss(job),
    offcpu: offCpu,
    go: goCost,
    gowaits: goWaits,
    export: exportCost,
    agent: agentCost,
    tables: unwindTables,
    peers: () => peers(add, log, quick),
  };
  for (const [name, run] of Object.entries(benches)) if (!only || only.includes(name)) await run();
  printTable();
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack}\n`);
  process.exit(1);
});
