// Folds samples into unique (process, thread, stack) entries with counts, so symbolization and
// encoding work on unique stacks, never per sample. The key is built from the raw stack bytes,
// which is far cheaper than formatting addresses.

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
  count: number;
}

export class Aggregator {
  private readonly entries = new Map<string, StackEntry>();
  private total = 0;

  /**
   * The entry key: the stacks' raw bytes (kernel frames, then user frames, 8 bytes each, as
   * latin1), after the identity. Kernel frame count disambiguates where the kernel part ends.
   */
  static key(pid: number, gen: number, tid: number, comm: string, kernelFrames: number, stackBytes: string): string {
    return `${pid}\u0000${gen}\u0000${tid}\u0000${comm}\u0000${kernelFrames}\u0000${stackBytes}`;
  }

  /** Counts one more sample of an existing entry; false (and nothing counted) for a new key. */
  bump(key: string): boolean {
    const e = this.entries.get(key);
    if (e === undefined) return false;
    e.count++;
    this.total++;
    return true;
  }

  /** Counts one sample. Stacks are leaf first; `user` is the repaired user stack. */
  add(pid: number, gen: number, tid: number, comm: string, kernel: BigUint64Array, user: BigUint64Array): void {
    this.total++;
    const key = Aggregator.key(pid, gen, tid, comm, kernel.length, bytesKey(kernel) + bytesKey(user));
    const e = this.entries.get(key);
    if (e !== undefined) {
      e.count++;
      return;
    }
    this.entries.set(key, { pid, gen, tid, comm, kernel: Array.from(kernel), user: Array.from(user), count: 1 });
  }

  get sampleCount(): number {
    return this.total;
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
