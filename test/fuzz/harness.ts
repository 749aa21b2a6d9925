// The fuzz harness: mutates a seed many times with a fixed run seed, has the worker run each
// input, and holds every input to the same bounds:
//
// - it ends with a result or the target's typed error (no other exception, no dead worker);
// - TIME: at most TIME_FACTOR (50) times its yardstick, measured in this run on this machine:
//   what the unmutated seed takes (scaled up when the input grew, parsers being linear), or one
//   plain linear pass over the input (LINEAR_PASS: read and search), whichever is more. A
//   measurement repeats the work until the seed takes a few milliseconds, and a suspect input
//   is measured again next to the seed and the linear pass (the lower of three each) before it
//   fails, so a machine that got busier slows both sides alike. An input that does not answer
//   at all is stopped after HANG_FACTOR times the yardstick, with a floor of a few seconds;
// - MEMORY: over one run, the process's resident memory peaks at most MEMORY_BOUND above where
//   it was before the input (checked again after a collection before it fails), and the
//   worker's JS heap is capped by resourceLimits, so a runaway heap kills the worker, which
//   fails the input;
// - every string in the result (names, files) is at most STRING_BOUND characters, or what the
//   target declares (the demangler's own cap; pieces of a /proc line, bounded by the kernel);
// - no descriptor is left open (file-bytes.ts's page cache is closed first, as after every
//   task of the profiler).
//
// A failure names the target, the seed, the input's index, the run seed and every mutation, and
// the input is kept under test/.work/fuzz/failures/ to be looked at.

import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';
import { Worker } from 'node:worker_threads';
import { hash32, Rng } from './rng.js';
import type { Mutated } from './mutate.js';
import { LINEAR_PASS, targetNamed, type TargetContext } from './targets.js';
import type { WorkReport, WorkRequest } from './worker.js';

/**
 * 50×: a bad input may rightly take a slower path over the same bytes (a pclntab found by
 * scanning the segments once its section header is gone, every FDE indexed because
 * .eh_frame_hdr is unusable, names at the 4096-character bound, which cost 100 times a real
 * name to decode), and a loaded machine adds noise on top. In 90,000 inputs of a long run, the
 * slowest that were fine took 24× their yardstick. The bugs this guards against are hundreds
 * of times it or more: before they were fixed, a pclntab whose entries never advance took
 * 275×, overlapping DWARF abbreviations 1500×, 2^30-bit shifts and backtracking maps lines
 * thousands of times or no answer at all.
 */
export const TIME_FACTOR = 50;
/** A worker that does not answer within HANG_FACTOR × the seed's time (at least HANG_FLOOR_MS) is stopped. */
const HANG_FACTOR = 400;
const HANG_FLOOR_MS = 5000;
/**
 * 64 MiB above the start of an input: the seeds are a few megabytes, and what a parser may
 * rightly hold is of that order (a decompressed .debug_info, a segment scanned for a magic);
 * the zlib bombs and name tables this guards against are hundreds of megabytes or gigabytes.
 */
export const MEMORY_BOUND = 64 << 20;
/** The worker's JS heap: generous for the seeds, fatal for runaway name tables. */
const HEAP_LIMIT_MB = 256;
/** Names and file names longer than this are cut by the parsers (see src/elf/names.ts). */
export const STRING_BOUND = 4096;
/** A measurement repeats the work until the seed's runs take at least this long together. */
const MIN_MEASURE_MS = 3;

export interface FuzzCase {
  target: string;
  seed: string;
  /** The seed input: a file's bytes, a text, or raw bytes. */
  input: Buffer | string;
  kind: 'elf' | 'text' | 'bytes';
  ctx: TargetContext;
  mutate(rng: Rng): Mutated<Buffer | string>;
}

export interface FuzzStats {
  inputs: number;
  typedErrors: number;
  /** Time of one run of the seed and of a linear pass over it, and the repetitions per measurement. */
  seedMs: number;
  scanMs: number;
  reps: number;
  /** The slowest input relative to the seed, and the highest memory peak. */
  worstRatio: number;
  worstPeak: number;
  failures: string[];
  ms: number;
}

export interface HarnessOptions {
  runSeed: number;
  iterations: number;
  /** Only this input: "target/seed#index". */
  only?: string;
  workDir: string;
}

export class FuzzHarness {
  private worker: Worker | undefined;
  private nextId = 1;
  /** Requests in flight, each with the worker it went to (a dead worker fails only its own). */
  private waiting = new Map<number, { w: Worker; done: (r: WorkReport | { died: string }) => void }>();
  private inputCounter = 0;

  constructor(private readonly opts: HarnessOptions) {
    v8.setFlagsFromString('--expose-gc');
    mkdirSync(join(opts.workDir, 'inputs'), { recursive: true });
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    await w?.terminate();
    rmSync(join(this.opts.workDir, 'inputs'), { recursive: true, force: true });
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./worker.js', import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB, maxYoungGenerationSizeMb: 16 },
      stdout: false,
      stderr: false,
    });
    w.on('message', (rep: WorkReport) => {
      const req = this.waiting.get(rep.id);
      this.waiting.delete(rep.id);
      req?.done(rep);
    });
    const die = (why: string) => {
      if (this.worker === w) this.worker = undefined;
      for (const [id, req] of this.waiting) {
        if (req.w !== w) continue;
        this.waiting.delete(id);
        req.done({ died: why });
      }
    };
    w.on('error', (e: Error & { code?: string }) => die(`${e.code ?? e.name}: ${e.message}`));
    w.on('exit', (code) => die(`worker exited with status ${code}`));
    w.unref();
    this.worker = w;
    return w;
  }

  /** Runs one input in the worker; a worker that does not answer in `timeoutMs` is stopped. */
  private run(req: Omit<WorkRequest, 'id'>, timeoutMs: number): Promise<WorkReport | { died: string }> {
    const w = this.start();
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        if (this.worker === w) this.worker = undefined;
        void w.terminate();
        resolve({ died: `no answer within ${Math.round(timeoutMs)} ms` });
      }, timeoutMs);
      this.waiting.set(id, {
        w,
        done: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      w.postMessage({ ...req, id } satisfies WorkRequest);
    });
  }

  private ctx(c: FuzzCase): TargetContext {
    return { ...c.ctx, file: c.kind === 'elf' };
  }

  /** How much larger than the seed an input is (at least 1: parsers are linear in their input). */
  private growth(c: FuzzCase, size: number): number {
    return Math.max(1, size / Math.max(1, c.input.length));
  }

  /** The yardstick of one run of an input: the seed's, or a linear pass when that is slower; scaled by how much the input grew. */
  private allowance(stats: FuzzStats, c: FuzzCase, size: number): number {
    return Math.max(stats.seedMs, stats.scanMs) * this.growth(c, size);
  }

  /** Repetitions for an input: as many as for the seed, fewer for an input that grew. */
  private repsFor(stats: FuzzStats, c: FuzzCase, size: number): number {
    return Math.max(1, Math.round(stats.reps / this.growth(c, size)));
  }

  /** The input as the worker takes it: ELF inputs become a file of their own. */
  private materialize(c: FuzzCase, value: Buffer | string): string | Uint8Array {
    if (c.kind === 'elf') {
      const path = join(this.opts.workDir, 'inputs', `${c.target}-${c.seed}-${this.inputCounter++}`);
      writeFileSync(path, value);
      return path;
    }
    return typeof value === 'string' ? value : new Uint8Array(value);
  }

  private discard(input: string | Uint8Array, c: FuzzCase): void {
    if (c.kind === 'elf' && typeof input === 'string') rmSync(input, { force: true });
  }

  /** The lower of `n` timings of `input`, per run (`reps` runs each; a dead worker: Infinity). */
  private async timeOf(c: FuzzCase, input: string | Uint8Array, reps: number, n: number, target = c.target): Promise<{ ms: number; rep?: WorkReport }> {
    let best: { ms: number; rep?: WorkReport } = { ms: Infinity };
    for (let i = 0; i < n; i++) {
      const r = await this.run({ target, input, ctx: this.ctx(c), reps }, 60_000);
      if ('died' in r) return best;
      if (r.ms / reps < best.ms) best = { ms: r.ms / reps, rep: r };
    }
    return best;
  }

  /** Fuzzes one target with one seed (`iterations` inputs, the run's number unless given). */
  async fuzz(c: FuzzCase, iterations = this.opts.iterations): Promise<FuzzStats> {
    const t0 = Date.now();
    const stats: FuzzStats = { inputs: 0, typedErrors: 0, seedMs: 0, scanMs: 0, reps: 1, worstRatio: 0, worstPeak: 0, failures: [], ms: 0 };
    const seedInput = this.materialize(c, c.input);
    try {
      // Warm up, then find how many repetitions make a measurement of the seed long enough.
      let one = await this.timeOf(c, seedInput, 1, 3);
      if (!one.rep || one.rep.problem) {
        stats.failures.push(`${c.target}/${c.seed}: the unmutated seed fails: ${one.rep?.problem ?? 'the worker died'}`);
        return stats;
      }
      for (let tries = 0; tries < 3; tries++) {
        stats.reps = Math.min(2000, Math.max(stats.reps, Math.ceil(MIN_MEASURE_MS / Math.max(one.ms, 0.0005))));
        one = await this.timeOf(c, seedInput, stats.reps, 5);
        if (one.ms * stats.reps >= MIN_MEASURE_MS / 2) break;
      }
      stats.seedMs = one.ms;
      stats.scanMs = (await this.timeOf(c, seedInput, stats.reps, 3, LINEAR_PASS.name)).ms;
      for (let index = 0; index < iterations; index++) {
        const name = `${c.target}/${c.seed}#${index}`;
        if (this.opts.only && this.opts.only !== name) continue;
        const rng = new Rng(hash32(`${this.opts.runSeed}/${name}`));
        const m = c.mutate(rng);
        const input = this.materialize(c, m.value);
        try {
          const problem = await this.check(c, input, seedInput, stats, m.value);
          if (problem) stats.failures.push(this.report(c, name, m, problem));
        } finally {
          this.discard(input, c);
        }
        stats.inputs++;
      }
    } finally {
      this.discard(seedInput, c);
      stats.ms = Date.now() - t0;
    }
    return stats;
  }

  /** What is wrong with one input, or undefined. */
  private async check(c: FuzzCase, input: string | Uint8Array, seedInput: string | Uint8Array, stats: FuzzStats, value: Buffer | string): Promise<string | undefined> {
    const allowance = this.allowance(stats, c, value.length);
    const reps = this.repsFor(stats, c, value.length);
    const limit = Math.max(HANG_FLOOR_MS, HANG_FACTOR * allowance * reps);
    const r = await this.run({ target: c.target, input, ctx: this.ctx(c), reps }, limit);
    if ('died' in r) return `the worker died: ${r.died}`;
    if (r.problem) return r.problem;
    if (r.typedError) stats.typedErrors++;
    const declared = targetNamed(c.target).stringBound ?? STRING_BOUND;
    const bound = declared === 'input-line' ? longestLine(String(value)) : declared;
    if (r.longestString > bound) return `a string of ${r.longestString} characters in the result (bound ${bound})`;
    if (r.fdDelta > 0) return `${r.fdDelta} file descriptor(s) left open`;
    let peak = r.peakBytes;
    if (peak > MEMORY_BOUND) {
      const again = await this.run({ target: c.target, input, ctx: this.ctx(c), reps, gcFirst: true }, limit);
      peak = 'died' in again ? Infinity : again.peakBytes;
      if (peak > MEMORY_BOUND) return `resident memory peaked ${mib(peak)} above the start (bound ${mib(MEMORY_BOUND)})`;
    }
    stats.worstPeak = Math.max(stats.worstPeak, peak);
    let ratio = r.ms / reps / allowance;
    if (ratio > TIME_FACTOR) {
      // Measured again next to the seed: a machine that got busier slows both.
      const seed = await this.timeOf(c, seedInput, stats.reps, 3);
      const mine = await this.timeOf(c, input, reps, 3);
      // A linear pass over this very input: many short lines cost more per byte than few long ones.
      const scan = await this.timeOf(c, input, reps, 3, LINEAR_PASS.name);
      const yardstick = Math.max(allowance * (seed.ms / stats.seedMs), scan.ms);
      ratio = mine.ms / yardstick;
      if (ratio > TIME_FACTOR)
        return `took ${mine.ms.toFixed(2)} ms a run, ${ratio.toFixed(0)}× its yardstick of ${yardstick.toFixed(3)} ms (the seed now ${seed.ms.toFixed(3)} ms, a linear pass ${scan.ms.toFixed(3)} ms, size ×${this.growth(c, value.length).toFixed(2)}; bound ${TIME_FACTOR}×, ${reps} run(s) per measurement)`;
    }
    stats.worstRatio = Math.max(stats.worstRatio, ratio);
    return undefined;
  }

  private report(c: FuzzCase, name: string, m: Mutated<Buffer | string>, problem: string): string {
    const dir = join(this.opts.workDir, 'failures');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, name.replace(/[/#]/g, '_'));
    writeFileSync(file, m.value);
    return [
      `${name}: ${problem}`,
      `  replay: FLAMEWIRE_FUZZ_SEED=${this.opts.runSeed} FLAMEWIRE_FUZZ_ONLY='${name}'`,
      `  mutations: ${m.steps.join('; ')}`,
      `  input kept as ${file}`,
    ].join('\n');
  }
}

function longestLine(s: string): number {
  let max = 0;
  for (const l of s.split('\n')) if (l.length > max) max = l.length;
  return max;
}

function mib(n: number): string {
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}
