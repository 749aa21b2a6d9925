// Goroutine ids and pprof labels on samples of Go processes: the BPF sampler reads the running
// goroutine (g from thread-local storage, then g.m.curg) with the runtime offsets user space
// found for the binary (DWARF, or the per-release table for stripped binaries). Three
// goroutines burn CPU in three functions, each under its own pprof.Do labels: each function's
// samples must carry one goroutine id, its own, and its labels. Labels live in a map up to
// Go 1.23 and in a sorted slice from 1.24: both are checked.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { Profile as PprofProfile } from 'pprof-format';
import { goBinaryOffsets } from '../src/go-processes.js';
import { buildGo, repoRoot, workDir } from './helpers.js';
import { GO_SPIN } from './workloads.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('goroutines');

const PROGRAM = `package main

import (
	"context"
	"fmt"
	"runtime/pprof"
	"sync"
	"time"
)

${GO_SPIN}
//go:noinline
func burnA() { sink += spin(200000) }

//go:noinline
func burnB() { sink += spin(200000) }

//go:noinline
func burnC() { sink += spin(200000) }

func main() {
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i, f := range []func(){burnA, burnB, burnC} {
		wg.Add(1)
		name := string(rune('a' + i))
		go func(f func()) {
			defer wg.Done()
			pprof.Do(context.Background(), pprof.Labels("fn", "burn"+name, "team", "profiling"), func(context.Context) {
				t := time.Now()
				for time.Since(t) < 1500*time.Millisecond {
					f()
				}
			})
			mu.Lock()
			mu.Unlock()
		}(f)
	}
	wg.Wait()
	fmt.Println("done", sink&1)
}
`;

interface GoSample {
  frames: string[];
  goid: number;
  labels: Record<string, string>;
  count: number;
}

function recordGo(bin: string): GoSample[] {
  const out = join(dir, `out-${Date.now()}-${Math.random().toString(36).slice(2)}.pb.gz`);
  const r = spawnSync(process.execPath, [cli, 'record', '-q', '-F', '499', '-o', out, '--', bin], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `flamewire record failed: ${r.stderr}`);
  const p = PprofProfile.decode(gunzipSync(readFileSync(out)));
  const s = (i: unknown): string => p.stringTable.strings[Number(i)]!;
  const fn = new Map(p.function.map((f) => [Number(f.id), s(f.name)]));
  const loc = new Map(p.location.map((l) => [Number(l.id), l.line.map((ln) => fn.get(Number(ln.functionId))!)]));
  return p.sample.map((smp) => ({
    frames: smp.locationId.flatMap((id) => loc.get(Number(id))!),
    goid: Number(smp.label.find((l) => s(l.key) === 'goroutine')?.num ?? 0),
    labels: Object.fromEntries(smp.label.filter((l) => Number(l.str) !== 0).map((l) => [s(l.key), s(l.str)])),
    count: Number(smp.value[0]),
  }));
}

function assertOwnGoroutines(samples: GoSample[]): void {
  const ids = new Map<string, Set<number>>();
  for (const fn of ['main.burnA', 'main.burnB', 'main.burnC']) {
    const mine = samples.filter((x) => x.frames.includes(fn));
    const total = mine.reduce((n, x) => n + x.count, 0);
    assert.ok(total >= 100, `too few samples in ${fn}: ${total}`);
    ids.set(fn, new Set(mine.map((x) => x.goid)));
  }
  for (const [fn, set] of ids) {
    assert.equal(set.size, 1, `${fn} ran on goroutines ${[...set].join(', ')}; expected exactly one`);
    assert.ok(![...set].includes(0), `${fn}: samples without a goroutine id`);
  }
  const all = [...ids.values()].map((s) => [...s][0]);
  assert.equal(new Set(all).size, 3, `the three functions share goroutine ids: ${all.join(', ')}`);
  // Each function ran under its own labels (pprof.Do), and every sample of it has them.
  for (const fn of ['burnA', 'burnB', 'burnC']) {
    for (const x of samples.filter((y) => y.frames.includes(`main.${fn}`))) {
      assert.equal(x.labels.fn, fn.toLowerCase(), `labels of a ${fn} sample: ${JSON.stringify(x.labels)}`);
      assert.equal(x.labels.team, 'profiling');
    }
  }
}

describe('goroutine ids', () => {
  it('labels each sample with the goroutine that ran it (binary with DWARF)', () => {
    const bin = buildGo(dir, 'goburn', PROGRAM);
    assertOwnGoroutines(recordGo(bin));
  });

  it('does the same for a stripped binary (offsets from the per-release table)', () => {
    const bin = buildGo(dir, 'goburn-stripped', PROGRAM, ['-ldflags=-s -w']);
    assertOwnGoroutines(recordGo(bin));
  });

  it('reads labels kept in a map (Go 1.21-1.23) as well as in a slice', () => {
    const bin = buildGo(dir, 'goburn-go121', PROGRAM, [], { GOTOOLCHAIN: 'go1.21.13' });
    assertOwnGoroutines(recordGo(bin));
  });

  it('finds the offsets of Go binaries, stripped or not, and none for other binaries', () => {
    const plain = goBinaryOffsets(buildGo(dir, 'goburn-offsets', PROGRAM));
    const stripped = goBinaryOffsets(buildGo(dir, 'goburn-offsets-stripped', PROGRAM, ['-ldflags=-s -w']));
    assert.ok(plain !== undefined && plain.gTlsOffset === -8, JSON.stringify(plain));
    // Both know where their goroutines are listed; -s -w moves the data a little (its build
    // info records the flags), so the addresses may differ.
    assert.ok(plain.allgs !== undefined && stripped?.allgs !== undefined, JSON.stringify({ plain, stripped }));
    assert.deepEqual({ ...stripped, allgs: 0 }, { ...plain, allgs: 0 });
    // node: not Go. (Recognized by its sections alone: the full probe would scan its segments.)
    assert.equal(goBinaryOffsets(process.execPath), undefined);
  });

  it('shows goroutine as a numeric tag in go tool pprof', () => {
    const bin = buildGo(dir, 'goburn-tags', PROGRAM);
    const out = join(dir, 'tags.pb.gz');
    const r = spawnSync(process.execPath, [cli, 'record', '-q', '-F', '499', '-o', out, '--', bin], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, r.stderr);
    const tags = execFileSync('go', ['tool', 'pprof', '-symbolize=none', '-tags', out], { encoding: 'utf8', env: { ...process.env, GOTOOLCHAIN: 'local' } });
    assert.match(tags, /goroutine: Total/);
  });
});
