// The whole build, run by `npm install` / `npm ci` (the package's install script) and by
// `npm run build`: system packages → BPF objects and skeleton → native addon → TypeScript.

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BUILD_DEPS, ensure } from './system-deps.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

if (process.platform !== 'linux') {
  console.error('flamewire: eBPF profiling needs Linux');
  process.exit(1);
}

ensure(BUILD_DEPS, 'building flamewire');

step('BPF programs', 'make', ['-C', join(root, 'bpf')]);

// node-gyp needs Node's headers. There may be no network to download them, so use the headers
// installed next to this node binary when they are there.
const gypArgs = ['rebuild'];
const prefix = resolve(dirname(process.execPath), '..');
if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) gypArgs.push(`--nodedir=${prefix}`);
step('native addon', process.execPath, [nodeGyp(), ...gypArgs]);

// The TypeScript compiler is a dev dependency; a production install ships dist/ prebuilt.
let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  tsc = undefined;
}
if (tsc) {
  step('TypeScript', process.execPath, [tsc, '-p', root]);
  // The command is run as a file (its #! line carries V8 flags): make sure it can be.
  chmodSync(join(root, 'dist', 'src', 'cli.js'), 0o755);
} else if (!existsSync(join(root, 'dist', 'src', 'cli.js'))) {
  console.error('flamewire: TypeScript is not installed and dist/ is missing: run `npm ci` (with dev dependencies)');
  process.exit(1);
}

function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // npm bundles node-gyp.
    const bundled = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(bundled)) return bundled;
    console.error('flamewire: node-gyp not found: run `npm ci` (with dev dependencies)');
    process.exit(1);
  }
}

function step(what, cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) {
    console.error(`flamewire: building the ${what} failed (${cmd} exited ${r.status ?? r.signal})`);
    process.exit(1);
  }
}
