// The capture pipeline between the ring buffer and the profile: decode each batch, capture the
// process's maps the first time it is seen (so it can still be symbolized after it exits) and
// hand them to the kernel's unwind tables, repair the leaf frame of stacks walked without
// tables, count the stacks that were cut short, aggregate unique stacks; at the end symbolize
// every unique address once and build the profile.

import { existsSync } from 'node:fs';
import { Aggregator, type StackEntry } from './aggregator.js';
import { Kallsyms } from './kallsyms.js';
import { logger, memoryFigures as memory } from './logger.js';
import { DEFAULT_MAX_ENTRIES, MAX_NAME } from './perf-map.js';
import { ProcessTable, type PerfMapTotals } from './process-table.js';
import { buildProfile, type ResolvedAddress } from './profile-builder.js';
import type { Profile } from './profile-model.js';
import { decodeBatch, RECORD_LAYOUT, RecordDecodeError, SAMPLE_FLAG, STACK_END, type RawSample } from './record-decoder.js';
import type { OnCpuSample } from './sample.js';
import { Symbolizer, type SymbolizerOptions, type SymbolizerStats } from './symbolizer.js';
import { goroutineStateName, threadStateName } from './thread-state.js';
import type { KernelTables } from './unwind/kernel-tables.js';
import { frameKind, OWN_FRAME, repairUserStack, type RuleLookup } from './unwind/leaf-repair.js';
import { ruleLookupFor, UnwindTables } from './unwind/unwind-tables.js';

export interface CaptureOptions {
  frequency: number;
  /** Off-CPU time is recorded too: the profile gets off_cpu and wall sample types. */
  offCpu?: boolean;
  /**
   * Called for every process the first time it has samples, again when it execs (its image
   * changed), and when it exits: the recorder registers Go processes with the sampler here, and
   * forgets them before their pid can be reused.
   */
  onProcess?: (pid: number, event: 'new' | 'exec' | 'exit') => void;
  /**
   * The name of a goroutine wait reason code of process `pid` (its Go release's
   * waitReasonStrings); undefined when unknown.
   */
  goWaitReason?: (pid: number, code: number) => string | undefined;
  /** Turn off the leaf repair (for comparisons with a plain frame-pointer walk). */
  noRepair?: boolean;
  /** Decode every sample fully, never counting from the raw record (tests compare the two). */
  noFastPath?: boolean;
  procRoot?: string;
  /**
   * One profile and done (record): the symbolizer worker is closed as soon as user addresses
   * are resolved, before kallsyms is read, so the two largest transient allocations of a run
   * never add up. Without it the worker and its caches stay for the next window.
   */
  oneShot?: boolean;
  /** The user-space symbolizer's worker lifetime and cache bound (windows; see Symbolizer). */
  symbolizer?: Pick<SymbolizerOptions, 'idleTimeoutMs' | 'cacheEntries'>;
  /** Unwind-table bytes kept for the leaf repair (see UnwindTables; default 256 MiB). */
  unwindBytes?: number;
  /** Bytes of a perf map read per window at most (perf-map.ts); default: a whole gigabyte. */
  perfMapReadBudget?: number;
}

export interface FinishOptions {
  timeNanos: bigint;
  durationNanos: bigint;
  comments: string[];
}

const S = RECORD_LAYOUT.sample;
/** Words of 2^21 and up make a value of 2^53 and up: no user-space address. */
const HI_LIMIT = 1 << 21;
/** Cached frame kinds per process before the cache starts over. */
const MAX_FRAME_KIND_ENTRIES = 65536;

/** A walk that met an address in no known mapping re-reads the process's maps at most this often. */
const RESYNC_INTERVAL_MS = 100;

/** Why user stacks ended early (see STACK_END), counted over the capture's life. */
export interface WalkCounts {
  /** Stacks walked with the unwind tables. */
  tableWalks: number;
  /** Stacks walked by frame pointers because the process's tables were not loaded yet. */
  noTables: number;
  /** Stacks walked by the kernel's bpf_get_stack (no table walk on this kernel). */
  kernelWalks: number;
  /** Table walks that ended early, by reason. */
  truncated: { frameCap: number; unreadable: number; noRule: number; badFrame: number; noRbp: number };
}

export function emptyWalkCounts(): WalkCounts {
  return { tableWalks: 0, noTables: 0, kernelWalks: 0, truncated: { frameCap: 0, unreadable: 0, noRule: 0, badFrame: 0, noRbp: 0 } };
}

const TRUNCATION_REASON: Array<keyof WalkCounts['truncated'] | undefined> = [];
TRUNCATION_REASON[STACK_END.frameCap] = 'frameCap';
TRUNCATION_REASON[STACK_END.unreadable] = 'unreadable';
TRUNCATION_REASON[STACK_END.noRule] = 'noRule';
TRUNCATION_REASON[STACK_END.badFrame] = 'badFrame';
TRUNCATION_REASON[STACK_END.noRbp] = 'noRbp';

/** The truncation counts as the profile's comment and the run's summary say them. */
export function truncationSummary(c: WalkCounts): string {
  const t = c.truncated;
  const n = t.frameCap + t.unreadable + t.noRule + t.badFrame + t.noRbp;
  let s =
    `user stacks truncated: ${n} of ${c.tableWalks} walked with unwind tables (frame cap ${t.frameCap}, unreadable memory ${t.unreadable}, ` +
    `no unwind rule ${t.noRule}, bad frame ${t.badFrame}, lost rbp ${t.noRbp})`;
  if (c.noTables > 0) s += `; ${c.noTables} walked by frame pointers before their process's tables were loaded`;
  if (c.kernelWalks > 0) s += `; ${c.kernelWalks} walked by bpf_get_stack (not counted)`;
  return s;
}

function diffWalkCounts(now: WalkCounts, then: WalkCounts): WalkCounts {
  const t = now.truncated;
  const u = then.truncated;
  return {
    tableWalks: now.tableWalks - then.tableWalks,
    noTables: now.noTables - then.noTables,
    kernelWalks: now.kernelWalks - then.kernelWalks,
    truncated: {
      frameCap: t.frameCap - u.frameCap,
      unreadable: t.unreadable - u.unreadable,
      noRule: t.noRule - u.noRule,
      badFrame: t.badFrame - u.badFrame,
      noRbp: t.noRbp - u.noRbp,
    },
  };
}

const UNKNOWN: ResolvedAddress = { frames: [{ name: '[unknown]', kind: 'unknown' }] };
/** A process-table key that never holds maps (aliases are negative and counted down from -1). */
const NO_MAPS = 0;

export class OnCpuCapture {
  readonly processes: ProcessTable;
  /**
   * The kernel's unwind tables, once a sampler with the table walk is open: each process's
   * mappings are handed to them on its first sample, after an exec, and when a walk met an
   * address in none of them.
   */
  kernelTables: KernelTables | undefined;
  private unwind: UnwindTables;
  private aggregator = new Aggregator();
  private readonly lookups = new Map<number, RuleLookup>();
  /** Per pid: the frame kind of the code at an address (see rawSample). */
  private readonly frameKinds = new Map<number, Map<number, number>>();
  private processesSeen = 0;
  /** The image generation of each pid: bumped by every exec record. */
  private readonly generation = new Map<number, number>();
  /** `${pid}:${gen}` of a replaced image → the process-table alias holding its maps. */
  private readonly retired = new Map<string, number>();
  private nextAlias = -1;
  /** Pids whose exit record came during the window being filled / the one before it. */
  private exitedNow = new Set<number>();
  private exitedEarlier = new Set<number>();
  /** Keys of `retired` made during the window being filled / the one before it. */
  private retiredNow: string[] = [];
  private retiredEarlier: string[] = [];
  private symbolizer: Symbolizer | undefined;
  /** Kernel addresses only: its pool never starts a worker. */
  private kernelSymbolizer: Symbolizer | undefined;
  /** Batches that could not be decoded. */
  decodeErrors = 0;
  /** The user-space symbolizer's counters (cache hits and misses), once it exists. */
  get symbolizerStats(): SymbolizerStats | undefined {
    return this.symbolizer?.stats;
  }

  /** The last profile's waits of the Go runtime's own goroutines, left out of it. */
  systemGoroutines = { records: 0, ns: 0 };
  /** Samples counted straight from the raw record (see rawSample). */
  fastPathSamples = 0;
  /** How user stacks were walked and why they ended early, over the capture's life. */
  readonly walks: WalkCounts = emptyWalkCounts();
  /** `walks` when the last profile was built (its comment counts the window's own). */
  private walksAtFinish: WalkCounts = emptyWalkCounts();
  /** Per pid: when a walk's unknown mapping last made us re-read its maps. */
  private readonly resynced = new Map<number, number>();

  constructor(private readonly opts: CaptureOptions) {
    this.processes = new ProcessTable({ procRoot: opts.procRoot, perfMapReadBudget: opts.perfMapReadBudget });
    this.unwind = new UnwindTables({ maxBytes: opts.unwindBytes });
  }

  /** On-CPU samples. */
  get sampleCount(): number {
    return this.aggregator.sampleCount;
  }

  /** Off-CPU records and the blocked time they carry. */
  get offCpuRecords(): number {
    return this.aggregator.offCpuRecords;
  }

  get offCpuNs(): number {
    return this.aggregator.offCpuNs;
  }

  /** Of those, waiting goroutines' records and the time they stand for. */
  get goWaitRecords(): number {
    return this.aggregator.goWaitRecords;
  }

  get goWaitNs(): number {
    return this.aggregator.goWaitNs;
  }

  /** Processes that had samples (the lookups go at finish() of a one-shot capture). */
  get processCount(): number {
    return this.processesSeen;
  }

  get uniqueStacks(): number {
    return this.aggregator.size;
  }

  /** The aggregated stacks so far, before symbolization (tests compare captures with it). */
  stacksForTests(): IterableIterator<StackEntry> {
    return this.aggregator.stacks();
  }

  addBatch(batch: Buffer): void {
    try {
      decodeBatch(batch, {
        rawSample: this.opts.noFastPath ? undefined : (r) => this.rawSample(r),
        sample: (s) => this.addSample(s),
        exec: (pid) => this.exec(pid),
        exit: (pid) => {
          this.exitedNow.add(pid);
          this.kernelTables?.forget(pid);
          this.resynced.delete(pid);
          this.opts.onProcess?.(pid, 'exit');
        },
      });
    } catch (e) {
      if (!(e instanceof RecordDecodeError)) throw e;
      this.decodeErrors++;
      logger().warn({ err: e.message }, 'malformed ring buffer batch; the records before it were kept');
    }
  }

  addSample(s: OnCpuSample): void {
    let lookup = this.lookups.get(s.pid);
    if (lookup === undefined) {
      const info = this.processes.ensure(s.pid);
      if (info && !info.exited) this.kernelTables?.sync(s.pid, info);
      lookup = this.ruleLookup(s.pid);
      this.lookups.set(s.pid, lookup);
      this.processesSeen++;
      this.opts.onProcess?.(s.pid, 'new');
    }
    this.countWalk(s.pid, s.flags);
    let user = s.userStack;
    // A table walk's stack is complete as it is; others get their leaf repaired.
    if (!this.opts.noRepair && s.userRegs !== null && user.length > 0 && (s.flags & SAMPLE_FLAG.tableWalk) === 0) {
      user = repairUserStack(s, lookup);
    }
    const state = this.stateOf(s.pid, s.offCpuNs, s.taskState, s.flags);
    this.aggregator.add(s.pid, this.generation.get(s.pid) ?? 0, s.tid, s.comm, s.kernelStack, user, state, s.offCpuNs, s.goid, s.labels);
  }

  /**
   * The hot path: a sample of a known process whose stack is already counted is counted
   * straight from the record's bytes, without decoding it (no BigInt, no typed arrays, no
   * objects), when its repair is one of the two common cases, decided exactly as
   * repairUserStack decides them:
   * - the leaf runs in its own rbp frame and the snapshot word at rbp + 8 is the frame-pointer
   *   walk's second frame: the stack stays as it is;
   * - the leaf is frameless (CFA = rsp + k, return address just below the CFA), its caller runs
   *   in its own rbp frame, and the caller's return address (at rbp + 8) is the walk's second
   *   frame: the leaf's return address, read at sp + k - 8, goes in between.
   * Everything else, and every stack seen for the first time, takes the full path.
   */
  private rawSample(r: RawSample): boolean {
    const lookup = this.lookups.get(r.pid);
    if (lookup === undefined) return false;
    const batch = r.batch;
    const end = r.framesAt + (r.kernelFrames + r.userFrames) * 8;
    let bytes: string;
    if (this.opts.noRepair || (r.flags & (SAMPLE_FLAG.userRegs | SAMPLE_FLAG.tableWalk)) !== SAMPLE_FLAG.userRegs || r.userFrames === 0) {
      bytes = batch.toString('latin1', r.framesAt, end);
    } else {
      if (r.userFrames < 2) return false;
      const u32 = r.u32;
      const w = r.rec >>> 2;
      const ipLo = u32[w + (S.user_ip >>> 2)];
      const ipHi = u32[w + (S.user_ip >>> 2) + 1];
      const spHi = u32[w + (S.user_sp >>> 2) + 1];
      const bpHi = u32[w + (S.user_bp >>> 2) + 1];
      if (ipHi >= HI_LIMIT || spHi >= HI_LIMIT || bpHi >= HI_LIMIT) return false;
      const fw = (r.framesAt >>> 2) + r.kernelFrames * 2;
      if (u32[fw] !== ipLo || u32[fw + 1] !== ipHi) return false;
      const sp = spHi * 0x1_0000_0000 + u32[w + (S.user_sp >>> 2)];
      const bp = bpHi * 0x1_0000_0000 + u32[w + (S.user_bp >>> 2)];
      // The word at rbp + 8 (the return address of the function owning the rbp frame) must be
      // the walk's second frame in both cases.
      const bpOff = bp - sp + 8;
      if (!(bpOff >= 8 && bpOff + 8 <= r.snapLen) || bpOff % 8 !== 0) return false;
      const bw = (r.snapAt + bpOff) >>> 2;
      if (u32[bw] !== u32[fw + 2] || u32[bw + 1] !== u32[fw + 3]) return false;
      const leaf = this.frameKindAt(r.pid, ipHi * 0x1_0000_0000 + ipLo, lookup);
      if (leaf === OWN_FRAME) {
        bytes = batch.toString('latin1', r.framesAt, end);
      } else if (leaf > 0) {
        // Frameless leaf: its return address at sp + k - 8, inside the snapshot, below the
        // caller's frame (the CFA stays under the caller's, or the walk would stop there).
        const raOff = leaf - 8;
        if (raOff + 8 > r.snapLen || raOff % 8 !== 0 || !(bp + 16 > sp + leaf)) return false;
        const rw = (r.snapAt + raOff) >>> 2;
        const raLo = u32[rw];
        const raHi = u32[rw + 1];
        if (raHi >= HI_LIMIT || (raLo === 0 && raHi === 0)) return false;
        // Were it anywhere in the frame-pointer chain, the walk would splice there instead.
        for (let j = 1, k = fw + 2; j < r.userFrames; j++, k += 2) {
          if (u32[k] === raLo && u32[k + 1] === raHi) return false;
        }
        if (this.frameKindAt(r.pid, raHi * 0x1_0000_0000 + raLo - 1, lookup) !== OWN_FRAME) return false;
        const userAt = r.framesAt + r.kernelFrames * 8;
        const raAt = r.snapAt + raOff;
        bytes =
          batch.toString('latin1', r.framesAt, userAt + 8) +
          batch.toString('latin1', raAt, raAt + 8) +
          batch.toString('latin1', userAt + 8, end);
      } else {
        return false;
      }
    }
    if (r.labelsLen > 0) bytes += batch.toString('latin1', r.labelsAt, r.labelsAt + r.labelsLen);
    const state = this.stateOf(r.pid, r.offCpuNs, r.taskState, r.flags);
    const key = Aggregator.key(r.pid, this.generation.get(r.pid) ?? 0, r.tid, r.goid, r.comm, state, r.kernelFrames, bytes);
    if (!this.aggregator.bump(key, r.offCpuNs)) return false;
    this.fastPathSamples++;
    this.countWalk(r.pid, r.flags);
    return true;
  }

  /**
   * Counts how a sample's user stack was walked and why it ended; a walk that met an address
   * in no mapping the kernel knows (a library loaded since, new JIT code) has the process's
   * maps read again and handed to the kernel, at most every RESYNC_INTERVAL_MS.
   */
  private countWalk(pid: number, flags: number): void {
    if ((flags & SAMPLE_FLAG.userRegs) === 0) return;
    const w = this.walks;
    const end = (flags & SAMPLE_FLAG.stackEndMask) >>> SAMPLE_FLAG.stackEndShift;
    if (flags & SAMPLE_FLAG.tableWalk) {
      w.tableWalks++;
      const reason = TRUNCATION_REASON[end];
      if (reason) w.truncated[reason]++;
    } else if (flags & SAMPLE_FLAG.noTables) {
      w.noTables++;
    } else if (end === STACK_END.kernelWalk) {
      w.kernelWalks++;
    }
    const tables = this.kernelTables;
    if (tables !== undefined && (flags & SAMPLE_FLAG.unknownMapping) !== 0) {
      const now = performance.now();
      const last = this.resynced.get(pid);
      if (last !== undefined && now - last < RESYNC_INTERVAL_MS) return;
      this.resynced.set(pid, now);
      const info = this.processes.refresh(pid);
      if (info && !info.exited) tables.sync(pid, info);
    }
  }

  /**
   * Hands the kernel's tables the mappings of processes already running (a scan of /proc),
   * so that their first samples, on-CPU or blocked, keep their callers.
   */
  syncRunning(pids: number[]): void {
    const tables = this.kernelTables;
    if (!tables) return;
    for (const pid of pids) {
      if (tables.has(pid)) continue;
      const info = this.processes.ensure(pid);
      // Kernel threads map nothing.
      if (info && !info.exited && info.mappings.length > 0) tables.sync(pid, info);
      else this.processes.forget(pid);
    }
  }

  /** '' for on-CPU samples; the thread's or the goroutine's state for off-CPU time. */
  private stateOf(pid: number, offCpuNs: number, taskState: number, flags: number): string {
    if (offCpuNs <= 0) return '';
    if (flags & SAMPLE_FLAG.goWait) return goroutineStateName(taskState, (code) => this.opts.goWaitReason?.(pid, code));
    return threadStateName(taskState, flags);
  }

  /** frameKind() of the code at `addr` in process `pid`, cached. */
  private frameKindAt(pid: number, addr: number, lookup: RuleLookup): number {
    let m = this.frameKinds.get(pid);
    if (m === undefined) this.frameKinds.set(pid, (m = new Map()));
    let v = m.get(addr);
    if (v === undefined) {
      if (m.size >= MAX_FRAME_KIND_ENTRIES) m.clear();
      v = frameKind(lookup(BigInt(addr)));
      m.set(addr, v);
    }
    return v;
  }

  /**
   * A new image: samples before this record (the ring buffer keeps them in order) belong to the
   * old one. Its maps, if we captured them, move to an alias so those samples still resolve
   * against them; the new image's maps are read now, while the process is certainly alive.
   */
  private exec(pid: number): void {
    // A pid that execs is alive (a reused pid, or exit and exec records of one window).
    this.exitedNow.delete(pid);
    this.exitedEarlier.delete(pid);
    const gen = this.generation.get(pid) ?? 0;
    if (this.processes.retire(pid, this.nextAlias)) {
      this.retired.set(`${pid}:${gen}`, this.nextAlias--);
      if (!this.opts.oneShot) this.retiredNow.push(`${pid}:${gen}`);
    }
    this.generation.set(pid, gen + 1);
    this.frameKinds.delete(pid);
    // The kernel forgot the old image's tables at the exec (bpf/oncpu.bpf.c emit_exec).
    this.kernelTables?.forget(pid);
    const info = this.processes.refresh(pid);
    if (info && !info.exited) this.kernelTables?.sync(pid, info);
    this.opts.onProcess?.(pid, 'exec');
  }

  /**
   * Where an entry's user addresses resolve: the live process for its current image, the alias
   * of a replaced one, or an alias with no maps at all (frames become [unknown]) when the old
   * image was never captured: unknown is better than a name from the wrong binary.
   */
  private symbolPid(e: StackEntry): number {
    if (e.gen === (this.generation.get(e.pid) ?? 0)) return e.pid;
    return this.retired.get(`${e.pid}:${e.gen}`) ?? NO_MAPS;
  }

  private ruleLookup(pid: number): RuleLookup {
    return ruleLookupFor(this.unwind, (addr) => {
      const r = this.processes.resolve(pid, addr);
      if (!r || r.fileKey === undefined || r.openPath === undefined || r.vaddr === undefined) return undefined;
      return { fileKey: r.fileKey, openPath: r.openPath, vaddr: r.vaddr };
    });
  }

  /** Symbolizes every unique address once and builds the profile. */
  async finish(opts: FinishOptions): Promise<Profile> {
    if (this.opts.oneShot) {
      // No batch comes after this one: the unwind rules and the table worker can go before
      // symbolization peaks.
      await this.kernelTables?.close();
      this.kernelTables = undefined;
      this.unwind = new UnwindTables({ maxBytes: this.opts.unwindBytes });
      this.lookups.clear();
      this.frameKinds.clear();
    }
    logger().debug(memory(), 'symbolizing');
    // This window's stacks. Windows (not one-shot) go on taking batches while this one is
    // symbolized: they start a new aggregator now, so nothing lands in a window being built.
    const aggregator = this.aggregator;
    if (!this.opts.oneShot) this.aggregator = new Aggregator();
    const symbolPid = (e: StackEntry) => this.symbolPid(e);
    const { user, kernel } = aggregator.uniqueAddresses(symbolPid);
    this.symbolizer ??= new Symbolizer({ processes: this.processes, ...this.opts.symbolizer });
    const userRes = (await this.symbolizer.symbolize({ user })).user;
    if (this.opts.oneShot) {
      await this.symbolizer.close();
      this.symbolizer = undefined;
    }
    logger().debug(memory(), 'symbolized user addresses');
    if (!this.kernelSymbolizer && kernel.size > 0) this.loadKernelSymbols(kernel);
    const kernelRes = this.kernelSymbolizer?.symbolizeKernel(kernel) ?? new Map();
    logger().debug(memory(), 'symbolized kernel addresses');
    const res = { user: userRes, kernel: kernelRes };
    const comments = [...opts.comments];
    if (this.decodeErrors > 0) comments.push(`malformed ring buffer batches skipped: ${this.decodeErrors}`);
    const maps = perfMapComment(this.processes.perfMapStats());
    if (maps) comments.push(maps);
    const walks = diffWalkCounts(this.walks, this.walksAtFinish);
    this.walksAtFinish = structuredClone(this.walks);
    if (walks.tableWalks + walks.noTables + walks.kernelWalks > 0) comments.push(truncationSummary(walks));
    const profile = buildProfile({
      stacks: aggregator.stacks(),
      user: (pid, a) => res.user.get(pid)?.get(a) ?? UNKNOWN,
      kernel: (a) => res.kernel.get(a) ?? UNKNOWN,
      processName: (pid) => this.processes.get(pid)?.comm ?? (pid > 0 ? String(pid) : '[exec]'),
      symbolPid,
      frequency: this.opts.frequency,
      offCpu: this.opts.offCpu === true,
      timeNanos: opts.timeNanos,
      durationNanos: opts.durationNanos,
      comments,
      systemGoroutines: (this.systemGoroutines = { records: 0, ns: 0 }),
    });
    if (!this.opts.oneShot) this.forgetExited();
    return profile;
  }

  /**
   * Windows: forgets the processes that exited, and the images replaced by an exec, before the
   * previous window closed (their samples went into that window, or this one), and closes the
   * files only they mapped. Without this an agent keeps every process it ever sampled, its
   * maps and its files open.
   */
  private forgetExited(): void {
    this.forgetUnsampled();
    const gone = this.exitedEarlier;
    this.exitedEarlier = this.exitedNow;
    this.exitedNow = new Set();
    const replaced = this.retiredEarlier;
    this.retiredEarlier = this.retiredNow;
    this.retiredNow = [];
    if (gone.size === 0 && replaced.length === 0) return;
    for (const k of replaced) {
      const alias = this.retired.get(k);
      if (alias === undefined) continue;
      this.processes.forget(alias);
      this.retired.delete(k);
    }
    // A gone process's replaced images were made before its exit (an exec after it clears the
    // exit), so `replaced`, now or a window ago, has already taken their aliases.
    for (const pid of gone) {
      if (this.exitedEarlier.has(pid)) continue; // a reused pid exited again: next window
      this.lookups.delete(pid);
      this.frameKinds.delete(pid);
      this.generation.delete(pid);
      this.resynced.delete(pid);
      this.processes.forget(pid);
    }
    this.processes.sweep();
  }

  /**
   * Processes handed to the tables by syncRunning() that exited without ever being sampled
   * (the kernel sends exit records only for those it sampled): gone from the tables and the
   * process table too.
   */
  private forgetUnsampled(): void {
    const tables = this.kernelTables;
    if (!tables) return;
    for (const pid of tables.processIds()) {
      if (this.lookups.has(pid) || existsSync(`/proc/${pid}`)) continue;
      tables.forget(pid);
      this.processes.forget(pid);
    }
  }

  /**
   * Reads the kernel's symbols, if not read yet. One profile (`forAddresses`) keeps only the
   * symbols it needs; windows keep the whole table. The agent calls this before it starts the
   * sampler, so that the load's scratch (~10 MB) is gone before the first window peaks.
   */
  loadKernelSymbols(forAddresses?: Iterable<bigint>): void {
    if (this.kernelSymbolizer) return;
    let kallsyms: Kallsyms | undefined;
    try {
      kallsyms = this.opts.oneShot && forAddresses ? Kallsyms.loadFor(forAddresses) : Kallsyms.load();
    } catch (e) {
      logger().warn({ err: (e as Error).message }, 'cannot read /proc/kallsyms; kernel frames will be [kernel]');
    }
    this.kernelSymbolizer = new Symbolizer({ processes: this.processes, kallsyms });
  }

  /** Starts a new window: the counts go, the process table and symbol caches stay (a window
   * that finish() built already started a fresh aggregator). */
  resetWindow(): void {
    if (this.opts.oneShot) this.aggregator.clear();
    this.decodeErrors = 0;
  }

  async close(): Promise<void> {
    await this.kernelTables?.close();
    await this.symbolizer?.close();
    await this.kernelSymbolizer?.close();
    this.processes.close();
  }
}

/** What the perf maps skipped, for the profile's comments; undefined when nothing was. */
export function perfMapComment(t: PerfMapTotals): string | undefined {
  if (t.malformed + t.evicted + t.longNames + t.bytesUnread === 0) return undefined;
  return (
    `perf maps: ${t.maps} read, ${t.lines} lines; skipped: ${t.malformed} malformed lines, ${t.evicted} oldest entries dropped ` +
    `(at most ${DEFAULT_MAX_ENTRIES} kept per map), ${t.longNames} names cut at ${MAX_NAME} bytes, ${t.bytesUnread} bytes not read yet`
  );
}
