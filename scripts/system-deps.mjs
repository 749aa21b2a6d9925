// The system packages flamewire needs to build, and how to get them. Used by the build (npm
// install / npm ci) and by the test set-up. Installs with apt-get when something is missing and
// we run as root; otherwise stops with the exact command to run.

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Build requirements: what proves each is present, and the Debian/Ubuntu package. */
export const BUILD_DEPS = [
  { what: 'clang (compiles the BPF programs)', present: () => onPath('clang'), pkg: 'clang' },
  { what: 'llvm-strip', present: () => onPath('llvm-strip') || onPath('llvm-strip-14'), pkg: 'llvm' },
  { what: 'bpftool (generates the BPF skeleton)', present: () => onPath('bpftool'), pkg: 'bpftool' },
  { what: 'libbpf headers and library', present: () => existsSync('/usr/include/bpf/libbpf.h'), pkg: 'libbpf-dev' },
  { what: 'libelf headers', present: () => existsSync('/usr/include/libelf.h') || existsSync('/usr/include/gelf.h'), pkg: 'libelf-dev' },
  { what: 'zlib headers', present: () => existsSync('/usr/include/zlib.h'), pkg: 'zlib1g-dev' },
  { what: 'make', present: () => onPath('make'), pkg: 'make' },
  { what: 'a C++ compiler (builds the addon)', present: () => onPath('g++'), pkg: 'g++' },
  { what: 'pkg-config', present: () => onPath('pkg-config'), pkg: 'pkg-config' },
  { what: 'python3 (node-gyp)', present: () => onPath('python3'), pkg: 'python3' },
];

/** What the test suite uses on top of the build requirements (oracles and workloads). */
export const TEST_DEPS = [
  { what: 'binutils (readelf, objdump, objcopy, nm, c++filt: test oracles)', present: () => ['readelf', 'objdump', 'objcopy', 'nm', 'c++filt'].every(onPath), pkg: 'binutils' },
  { what: 'Go (test workloads, go tool pprof)', present: () => onPath('go'), pkg: 'golang-go' },
  { what: 'setpriv, unshare (run the CLI without capabilities, or as in the DaemonSet)', present: () => ['setpriv', 'unshare'].every(onPath), pkg: 'util-linux' },
  { what: 'script (gives the CLI a terminal)', present: () => onPath('script'), pkg: 'bsdutils' },
  { what: 'chromium (the HTML flame graph test)', present: () => existsSync('/usr/bin/chromium'), pkg: 'chromium' },
];

/** What `npm run bench` needs on top: perf, the peer it is compared with. */
export const BENCH_DEPS = [
  { what: 'perf (the benchmark peer)', present: () => onPath('perf'), pkg: perfPackage() },
  { what: 'bpftrace (the naive BPF sampler the BPF cost is compared with)', present: () => onPath('bpftrace'), pkg: 'bpftrace' },
];

/**
 * What the benchmark's optional peers need (bench/peers.ts): clang-19 and LLVM 19 build the
 * OpenTelemetry eBPF profiler's BPF programs. Without them the bench skips that peer.
 */
export const PEER_DEPS = [
  { what: 'clang-19 (builds the OpenTelemetry eBPF profiler peer)', present: () => onPath('clang-19'), pkg: 'clang-19' },
  { what: 'LLVM 19 tools (llvm-link-19, llc-19, llvm-strip-19)', present: () => ['llvm-link-19', 'llc-19', 'llvm-strip-19'].every(onPath), pkg: 'llvm-19' },
];

export function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function perfPackage() {
  // Debian ships perf as linux-perf; Ubuntu as linux-tools-common plus the kernel-specific package.
  return isUbuntu() ? 'linux-tools-common' : 'linux-perf';
}

function isUbuntu() {
  try {
    return /^ID=ubuntu/m.test(execFileSync('cat', ['/etc/os-release'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

/**
 * Makes sure every dependency in `deps` is present. Returns normally when all are; installs the
 * missing ones when running as root on an apt system; otherwise prints the command and exits 1.
 */
export function ensure(deps, label) {
  const missing = deps.filter((d) => !d.present());
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((d) => d.pkg))];
  const cmd = `apt-get update && apt-get install -y --no-install-recommends ${pkgs.join(' ')}`;
  const isRoot = process.getuid?.() === 0;
  if (!isRoot || !onPath('apt-get')) {
    console.error(`flamewire: ${label} needs: ${missing.map((d) => d.what).join(', ')}`);
    console.error(`flamewire: install them with:\n  sudo sh -c '${cmd}'`);
    process.exit(1);
  }
  console.error(`flamewire: installing ${pkgs.join(' ')} (${label})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  run('apt-get', ['update', '-qq'], env);
  run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], env);
  const still = deps.filter((d) => !d.present());
  if (still.length > 0) {
    console.error(`flamewire: still missing after apt-get: ${still.map((d) => d.what).join(', ')}`);
    process.exit(1);
  }
}

/** Like ensure(), but what cannot be installed is only reported: its users skip themselves. */
export function ensureOptional(deps, label) {
  const missing = deps.filter((d) => !d.present());
  if (missing.length === 0) return;
  const pkgs = [...new Set(missing.map((d) => d.pkg))];
  if (process.getuid?.() !== 0 || !onPath('apt-get')) {
    console.error(`flamewire: ${label} will be skipped without ${missing.map((d) => d.what).join(', ')} (apt-get install ${pkgs.join(' ')})`);
    return;
  }
  console.error(`flamewire: installing ${pkgs.join(' ')} (${label})`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const ok = (args) => spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env }).status === 0;
  if (!(ok(['update', '-qq']) && ok(['install', '-y', '-qq', '--no-install-recommends', ...pkgs]))) {
    console.error(`flamewire: could not install ${pkgs.join(' ')}: ${label} will be skipped`);
  }
}

function run(cmd, args, env) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], env });
  if (r.status !== 0) {
    console.error(`flamewire: ${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}
