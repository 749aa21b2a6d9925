// Turns aggregated stacks plus symbolization results into the one profile model.

import { lookupAddress, type StackEntry } from './aggregator.js';
import type { Frame, FrameKind, Mapping, Profile, Sample } from './profile-model.js';
import type { SymbolizedAddress, SymbolizedMapping } from './symbolizer.js';
import { isGoroutineState, stateLabels } from './thread-state.js';

/** What symbolization says of one address (innermost frame first) and its mapping. */
export type ResolvedAddress = SymbolizedAddress;

export interface BuildInput {
  stacks: Iterable<StackEntry>;
  /** Symbolization of a user address (already adjusted with lookupAddress). */
  user(pid: number, address: bigint): ResolvedAddress;
  kernel(address: bigint): ResolvedAddress;
  processName(pid: number): string;
  /** The process table entry an entry's user addresses resolve in (default: its pid). */
  symbolPid?: (e: StackEntry) => number;
  frequency: number;
  /** The profile has off_cpu and wall sample types (see buildProfile). */
  offCpu?: boolean;
  timeNanos: bigint;
  durationNanos: bigint;
  comments: string[];
  /** Filled with the waits of the Go runtime's own goroutines, which are left out. */
  systemGoroutines?: { records: number; ns: number };
}

export const KERNEL_MAPPING_FILE = '[kernel.kallsyms]';

/**
 * Off-CPU kernel stacks are taken inside the sched_switch tracepoint: their leaf frames are
 * the BPF program and the tracepoint's plumbing, not where the thread blocked. Matched by
 * name, so a kernel that nests them differently still loses exactly those.
 */
const TRACING_FRAME = /^(\[unknown\]|\[kernel\]|bpf_prog_\w+|bpf_trace_run\d+|__traceiter_\w+|__bpf_trace_\w+)$/;

export function buildProfile(input: BuildInput): Profile {
  const period = Math.round(1e9 / input.frequency);
  const frames: Frame[] = [];
  const mappings: Mapping[] = [];
  const mappingIndex = new Map<string, number>();
  const frameIndex = new Map<string, number[]>();
  // The kernel's mapping goes last, once every frame is known: pprof takes the first mapping
  // as the profile's main binary ("File:"), and that should be a program, not the kernel.
  const KERNEL_PENDING = -2;
  let hasKernel = false;

  const mappingFor = (m: SymbolizedMapping | undefined): number => {
    if (!m) return -1;
    let i = mappingIndex.get(m.key);
    if (i === undefined) {
      i = mappings.length;
      mappings.push({
        start: m.start,
        end: m.end,
        offset: m.offset,
        file: m.file,
        buildId: m.buildId,
        ...(m.goBuildId ? { goBuildId: m.goBuildId } : {}),
        hasFunctions: true,
        hasFilenames: m.hasLines === true,
        hasLineNumbers: m.hasLines === true,
      });
      mappingIndex.set(m.key, i);
    }
    return i;
  };

  const framesFor = (key: string, address: bigint, resolve: () => ResolvedAddress, kernel: boolean): number[] => {
    let ids = frameIndex.get(key);
    if (ids !== undefined) return ids;
    const r = resolve();
    let mapping: number;
    if (kernel) {
      hasKernel = true;
      mapping = KERNEL_PENDING;
    } else {
      mapping = mappingFor(r.mapping);
    }
    const list = r.frames.length > 0 ? r.frames : [{ name: '[unknown]', kind: 'unknown' as FrameKind }];
    ids = list.map((f) => {
      frames.push({ name: f.name, kind: f.kind, mapping, address, file: f.file, line: f.line, inlined: f.inlined });
      return frames.length - 1;
    });
    frameIndex.set(key, ids);
    return ids;
  };

  const symbolPid = input.symbolPid ?? ((e: StackEntry) => e.pid);
  const samples: Sample[] = [];
  const system = input.systemGoroutines ?? { records: 0, ns: 0 };
  for (const e of input.stacks) {
    const spid = symbolPid(e);
    const stack: number[] = [];
    let k0 = 0;
    if (e.state !== '') {
      while (k0 < e.kernel.length - 1 && TRACING_FRAME.test(input.kernel(lookupAddress(e.kernel[k0], k0)).frames[0]?.name ?? '[unknown]')) k0++;
    }
    for (let i = k0; i < e.kernel.length; i++) {
      const a = e.kernel[i];
      const la = lookupAddress(a, i);
      stack.push(...framesFor(`k${a}:${la === a ? 0 : 1}`, a, () => input.kernel(la), true));
    }
    for (let i = 0; i < e.user.length; i++) {
      const a = e.user[i];
      // Frame depth for the user part counts from the user leaf: the user leaf is the
      // interrupted instruction even when kernel frames sit above it.
      const la = lookupAddress(a, i);
      stack.push(...framesFor(`u${spid}:${a}:${la === a ? 0 : 1}`, a, () => input.user(spid, la), false));
    }
    if (isGoroutineState(e.state) && isSystemGoroutine(stack, frames)) {
      system.records += e.count;
      system.ns += e.offCpuNs;
      continue;
    }
    // Goroutine labels first: a label of ours with the same key wins.
    const labels: Record<string, string> = { ...e.labels, 'thread.name': e.comm, 'process.name': input.processName(spid) };
    let values: number[];
    if (!input.offCpu) {
      values = [e.count, e.count * period];
    } else if (e.state === '') {
      values = [e.count, e.count * period, 0, e.count * period];
    } else {
      values = [0, 0, e.offCpuNs, e.offCpuNs];
      Object.assign(labels, stateLabels(e.state));
    }
    // Goroutine waits belong to no thread (tid 0).
    const numLabels: Record<string, number> = e.tid > 0 ? { 'thread.id': e.tid, 'process.pid': e.pid } : { 'process.pid': e.pid };
    if (e.goid > 0) numLabels.goroutine = e.goid;
    samples.push({ stack, values, labels, numLabels });
  }

  if (hasKernel) {
    const kernelMapping = mappings.length;
    mappings.push({ start: 0n, end: 0n, offset: 0n, file: KERNEL_MAPPING_FILE, buildId: '', hasFunctions: true, hasFilenames: false, hasLineNumbers: false });
    for (const f of frames) if (f.mapping === KERNEL_PENDING) f.mapping = kernelMapping;
  }

  // With off-CPU time: on-CPU samples carry samples and cpu, off-CPU blocks off_cpu, and both
  // carry wall (CPU time plus blocked time), the view shown first.
  const sampleTypes = [
    { type: 'samples', unit: 'count' },
    { type: 'cpu', unit: 'nanoseconds' },
  ];
  if (input.offCpu) sampleTypes.push({ type: 'off_cpu', unit: 'nanoseconds' }, { type: 'wall', unit: 'nanoseconds' });
  return {
    sampleTypes,
    defaultSampleType: input.offCpu ? 3 : 1,
    periodType: { type: 'cpu', unit: 'nanoseconds' },
    period,
    timeNanos: input.timeNanos,
    durationNanos: input.durationNanos,
    frames,
    mappings,
    samples,
    comments: system.records > 0
      ? [...input.comments, `goroutine waits of the Go runtime's own goroutines (garbage collector, finalizers, ...) left out: ${system.records} records, ${(system.ns / 1e9).toFixed(3)} s`]
      : input.comments,
  };
}

/**
 * A goroutine of the Go runtime itself (the garbage collector's workers, the sweeper, the
 * finalizer and cleanup goroutines, ...), by Go's own rule (runtime.isSystemGoroutine, which
 * its goroutine profiles follow): its start function is in package runtime and is not
 * runtime.main. The start function is the caller of runtime.goexit, the bottom of every
 * goroutine's stack; a stack cut short before reaching it is a user goroutine.
 */
function isSystemGoroutine(stack: number[], frames: Frame[]): boolean {
  const n = stack.length;
  if (n < 2 || frames[stack[n - 1]!]!.name !== 'runtime.goexit') return false;
  const start = frames[stack[n - 2]!]!.name;
  return start.startsWith('runtime.') && start !== 'runtime.main';
}
