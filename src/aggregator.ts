// Folds samples into unique (process, thread, stack) entries with counts, so symbolization and
// encoding work on unique stacks, never per sample. The key is built from the raw stack bytes,
// which is far cheaper than formatting addresses.

import { isGoroutineState } from './thread-state.js';

export interface StackEntry {
  pid: number;
  /** Which image of the process (bumped at every exec): older ones have other maps. */
  gen: number;
  tid: number;
  comm: string;
  /** Kernel frames, leaf first. */
  kernel: bigint[];
  /** User frames after leaf repair, leaf first. */
  user: bigint[];
  /** On-CPU: samples. Off-CPU: blocks (records). */
  count: number;
  /** Off-CPU: the thread state it blocked in (see thread-state.ts). '' for on-CPU entries. */
  state: string;
  /** Off-CPU: nanoseconds blocked, summed. 0 for on-CPU entries. */
  offCpuNs: number;
  /** Go: the goroutine (0 for none) and its pprof labels. */
  goid: number;
  labels: Record<string, string> | undefined;
}

/**
 * Goroutine labels as the kernel copied them (bpf/oncpu.h): per label a key length byte, a
 * value length byte, the key, the value; a key length of 0 or the end of the buffer ends it.
 */
export function decodeGoLabels(b: Buffer): Record<string, string> | undefined {
  let out: Record<string, string> | undefined;
  for (let i = 0; i + 2 <= b.length; ) {
    const k = b[i]!;
    const v = b[i + 1]!;
    if (k === 0 || i + 2 + k + v > b.length) break;
    out ??= {};
    out[b.toString('utf8', i + 2, i + 2 + k)] = b.toString('utf8', i + 2 + k, i + 2 + k + v);
    i += 2 + k + v;
  }
  return out;
}

export class Aggregator {
  private readonly entries = new Map<string, StackEntry>();
  private total = 0;
  private offCpuTotal = 0;
  private offCpuNsTotal = 0;
  private goWaitTotal = 0;
  private goWaitNsTotal = 0;

  /**
   * The entry key: the stacks' raw bytes (kernel frames, then user frames, 8 bytes each, as
   * latin1), after the identity. Kernel frame count disambiguates where the kernel part ends.
   * `state` is '' for on-CPU samples, the thread state for off-CPU time.
   */
  static key(pid: number, gen: number, tid: number, goid: number, comm: string, state: string, kernelFrames: number, stackBytes: string): string {
    return `${pid}\u0000${gen}\u0000${tid}\u0000${goid}\u0000${comm}\u0000${state}\u0000${kernelFrames}\u0000${stackBytes}`;
  }

  /**
   * Counts one more record of an existing entry (offCpuNs > 0: off-CPU time); false (and
   * nothing counted) for a new key.
   */
  bump(key: string, offCpuNs = 0): boolean {
    const e = this.entries.get(key);
    if (e === undefined) return false;
    e.count++;
    this.count(offCpuNs, e);
    return true;
  }

  /**
   * Counts one on-CPU sample, or with `state` set, one off-CPU block of offCpuNs. Stacks are
   * leaf first; `user` is the repaired user stack.
   */
  add(pid: number, gen: number, tid: number, comm: string, kernel: BigUint64Array, user: BigUint64Array, state = '', offCpuNs = 0, goid = 0, labels?: Buffer): void {
    const labelBytes = labels && labels.length > 0 ? labels.toString('latin1') : '';
    const key = Aggregator.key(pid, gen, tid, goid, comm, state, kernel.length, bytesKey(kernel) + bytesKey(user) + labelBytes);
    let e = this.entries.get(key);
    if (e !== undefined) {
      e.count++;
    } else {
      e = { pid, gen, tid, comm, kernel: Array.from(kernel), user: Array.from(user), count: 1, state, offCpuNs: 0, goid, labels: labels && labels.length > 0 ? decodeGoLabels(labels) : undefined };
      this.entries.set(key, e);
    }
    this.count(offCpuNs, e);
  }

  private count(offCpuNs: number, e: StackEntry): void {
    if (e.state === '') {
      this.total++;
      return;
    }
    e.offCpuNs += offCpuNs;
    this.offCpuTotal++;
    this.offCpuNsTotal += offCpuNs;
    if (isGoroutineState(e.state)) {
      this.goWaitTotal++;
      this.goWaitNsTotal += offCpuNs;
    }
  }

  /** Of the off-CPU records, those of waiting goroutines, and the time they stand for. */
  get goWaitRecords(): number {
    return this.goWaitTotal;
  }

  get goWaitNs(): number {
    return this.goWaitNsTotal;
  }

  /** On-CPU samples counted. */
  get sampleCount(): number {
    return this.total;
  }

  /** Off-CPU records counted, and the blocked time they carry. */
  get offCpuRecords(): number {
    return this.offCpuTotal;
  }

  get offCpuNs(): number {
    return this.offCpuNsTotal;
  }

  get size(): number {
    return this.entries.size;
  }

  stacks(): IterableIterator<StackEntry> {
    return this.entries.values();
  }

  /**
   * Unique user addresses per process and unique kernel addresses, for one symbolization pass.
   * `symbolPid` names the process table entry whose maps an entry's addresses belong to.
   */
  uniqueAddresses(symbolPid: (e: StackEntry) => number = (e) => e.pid): { user: Map<number, Set<bigint>>; kernel: Set<bigint> } {
    const user = new Map<number, Set<bigint>>();
    const kernel = new Set<bigint>();
    for (const e of this.entries.values()) {
      const pid = symbolPid(e);
      let s = user.get(pid);
      if (s === undefined) user.set(pid, (s = new Set()));
      for (let i = 0; i < e.user.length; i++) s.add(lookupAddress(e.user[i], i));
      for (let i = 0; i < e.kernel.length; i++) kernel.add(lookupAddress(e.kernel[i], i));
    }
    return { user, kernel };
  }

  clear(): void {
    this.entries.clear();
    this.total = 0;
    this.offCpuTotal = 0;
    this.offCpuNsTotal = 0;
    this.goWaitTotal = 0;
    this.goWaitNsTotal = 0;
  }
}

/**
 * The address to symbolize for frame `depth` of a stack: callers hold return addresses, which
 * point after the call instruction and can belong to the next line or even the next function
 * (a call to a noreturn function at the end of its caller), so look up the byte before.
 */
export function lookupAddress(addr: bigint, depth: number): bigint {
  return depth === 0 || addr === 0n ? addr : addr - 1n;
}

// Stacks are views into a few big buffers (a batch, the repair scratch): a Buffer over each
// such buffer is made once and sliced, rather than a Buffer object per stack.
let viewA: Buffer | undefined;
let viewB: Buffer | undefined;

function bytesKey(a: BigUint64Array): string {
  if (a.length === 0) return '';
  let v = viewA;
  if (v === undefined || v.buffer !== a.buffer) {
    v = viewB;
    if (v === undefined || v.buffer !== a.buffer) {
      v = Buffer.from(a.buffer);
      viewB = viewA;
      viewA = v;
    }
  }
  return v.toString('latin1', a.byteOffset, a.byteOffset + a.byteLength);
}
