// Off-CPU profiling on a switch-heavy job: what the sched_switch program costs per context
// switch, how much it slows the job, and how many records reach user space. Called by the
// benchmark runner; prints nothing.
//
// The job is two threads of one process passing a byte back and forth through a pair of pipes
// for a fixed number of round trips, both pinned to one CPU: every round trip is then two
// direct thread-to-thread switches, with no idle task in between and no cross-CPU wake-up (an
// IPI costs ~30 µs on this VM and would be most of the job). It is as switch-bound as a job
// gets: the sched_switch program runs twice per round trip, in the job's own time.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpftracePeer } from './bpf-cost.js';
import { enableBpfStats, openOnCpuSampler, type BpfProgramStats, type OnCpuSampler, type OnCpuStats } from '../src/native.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The addon's default offCpuThresholdNs (FW_DEFAULT_OFF_CPU_THRESHOLD_NS), for the peer. */
export const DEFAULT_THRESHOLD_NS = 100_000;

// argv: round trips, CPU. Waits for one byte on stdin (the bench attaches the profiler
// first), then prints the nanoseconds the round trips took.
const PING_PONG_SOURCE = `
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static int ping[2], pong[2];
static long trips;
static void *echo(void *arg) {
  char c;
  for (long i = 0; i < trips; i++)
    if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1) exit(2);
  return arg;
}
int main(int argc, char **argv) {
  cpu_set_t cpu;
  pthread_t t;
  struct timespec t0, t1;
  char c;
  if (argc != 3) return 1;
  trips = atol(argv[1]);
  CPU_ZERO(&cpu);
  CPU_SET(atoi(argv[2]), &cpu);
  if (sched_setaffinity(0, sizeof(cpu), &cpu) || pipe(ping) || pipe(pong) || pthread_create(&t, NULL, echo, NULL)) return 1;
  if (read(0, &c, 1) != 1) return 1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < trips; i++)
    if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) return 2;
  clock_gettime(CLOCK_MONOTONIC, &t1);
  pthread_join(t, NULL);
  printf("%lld\\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  return 0;
}
`;

let pingPongBin: string | undefined;

function buildPingPong(): string {
  if (pingPongBin) return pingPongBin;
  const dir = join(repoRoot, 'bench', '.work');
  mkdirSync(dir, { recursive: true });
  const src = join(dir, 'ping-pong.c');
  const bin = join(dir, 'ping-pong');
  writeFileSync(src, PING_PONG_SOURCE);
  execFileSync('gcc', ['-O2', '-fno-omit-frame-pointer', '-pthread', '-o', bin, src], { stdio: 'pipe' });
  pingPongBin = bin;
  return bin;
}

/**
 * Starts the job (pinned to the last CPU, waiting), lets `attach` set up around its pid, runs
 * the round trips, and returns the job's own timing of them. `attach` returns what to do once
 * the job has exited; that runs even when the job failed.
 */
async function runPingPong<T>(
  trips: number,
  attach: (pid: number) => Promise<() => T> | (() => T),
): Promise<{ elapsedS: number; after: T }> {
  const bin = buildPingPong();
  const child = spawn(bin, [String(trips), String(cpus().length - 1)], { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  const closed = new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  let detach: (() => T) | undefined;
  try {
    if (child.pid === undefined) throw new Error(`offcpu: cannot start ${bin}`);
    detach = await attach(child.pid);
    child.stdin.end('g');
    const code = await closed;
    const after = detach();
    detach = undefined;
    const ns = Number(out.trim());
    if (code !== 0 || !(ns > 0)) throw new Error(`offcpu: ${bin} ${trips} failed (exit ${code})`);
    return { elapsedS: ns / 1e9, after };
  } finally {
    // Whatever failed (loading, attaching), the job must not outlive the measurement.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await closed;
    if (detach) {
      try {
        detach();
      } catch {
        // the first error is the one to report
      }
    }
  }
}

/**
 * The peer: the libbpf-tools offcputime design written in bpftrace, for the same process: at
 * switch-out the thread's time and kernel and user stack ids are kept by tid; at switch-in,
 * a block of at least the threshold is summed into a map keyed by the stacks. (A kprobe on
 * finish_task_switch, as in the book's offcputime.bt, cannot attach here: no kprobe_events.)
 */
function startPeer(pid: number, thresholdNs: number): Promise<BpftracePeer> {
  const script = `tracepoint:sched:sched_switch {
  if (pid == ${pid}) { @start[tid] = nsecs; @kstack[tid] = kstack; @ustack[tid] = ustack; }
  $next = args->next_pid;
  $t0 = @start[$next];
  if ($t0 != 0) {
    if (nsecs - $t0 >= ${thresholdNs}) { @off[@kstack[$next], @ustack[$next]] = sum(nsecs - $t0); }
    delete(@start[$next]);
  }
}`;
  return BpftracePeer.run(script, 'tracepoint');
}

export type SwitchFilter = 'job' | 'machine' | 'none';

export interface SwitchCostResult {
  /** Runs of the sched_switch program while the job ran: every switch on every CPU. */
  runCount: number;
  /** run_time_ns / run_cnt over those runs. */
  nsPerSwitch: number;
  /** Switch-ins that ended a block of a wanted thread (emitted + short) / runCount. */
  wantedShare: number;
  /** Off-CPU flavour loaded (tp_btf or raw_tp). */
  flavour: string;
  /** The same for the bpftrace peer on the job, run at the same time (with `peer`). */
  peerNsPerSwitch?: number;
  elapsedS: number;
}

/** The off-CPU program's cost per run (kernel.bpf_stats_enabled) over one run of the job. */
export async function measureSwitchCost(opts: {
  trips: number;
  filter: SwitchFilter;
  /** 'raw_tp' loads the hash-map flavour even where tp_btf works. */
  flavour?: 'auto' | 'raw_tp';
  /** Run the bpftrace peer on the job at the same time and measure it too. */
  peer?: boolean;
}): Promise<SwitchCostResult> {
  const stats = enableBpfStats();
  try {
    const { elapsedS, after } = await runPingPong(opts.trips, async (pid) => {
      let peer: BpftracePeer | undefined;
      let s: OnCpuSampler | undefined;
      let flavour: string, p0: BpfProgramStats['offCpu'], m0: OnCpuStats, peer0: { ns: number; runs: number } | undefined;
      try {
        if (opts.peer) peer = await startPeer(pid, DEFAULT_THRESHOLD_NS);
        const pids = opts.filter === 'job' ? [pid] : opts.filter === 'none' ? [] : undefined;
        s = openOnCpuSampler({ frequency: 99, pids, offCpu: true, offCpuFlavour: opts.flavour });
        s.start(() => {});
        flavour = s.info().offCpu ?? 'none';
        // Deltas over the job's run: the load and the idle moments around it are left out.
        p0 = s.programStats().offCpu;
        m0 = s.stats();
        peer0 = peer?.stats();
      } catch (e) {
        s?.stop();
        peer?.stop();
        throw e;
      }
      return () => {
        try {
          const p1 = s!.programStats().offCpu;
          const peer1 = peer?.stats();
          s!.stop();
          const m1 = s!.stats();
          const runs = Number(p1.runCount - p0.runCount);
          const wanted = m1.offCpuRecords - m0.offCpuRecords + (m1.offCpuShort - m0.offCpuShort);
          const peerRuns = peer0 && peer1 ? peer1.runs - peer0.runs : 0;
          return {
            runCount: runs,
            nsPerSwitch: runs > 0 ? Number(p1.runTimeNs - p0.runTimeNs) / runs : 0,
            wantedShare: runs > 0 ? wanted / runs : 0,
            flavour,
            peerNsPerSwitch: peerRuns > 0 ? (peer1!.ns - peer0!.ns) / peerRuns : undefined,
          };
        } finally {
          peer?.stop();
        }
      };
    });
    return { ...after, elapsedS };
  } finally {
    stats.close();
  }
}

/** How the job is profiled in one timed run: not at all, on-CPU only, or off-CPU as well. */
export interface PingPongProfile {
  offCpu: boolean;
  offCpuThresholdNs?: number;
}

export interface PingPongRun {
  /** The job's own timing of its round trips (the profiler's load is not in it). */
  elapsedS: number;
  /** The sampler's counters (it wants only the job's threads); zero without a profiler. */
  offCpuRecords: number;
  offCpuShort: number;
  offCpuRingBufferFull: number;
  /** Bytes of the batches handed to JS (the few on-CPU samples included). */
  bytesRead: number;
}

/** One timed run of the job, under a sampler for its pid at -F 99 when `profile` is given. */
export async function timePingPong(trips: number, profile?: PingPongProfile): Promise<PingPongRun> {
  const zero = { offCpuRecords: 0, offCpuShort: 0, offCpuRingBufferFull: 0, bytesRead: 0 };
  const { elapsedS, after } = await runPingPong(trips, (pid) => {
    if (!profile) return () => zero;
    const sampler = openOnCpuSampler({ frequency: 99, pids: [pid], ...profile });
    let bytes = 0;
    try {
      sampler.start((b) => (bytes += b.length));
    } catch (e) {
      sampler.stop();
      throw e;
    }
    return () => {
      sampler.stop();
      const s: OnCpuStats = sampler.stats();
      return {
        offCpuRecords: s.offCpuRecords,
        offCpuShort: s.offCpuShort,
        offCpuRingBufferFull: s.offCpuRingBufferFull,
        bytesRead: bytes,
      };
    };
  });
  return { elapsedS, ...after };
}
