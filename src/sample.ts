// What one on-CPU record from the kernel looks like once decoded (see bpf/oncpu.h and
// src/record-decoder.ts). Stacks are leaf first. Views point into the batch buffer: copy
// anything that must outlive the batch callback.

export interface UserRegs {
  ip: bigint;
  sp: bigint;
  bp: bigint;
}

export interface OnCpuSample {
  pid: number;
  tid: number;
  cpu: number;
  /** CLOCK_MONOTONIC (bpf_ktime_get_ns) nanoseconds. */
  timeNs: bigint;
  /** Thread name (task comm). */
  comm: string;
  /** Kernel stack, leaf first; empty when the sample hit user mode. */
  kernelStack: BigUint64Array;
  /** User stack from the frame-pointer walk, leaf first (user ip first). */
  userStack: BigUint64Array;
  /** User-mode registers at the sample, or null for kernel threads. */
  userRegs: UserRegs | null;
  /** The top of the user stack: bytes starting at userRegs.sp. */
  stackSnapshot: Buffer;
  /** Bit set of FW_SAMPLE_* flags from bpf/oncpu.h (e.g. user stack read failed). */
  flags: number;
  /** Off-CPU records: nanoseconds the thread was blocked from timeNs on (the stacks are where
   * it blocked). 0 for on-CPU samples. */
  offCpuNs: number;
  /** Off-CPU records: the task state it blocked in (TASK_INTERRUPTIBLE, ...); 0 otherwise. */
  taskState: number;
  /** Go processes: the goroutine the thread was running (0: none, or not Go). */
  goid: number;
  /** The goroutine's pprof labels as the kernel copied them (see bpf/oncpu.h; decodeGoLabels). */
  labels: Buffer;
}
