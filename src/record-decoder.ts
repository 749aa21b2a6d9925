// Decodes the batches the native addon delivers (format and record layouts: bpf/oncpu.h).
// test/record-layout.test.ts checks every constant below against the C header.

import type { OnCpuSample } from './sample.js';

/** Byte offsets and sizes of the records in bpf/oncpu.h. */
export const RECORD_LAYOUT = {
  batchPrefixBytes: 8,
  batchAlign: 8,
  sample: {
    size: 104,
    kind: 0,
    pid: 4,
    tid: 8,
    cpu: 12,
    time_ns: 16,
    comm: 24,
    flags: 40,
    kernel_frames: 44,
    user_frames: 48,
    snapshot_len: 52,
    user_ip: 56,
    user_sp: 64,
    user_bp: 72,
    off_cpu_ns: 80,
    task_state: 88,
    labels_len: 92,
    goid: 96,
  },
  exec: { size: 32, kind: 0, pid: 4, time_ns: 8, comm: 16 },
  exit: { size: 16, kind: 0, pid: 4, time_ns: 8 },
} as const;

export const RECORD_LIMITS = {
  commLen: 16,
  maxKernelFrames: 48,
  maxUserFrames: 127,
  maxSnapshotBytes: 4096,
  maxLabelBytes: 512,
} as const;

export const RECORD_KIND = { sample: 1, exec: 2, exit: 3, offCpu: 4, goWait: 5 } as const;

/** Bits of OnCpuSample.flags (enum fw_sample_flag). */
export const SAMPLE_FLAG = {
  kernelMode: 1 << 0,
  userRegs: 1 << 1,
  kernelStackFailed: 1 << 2,
  userStackFailed: 1 << 3,
  snapshotFailed: 1 << 4,
  snapshotTruncated: 1 << 5,
  kernelThread: 1 << 6,
  preempted: 1 << 7,
  labelsTruncated: 1 << 8,
  goWait: 1 << 9,
  tableWalk: 1 << 10,
  fpFrames: 1 << 11,
  stackEndShift: 12,
  stackEndMask: 0xf << 12,
  noTables: 1 << 16,
  unknownMapping: 1 << 17,
} as const;

/** Why a user stack ends (enum fw_stack_end; fw_sample.flags & stackEndMask). */
export const STACK_END = {
  complete: 0,
  frameCap: 1,
  unreadable: 2,
  noRule: 3,
  badFrame: 4,
  noRbp: 5,
  kernelWalk: 15,
} as const;

/** Indexes of the per-CPU metrics array (enum fw_metric); the addon names them in stats(). */
export const METRIC_ID = {
  samples: 0,
  ringBufferFull: 1,
  kernelStackFailed: 2,
  userStackFailed: 3,
  snapshotFailed: 4,
  pidMapFull: 5,
  eventRingBufferFull: 6,
  sampledMapFull: 7,
  scratchMissing: 8,
  execEmitted: 9,
  exitEmitted: 10,
  offCpuEmitted: 11,
  offCpuEmittedNs: 12,
  offCpuShort: 13,
  offCpuShortNs: 14,
  offCpuRingBufferFull: 15,
  offCpuDroppedNs: 16,
  offCpuNoStorage: 17,
  goIdleBlocks: 18,
  goIdleNs: 19,
  goWaitWalks: 20,
  goWaitVisited: 21,
  goWaitEmitted: 22,
  goWaitEmittedNs: 23,
  goWaitRingBufferFull: 24,
  goWaitDroppedNs: 25,
  goWaitUnreadable: 26,
  goWaitMoved: 27,
  count: 28,
} as const;

/**
 * A sample record before decoding: numbers and offsets into the batch, one object reused for
 * every record. Valid only during the call.
 */
export interface RawSample {
  batch: Buffer;
  /** The batch as 32-bit words (8-byte aligned). */
  u32: Uint32Array;
  pid: number;
  tid: number;
  comm: string;
  flags: number;
  kernelFrames: number;
  userFrames: number;
  /** Byte offset of the record (its fixed part) in the batch. */
  rec: number;
  /** Byte offset of the stack top, then of the frames (kernel, then user) in the batch. */
  snapAt: number;
  snapLen: number;
  framesAt: number;
  /** 0 for on-CPU samples; see OnCpuSample.offCpuNs. */
  offCpuNs: number;
  taskState: number;
  /** See OnCpuSample.goid. */
  goid: number;
  /** Byte offset and size of the goroutine labels in the batch (see OnCpuSample.labels). */
  labelsAt: number;
  labelsLen: number;
}

export interface RecordHandlers {
  /**
   * Offered every sample first: return true when it was fully handled from the raw record, and
   * `sample` is not called for it. For hot paths that must not allocate per sample.
   */
  rawSample?(r: RawSample): boolean;
  sample(s: OnCpuSample): void;
  exec?(pid: number, comm: string, timeNs: bigint): void;
  exit?(pid: number, timeNs: bigint): void;
}

/** A batch that does not follow the format. Records before `offset` were delivered. */
export class RecordDecodeError extends Error {
  override readonly name = 'RecordDecodeError';
  constructor(
    message: string,
    /** Byte offset of the bad record's length prefix in the batch. */
    readonly offset: number,
  ) {
    super(`${message} (batch offset ${offset})`);
  }
}

const S = RECORD_LAYOUT.sample;
const PREFIX = RECORD_LAYOUT.batchPrefixBytes;
const EMPTY_U64 = new BigUint64Array(0);
const EMPTY_BUF = Buffer.alloc(0);

function commAt(buf: Buffer, start: number): string {
  let end = start;
  const limit = start + RECORD_LIMITS.commLen;
  while (end < limit && buf[end] !== 0) end++;
  return buf.toString('utf8', start, end);
}

/**
 * Calls a handler for every record of a batch, in order. Stacks, the snapshot and the user
 * registers' view share the batch's memory: copy what must outlive the callback. Throws
 * RecordDecodeError at the first malformed record (every length is checked before reading).
 */
export function decodeBatch(batch: Buffer, handlers: RecordHandlers): void {
  // Records are 8-byte aligned relative to the batch; __u64 views need an aligned base.
  if (batch.byteOffset % 8 !== 0) {
    const copy = Buffer.from(new ArrayBuffer(batch.length));
    batch.copy(copy);
    batch = copy;
  }
  const len = batch.length;
  const ab = batch.buffer;
  const base = batch.byteOffset;
  const u32 = new Uint32Array(ab, base, len >>> 2);
  const u64 = new BigUint64Array(ab, base, len >>> 3);
  const raw: RawSample | undefined = handlers.rawSample
    ? { batch, u32, pid: 0, tid: 0, comm: '', flags: 0, kernelFrames: 0, userFrames: 0, rec: 0, snapAt: 0, snapLen: 0, framesAt: 0, offCpuNs: 0, taskState: 0, goid: 0, labelsAt: 0, labelsLen: 0 }
    : undefined;
  // comm is usually the same as the previous sample of the thread: skip re-decoding it.
  let lastComm = '';
  let lc0 = -1, lc1 = -1, lc2 = -1, lc3 = -1;

  let off = 0;
  while (off < len) {
    if (len - off < PREFIX) throw new RecordDecodeError(`truncated length prefix: ${len - off} bytes left`, off);
    const recLen = u32[off >>> 2]!;
    const rec = off + PREFIX;
    const padded = (recLen + 7) & ~7;
    if (recLen < 8 || padded > len - rec) {
      throw new RecordDecodeError(`record length ${recLen} does not fit the ${len - rec} bytes left`, off);
    }
    const w = rec >>> 2;
    const kind = u32[w]!;
    if (kind === RECORD_KIND.sample || kind === RECORD_KIND.offCpu || kind === RECORD_KIND.goWait) {
      if (recLen < S.size) throw new RecordDecodeError(`sample record of ${recLen} bytes, need ${S.size}`, off);
      const kernelFrames = u32[w + (S.kernel_frames >>> 2)]!;
      const userFrames = u32[w + (S.user_frames >>> 2)]!;
      const snapLen = u32[w + (S.snapshot_len >>> 2)]!;
      const labelsLen = u32[w + (S.labels_len >>> 2)]!;
      if (
        kernelFrames > RECORD_LIMITS.maxKernelFrames ||
        userFrames > RECORD_LIMITS.maxUserFrames ||
        snapLen > RECORD_LIMITS.maxSnapshotBytes ||
        snapLen % 8 !== 0 ||
        labelsLen > RECORD_LIMITS.maxLabelBytes + 8 ||
        labelsLen % 8 !== 0 ||
        S.size + (kernelFrames + userFrames) * 8 + snapLen + labelsLen !== recLen
      ) {
        throw new RecordDecodeError(
          `sample lengths (${kernelFrames} kernel frames, ${userFrames} user frames, ` +
            `${snapLen} snapshot bytes, ${labelsLen} label bytes) do not add up to the record length ${recLen}`,
          off,
        );
      }
      const c = w + (S.comm >>> 2);
      const c0 = u32[c]!, c1 = u32[c + 1]!, c2 = u32[c + 2]!, c3 = u32[c + 3]!;
      if (c0 !== lc0 || c1 !== lc1 || c2 !== lc2 || c3 !== lc3) {
        lastComm = commAt(batch, rec + S.comm);
        lc0 = c0; lc1 = c1; lc2 = c2; lc3 = c3;
      }
      const flags = u32[w + (S.flags >>> 2)]!;
      const q = rec >>> 3;
      // Variable part: the stack top (a whole number of words), then the frames.
      const snapAt = rec + S.size;
      let offCpuNs = 0;
      let taskState = 0;
      if (kind !== RECORD_KIND.sample) {
        offCpuNs = u32[w + (S.off_cpu_ns >>> 2) + 1]! * 0x1_0000_0000 + u32[w + (S.off_cpu_ns >>> 2)]!;
        taskState = u32[w + (S.task_state >>> 2)]!;
      }
      const goid = u32[w + (S.goid >>> 2) + 1]! * 0x1_0000_0000 + u32[w + (S.goid >>> 2)]!;
      if (raw !== undefined) {
        raw.pid = u32[w + (S.pid >>> 2)]!;
        raw.tid = u32[w + (S.tid >>> 2)]!;
        raw.comm = lastComm;
        raw.flags = flags;
        raw.kernelFrames = kernelFrames;
        raw.userFrames = userFrames;
        raw.rec = rec;
        raw.snapAt = snapAt;
        raw.snapLen = snapLen;
        raw.framesAt = snapAt + snapLen;
        raw.offCpuNs = offCpuNs;
        raw.taskState = taskState;
        raw.goid = goid;
        raw.labelsAt = snapAt + snapLen + (kernelFrames + userFrames) * 8;
        raw.labelsLen = labelsLen;
        if (handlers.rawSample!(raw)) {
          off = rec + padded;
          continue;
        }
      }
      const framesAt = base + snapAt + snapLen;
      handlers.sample({
        pid: u32[w + (S.pid >>> 2)]!,
        tid: u32[w + (S.tid >>> 2)]!,
        cpu: u32[w + (S.cpu >>> 2)]!,
        timeNs: u64[q + (S.time_ns >>> 3)]!,
        comm: lastComm,
        kernelStack: kernelFrames ? new BigUint64Array(ab, framesAt, kernelFrames) : EMPTY_U64,
        userStack: userFrames ? new BigUint64Array(ab, framesAt + kernelFrames * 8, userFrames) : EMPTY_U64,
        userRegs:
          flags & SAMPLE_FLAG.userRegs
            ? { ip: u64[q + (S.user_ip >>> 3)]!, sp: u64[q + (S.user_sp >>> 3)]!, bp: u64[q + (S.user_bp >>> 3)]! }
            : null,
        stackSnapshot: snapLen ? batch.subarray(snapAt, snapAt + snapLen) : EMPTY_BUF,
        flags,
        offCpuNs,
        taskState,
        goid,
        labels: labelsLen ? batch.subarray(snapAt + snapLen + (kernelFrames + userFrames) * 8, snapAt + snapLen + (kernelFrames + userFrames) * 8 + labelsLen) : EMPTY_BUF,
      });
    } else if (kind === RECORD_KIND.exec) {
      const L = RECORD_LAYOUT.exec;
      if (recLen < L.size) throw new RecordDecodeError(`exec record of ${recLen} bytes, need ${L.size}`, off);
      handlers.exec?.(u32[w + (L.pid >>> 2)]!, commAt(batch, rec + L.comm), u64[(rec >>> 3) + (L.time_ns >>> 3)]!);
    } else if (kind === RECORD_KIND.exit) {
      const L = RECORD_LAYOUT.exit;
      if (recLen < L.size) throw new RecordDecodeError(`exit record of ${recLen} bytes, need ${L.size}`, off);
      handlers.exit?.(u32[w + (L.pid >>> 2)]!, u64[(rec >>> 3) + (L.time_ns >>> 3)]!);
    } else {
      throw new RecordDecodeError(`unknown record kind ${kind}`, off);
    }
    off = rec + padded;
  }
}
