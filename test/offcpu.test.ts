// Off-CPU time against workloads whose true split of blocked time is known (see
// test/fixtures/offcpu-workload.c): threads block 3:1 under two functions, in nanosleep, a
// pipe read and a contended mutex, one or several threads at once. Each workload also times
// itself inside those functions: on a loaded machine wake-up delays move the real split away
// from the nominal 75/25, and the profile must match the real one. `record --off-cpu` must
// put the blocked time under the right function (share within ±3 points of the measured one,
// which itself is within ±10 of 75%), and the blocked time of a thread that does nothing but
// wait must add up to its wall time within 10%. Both kernel flavours are checked: tp_btf
// (task storage) and the raw_tp fallback (a tid-keyed map).

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { buildC, repoRoot, workDir } from './helpers.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('offcpu');
const bin = buildC(dir, 'offcpu-workload', readFileSync(join(repoRoot, 'test', 'fixtures', 'offcpu-workload.c'), 'utf8'), [
  '-O2',
  '-g',
  '-fno-omit-frame-pointer',
  '-pthread',
]);
const SPLIT_TOLERANCE = 3;
const TOTAL_TOLERANCE = 0.1;

interface OffCpuSample {
  tid: number;
  state: string;
  /** Function names, leaf first. */
  frames: string[];
  cpuNs: number;
  offCpuNs: number;
  wallNs: number;
}

interface Recorded {
  samples: OffCpuSample[];
  sampleTypes: string[];
  defaultType: string;
  /** "wall <tid> <ns>" lines the workload printed. */
  threadWall: Map<number, number>;
  /** "fn <name> <tid> <ns>" lines: time the workload measured inside each function, by `name:tid`. */
  timeIn: Map<string, number>;
  stderr: string;
}

function decode(file: string): Omit<Recorded, 'threadWall' | 'timeIn' | 'stderr'> {
  const p = PprofProfile.decode(gunzipSync(readFileSync(file)));
  const s = (i: unknown): string => p.stringTable.strings[Number(i)]!;
  const fn = new Map(p.function.map((f) => [Number(f.id), s(f.name)]));
  const loc = new Map(p.location.map((l) => [Number(l.id), l.line.map((ln) => fn.get(Number(ln.functionId))!)]));
  const types = p.sampleType.map((t) => s(t.type));
  const at = (name: string) => types.indexOf(name);
  const samples = p.sample.map((smp) => {
    let tid = 0;
    let state = '';
    for (const l of smp.label) {
      if (s(l.key) === 'thread.id') tid = Number(l.num);
      if (s(l.key) === 'thread.state') state = s(l.str);
    }
    return {
      tid,
      state,
      frames: smp.locationId.flatMap((id) => loc.get(Number(id))!),
      cpuNs: Number(smp.value[at('cpu')]),
      offCpuNs: Number(smp.value[at('off_cpu')]),
      wallNs: Number(smp.value[at('wall')]),
    };
  });
  return { samples, sampleTypes: types, defaultType: s(p.defaultSampleType) };
}

function record(args: string[], env: NodeJS.ProcessEnv = {}): Recorded {
  const out = join(dir, `out-${Date.now()}-${Math.random().toString(36).slice(2)}.pb.gz`);
  const r = spawnSync(process.execPath, [cli, 'record', '--off-cpu', '-o', out, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ...env },
  });
  assert.equal(r.status, 0, `flamewire record failed: ${r.stderr}`);
  const threadWall = new Map<number, number>();
  for (const m of r.stdout.matchAll(/^wall (\d+) (\d+)$/gm)) threadWall.set(Number(m[1]), Number(m[2]));
  const timeIn = new Map<string, number>();
  for (const m of r.stdout.matchAll(/^fn (\w+) (\d+) (\d+)$/gm)) timeIn.set(`${m[1]}:${m[2]}`, Number(m[3]));
  return { ...decode(out), threadWall, timeIn, stderr: r.stderr };
}

/** Blocked nanoseconds of the samples that pass `keep`. */
function blocked(r: Recorded, keep: (s: OffCpuSample) => boolean): number {
  let ns = 0;
  for (const s of r.samples) if (keep(s)) ns += s.offCpuNs;
  return ns;
}

/** Time the workload measured inside `fn`, in thread `tid` (default: whichever reported it). */
function measured(r: Recorded, fn: string, tid?: number): number {
  let ns = 0;
  for (const [k, v] of r.timeIn) {
    const [name, t] = k.split(':');
    if (name === fn && (tid === undefined || Number(t) === tid)) ns += v;
  }
  assert.ok(ns > 0, `the workload did not report time in ${fn}`);
  return ns;
}

/**
 * `long`'s share (percent) of the blocked time under `long` and `short` is the share the
 * workload measured (±3 points), and that is near the nominal `nominal`% (±10: the workload
 * really did block 3:1).
 */
function assertSplit(r: Recorded, long: string, short: string, tid?: number, nominal = 75): void {
  const mine = (s: OffCpuSample) => tid === undefined || s.tid === tid;
  const a = blocked(r, (s) => mine(s) && s.frames.includes(long));
  const b = blocked(r, (s) => mine(s) && s.frames.includes(short));
  assert.ok(a + b > 0, `no off-CPU time under ${long} or ${short}`);
  const pct = (100 * a) / (a + b);
  const ta = measured(r, long, tid);
  const tb = measured(r, short, tid);
  const truth = (100 * ta) / (ta + tb);
  assert.ok(Math.abs(truth - nominal) <= 10, `the workload itself spent ${truth.toFixed(1)}% in ${long} (meant ${nominal}%)`);
  // And in absolute terms: the time blocked under each function is the time spent in it.
  for (const [fn, got, want] of [[long, a, ta], [short, b, tb]] as const) {
    assert.ok(Math.abs(got - want) / want <= TOTAL_TOLERANCE, `${fn}: ${(got / 1e6).toFixed(0)} ms blocked vs ${(want / 1e6).toFixed(0)} ms measured inside it`);
  }
  assert.ok(
    Math.abs(pct - truth) <= SPLIT_TOLERANCE,
    `${long}: ${pct.toFixed(1)}% of the blocked time under ${long} and ${short} (truth ${truth.toFixed(1)}% ± ${SPLIT_TOLERANCE}); ` +
      `${(a / 1e6).toFixed(0)} ms vs ${(b / 1e6).toFixed(0)} ms blocked, ${(ta / 1e6).toFixed(0)} ms vs ${(tb / 1e6).toFixed(0)} ms measured`,
  );
}

/** A thread that only waits: its blocked time plus CPU time adds up to its wall time. */
function assertTotal(r: Recorded, tid: number): void {
  const wall = r.threadWall.get(tid);
  assert.ok(wall !== undefined, `the workload did not report thread ${tid}`);
  const off = blocked(r, (s) => s.tid === tid);
  const cpu = r.samples.filter((s) => s.tid === tid).reduce((n, s) => n + s.cpuNs, 0);
  const err = Math.abs(off + cpu - wall) / wall;
  assert.ok(
    err <= TOTAL_TOLERANCE,
    `thread ${tid}: ${(off / 1e6).toFixed(0)} ms blocked + ${(cpu / 1e6).toFixed(0)} ms on CPU vs ${(wall / 1e6).toFixed(0)} ms of wall time (${(err * 100).toFixed(1)}% off)`,
  );
}

/** The tid that ran main() (the only thread the workload's main reports). */
function mainTid(r: Recorded): number {
  const tids = [...r.threadWall.keys()];
  return Math.min(...tids);
}

for (const flavour of ['tp_btf', 'raw_tp'] as const) {
  const env = flavour === 'raw_tp' ? { FLAMEWIRE_OFF_CPU_FLAVOUR: 'raw_tp' } : {};

  describe(`off-CPU time (${flavour})`, () => {
    it('splits nanosleep time 3:1 between the two callers, and adds up to the wall time', () => {
      const r = record(['--', bin, 'sleep', '50'], env);
      assertSplit(r, 'sleep_long', 'sleep_short');
      assertTotal(r, mainTid(r));
      // Blocked in nanosleep: interruptible sleep, and the kernel stack says where.
      // (On-CPU samples may land there too, in the wake-up path: they have no state.)
      const states = new Set(r.samples.filter((s) => s.offCpuNs > 0 && s.frames.includes('sleep_long')).map((s) => s.state));
      assert.deepEqual([...states], ['sleeping']);
      // The kernel stack ends where the thread called into the scheduler (tp_btf reads it from
      // the blocked task, which leaves out the scheduler's own functions, as /proc/PID/stack).
      assert.ok(r.samples.some((s) => s.frames.includes('sleep_long') && s.frames.includes('hrtimer_nanosleep')), 'no kernel frames under sleep_long');
      assert.ok(!r.samples.some((s) => s.frames.some((f) => /^(bpf_trace_run\d|__traceiter_)/.test(f))), 'tracepoint plumbing left in the kernel stacks');
    });

    it('splits time blocked reading a pipe 3:1, and blocked in a contended mutex 3:1', () => {
      const p = record(['--', bin, 'pipe', '50'], env);
      assertSplit(p, 'read_long', 'read_short');
      assertTotal(p, mainTid(p));
      const m = record(['--', bin, 'mutex', '50'], env);
      assertSplit(m, 'wait_long', 'wait_short');
    });
  });
}

describe('off-CPU time', () => {
  it('keeps several threads apart: each has its own split and total', () => {
    const r = record(['--', bin, 'threads', '50']);
    const sleepers = [...r.threadWall.keys()].sort((a, b) => a - b).slice(1); // main() reports last
    assert.equal(sleepers.length, 3, `expected three sleeper threads, got ${[...r.threadWall.keys()].join(',')}`);
    // Thread order: 30/10, 10/30, 20/20 ms in nap_a/nap_b (tids are handed out in creation order).
    const byThread = sleepers.map((tid) => ({ tid }));
    for (const [i, nominal] of [75, 25, 50].entries()) {
      assertSplit(r, 'nap_a', 'nap_b', byThread[i]!.tid, nominal);
      assertTotal(r, byThread[i]!.tid);
    }
  });

  it('writes samples, cpu, off_cpu and wall, wall = cpu + off_cpu per sample, wall first', () => {
    const r = record(['-F', '999', '--', bin, 'sleep', '10']);
    assert.deepEqual(r.sampleTypes, ['samples', 'cpu', 'off_cpu', 'wall']);
    assert.equal(r.defaultType, 'wall');
    for (const s of r.samples) {
      assert.equal(s.wallNs, s.cpuNs + s.offCpuNs);
      assert.ok(s.cpuNs === 0 || s.offCpuNs === 0, 'a sample is either on-CPU or off-CPU');
      assert.equal(s.state !== '', s.offCpuNs > 0, 'off-CPU samples, and only they, carry thread.state');
    }
    assert.match(r.stderr, /off-CPU blocks/);
  });

  it('counts blocks under --off-cpu-threshold instead of recording them, and reports their time', () => {
    const r = record(['--off-cpu-threshold', '20ms', '--', bin, 'sleep', '20']);
    assert.ok(blocked(r, (s) => s.frames.includes('sleep_long')) > 0.5e9);
    assert.equal(blocked(r, (s) => s.frames.includes('sleep_short')), 0, 'a 10 ms block passed a 20 ms threshold');
    const m = /off-CPU blocks \(.*?; ([\d,]+) shorter blocks \(([\d.]+)(ms|s)\) not recorded/.exec(r.stderr);
    assert.ok(m, `no count of short blocks in: ${r.stderr}`);
    assert.ok(Number(m[1]!.replace(/,/g, '')) >= 20, `short blocks: ${m[1]}`);
    const shortMs = Number(m[2]) * (m[3] === 's' ? 1000 : 1);
    assert.ok(shortMs >= 180, `short block time ${shortMs} ms, expected about 200 ms`);
  });

  it('at the end of a recording, emits the time of threads still blocked', async () => {
    // The workload reads stdin: fed for 0.5 s, then left blocked until the recording ends.
    const child = spawn(bin, ['hang'], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      const feeder = setInterval(() => child.stdin.write('x'), 50);
      const rec = new Promise<Recorded>((resolve, reject) => {
        const out = join(dir, `hang-${Date.now()}.pb.gz`);
        const p = spawn(process.execPath, [cli, 'record', '-q', '--off-cpu', '-d', '3s', '-p', String(child.pid), '-o', out]);
        let stderr = '';
        p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        p.on('exit', (code) => (code === 0 ? resolve({ ...decode(out), threadWall: new Map(), timeIn: new Map(), stderr }) : reject(new Error(stderr))));
      });
      setTimeout(() => clearInterval(feeder), 1500);
      const r = await rec;
      // Recording covers ~3 s; from ~1.5 s on the thread sits in read() until the end.
      const ns = blocked(r, (s) => s.frames.includes('block_in_read'));
      assert.ok(ns >= 2.0e9, `only ${(ns / 1e6).toFixed(0)} ms blocked under block_in_read: the final block was lost`);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('rejects --off-cpu-threshold without --off-cpu, and bad values, in one line', () => {
    for (const [args, msg] of [
      [['--off-cpu-threshold', '1ms'], /needs --off-cpu/],
      [['--off-cpu', '--off-cpu-threshold', 'soon'], /invalid off-CPU threshold 'soon'/],
      [['--value', 'off_cpu'], /off_cpu and wall need --off-cpu/],
    ] as const) {
      const r = spawnSync(process.execPath, [cli, 'record', ...args, '-d', '1s'], { encoding: 'utf8' });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, msg);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  });
});
