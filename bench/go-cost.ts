// BPF cost of reading the goroutine on every sample of a Go process: the same Go job sampled
// with and without its registration in go_procs (bpf/oncpu.h fw_go_proc), back to back, so
// the difference is what the goroutine id and pprof labels cost. Prints nothing.

import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { goProcessOffsets } from '../src/go-processes.js';
import { enableBpfStats, openOnCpuSampler } from '../src/native.js';
import { GO_SPIN } from '../test/workloads.js';


// Two goroutines burn CPU for `seconds` under three pprof labels, as a request handler would.
const GO_JOB = `package main

import (
	"context"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

${GO_SPIN}
func main() {
	seconds, _ := strconv.ParseFloat(os.Args[1], 64)
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			labels := pprof.Labels("endpoint", "/api/v1/users", "tenant", "acme", "region", "eu-west-1")
			pprof.Do(context.Background(), labels, func(context.Context) {
				t := time.Now()
				for time.Since(t).Seconds() < seconds {
					sink += spin(100000)
				}
			})
		}()
	}
	wg.Wait()
}
`;

/** Builds the Go job (the installed Go) into `work`; returns its path. */
export function buildGoJob(work: string): string {
  const src = join(work, 'gojob-src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'main.go'), GO_JOB);
  writeFileSync(join(src, 'go.mod'), 'module example.com/gojob\n\ngo 1.21\n');
  const bin = join(work, 'gojob');
  execFileSync('go', ['build', '-o', bin, '.'], { cwd: src, stdio: 'pipe', env: { ...process.env, GOTOOLCHAIN: 'local' } });
  return bin;
}

export interface GoCostRun {
  /** run_time_ns / run_cnt of the sampling program. */
  plainNs: number;
  goNs: number;
}

/** One pair: the job sampled at -F 999 for `seconds` unregistered, then registered. */
export async function measureGoCost(bin: string, seconds: number): Promise<GoCostRun> {
  const once = async (register: boolean): Promise<number> => {
    const child = spawn(bin, [String(seconds + 1)], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const sampler = openOnCpuSampler({ frequency: 999, pids: [child.pid!] });
      if (register) {
        const go = goProcessOffsets(child.pid!);
        if (!go) throw new Error('go-cost: the Go job was not recognized');
        sampler.setGoProcess(child.pid!, go);
      }
      sampler.start(() => undefined);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      sampler.stop();
      const p = sampler.programStats();
      return Number(p.runTimeNs) / Math.max(1, Number(p.runCount));
    } finally {
      child.kill('SIGKILL');
    }
  };
  const stats = enableBpfStats();
  try {
    return { plainNs: await once(false), goNs: await once(true) };
  } finally {
    stats.close();
  }
}

