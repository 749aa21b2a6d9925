// Goroutine waits on a goroutine-switch-heavy Go program: how much walking its goroutines
// (bpf/gowait.bpf.c) slows it, what a walk costs, and what the alternative the issue named
// (uprobes on the scheduler) costs the same program. Called by the benchmark runner; prints
// nothing.
//
// The job: two goroutines pass a value back and forth through a pair of unbuffered channels
// for a fixed number of round trips (each one two goroutine switches inside the Go scheduler,
// usually with no thread switch at all), beside 1,000 goroutines parked in a channel receive,
// as a server's idle connections would be: the walker has something to walk. It times its own
// round trips.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpftracePeer } from './bpf-cost.js';
import { goProcessOffsets } from '../src/go-processes.js';
import { enableBpfStats, openOnCpuSampler } from '../src/native.js';
import { goWaitPeriodNs, goWaitVisits } from '../src/record.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

// argv: round trips. Waits for one byte on stdin (the bench attaches first), then prints the
// nanoseconds the round trips took.
const GO_PING_PONG = `package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

//go:noinline
func idle(ch chan int) { <-ch }

func main() {
	trips, _ := strconv.Atoi(os.Args[1])
	never := make(chan int)
	for i := 0; i < 1000; i++ {
		go idle(never)
	}
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
	}()
	os.Stdin.Read(make([]byte, 1))
	t := time.Now()
	for i := 0; i < trips; i++ {
		ping <- i
		<-pong
	}
	fmt.Println(time.Since(t).Nanoseconds())
}
`;

let bin: string | undefined;

export function buildGoPingPong(): string {
  if (bin) return bin;
  const dir = join(repoRoot, 'bench', '.work', 'go-ping-pong-src');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'main.go'), GO_PING_PONG);
  writeFileSync(join(dir, 'go.mod'), 'module example.com/gopingpong\n\ngo 1.21\n');
  const out = join(repoRoot, 'bench', '.work', 'go-ping-pong');
  execFileSync('go', ['build', '-o', out, '.'], { cwd: dir, stdio: 'pipe', env: { ...process.env, GOTOOLCHAIN: 'local' } });
  bin = out;
  return out;
}

/** How the job is watched in one run. */
export type GoWaitsMode =
  | { kind: 'baseline' }
  /** flamewire's sampler with off-CPU time, and goroutine waits unless told not to, for the job's pid. */
  | { kind: 'flamewire'; frequency: number; goWaits?: boolean }
  /** bpftrace counting entries of runtime.gopark and runtime.ready: the uprobe design. */
  | { kind: 'uprobes' };

export interface GoWaitsRun {
  /** The job's own timing, per round trip. */
  nsPerTrip: number;
  /** flamewire: walks, goroutines looked at, records, and the walk program's run time. */
  walks: number;
  visited: number;
  records: number;
  walkNs: number;
  /** flamewire: CPU time of this process (the walker and reader threads) while it watched. */
  cpuNs: number;
  /** How long it watched. */
  wallNs: number;
}

/** One run of `trips` round trips of the job, watched as `mode` says. */
export async function timeGoPingPong(trips: number, mode: GoWaitsMode): Promise<GoWaitsRun> {
  const job = buildGoPingPong();
  const child = spawn(job, [String(trips)], { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  const closed = new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  let stop: (() => Omit<GoWaitsRun, 'nsPerTrip'>) | undefined;
  const none = { walks: 0, visited: 0, records: 0, walkNs: 0, cpuNs: 0, wallNs: 0 };
  try {
    const pid = child.pid;
    if (pid === undefined) throw new Error(`go-waits: cannot start ${job}`);
    // Let it park its 1,000 goroutines.
    await new Promise((r) => setTimeout(r, 300));
    if (mode.kind === 'flamewire') {
      const stats = enableBpfStats();
      // As `record --off-cpu -F frequency` sets it up.
      const sampler = openOnCpuSampler({
        frequency: mode.frequency,
        pids: [pid],
        offCpu: true,
        goWaits: mode.goWaits !== false,
        goWaitPeriodNs: goWaitPeriodNs(mode.frequency),
        goWaitMaxVisits: goWaitVisits(mode.frequency),
      });
      sampler.start(() => undefined);
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const go = goProcessOffsets(pid);
      if (!go?.allgs) throw new Error('go-waits: the job was not recognized as Go with allgs');
      // Registered either way: on-CPU samples then read goroutine ids in both.
      sampler.setGoProcess(pid, go);
      stop = () => {
        sampler.stop();
        const s = sampler.stats();
        const p = sampler.programStats();
        stats.close();
        const cpu = process.cpuUsage(cpu0);
        return {
          walks: s.goWaitWalks,
          visited: s.goWaitVisited,
          records: s.goWaitRecords,
          walkNs: Number(p.goWaits.runTimeNs),
          cpuNs: (cpu.user + cpu.system) * 1000,
          wallNs: Number(process.hrtime.bigint() - t0),
        };
      };
    } else if (mode.kind === 'uprobes') {
      const peer = await BpftracePeer.run(`uprobe:${job}:runtime.gopark { @parks = count(); } uprobe:${job}:runtime.ready { @readies = count(); }`, 'kprobe');
      stop = () => {
        peer.stop();
        return none;
      };
    } else {
      stop = () => none;
    }
    child.stdin.end('g');
    const code = await closed;
    const after = stop();
    stop = undefined;
    const ns = Number(out.trim());
    if (code !== 0 || !(ns > 0)) throw new Error(`go-waits: ${job} ${trips} failed (exit ${code})`);
    return { nsPerTrip: ns / trips, ...after };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await closed;
    try {
      stop?.();
    } catch {
      // the first error is the one to report
    }
  }
}
