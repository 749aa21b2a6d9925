// The on-CPU sampler on this kernel: real BPF, real perf events, programs built by the test.
// Needs root and the built addon (make -C bpf && npx node-gyp rebuild --nodedir=/usr).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { openOnCpuSampler, type OnCpuConfig, type OnCpuStats } from '../src/native.js';
import { decodeBatch, RecordDecodeError, SAMPLE_FLAG } from '../src/record-decoder.js';
import type { OnCpuSample } from '../src/sample.js';
import { buildC, workDir } from './helpers.js';

const dir = workDir('bpf-oncpu');

// Spins in a ~12-frame deep call chain (frame pointers kept) for argv[1] ms.
const SPIN = `
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
__attribute__((noinline)) void leaf(void) { for (int i = 0; i < 100000; i++) sink += i; }
__attribute__((noinline)) void deep(int d) { if (d) deep(d - 1); else leaf(); sink++; }
int main(int argc, char **argv) { double end = now_ms() + atof(argv[1]); while (now_ms() < end) deep(10); return 0; }
`;

// Small reads in a loop: most samples land inside the kernel.
const SYSCALLS = `
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
volatile long sink;
static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
int main(int argc, char **argv) {
  int fd = open("/dev/zero", O_RDONLY); char buf[64]; double end = now_ms() + atof(argv[1]);
  while (now_ms() < end) for (int i = 0; i < 1000; i++) sink += read(fd, buf, sizeof(buf));
  return 0;
}
`;

// Waits for a line on stdin, then forks a child that forks a grandchild; the grandchild
// prints its pid and spins. Tests the pid filter's following of descendants.
const FORKER = `
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
volatile unsigned long sink;
int main(int argc, char **argv) {
  char line[16];
  if (!fgets(line, sizeof(line), stdin)) return 1;
  pid_t child = fork();
  if (child == 0) {
    pid_t grandchild = fork();
    if (grandchild == 0) {
      printf("%d\\n", getpid()); fflush(stdout);
      struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
      do { for (int i = 0; i < 100000; i++) sink += i; clock_gettime(CLOCK_MONOTONIC, &t); }
      while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < atoi(argv[1]));
      return 0;
    }
    waitpid(grandchild, NULL, 0);
    return 0;
  }
  waitpid(child, NULL, 0);
  return 0;
}
`;

// Spins, then replaces itself with argv[2] (exec record), which spins and exits.
const EXECER = `
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
volatile unsigned long sink;
int main(int argc, char **argv) {
  struct timespec t0, t; clock_gettime(CLOCK_MONOTONIC, &t0);
  do { for (int i = 0; i < 100000; i++) sink += i; clock_gettime(CLOCK_MONOTONIC, &t); }
  while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < atoi(argv[1]));
  execl(argv[2], argv[2], argv[1], (char *)NULL);
  return 1;
}
`;

const spinBin = buildC(dir, 'fwspin', SPIN, ['-O1', '-fno-omit-frame-pointer']);
const syscallBin = buildC(dir, 'fwsyscalls', SYSCALLS, ['-O1', '-fno-omit-frame-pointer']);
const forkerBin = buildC(dir, 'fwforker', FORKER, ['-O1']);
const execerBin = buildC(dir, 'fwexecer', EXECER, ['-O1']);

const children: ChildProcess[] = [];
function start(bin: string, args: string[], stdio: 'ignore' | 'pipe' = 'ignore'): ChildProcess {
  const child = spawn(bin, args, { stdio });
  children.push(child);
  return child;
}
function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((done) => child.once('exit', () => done()));
}
const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, ms));

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Capture {
  samples: OnCpuSample[];
  execs: { pid: number; comm: string }[];
  exits: number[];
  batches: Buffer[];
  stats: OnCpuStats;
}

/** Samples while `during` runs; returns everything delivered, including what stop() drained. */
async function capture(cfg: OnCpuConfig, during: (addPid: (pid: number) => void) => Promise<void>): Promise<Capture> {
  const out: Capture = { samples: [], execs: [], exits: [], batches: [], stats: undefined as never };
  const sampler = openOnCpuSampler(cfg);
  sampler.start((batch) => {
    out.batches.push(batch);
    decodeBatch(batch, {
      sample: (s) => out.samples.push(s),
      exec: (pid, comm) => out.execs.push({ pid, comm }),
      exit: (pid) => out.exits.push(pid),
    });
  });
  try {
    await during((pid) => sampler.addPid(pid));
  } finally {
    sampler.stop();
  }
  out.stats = sampler.stats();
  return out;
}

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  path: string;
}
function readMaps(pid: number): Mapping[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .trim()
    .split('\n')
    .map((line) => {
      const [range, perms, , , , ...rest] = line.split(/\s+/);
      const [start, end] = range!.split('-');
      return { start: BigInt('0x' + start), end: BigInt('0x' + end), perms: perms!, path: rest.join(' ') };
    });
}
const inside = (a: bigint, m: Mapping) => a >= m.start && a < m.end;

describe('on-CPU BPF sampler', () => {
  it('samples a CPU-bound program with its pid, tid, comm and a user stack inside its text', async () => {
    const spin = start(spinBin, ['1500']);
    await sleep(100);
    const pid = spin.pid!;
    const maps = readMaps(pid);
    const text = maps.filter((m) => m.path === spinBin && m.perms.includes('x'));
    assert.ok(text.length > 0, 'the test binary has an executable mapping');
    const stack = maps.find((m) => m.path === '[stack]')!;
    const cap = await capture({ frequency: 199, pids: [pid] }, () => sleep(700));
    assert.ok(cap.samples.length > 10, `got ${cap.samples.length} samples`);
    for (const s of cap.samples) {
      assert.equal(s.pid, pid);
      assert.equal(s.tid, pid);
      assert.equal(s.comm, 'fwspin');
      assert.ok(s.userStack.length > 0, 'user stack present');
      assert.ok(s.flags & SAMPLE_FLAG.userRegs);
    }
    // A deep chain of frames inside the binary's own text, not just the leaf.
    const deep = cap.samples.filter((s) => [...s.userStack].filter((a) => text.some((m) => inside(a, m))).length >= 8);
    assert.ok(deep.length > cap.samples.length / 2, `${deep.length} of ${cap.samples.length} samples have >= 8 frames in the text`);
    // User-mode samples: the leaf is the interrupted ip; registers and snapshot are real.
    const user = cap.samples.filter((s) => !(s.flags & SAMPLE_FLAG.kernelMode));
    assert.ok(user.length > 0);
    for (const s of user) {
      assert.equal(s.kernelStack.length, 0);
      assert.equal(s.userStack[0], s.userRegs!.ip);
      assert.ok(inside(s.userRegs!.sp, stack), 'sp lies in [stack]');
      assert.ok(s.stackSnapshot.length > 0 && s.stackSnapshot.length <= 512);
    }
    assert.equal(cap.stats.samples, cap.samples.length, 'every emitted sample was delivered');
    assert.equal(cap.stats.ringBufferFull, 0);
    await exited(spin);
  });

  it('walks frame-pointer stacks like the kernel does: our walk (no tables loaded) and bpf_get_stack agree', async () => {
    // One deep frame-pointer program, sampled first with our walk, then with the kernel's: the
    // callers above the leaf (all frames but the first, which is wherever the timer hit) must
    // be the same addresses.
    const spin = start(spinBin, ['3000']);
    await sleep(50);
    const callers = async (userWalk: 'auto' | 'bpf_get_stack') => {
      const cap = await capture({ frequency: 499, pids: [spin.pid!], userWalk }, () => sleep(600));
      const counts = new Map<string, number>();
      for (const s of cap.samples) {
        if (s.flags & SAMPLE_FLAG.kernelMode) continue;
        const key = Array.from(s.userStack.subarray(1), (a) => a.toString(16)).join(' ');
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      return [...counts.entries()].sort((x, y) => y[1] - x[1]);
    };
    const ours = await callers('auto');
    const kernels = await callers('bpf_get_stack');
    assert.ok(ours.length > 0 && kernels.length > 0);
    assert.equal(ours[0][0], kernels[0][0]);
    assert.ok(ours[0][0].split(' ').length >= 12, `stack too short: ${ours[0][0]}`);
    spin.kill('SIGKILL');
  });

  it('never delivers samples of a process outside the pid filter', async () => {
    const wanted = start(spinBin, ['1200']);
    const other = start(spinBin, ['1200']);
    await sleep(50);
    const cap = await capture({ frequency: 199, pids: [wanted.pid!] }, () => sleep(700));
    assert.ok(cap.samples.some((s) => s.pid === wanted.pid));
    assert.equal(cap.samples.filter((s) => s.pid !== wanted.pid).length, 0);
    await Promise.all([exited(wanted), exited(other)]);
  });

  it('follows children: a grandchild forked after start is sampled', async () => {
    const forker = start(forkerBin, ['600'], 'pipe');
    let grandchild = 0;
    const printed = new Promise<void>((done) =>
      forker.stdout!.on('data', (d: Buffer) => {
        grandchild = Number(d.toString().trim());
        done();
      }),
    );
    const cap = await capture({ frequency: 199, pids: [forker.pid!], followChildren: true }, async () => {
      forker.stdin!.write('go\n');
      await printed;
      await exited(forker);
    });
    assert.ok(grandchild > 0);
    const own = cap.samples.filter((s) => s.pid === grandchild);
    assert.ok(own.length > 5, `got ${own.length} samples of the grandchild`);
    assert.ok(cap.exits.includes(grandchild), 'its exit was reported');
  });

  it('reports exec and exit of a tracked process', async () => {
    const execer = start(execerBin, ['300', spinBin]);
    const cap = await capture({ frequency: 199, pids: [execer.pid!] }, async () => {
      await exited(execer);
      await sleep(100);
    });
    assert.deepEqual(cap.execs.filter((e) => e.pid === execer.pid).map((e) => e.comm), ['fwspin']);
    assert.ok(cap.exits.includes(execer.pid!));
    const comms = new Set(cap.samples.map((s) => s.comm));
    assert.ok(comms.has('fwexecer') && comms.has('fwspin'), `comms seen: ${[...comms].join(',')}`);
  });

  it('samples the whole machine without idle (tgid 0) samples', async () => {
    const spin = start(spinBin, ['1000']);
    const cap = await capture({ frequency: 99 }, () => sleep(600));
    assert.ok(cap.samples.length > 0);
    assert.equal(cap.samples.filter((s) => s.pid === 0).length, 0);
    assert.ok(cap.samples.some((s) => s.pid === spin.pid));
    const kthreads = cap.samples.filter((s) => s.flags & SAMPLE_FLAG.kernelThread);
    for (const s of kthreads) {
      assert.equal(s.userStack.length, 0);
      assert.equal(s.userRegs, null);
    }
    await exited(spin);
  });

  it('gives a syscall-heavy program kernel stacks and its user registers from inside the kernel', async () => {
    const sys = start(syscallBin, ['1200']);
    await sleep(100);
    const stack = readMaps(sys.pid!).find((m) => m.path === '[stack]')!;
    const cap = await capture({ frequency: 199, pids: [sys.pid!] }, () => sleep(700));
    const inKernel = cap.samples.filter((s) => s.flags & SAMPLE_FLAG.kernelMode);
    assert.ok(inKernel.length > cap.samples.length / 4, `${inKernel.length} of ${cap.samples.length} in the kernel`);
    const withStacks = inKernel.filter((s) => s.kernelStack.length > 0);
    assert.ok(withStacks.length > inKernel.length / 2);
    for (const s of withStacks) assert.ok(s.kernelStack[0]! >= 0xffff800000000000n, 'kernel addresses');
    for (const s of inKernel) {
      assert.ok(s.userRegs, 'user registers present');
      assert.ok(inside(s.userRegs!.sp, stack), 'user sp lies in [stack]');
      assert.ok(s.stackSnapshot.length > 0);
      assert.ok(s.userStack.length > 0);
    }
    await exited(sys);
  });

  it('delivers what is still in the ring buffer when stopped, and counts it', async () => {
    const spin = start(spinBin, ['1000']);
    // The reader thread never polls during the test: everything arrives from stop().
    const cap = await capture({ frequency: 199, pids: [spin.pid!], pollIntervalMs: 60000 }, () => sleep(500));
    assert.equal(cap.batches.length, 1);
    assert.ok(cap.samples.length > 10);
    assert.equal(cap.stats.samples, cap.samples.length);
    assert.equal(cap.stats.recordsRead, cap.samples.length + cap.execs.length + cap.exits.length);
    for (const key of ['ringBufferFull', 'kernelStackErrors', 'userStackErrors', 'snapshotErrors', 'pidMapFull'] as const) {
      assert.equal(typeof cap.stats[key], 'number');
    }

    // The decoder rejects real batches cut short or corrupted, with a typed error.
    const batch = cap.batches[0]!;
    assert.throws(() => decodeBatch(batch.subarray(0, batch.length - 3), { sample() {} }), RecordDecodeError);
    assert.throws(() => decodeBatch(batch.subarray(0, 5), { sample() {} }), RecordDecodeError);
    const garbled = Buffer.from(batch);
    garbled.writeUInt32LE(garbled.readUInt32LE(8 + 44) + 1, 8 + 44); // kernel_frames of record 0
    assert.throws(() => decodeBatch(garbled, { sample() {} }), RecordDecodeError);
    const unknown = Buffer.from(batch);
    unknown.writeUInt32LE(99, 8);
    assert.throws(() => decodeBatch(unknown, { sample() {} }), /unknown record kind 99/);
    await exited(spin);
  });

  it('keeps its programs cheap to verify, so that opening a sampler is quick', () => {
    // Verifier work rather than wall time: the same for the same object on the same kernel.
    // Callers wait while a sampler opens, and whatever ran meanwhile is not sampled. A Go
    // label copy the verifier could not prune once cost ~520,000 instructions (most of a
    // second of CPU per program): programs started just before the sampler had finished
    // before it ran; a table search whose bounds lived in registers once cost 900,000. Today
    // ~24,000 with the table walk, ~5,000 without; 0 on kernels before 5.16, which do not count.
    const limit = 50_000;
    const configs: Partial<OnCpuConfig>[] = [
      {},
      { userWalk: 'bpf_get_stack' },
      { offCpu: true },
      { offCpu: true, offCpuFlavour: 'raw_tp', userWalk: 'bpf_get_stack' },
    ];
    for (const extra of configs) {
      const s = openOnCpuSampler({ frequency: 99, pids: [process.pid], ...extra });
      const p = s.programStats();
      s.stop();
      const what = JSON.stringify(extra);
      assert.ok(p.verifiedInsns < limit, `sampling program ${what}: ${p.verifiedInsns} instructions verified`);
      assert.ok(p.offCpu.verifiedInsns < limit, `off-CPU program ${what}: ${p.offCpu.verifiedInsns} verified`);
      if (extra.offCpu) assert.ok(p.offCpu.verifiedInsns > 0 || p.verifiedInsns === 0, 'the off-CPU program is counted');
    }
  });

  it('rejects bad configuration with a usage message', () => {
    assert.throws(() => openOnCpuSampler({ frequency: 0 }), /usage: openOnCpuSampler/);
    assert.throws(() => openOnCpuSampler({ frequency: 99, pids: [-1] }), /pids/);
    assert.throws(() => openOnCpuSampler({ frequency: 99, followChildren: true }), /followChildren needs pids/);
    assert.throws(() => openOnCpuSampler({ frequency: 99, ringBufferBytes: 5000 }), /power of two/);
    const s = openOnCpuSampler({ frequency: 99 });
    assert.throws(() => s.addPid(1), /without pids/);
    s.stop();
    assert.throws(() => s.start(() => {}), /stopped/);
  });
});
