// Workloads whose true split is known, shared by the accuracy tests and the benchmarks.

import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

// The leaf lives in its own translation unit, built without a frame pointer; the callers keep
// theirs. The same leaf serves both callers, so only the return address tells them apart.
export const C_LEAF = `
unsigned long leaf_work(unsigned long n) {
  unsigned long x = n;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + 1442695040888963407UL;
  return x;
}
`;
export const C_MAIN = `
#include <stdlib.h>
#include <unistd.h>
#include <fcntl.h>
#include <time.h>
unsigned long leaf_work(unsigned long n);
static volatile unsigned long sink;
static int devnull;
static char byte;
__attribute__((noinline)) void caller_major(unsigned long n) { sink += leaf_work(n); }
__attribute__((noinline)) void caller_minor(unsigned long n) { sink += leaf_work(n); }
__attribute__((noinline)) void writer_major(int n) { for (int i = 0; i < n; i++) sink += write(devnull, &byte, 1); }
__attribute__((noinline)) void writer_minor(int n) { for (int i = 0; i < n; i++) sink += write(devnull, &byte, 1); }
/* The callers take turns at random, 3:1: a fixed pattern repeats with a period the sampling
   period can alias with, which skews the measured split by several points from run to run. */
static unsigned rng = 2463534242u;
static int major_turn(void) { rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5; return rng % 4 != 0; }
__attribute__((noinline)) void run_compute(double secs) {
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    if (major_turn()) caller_major(200000); else caller_minor(200000);
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
}
__attribute__((noinline)) void run_syscalls(double secs) {
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
  do {
    if (major_turn()) writer_major(20); else writer_minor(20);
    clock_gettime(CLOCK_MONOTONIC, &t);
  } while ((t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 < secs);
}
int main(int argc, char **argv) {
  devnull = open("/dev/null", O_WRONLY);
  double secs = argc > 2 ? atof(argv[2]) : 3;
  if (argv[1][0] == 'c') run_compute(secs); else run_syscalls(secs);
  return 0;
}
`;

/**
 * Builds the 3:1 split program into `dir`: the leaf without a frame pointer in its own object,
 * the callers with theirs. Run it as `split c SECONDS` (frameless C leaf) or `split s SECONDS`
 * (libc's write wrapper). Returns the binary's path.
 */
/** Go: a CPU-burning function the compiler keeps (and its sink), for Go workloads to call. */
export const GO_SPIN = `var sink int

//go:noinline
func spin(n int) int {
	x := 0
	for i := 0; i < n; i++ {
		x = x*31 + i
	}
	return x
}
`;

export function buildSplitWorkload(dir: string): string {
  const leafSrc = join(dir, 'leaf.c');
  const mainSrc = join(dir, 'main.c');
  writeFileSync(leafSrc, C_LEAF);
  writeFileSync(mainSrc, C_MAIN);
  const bin = join(dir, 'split');
  execFileSync('gcc', ['-O2', '-fomit-frame-pointer', '-c', '-o', join(dir, 'leaf.o'), leafSrc]);
  execFileSync('gcc', ['-O1', '-fno-omit-frame-pointer', '-o', bin, mainSrc, join(dir, 'leaf.o')]);
  return bin;
}
