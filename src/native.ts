// The only module that loads the native addon (build/Release/flamewire.node). Everything
// else imports the typed functions below.

import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface OnCpuConfig {
  /** Samples per second per CPU (cpu-clock perf event with freq=1). 1..100000. */
  frequency: number;
  /** Only these processes (tgids); an empty array starts with none (add them with addPid).
   * Omitted: the whole machine. */
  pids?: number[];
  /** With pids: processes forked by a tracked process are tracked too (all descendants). */
  followChildren?: boolean;
  /** BPF ring buffer size: a power of two of at least the page size. Default 8 MiB. */
  ringBufferBytes?: number;
  /** How often the reader thread drains the ring buffer. Default 200 ms (see the addon). */
  pollIntervalMs?: number;
  /** Bytes copied from the top of the user stack per sample, 0..4096. Default 512. */
  snapshotBytes?: number;
  /** Capacity of the in-kernel pid filter (default 8192). */
  maxPids?: number;
  /** Receives libbpf's messages (verifier log, attach failures); debug-level material. */
  /** 'bpf_get_stack' forces the kernel's user stack walk even where our bpf_loop walk works
   * (benchmarks compare the two); default 'auto'. */
  userWalk?: 'auto' | 'bpf_get_stack';
  /** Off-CPU time as well: a record per block of at least offCpuThresholdNs (sched_switch). */
  offCpu?: boolean;
  /** Shorter blocks are only counted (offCpuShort, offCpuShortNs). Default 100 µs. */
  offCpuThresholdNs?: number;
  /** 'raw_tp' forces the hash-map flavour even where tp_btf works (tests); default 'auto'. */
  offCpuFlavour?: 'auto' | 'raw_tp';
  /** Goroutine waits (bpf/gowait.bpf.c): every goWaitPeriodNs (±50% jitter), the goroutines
   * of each Go process given an allgs address are walked and the waiting ones emitted. Ignored
   * where the kernel cannot (before 5.18; info().goWaits says). Default false. */
  goWaits?: boolean;
  /** Default 10 ms. 1e6..60e9. */
  goWaitPeriodNs?: number;
  /** Goroutines looked at per walk at most (default 256), shared among the Go processes
   * walked (each looks at one at least). */
  goWaitMaxVisits?: number;
  /** Capacities of the unwind-table maps (defaults in bpf/oncpu.h: 2M rows of 8 bytes, 512k
   * page-index entries, 4096 files, 256k mapping prefixes). */
  unwindRows?: number;
  unwindPages?: number;
  unwindFiles?: number;
  unwindMappings?: number;
  onLog?: (level: 'warn' | 'info' | 'debug', message: string) => void;
}

/** Counters kept by the BPF program (summed over CPUs) and by the reader thread. */
export interface OnCpuStats {
  /** Sample records written to the ring buffer. */
  samples: number;
  /** Sample records dropped because the ring buffer was full. */
  ringBufferFull: number;
  kernelStackErrors: number;
  userStackErrors: number;
  snapshotErrors: number;
  /** Children that could not be added to the pid filter. */
  pidMapFull: number;
  /** Exec/exit records dropped because the ring buffer was full. */
  eventRingBufferFull: number;
  /** Whole-machine mode: sampled pids that could not be remembered (exit may be missed). */
  sampledMapFull: number;
  scratchMissing: number;
  execRecords: number;
  exitRecords: number;
  /** Off-CPU records written to the ring buffer, and the blocked time they carry. */
  offCpuRecords: number;
  offCpuNs: number;
  /** Blocks under the threshold: counted, not emitted. */
  offCpuShort: number;
  offCpuShortNs: number;
  /** Off-CPU records dropped because the ring buffer was full, and their blocked time. */
  offCpuRingBufferFull: number;
  offCpuDroppedNs: number;
  /** Switch-outs that could not be remembered (no task storage / thread map full). */
  offCpuNoStorage: number;
  /** Go processes: blocks of threads idle in the scheduler (no goroutine), counted only. */
  goIdleBlocks: number;
  goIdleNs: number;
  /** Goroutine waits: walks (one process each), goroutines looked at, records emitted and the
   * time they stand for, records dropped (ring buffer full) and theirs, unreadable memory. */
  goWaitWalks: number;
  goWaitVisited: number;
  goWaitRecords: number;
  goWaitNs: number;
  goWaitRingBufferFull: number;
  goWaitDroppedNs: number;
  goWaitUnreadable: number;
  /** Goroutines not emitted because they ran while their stack was read (see gowait.bpf.c). */
  goWaitMoved: number;
  /** Records the reader thread took out of the ring buffer. */
  recordsRead: number;
}

export interface BpfProgramStats {
  /** Total time spent in the sampling program (needs enableBpfStats()). */
  runTimeNs: bigint;
  runCount: bigint;
  /** Instructions the verifier went through to load it (what loading costs; 0 before 5.16). */
  verifiedInsns: number;
  /** The off-CPU sched_switch program (zero without off-CPU time). */
  offCpu: { runTimeNs: bigint; runCount: bigint; verifiedInsns: number };
  /** The goroutine-wait walk (zero without goroutine waits). */
  goWaits: { runTimeNs: bigint; runCount: bigint; verifiedInsns: number };
}

export interface SamplerInfo {
  cpus: number;
  tracepoints: 'tp_btf' | 'raw_tp';
  /** 'tables': our walk with the unwind tables (bpf_loop, 5.17+); 'bpf_get_stack': the kernel's
   * frame-pointer walk, the leaf repaired in user space. */
  userWalk: 'tables' | 'bpf_get_stack';
  /** Capacities of the unwind-table maps (all 0 without the table walk). */
  unwind: { rows: number; pages: number; files: number; mappings: number };
  /** The off-CPU flavour loaded, null without off-CPU time. */
  offCpu: 'tp_btf' | 'raw_tp' | null;
  /** Goroutine waits are walked (asked for, and the kernel can). */
  goWaits: boolean;
}

export interface OnCpuSampler {
  /** Attaches the perf events and starts the reader thread. Batches (see bpf/oncpu.h,
   * decoded by src/record-decoder.ts) arrive on the JS thread, in order. A started sampler
   * keeps the event loop alive until stop(). */
  start(onBatch: (batch: Buffer) => void): void;
  /** Adds a process to the filter (only for samplers opened with pids). */
  addPid(pid: number): void;
  /** Unwind tables (see src/unwind/kernel-tables.ts): values written at consecutive indices of
   * unwind_rows, unwind_pages or unwind_files from `first` on. */
  writeUnwind(which: 'rows' | 'pages' | 'files', first: number, values: Buffer): void;
  /** Adds (key, value) pairs to the mapping trie and removes keys from it. */
  updateUnwindMappings(add: Buffer, remove: Buffer): void;
  /** Marks a process's mappings complete (its stacks are walked with the tables) or not. */
  setUnwindPid(pid: number, ready: boolean): void;
  /** Samples of processes without tables wake the reader early (while tables are kept). */
  setTableWakeups(on: boolean): void;
  /** A Go process: samples of it carry goroutine ids from now on (see bpf/oncpu.h fw_go_proc). */
  setGoProcess(pid: number, go: GoProcessOffsets): void;
  /** The process's image went (exec, exit): forget its Go offsets. */
  removeGoProcess(pid: number): void;
  /** One walk of every Go process's goroutines now, besides the periodic ones (tests). */
  walkGoroutines(): void;
  /** What was loaded: CPUs sampled, tracepoint flavour, how user stacks are walked. */
  info(): SamplerInfo;
  stats(): OnCpuStats;
  programStats(): BpfProgramStats;
  /** Stops sampling, drains the ring buffer and delivers every remaining batch to onBatch
   * before returning; frees the BPF objects. stats()/programStats() keep the final values. */
  stop(): void;
}

/** Where a Go process keeps its current goroutine's id (struct fw_go_proc). */
export interface GoProcessOffsets {
  /** The g pointer's offset from the thread pointer (fs_base on amd64). */
  gTlsOffset: number;
  gM: number;
  mCurg: number;
  gGoid: number;
  /** runtime.g.labels, and how that release keeps labels (see bpf/oncpu.h fw_go_labels). */
  gLabels: number;
  labelsFormat: 'map' | 'slice';
  /** The Go minor release (21 for 1.21): names wait reasons in user space, BPF ignores it. */
  goMinor?: number;
  /** Goroutine waits: the address of runtime.allgs in the process, and the offsets in
   * runtime.g the walk reads. Without allgs the process's goroutines are not walked. */
  allgs?: number;
  gStackLo?: number;
  gStackHi?: number;
  gSchedSp?: number;
  gSchedPc?: number;
  gSchedBp?: number;
  gStatus?: number;
  gWaitreason?: number;
}

interface NativeSampler {
  start(onBatch: (batch: Buffer) => void): void;
  addPid(pid: number): void;
  writeUnwind(which: 'rows' | 'pages' | 'files', first: number, values: Buffer): void;
  updateUnwindMappings(add: Buffer, remove: Buffer): void;
  setUnwindPid(pid: number, ready: boolean): void;
  setTableWakeups(on: boolean): void;
  setGoProcess(pid: number, go: GoProcessOffsets): void;
  removeGoProcess(pid: number): void;
  walkGoroutines(): void;
  stats(): OnCpuStats;
  programStats(): BpfProgramStats;
  info(): SamplerInfo;
  stop(): void;
}

interface NativeLogLine {
  level: 'warn' | 'info' | 'debug';
  message: string;
}

interface NativeAddon {
  openOnCpuSampler(cfg: Omit<OnCpuConfig, 'onLog'>): NativeSampler;
  enableBpfStats(): { close(): void };
  takeLibbpfLog(): NativeLogLine[];
  pinMmapThreshold(): boolean;
  trimMemory(): boolean;
}

/** The package root: this file is src/native.ts, compiled to dist/src/native.js. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
}

/** Where the addon may be, in order. */
export function addonCandidates(): string[] {
  const root = packageRoot();
  return [join(root, 'build', 'Release', 'flamewire.node'), join(root, 'build', 'Debug', 'flamewire.node')];
}

let addon: NativeAddon | undefined;

function load(): NativeAddon {
  if (addon) return addon;
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const path of addonCandidates()) {
    try {
      addon = require(path) as NativeAddon;
      return addon;
    } catch (err) {
      failures.push(`  ${path}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new Error(
    `flamewire: cannot load the native addon; tried:\n${failures.join('\n')}\n` +
      'build it with: make -C bpf && npx node-gyp rebuild --nodedir=/usr',
  );
}

function forwardLog(onLog: OnCpuConfig['onLog']): void {
  const lines = load().takeLibbpfLog();
  if (onLog) for (const l of lines) onLog(l.level, l.message);
}

/** The addon's default poll interval (kDefaultPollIntervalMs in native/sampler_object.cc). */
const POLL_INTERVAL_S = 0.2;

/**
 * A ring buffer that holds four poll intervals of samples from every CPU at this frequency
 * (a sample record is ~1.5 KB at most in practice): the reader thread empties it every 200 ms
 * whatever the JS thread is doing, so more only costs memory (its pages count in RSS).
 */
export function defaultRingBufferBytes(frequency: number, cpus: number, offCpu = false, goWaitsPerSecond = 0): number {
  // Off-CPU records (at most ~2.6 KB) arrive at the rate threads block for longer than the
  // threshold: room for 2000 a second per CPU. A goroutine-wait record is ~100 bytes of
  // header and a stack of ~10-30 frames.
  const perCpu = frequency * 1536 + (offCpu ? 2000 * 2600 : 0);
  const want = (cpus * perCpu + goWaitsPerSecond * 320) * POLL_INTERVAL_S * 4;
  let size = 1 << 20;
  while (size < want && size < 256 << 20) size *= 2;
  return size;
}

function cpuCount(): number {
  try {
    // "0-3,8-11": count what is online, as the addon does.
    let n = 0;
    for (const part of readFileSync('/sys/devices/system/cpu/online', 'utf8').trim().split(',')) {
      const [a, b] = part.split('-').map(Number);
      n += b === undefined ? 1 : b - a + 1;
    }
    return Math.max(1, n);
  } catch {
    return availableParallelism();
  }
}

/** Loads the BPF programs and fills the pid filter; sampling begins with start(). */
export function openOnCpuSampler(cfg: OnCpuConfig): OnCpuSampler {
  const { onLog, ...nativeCfg } = cfg;
  const goWaitsPerSecond = cfg.goWaits ? (1e9 / (cfg.goWaitPeriodNs ?? 1e7)) * (cfg.goWaitMaxVisits ?? 256) : 0;
  nativeCfg.ringBufferBytes ??= defaultRingBufferBytes(cfg.frequency, cpuCount(), cfg.offCpu === true, goWaitsPerSecond);
  let native: NativeSampler;
  try {
    native = load().openOnCpuSampler(nativeCfg);
  } finally {
    forwardLog(onLog);
  }
  return {
    start(onBatch) {
      try {
        native.start(onBatch);
      } finally {
        forwardLog(onLog);
      }
    },
    addPid: (pid) => native.addPid(pid),
    writeUnwind: (which, first, values) => native.writeUnwind(which, first, values),
    updateUnwindMappings: (add, remove) => native.updateUnwindMappings(add, remove),
    setUnwindPid: (pid, ready) => native.setUnwindPid(pid, ready),
    setTableWakeups: (on) => native.setTableWakeups(on),
    setGoProcess: (pid, go) => native.setGoProcess(pid, go),
    removeGoProcess: (pid) => native.removeGoProcess(pid),
    walkGoroutines: () => native.walkGoroutines(),
    info: () => native.info(),
    stats: () => native.stats(),
    programStats: () => native.programStats(),
    stop() {
      try {
        native.stop();
      } finally {
        forwardLog(onLog);
      }
    },
  };
}

/** Turns on kernel BPF run-time statistics until close() (BPF_ENABLE_STATS). */
export function enableBpfStats(): { close(): void } {
  return load().enableBpfStats();
}

/**
 * Makes freed large buffers go back to the kernel at once (glibc's mmap threshold, pinned at
 * 128 KiB; see native/binding.cc). For the flamewire command itself, before it starts work.
 * False where the C library has no such knob.
 */
export function pinMmapThreshold(): boolean {
  return load().pinMmapThreshold();
}

/**
 * Hands the free pages of every malloc arena back to the kernel (glibc's malloc_trim; see
 * native/binding.cc). The agent calls it after each window. False where there is no such call.
 */
export function trimMemory(): boolean {
  return load().trimMemory();
}
