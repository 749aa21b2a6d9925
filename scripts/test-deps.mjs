// Run before the tests (npm's pretest) and the benchmarks (--bench): the build must exist, and
// the tools used as oracles and peers (binutils, Go, chromium; perf for the benchmarks) are
// installed when missing.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_DEPS, PEER_DEPS, TEST_DEPS, ensure, ensureOptional } from './system-deps.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

for (const f of ['bpf/oncpu.bpf.o', 'build/Release/flamewire.node']) {
  if (!existsSync(join(root, f))) {
    console.error(`flamewire: ${f} is missing: run \`npm ci\` (or \`npm run build\`) first`);
    process.exit(1);
  }
}
if (process.argv.includes('--bench')) {
  ensure(BENCH_DEPS, 'the benchmarks');
  ensureOptional(PEER_DEPS, 'the OpenTelemetry eBPF profiler peer of the benchmarks');
} else ensure(TEST_DEPS, 'the test suite');
