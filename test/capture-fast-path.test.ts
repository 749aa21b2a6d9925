import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { OnCpuCapture } from '../src/capture.js';
import { openOnCpuSampler } from '../src/native.js';
import { workDir } from './helpers.js';
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
});

function stackCounts(c: OnCpuCapture): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of c.stacksForTests()) out.set(`${e.pid}/${e.tid}/${e.comm}/${e.kernel.join(',')}/${e.user.join(',')}`, e.count);
  return out;
}
