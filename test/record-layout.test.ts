// The decoder's layout constants must match bpf/oncpu.h as the C compiler sees it.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { METRIC_ID, RECORD_KIND, RECORD_LAYOUT, RECORD_LIMITS, SAMPLE_FLAG, STACK_END } from '../src/record-decoder.js';
import { buildC, repoRoot, workDir } from './helpers.js';

const SOURCE = `
#include <stddef.h>
#include <stdio.h>
#include "oncpu.h"

#define F(T, f) printf("\\"%s\\":%zu,", #f, offsetof(struct T, f))
int main(void) {
  printf("{\\"layout\\":{\\"batchPrefixBytes\\":%d,\\"batchAlign\\":%d,", FW_BATCH_PREFIX_BYTES, FW_BATCH_ALIGN);
  printf("\\"sample\\":{"); F(fw_sample, kind); F(fw_sample, pid); F(fw_sample, tid); F(fw_sample, cpu);
  F(fw_sample, time_ns); F(fw_sample, comm); F(fw_sample, flags); F(fw_sample, kernel_frames);
  F(fw_sample, user_frames); F(fw_sample, snapshot_len); F(fw_sample, user_ip); F(fw_sample, user_sp);
  F(fw_sample, user_bp); F(fw_sample, off_cpu_ns); F(fw_sample, task_state); F(fw_sample, labels_len); F(fw_sample, goid); printf("\\"size\\":%zu},", sizeof(struct fw_sample));
  printf("\\"exec\\":{"); F(fw_exec_record, kind); F(fw_exec_record, pid); F(fw_exec_record, time_ns);
  F(fw_exec_record, comm); printf("\\"size\\":%zu},", sizeof(struct fw_exec_record));
  printf("\\"exit\\":{"); F(fw_exit_record, kind); F(fw_exit_record, pid); F(fw_exit_record, time_ns);
  printf("\\"size\\":%zu}},", sizeof(struct fw_exit_record));
  printf("\\"limits\\":{\\"commLen\\":%d,\\"maxKernelFrames\\":%d,\\"maxUserFrames\\":%d,\\"maxSnapshotBytes\\":%d,\\"maxLabelBytes\\":%d},",
         FW_COMM_LEN, FW_MAX_KERNEL_FRAMES, FW_MAX_USER_FRAMES, FW_MAX_SNAPSHOT_BYTES, FW_MAX_GO_LABEL_BYTES);
  printf("\\"kinds\\":{\\"sample\\":%d,\\"exec\\":%d,\\"exit\\":%d,\\"offCpu\\":%d,\\"goWait\\":%d},", FW_RECORD_SAMPLE, FW_RECORD_EXEC, FW_RECORD_EXIT, FW_RECORD_OFF_CPU, FW_RECORD_GO_WAIT);
  printf("\\"flags\\":{\\"kernelMode\\":%u,\\"userRegs\\":%u,\\"kernelStackFailed\\":%u,\\"userStackFailed\\":%u,"
         "\\"snapshotFailed\\":%u,\\"snapshotTruncated\\":%u,\\"kernelThread\\":%u,\\"preempted\\":%u,"
         "\\"labelsTruncated\\":%u,\\"goWait\\":%u,\\"tableWalk\\":%u,\\"fpFrames\\":%u,\\"stackEndShift\\":%u,"
         "\\"stackEndMask\\":%u,\\"noTables\\":%u,\\"unknownMapping\\":%u},",
         FW_SAMPLE_KERNEL_MODE, FW_SAMPLE_USER_REGS, FW_SAMPLE_KERNEL_STACK_FAILED, FW_SAMPLE_USER_STACK_FAILED,
         FW_SAMPLE_SNAPSHOT_FAILED, FW_SAMPLE_SNAPSHOT_TRUNCATED, FW_SAMPLE_KERNEL_THREAD, FW_SAMPLE_PREEMPTED,
         FW_SAMPLE_LABELS_TRUNCATED, FW_SAMPLE_GO_WAIT, FW_SAMPLE_TABLE_WALK, FW_SAMPLE_FP_FRAMES,
         FW_SAMPLE_STACK_END_SHIFT, FW_SAMPLE_STACK_END_MASK, FW_SAMPLE_NO_TABLES, FW_SAMPLE_UNKNOWN_MAPPING);
  printf("\\"stackEnd\\":{\\"complete\\":%d,\\"frameCap\\":%d,\\"unreadable\\":%d,\\"noRule\\":%d,\\"badFrame\\":%d,"
         "\\"noRbp\\":%d,\\"kernelWalk\\":%d},",
         FW_STACK_COMPLETE, FW_STACK_FRAME_CAP, FW_STACK_UNREADABLE, FW_STACK_NO_RULE, FW_STACK_BAD_FRAME,
         FW_STACK_NO_RBP, FW_STACK_KERNEL_WALK);
  printf("\\"metrics\\":{\\"samples\\":%d,\\"ringBufferFull\\":%d,\\"kernelStackFailed\\":%d,\\"userStackFailed\\":%d,"
         "\\"snapshotFailed\\":%d,\\"pidMapFull\\":%d,\\"eventRingBufferFull\\":%d,\\"sampledMapFull\\":%d,"
         "\\"scratchMissing\\":%d,\\"execEmitted\\":%d,\\"exitEmitted\\":%d,\\"offCpuEmitted\\":%d,"
         "\\"offCpuEmittedNs\\":%d,\\"offCpuShort\\":%d,\\"offCpuShortNs\\":%d,\\"offCpuRingBufferFull\\":%d,"
         "\\"offCpuDroppedNs\\":%d,\\"offCpuNoStorage\\":%d,\\"goIdleBlocks\\":%d,\\"goIdleNs\\":%d,"
         "\\"goWaitWalks\\":%d,\\"goWaitVisited\\":%d,\\"goWaitEmitted\\":%d,\\"goWaitEmittedNs\\":%d,"
         "\\"goWaitRingBufferFull\\":%d,\\"goWaitDroppedNs\\":%d,\\"goWaitUnreadable\\":%d,\\"goWaitMoved\\":%d,\\"count\\":%d}}\\n",
         FW_METRIC_SAMPLES, FW_METRIC_RINGBUF_FULL, FW_METRIC_KERNEL_STACK_FAILED, FW_METRIC_USER_STACK_FAILED,
         FW_METRIC_SNAPSHOT_FAILED, FW_METRIC_PID_MAP_FULL, FW_METRIC_EVENT_RINGBUF_FULL, FW_METRIC_SAMPLED_MAP_FULL,
         FW_METRIC_SCRATCH_MISSING, FW_METRIC_EXEC_EMITTED, FW_METRIC_EXIT_EMITTED, FW_METRIC_OFF_CPU_EMITTED,
         FW_METRIC_OFF_CPU_EMITTED_NS, FW_METRIC_OFF_CPU_SHORT, FW_METRIC_OFF_CPU_SHORT_NS, FW_METRIC_OFF_CPU_RINGBUF_FULL,
         FW_METRIC_OFF_CPU_DROPPED_NS, FW_METRIC_OFF_CPU_NO_STORAGE, FW_METRIC_OFF_CPU_GO_IDLE,
         FW_METRIC_OFF_CPU_GO_IDLE_NS, FW_METRIC_GO_WAIT_WALKS, FW_METRIC_GO_WAIT_VISITED, FW_METRIC_GO_WAIT_EMITTED,
         FW_METRIC_GO_WAIT_EMITTED_NS, FW_METRIC_GO_WAIT_RINGBUF_FULL, FW_METRIC_GO_WAIT_DROPPED_NS,
         FW_METRIC_GO_WAIT_UNREADABLE, FW_METRIC_GO_WAIT_MOVED, FW_METRIC_COUNT);
  return 0;
}
`;

describe('record layout', () => {
  const bin = buildC(workDir('record-layout'), 'layout', SOURCE, ['-Wall', '-Werror', '-I', join(repoRoot, 'bpf')]);
  const c = JSON.parse(execFileSync(bin, { encoding: 'utf8' }));

  it('matches bpf/oncpu.h field by field', () => {
    assert.deepEqual(c.layout, RECORD_LAYOUT);
  });
  it('has the same size limits', () => {
    assert.deepEqual(c.limits, RECORD_LIMITS);
  });
  it('has the same record kinds, sample flags and metric ids', () => {
    assert.deepEqual(c.kinds, RECORD_KIND);
    assert.deepEqual(c.flags, SAMPLE_FLAG);
    assert.deepEqual(c.stackEnd, STACK_END);
    assert.deepEqual(c.metrics, METRIC_ID);
  });
  it('needs no implicit padding (every size is a multiple of 8)', () => {
    for (const r of [c.layout.sample, c.layout.exec, c.layout.exit]) assert.equal(r.size % 8, 0);
  });
});
