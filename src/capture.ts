// The capture pipeline between the ring buffer and the profile: decode each batch, capture the
// process's maps the first time it is seen (so it can still be symbolized after it exits),
// repair the leaf frame from unwind information, aggregate unique stacks; at the end symbolize
// every unique address once and build the profile.

import { Aggregator, type StackEntry } from './aggregator.js';
import { Kallsyms } from './kallsyms.js';
import { logger, memoryFigures as memory } from './logger.js';
import { ProcessTable } from './process-table.js';
import { buildProfile, type ResolvedAddress } from './profile-builder.js';
import type { Profile } from './profile-model.js';
import { decodeBatch, RecordDecodeError } from './record-decoder.js';
import type { OnCpuSample } from './sample.js';
import { Symbolizer } from './symbolizer.js';
import { repairUserStack, type RuleLookup } from './unwind/leaf-repair.js';
import { ruleLookupFor, UnwindTables } from './unwind/unwind-tables.js';

export interface CaptureOptions {
  frequency: number;
  /** Turn off the leaf repair (for comparisons with a plain frame-pointer walk). */
  noRepair?: boolean;
  procRoot?: string;
  /**
   * One profile and done (record): the symbolizer worker is closed as soon as user addresses
   * are resolved, before kallsyms is read, so the two largest transient allocations of a run
   * never add up. Without it the worker and its caches stay for the next window.
   */
  oneShot?: boolean;
}

export interface FinishOptions {
  timeNanos: bigint;
  durationNanos: bigint;
  comments: string[];
}

const UNKNOWN: ResolvedAddress = { frames: [{ name: '[unknown]', kind: 'unknown' }] };
/** A process-table key that never holds maps (aliases are negative and counted down from -1). */
const NO_MAPS = 0;

export class OnCpuCapture {
  readonly processes: ProcessTable;
  private unwind = new UnwindTables();
  private readonly aggregator = new Aggregator();
  private readonly lookups = new Map<number, RuleLookup>();
  private processesSeen = 0;
  /** The image generation of each pid: bumped by every exec record. */
  private readonly generation = new Map<number, number>();
  /** `${pid}:${gen}` of a replaced image → the process-table alias holding its maps. */
  private readonly retired = new Map<string, number>();
  private nextAlias = -1;
  private symbolizer: Symbolizer | undefined;
  /** Kernel addresses only: its pool never starts a worker. */
  private kernelSymbolizer: Symbolizer | undefined;
  /** Batches that could not be decoded. */
  decodeErrors = 0;

  constructor(private readonly opts: CaptureOptions) {
    this.processes = new ProcessTable({ procRoot: opts.procRoot });
  }

  get sampleCount(): number {
    return this.aggregator.sampleCount;
  }

  /** Processes that had samples (the lookups go at finish() of a one-shot capture). */
  get processCount(): number {
    return this.processesSeen;
  }

  get uniqueStacks(): number {
    return this.aggregator.size;
  }

  addBatch(batch: Buffer): void {
    try {
      decodeBatch(batch, {
        sample: (s) => this.addSample(s),
        exec: (pid) => this.exec(pid),
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
      this.processes.ensure(s.pid);
      lookup = this.ruleLookup(s.pid);
      this.lookups.set(s.pid, lookup);
      this.processesSeen++;
    }
    let user = s.userStack;
    if (!this.opts.noRepair && s.userRegs !== null && user.length > 0) {
      user = repairUserStack(s, lookup);
    }
    this.aggregator.add(s.pid, this.generation.get(s.pid) ?? 0, s.tid, s.comm, s.kernelStack, user);
  }

  /**
   * A new image: samples before this record (the ring buffer keeps them in order) belong to the
   * old one. Its maps, if we captured them, move to an alias so those samples still resolve
   * against them; the new image's maps are read now, while the process is certainly alive.
   */
  private exec(pid: number): void {
    const gen = this.generation.get(pid) ?? 0;
    if (this.processes.retire(pid, this.nextAlias)) this.retired.set(`${pid}:${gen}`, this.nextAlias--);
    this.generation.set(pid, gen + 1);
    this.processes.refresh(pid);
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
      // No batch comes after this one: the unwind rules can go before symbolization peaks.
      this.unwind = new UnwindTables();
      this.lookups.clear();
    }
    logger().debug(memory(), 'symbolizing');
    const symbolPid = (e: StackEntry) => this.symbolPid(e);
    const { user, kernel } = this.aggregator.uniqueAddresses(symbolPid);
    this.symbolizer ??= new Symbolizer({ processes: this.processes });
    const userRes = (await this.symbolizer.symbolize({ user })).user;
    if (this.opts.oneShot) {
      await this.symbolizer.close();
      this.symbolizer = undefined;
    }
    logger().debug(memory(), 'symbolized user addresses');
    if (!this.kernelSymbolizer && kernel.size > 0) {
      let kallsyms: Kallsyms | undefined;
      try {
        // One profile: keep only the symbols this one needs. Windows: the whole table, once.
        kallsyms = this.opts.oneShot ? Kallsyms.loadFor(kernel) : Kallsyms.load();
      } catch (e) {
        logger().warn({ err: (e as Error).message }, 'cannot read /proc/kallsyms; kernel frames will be [kernel]');
      }
      this.kernelSymbolizer = new Symbolizer({ processes: this.processes, kallsyms });
    }
    const kernelRes = this.kernelSymbolizer?.symbolizeKernel(kernel) ?? new Map();
    logger().debug(memory(), 'symbolized kernel addresses');
    const res = { user: userRes, kernel: kernelRes };
    const comments = [...opts.comments];
    if (this.decodeErrors > 0) comments.push(`malformed ring buffer batches skipped: ${this.decodeErrors}`);
    return buildProfile({
      stacks: this.aggregator.stacks(),
      user: (pid, a) => res.user.get(pid)?.get(a) ?? UNKNOWN,
      kernel: (a) => res.kernel.get(a) ?? UNKNOWN,
      processName: (pid) => this.processes.get(pid)?.comm ?? (pid > 0 ? String(pid) : '[exec]'),
      symbolPid,
      frequency: this.opts.frequency,
      timeNanos: opts.timeNanos,
      durationNanos: opts.durationNanos,
      comments,
    });
  }

  /** Starts a new window: the counts go, the process table and symbol caches stay. */
  resetWindow(): void {
    this.aggregator.clear();
    this.decodeErrors = 0;
  }

  async close(): Promise<void> {
    await this.symbolizer?.close();
    await this.kernelSymbolizer?.close();
    this.processes.close();
  }
}
