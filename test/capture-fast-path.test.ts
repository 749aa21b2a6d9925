import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { OnCpuCapture } from '../src/capture.js';
import { openOnCpuSampler } from '../src/native.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildC, repoRoot, workDir } from './helpers.js';
import { buildSplitWorkload } from './workloads.js';

// The capture counts most samples straight from the raw record when their leaf repair is one of
// the two common shapes (see OnCpuCapture.rawSample). That shortcut must never change a count:
// real records of a frameless C leaf and of libc's frameless write wrapper, under callers with
// frame pointers, go through both paths and must aggregate to exactly the same stacks.

const dir = workDir('capture-fast-path');
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

describe('capture fast path', () => {
  it('counts exactly what the full decode and repair count, for most samples', async () => {
    const bin = buildSplitWorkload(dir);
    const compute = spawn(bin, ['c', '4'], { stdio: 'ignore' });
    const syscalls = spawn(bin, ['s', '4'], { stdio: 'ignore' });
    children.push(compute, syscalls);
    const batches: Buffer[] = [];
    const sampler = openOnCpuSampler({ frequency: 999, pids: [compute.pid!, syscalls.pid!] });
    sampler.start((b) => batches.push(b));
    await new Promise((r) => setTimeout(r, 2000));
    sampler.stop();
    // Both captures read the processes' maps and unwind tables while they still run.
    const fast = new OnCpuCapture({ frequency: 999 });
    const full = new OnCpuCapture({ frequency: 999, noFastPath: true });
    for (const b of batches) {
      fast.addBatch(b);
      full.addBatch(b);
    }
    assert.ok(full.sampleCount > 1000, `enough samples (${full.sampleCount})`);
    assert.equal(fast.sampleCount, full.sampleCount);
    assert.ok(fast.fastPathSamples > full.sampleCount / 2, `fast path took ${fast.fastPathSamples} of ${full.sampleCount}`);
    assert.equal(full.fastPathSamples, 0);
    assert.deepEqual(stackCounts(fast), stackCounts(full));
    await fast.close();
    await full.close();
  });

  it('counts off-CPU records (blocked time, thread state) exactly as the full path does', async () => {
    const src = readFileSync(join(repoRoot, 'test', 'fixtures', 'offcpu-workload.c'), 'utf8');
    const bin = buildC(dir, 'offcpu-workload', src, ['-O2', '-g', '-fno-omit-frame-pointer', '-pthread']);
    const sleeper = spawn(bin, ['sleep', '1000'], { stdio: 'ignore' });
    const piper = spawn(bin, ['pipe', '1000'], { stdio: 'ignore' });
    children.push(sleeper, piper);
    const batches: Buffer[] = [];
    const sampler = openOnCpuSampler({ frequency: 99, pids: [sleeper.pid!, piper.pid!], offCpu: true, offCpuThresholdNs: 0 });
    sampler.start((b) => batches.push(b));
    await new Promise((r) => setTimeout(r, 2000));
    sampler.stop();
    const fast = new OnCpuCapture({ frequency: 99, offCpu: true });
    const full = new OnCpuCapture({ frequency: 99, offCpu: true, noFastPath: true });
    for (const b of batches) {
      fast.addBatch(b);
      full.addBatch(b);
    }
    assert.ok(full.offCpuRecords > 100, `enough off-CPU records (${full.offCpuRecords})`);
    assert.equal(fast.offCpuRecords, full.offCpuRecords);
    assert.equal(fast.offCpuNs, full.offCpuNs);
    // read() is one frameless libc frame (fast path); nanosleep is two (the full path's job).
    assert.ok(fast.fastPathSamples > full.offCpuRecords / 5, `fast path took ${fast.fastPathSamples} of ${full.offCpuRecords}`);
    assert.deepEqual(stackCounts(fast), stackCounts(full));
    await fast.close();
    await full.close();
  });
});

function stackCounts(c: OnCpuCapture): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of c.stacksForTests()) out.set(`${e.pid}/${e.tid}/${e.comm}/${e.state}/${e.kernel.join(',')}/${e.user.join(',')}`, `${e.count}/${e.offCpuNs}`);
  return out;
}
