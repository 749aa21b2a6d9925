// Native workloads with a known split, built the way real programs are: the compilers' default
// flags at -O2 (or `rustc -O`), so no frame pointers anywhere, and frames of a few hundred bytes
// between the hot leaf and its callers. Used by test/native-unwind.test.ts.
//
// Every workload spends its time in one hot leaf reached from two callers, 3:1. The split is
// exact by work, not by time: calls come in blocks of four, one of them (at a random place in
// the block) under the minor caller, each call the same number of iterations. Calls are short
// (tens of microseconds) so that the samples of one burst of host steal time spread over both
// callers instead of landing on one long call, and the random place keeps a fixed pattern
// from beating with the sampling period.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Writes `source` to `dir/file` and runs `build` (argv, `$SRC` and `$OUT` replaced) unless the
 * output is already newer than an unchanged source: the builds are cached across runs like the
 * other tests' work folders. Returns the output's path.
 */
export function buildCached(dir: string, file: string, out: string, source: string, build: string[]): string {
  const src = join(dir, file);
  const bin = join(dir, out);
  const same = existsSync(src) && readFileSync(src, 'utf8') === source;
  if (!same) writeFileSync(src, source);
  if (same && existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  const argv = build.map((a) => a.replace('$SRC', src).replace('$OUT', bin));
  try {
    execFileSync(argv[0]!, argv.slice(1), { stdio: 'pipe' });
  } catch (e) {
    throw new Error(`${argv.join(' ')}: ${(e as { stderr?: Buffer }).stderr?.toString() ?? String(e)}`);
  }
  return bin;
}

/** The calls per block and how many iterations each spends in the leaf (~20-40 µs). */
const N = 20000;

/**
 * C: the deep chain, names prefixed by `p`. `${p}major` and `${p}minor` both call `${p}step_a`
 * → `${p}step_b` → `${p}spin`; every step keeps a volatile array live across its call and
 * uses it after, so the compiler gives it a frame of that size and cannot make the call a
 * tail call (which would drop the frame for real, for perf too). `${p}run(secs)` drives it.
 */
export function cChain(p: string, linkage = 'static'): string {
  return `
static volatile unsigned long ${p}sink;
__attribute__((noinline)) ${linkage} unsigned long ${p}spin(unsigned long n) {
  unsigned long x = n;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  return x;
}
__attribute__((noinline)) ${linkage} unsigned long ${p}step_b(unsigned long n) {
  volatile unsigned char buf[384];
  buf[n % 384] = (unsigned char)n;
  unsigned long r = ${p}spin(n);
  return r + buf[(n * 7) % 384];
}
__attribute__((noinline)) ${linkage} unsigned long ${p}step_a(unsigned long n) {
  volatile unsigned char buf[320];
  buf[n % 320] = (unsigned char)n;
  unsigned long r = ${p}step_b(n);
  return r + buf[(n * 5) % 320];
}
__attribute__((noinline)) ${linkage} void ${p}major(unsigned long n) {
  volatile unsigned char buf[256];
  buf[n % 256] = (unsigned char)n;
  ${p}sink += ${p}step_a(n) + buf[(n * 3) % 256];
}
__attribute__((noinline)) ${linkage} void ${p}minor(unsigned long n) {
  volatile unsigned char buf[288];
  buf[n % 288] = (unsigned char)n;
  ${p}sink += ${p}step_a(n) + buf[(n * 3) % 288];
}
static unsigned ${p}rng = 2463534242u;
static unsigned ${p}next(void) { ${p}rng ^= ${p}rng << 13; ${p}rng ^= ${p}rng >> 17; ${p}rng ^= ${p}rng << 5; return ${p}rng; }
/* Blocks of four calls, one under ${p}minor at a random place, until secs of wall time. */
static volatile unsigned long ${p}iterations = ${N};
__attribute__((noinline)) void ${p}run(double secs) {
  unsigned long n = ${p}iterations; /* read at run time: a constant would have gcc clone the chain (step_a.constprop.0) */
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    unsigned m = ${p}next() % 4;
    for (unsigned k = 0; k < 4; k++) {
      if (k == m) ${p}minor(n); else ${p}major(n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
}
`;
}

/** The deep chain as a program: `deep SECONDS` runs it for that long. */
export const C_DEEP = `
#include <stdlib.h>
#include <time.h>
${cChain('')}
int main(int argc, char **argv) {
  run(argc > 1 ? atof(argv[1]) : 3);
  return 0;
}
`;

/**
 * C++: the hot function throws every fourth call and the middle frame catches it, so the
 * samples include the throw (libstdc++'s __cxa_throw, libgcc's unwinder) and every walk
 * passes frames whose code has landing pads.
 */
export const CXX_EXCEPTIONS = `
#include <cstdlib>
#include <ctime>
static volatile unsigned long sink;
struct Overflow { unsigned long value; };
static unsigned calls;
__attribute__((noinline)) unsigned long spin(unsigned long n) {
  unsigned long x = n;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  return x;
}
__attribute__((noinline)) unsigned long hot(unsigned long n) {
  volatile unsigned char buf[256];
  buf[n % 256] = (unsigned char)n;
  unsigned long r = spin(n);
  if (++calls % 4 == 0) throw Overflow{r};
  return r + buf[(n * 3) % 256];
}
__attribute__((noinline)) unsigned long middle(unsigned long n) {
  volatile unsigned char buf[320];
  buf[n % 320] = (unsigned char)n;
  try {
    unsigned long r = hot(n);
    return r + buf[(n * 5) % 320];
  } catch (const Overflow &e) {
    return e.value ^ buf[(n * 7) % 320];
  }
}
__attribute__((noinline)) void major(unsigned long n) {
  volatile unsigned char buf[256];
  buf[n % 256] = (unsigned char)n;
  sink += middle(n) + buf[(n * 3) % 256];
}
__attribute__((noinline)) void minor(unsigned long n) {
  volatile unsigned char buf[288];
  buf[n % 288] = (unsigned char)n;
  sink += middle(n) + buf[(n * 3) % 288];
}
static unsigned rng = 2463534242u;
static unsigned next() { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
static volatile unsigned long iterations = ${N};
__attribute__((noinline)) void run(double secs) {
  unsigned long n = iterations;
  timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    unsigned m = next() % 4;
    for (unsigned k = 0; k < 4; k++) {
      if (k == m) minor(n); else major(n);
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
}
int main(int argc, char **argv) {
  run(argc > 1 ? std::atof(argv[1]) : 3);
  return 0;
}
`;

/** Rust, one file, `rustc -O` (no frame pointers by default): the same chain. */
export const RUST_DEEP = `
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x = n;
    for _ in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    }
    x
}

#[inline(never)]
fn step_b(n: u64) -> u64 {
    let mut buf = [0u8; 384];
    buf[(n % 384) as usize] = n as u8;
    let buf = black_box(&mut buf);
    let r = spin(black_box(n));
    r.wrapping_add(buf[(n * 7 % 384) as usize] as u64)
}

#[inline(never)]
fn step_a(n: u64) -> u64 {
    let mut buf = [0u8; 320];
    buf[(n % 320) as usize] = n as u8;
    let buf = black_box(&mut buf);
    let r = step_b(black_box(n));
    r.wrapping_add(buf[(n * 5 % 320) as usize] as u64)
}

#[inline(never)]
fn major(n: u64) -> u64 {
    let mut buf = [0u8; 256];
    buf[(n % 256) as usize] = n as u8;
    let buf = black_box(&mut buf);
    step_a(black_box(n)).wrapping_add(buf[(n * 3 % 256) as usize] as u64)
}

#[inline(never)]
fn minor(n: u64) -> u64 {
    let mut buf = [0u8; 288];
    buf[(n % 288) as usize] = n as u8;
    let buf = black_box(&mut buf);
    step_a(black_box(n)).wrapping_add(buf[(n * 3 % 288) as usize] as u64)
}

#[inline(never)]
fn run(secs: f64) -> u64 {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut rng: u32 = 2463534242;
    let mut sink = 0u64;
    while Instant::now() < end {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let m = rng % 4;
        for k in 0..4 {
            sink = sink.wrapping_add(if k == m { minor(black_box(${N})) } else { major(black_box(${N})) });
        }
    }
    sink
}

fn main() {
    let secs: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    black_box(run(secs));
}
`;

/**
 * The system zlib called 3:1 from two functions: each call compresses a 16 KiB buffer
 * (deflate's internal frames, several deep) and takes its CRC-32. Both callers hand zlib the
 * same buffer, so a call costs the same under either.
 */
export const C_ZLIB = `
#include <stdlib.h>
#include <time.h>
#include <zlib.h>
static volatile unsigned long sink;
static unsigned char src[16384], dst[32768];
__attribute__((noinline)) void zlib_major(void) {
  volatile unsigned char buf[256];
  buf[sink % 256] = 1;
  uLongf len = sizeof dst;
  compress2(dst, &len, src, sizeof src, 6);
  sink += len + crc32(0, src, sizeof src) + buf[(sink * 3) % 256];
}
__attribute__((noinline)) void zlib_minor(void) {
  volatile unsigned char buf[288];
  buf[sink % 288] = 1;
  uLongf len = sizeof dst;
  compress2(dst, &len, src, sizeof src, 6);
  sink += len + crc32(0, src, sizeof src) + buf[(sink * 3) % 288];
}
static unsigned rng = 2463534242u;
static unsigned next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
__attribute__((noinline)) void run(double secs) {
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    unsigned m = next() % 4;
    for (unsigned k = 0; k < 4; k++) {
      if (k == m) zlib_minor(); else zlib_major();
    }
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
}
int main(int argc, char **argv) {
  /* Text-like data: a small alphabet with runs, so deflate finds matches and misses. */
  for (unsigned i = 0; i < sizeof src; i++) src[i] = "abcdefgh ijklmnop\\n"[(next() >> 7) % 18];
  run(argc > 1 ? atof(argv[1]) : 3);
  return 0;
}
`;

/** A shared library with the chain inside it, prefixed `lib_`; lib_run is its entry. */
export const C_DLOPEN_LIB = `
#include <time.h>
${cChain('lib_')}
`;

/**
 * Sleeps half a second (flamewire is recording by then, the process's tables loaded), then
 * dlopen()s the library named on its command line and runs its chain.
 */
export const C_DLOPEN_MAIN = `
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
  struct timespec half = { 0, 500000000 };
  nanosleep(&half, 0);
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) { fprintf(stderr, "%s\\n", dlerror()); return 1; }
  void (*lib_run)(double) = (void (*)(double))dlsym(lib, "lib_run");
  if (!lib_run) { fprintf(stderr, "%s\\n", dlerror()); return 1; }
  lib_run(atof(argv[2]));
  return 0;
}
`;

/**
 * Recursion 400 deep, far past the walk's frame cap, spinning at the bottom: every stack
 * walked is cut, and what is kept must be the innermost frames (all \`recurse\`), not a root
 * made up from somewhere else.
 */
export const C_RECURSION = `
#include <stdlib.h>
#include <time.h>
static volatile unsigned long sink;
__attribute__((noinline)) static unsigned long bottom(double secs) {
  struct timespec t0, t;
  unsigned long x = 1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    for (int i = 0; i < 100000; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
  return x;
}
__attribute__((noinline)) unsigned long recurse(int depth, double secs) {
  volatile unsigned char buf[48];
  buf[depth % 48] = (unsigned char)depth;
  unsigned long r = depth == 0 ? bottom(secs) : recurse(depth - 1, secs);
  return r + buf[(depth * 5) % 48];
}
int main(int argc, char **argv) {
  sink = recurse(400, argc > 1 ? atof(argv[1]) : 3);
  return 0;
}
`;

/**
 * SIGPROF every 10 ms of CPU time (setitimer ITIMER_PROF); the handler spins ~6 ms per signal
 * in four equal calls, one under handler_minor at a random place, the rest under
 * handler_major. Between signals the process spins in interrupted_work, called from main, so
 * a sample in the handler has below it the kernel's signal frame (__restore_rt) and then
 * interrupted_work's interrupted instruction.
 */
export const C_SIGNAL = `
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
static volatile unsigned long sink;
static volatile unsigned long iterations = ${N * 60};
__attribute__((noinline)) static unsigned long spin(unsigned long n) {
  unsigned long x = n;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  return x;
}
__attribute__((noinline)) void handler_major(void) {
  volatile unsigned char buf[256];
  buf[sink % 256] = 1;
  sink += spin(iterations) + buf[(sink * 3) % 256];
}
__attribute__((noinline)) void handler_minor(void) {
  volatile unsigned char buf[288];
  buf[sink % 288] = 1;
  sink += spin(iterations) + buf[(sink * 3) % 288];
}
static unsigned rng = 2463534242u;
static unsigned next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
static void on_prof(int sig) {
  (void)sig;
  volatile unsigned char buf[200];
  buf[sink % 200] = 1;
  unsigned m = next() % 4;
  for (unsigned k = 0; k < 4; k++) {
    if (k == m) handler_minor(); else handler_major();
  }
  sink += buf[(sink * 7) % 200];
}
/* The interrupted code: a loop with a frame of its own, checking the clock now and then. */
__attribute__((noinline)) void interrupted_work(double secs) {
  volatile unsigned char buf[320];
  struct timespec t0, t;
  unsigned long x = 1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    for (int i = 0; i < 200000; i++) { x = x * 6364136223846793005UL + 1442695040888963407UL; buf[i % 320] = (unsigned char)x; }
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
  sink += x + buf[x % 320];
}
int main(int argc, char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_prof;
  sigaction(SIGPROF, &sa, 0);
  struct itimerval it = { { 0, 10000 }, { 0, 10000 } };
  setitimer(ITIMER_PROF, &it, 0);
  interrupted_work(argc > 1 ? atof(argv[1]) : 3);
  struct itimerval off = { { 0, 0 }, { 0, 0 } };
  setitimer(ITIMER_PROF, &off, 0);
  return 0;
}
`;

/**
 * Off-CPU: the chain, but the leaf blocks in nanosleep (1 ms) instead of spinning. The
 * program times each caller's calls itself and prints "fn major NS" / "fn minor NS": wake-up
 * delays on a loaded machine move the real split a little off 3:1, and the profile must
 * match the real one.
 */
export const C_OFFCPU = `
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static volatile unsigned long sink;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e9 + t.tv_nsec; }
__attribute__((noinline)) static void block_once(void) {
  struct timespec d = { 0, 1000000 };
  nanosleep(&d, 0);
}
__attribute__((noinline)) unsigned long wait_b(unsigned long n) {
  volatile unsigned char buf[384];
  buf[n % 384] = (unsigned char)n;
  block_once();
  return buf[(n * 7) % 384];
}
__attribute__((noinline)) unsigned long wait_a(unsigned long n) {
  volatile unsigned char buf[320];
  buf[n % 320] = (unsigned char)n;
  unsigned long r = wait_b(n);
  return r + buf[(n * 5) % 320];
}
static double major_ns, minor_ns;
__attribute__((noinline)) void major(unsigned long n) {
  volatile unsigned char buf[256];
  buf[n % 256] = (unsigned char)n;
  double t = now();
  sink += wait_a(n) + buf[(n * 3) % 256];
  major_ns += now() - t;
}
__attribute__((noinline)) void minor(unsigned long n) {
  volatile unsigned char buf[288];
  buf[n % 288] = (unsigned char)n;
  double t = now();
  sink += wait_a(n) + buf[(n * 3) % 288];
  minor_ns += now() - t;
}
static unsigned rng = 2463534242u;
static unsigned next(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng; }
int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 3, end = now() + secs * 1e9;
  while (now() < end) {
    unsigned m = next() % 4;
    for (unsigned k = 0; k < 4; k++) {
      if (k == m) minor(k); else major(k);
    }
  }
  printf("fn major %.0f\\nfn minor %.0f\\n", major_ns, minor_ns);
  return 0;
}
`;

export interface NativeWorkloads {
  gccDeep: string;
  clangDeep: string;
  cxxExceptions: string;
  rustDeep: string;
  zlib: string;
  dlopenMain: string;
  dlopenLib: string;
  recursion: string;
  signal: string;
  offCpu: string;
}

/** Builds every workload into `dir` (cached). */
export function buildNativeWorkloads(dir: string): NativeWorkloads {
  const c = (file: string, out: string, src: string, cc: string, extra: string[] = []) =>
    buildCached(dir, file, out, src, [cc, '-O2', '-o', '$OUT', '$SRC', ...extra]);
  return {
    gccDeep: c('deep-gcc.c', 'deep-gcc', C_DEEP, 'gcc'),
    clangDeep: c('deep-clang.c', 'deep-clang', C_DEEP, 'clang'),
    cxxExceptions: c('exceptions.cc', 'exceptions', CXX_EXCEPTIONS, 'g++'),
    rustDeep: buildCached(dir, 'deep-rust.rs', 'deep-rust', RUST_DEEP, ['rustc', '-O', '--edition', '2021', '-o', '$OUT', '$SRC']),
    zlib: c('zlib-split.c', 'zlib-split', C_ZLIB, 'gcc', ['-lz']),
    dlopenLib: c('libhot.c', 'libhot.so', C_DLOPEN_LIB, 'gcc', ['-shared', '-fPIC']),
    dlopenMain: c('dlopen-main.c', 'dlopen-main', C_DLOPEN_MAIN, 'gcc', ['-ldl']),
    recursion: c('recursion.c', 'recursion', C_RECURSION, 'gcc'),
    signal: c('signal.c', 'signal', C_SIGNAL, 'gcc'),
    offCpu: c('offcpu-deep.c', 'offcpu-deep', C_OFFCPU, 'gcc'),
  };
}
