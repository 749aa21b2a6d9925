// Run before the tests (npm's pretest): the build must exist, and the tools the tests use as
// oracles and peers (binutils, gdb, chromium, perf) are installed when missing.

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_DEPS, ensure } from './system-deps.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

for (const f of ['bpf/oncpu.bpf.o', 'build/Release/flamewire.node']) {
  if (!existsSync(join(root, f))) {
    console.error(`flamewire: ${f} is missing: run \`npm ci\` (or \`npm run build\`) first`);
    process.exit(1);
  }
}
ensure(TEST_DEPS, 'the test suite');
