// Every parser that reads bytes a profiled process controls (ELF headers, symbol and string
// tables, DWARF, .eh_frame, the Go pclntab and build info, demangled names, /proc files, stack
// snapshots, a Go process's memory), fed mutations of real seeds: programs built here by gcc,
// g++, clang, Go and rustc, the system's libc, this machine's /proc. Each input must end with a
// result or the parser's typed error within the time, memory and name-length bounds of
// test/fuzz/harness.ts. The run is deterministic for a run seed:
//
//   FLAMEWIRE_FUZZ_ITERATIONS=N   inputs per target and seed (default 16; long runs: thousands)
//   FLAMEWIRE_FUZZ_SEED=S         the run seed (default 15); a failure prints it
//   FLAMEWIRE_FUZZ_ONLY=t/s#i     replays one input (printed with a failure)

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ElfFile } from '../src/elf/elf-file.js';
import { goRuntimeOffsets } from '../src/go/runtime-offsets.js';
import { mapElf } from './fuzz/elf-map.js';
import { FuzzHarness, type FuzzCase } from './fuzz/harness.js';
import { GO_IMAGE_BASE, dwarfExpressions, goImage, stackPointers, stackSample } from './fuzz/memory-seeds.js';
import { mutateBytes, mutateElf, mutateText } from './fuzz/mutate.js';
import { Rng } from './fuzz/rng.js';
import { buildSeeds, type Seed } from './fuzz/seeds.js';
import { TARGETS, targetNamed, type Target } from './fuzz/targets.js';
import { HOSTILE } from './fuzz/hostile.js';
import { workDir } from './helpers.js';

const ITERATIONS = Number(process.env.FLAMEWIRE_FUZZ_ITERATIONS ?? 16);
const RUN_SEED = Number(process.env.FLAMEWIRE_FUZZ_SEED ?? 15);
const ONLY = process.env.FLAMEWIRE_FUZZ_ONLY || undefined;
const dir = workDir('fuzz');

/** Characters the text mutations draw from, per target. */
const ALPHABETS: Record<string, string> = {
  demangle: '_ZRNSTIEJLXYDKVvcislmxyfdbtah0123456789$.@uSsCcDd',
  'proc-maps': '0123456789abcdef-:/ rwxps[]()delted\n',
  'proc-cgroup': '0123456789abcdef-_:/.\nscopeslicpodkubeservic',
  'go-modinfo': 'pathmoddepbuild=>\t\n"`\\/.v0123456789-',
};

/** At most `n` of `xs`, spread evenly (the same ones on every run). */
function spread(xs: number[], n: number): number[] {
  if (xs.length <= n) return xs;
  return Array.from({ length: n }, (_, i) => xs[Math.floor((i * xs.length) / n)]!);
}

function casesFor(target: Target, seeds: Seed[]): FuzzCase[] {
  const matching = seeds.filter((s) => target.seeds.some((t) => s.tags.has(t)));
  if (target.input === 'elf') {
    return matching.map((s) => {
      const bytes = readFileSync(s.path!);
      const map = mapElf(bytes);
      return { target: target.name, seed: s.name, input: bytes, kind: 'elf', ctx: { probes: spread(map.probes, 256) }, mutate: (rng: Rng) => mutateElf(bytes, map, rng) };
    });
  }
  if (target.input === 'text') {
    return matching.map((s) => ({ target: target.name, seed: s.name, input: s.text!, kind: 'text', ctx: { probes: [] }, mutate: (rng: Rng) => mutateText(s.text!, rng, ALPHABETS[target.name] ?? 'abc') }));
  }
  switch (target.name) {
    case 'leaf-repair':
      return seeds
        .filter((s) => ['libc', 'c-dwarf5', 'go'].includes(s.name))
        .map((s) => {
          const text = mapElf(readFileSync(s.path!)).probes;
          const sample = stackSample(text, new Rng(7));
          return { target: target.name, seed: s.name, input: sample, kind: 'bytes', ctx: { probes: [], unwindFile: s.path }, mutate: (rng: Rng) => mutateBytes(sample, rng, { pointers: stackPointers(text) }) };
        });
    case 'dwarf-expr': {
      const exprs = dwarfExpressions();
      return [{ target: target.name, seed: 'cfa-expressions', input: exprs, kind: 'bytes', ctx: { probes: [] }, mutate: (rng: Rng) => mutateBytes(exprs, rng) }];
    }
    case 'goroutines': {
      const go = seeds.find((s) => s.name === 'go');
      if (!go) return [];
      return (['go1.26.0', 'go1.23.0'] as const).map((version) => {
        const o = ElfFile.withFile(go.path!, (elf) => goRuntimeOffsets(elf, version, version === 'go1.23.0' ? { dwarf: null } : {}))!;
        const { image, pointers } = goImage(o);
        return { target: target.name, seed: `${o.labels.format}-labels`, input: image, kind: 'bytes', ctx: { probes: [], offsets: o, base: GO_IMAGE_BASE }, mutate: (rng: Rng) => mutateBytes(image, rng, { pointers }) };
      });
    }
    default:
      return [];
  }
}

describe('parsers of process-controlled bytes, fuzzed', () => {
  let seeds: Seed[] = [];
  let harness: FuzzHarness;

  before(async () => {
    seeds = await buildSeeds(dir);
    harness = new FuzzHarness({ runSeed: RUN_SEED, iterations: ITERATIONS, only: ONLY, workDir: dir });
  });
  after(async () => {
    await harness?.close();
  });

  for (const target of TARGETS) {
    const skip = ONLY !== undefined && !ONLY.startsWith(`${target.name}/`);
    it(`${target.name}: ${ITERATIONS} mutations of each seed end cleanly within the bounds`, { skip }, async (t) => {
      const failures: string[] = [];
      const cases = casesFor(target, seeds);
      assert.ok(cases.length > 0, `no seed for ${target.name}`);
      for (const c of cases) {
        if (ONLY && !ONLY.startsWith(`${c.target}/${c.seed}#`)) continue;
        const s = await harness.fuzz(c);
        t.diagnostic(
          `${c.seed}: ${s.inputs} inputs (${s.typedErrors} typed errors) in ${(s.ms / 1000).toFixed(1)} s; seed ${s.seedMs.toFixed(3)} ms a run ×${s.reps} (linear pass ${s.scanMs.toFixed(3)} ms), slowest ${s.worstRatio.toFixed(1)}× its yardstick, memory peak ${(s.worstPeak / (1 << 20)).toFixed(1)} MiB`,
        );
        failures.push(...s.failures);
      }
      assert.equal(failures.length, 0, `${failures.length} failing input(s):\n${failures.slice(0, 12).join('\n')}`);
    });
  }

  describe('hand-made hostile inputs', () => {
    for (const h of HOSTILE) {
      it(`${h.name}: ${h.targets.join(', ')}`, { skip: ONLY !== undefined }, async (t) => {
        const failures: string[] = [];
        for (const name of h.targets) {
          const c = casesFor(targetNamed(name), seeds).find((x) => x.seed === h.seed);
          assert.ok(c, `no seed ${h.seed} for ${name}`);
          const seed = seeds.find((x) => x.name === h.seed) ?? { name: h.seed, tags: new Set<never>() };
          const value = h.make(seed, c.input);
          const input = h.benign ? h.benign(seed, c.input) : c.input;
          const s = await harness.fuzz({ ...c, input, seed: `hostile-${h.seed}`, mutate: () => ({ value, steps: [h.name] }) }, 1);
          t.diagnostic(`${name}: ${s.worstRatio.toFixed(1)}× its yardstick, memory peak ${(s.worstPeak / (1 << 20)).toFixed(1)} MiB${s.typedErrors ? ', a typed error' : ''}`);
          failures.push(...s.failures);
        }
        assert.equal(failures.length, 0, failures.join('\n'));
      });
    }
  });
});

