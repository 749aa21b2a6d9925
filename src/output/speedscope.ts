// The profile model as a speedscope file (https://www.speedscope.app/file-format-schema.json;
// the schema ships in the `speedscope` npm package and the tests validate against it).
//
// Choices:
// - One "sampled" profile per process (`process.pid`), named `<process name> (pid N)`, heaviest
//   first and shown first. Per process rather than per thread: a whole-machine capture has
//   thousands of threads, and the process is what people look for; threads stay visible in
//   pprof labels. Samples without a pid share one profile.
// - Weights are the CPU nanoseconds (`cpu`, else the first nanoseconds sample type), unit
//   "nanoseconds"; a profile without any time type falls back to sample counts, unit "none".
//   A profile with off-CPU time is weighted by its default sample type (wall: on-CPU plus
//   off-CPU nanoseconds), and the file and every profile name say which value it holds
//   (`myserver (pid 100) — wall nanoseconds (on-CPU + off-CPU time)`), since the viewer
//   shows only a unit. On-CPU profiles keep their plain names.
// - Our samples are aggregated, not a timeline, so identical stacks are merged and sorted by
//   frame names: speedscope's "time order" view then reads like a flame graph.
// - A speedscope frame is a function: (name, file), where `file` is the source file, else the
//   module (`/usr/lib/…/libc.so.6`, `[kernel.kallsyms]` for kernel frames, so those remain
//   recognisable). speedscope merges boxes by frame, so per-call-site lines would split one
//   function into several boxes; its `line` means the function's own line, which we lack.

import type { Profile } from '../profile-model.js';
import { processName } from './folded.js';
import { hasOffCpu, sampleTypeIndex, sampleTypeTitle } from './sample-type.js';

export const SPEEDSCOPE_SCHEMA = 'https://www.speedscope.app/file-format-schema.json';

export interface SpeedscopeFrame {
  name: string;
  file?: string;
  line?: number;
}

export interface SpeedscopeSampledProfile {
  type: 'sampled';
  name: string;
  unit: 'nanoseconds' | 'none';
  startValue: number;
  endValue: number;
  samples: number[][];
  weights: number[];
}

export interface SpeedscopeFile {
  $schema: typeof SPEEDSCOPE_SCHEMA;
  shared: { frames: SpeedscopeFrame[] };
  profiles: SpeedscopeSampledProfile[];
  name: string;
  activeProfileIndex: number;
  exporter: string;
}

export interface SpeedscopeOptions {
  /** Which sample type gives the weights: index or `type` name. Default: see file comment. */
  sampleType?: number | string;
}

/** The sample type toSpeedscope weights by for `choice` (see the file comment). */
export function speedscopeSampleType(profile: Profile, choice?: number | string): number {
  if (choice !== undefined || hasOffCpu(profile)) return sampleTypeIndex(profile, choice, []);
  const cpu = profile.sampleTypes.findIndex((t) => t.type === 'cpu' && t.unit === 'nanoseconds');
  if (cpu >= 0) return cpu;
  const ns = profile.sampleTypes.findIndex((t) => t.unit === 'nanoseconds');
  if (ns >= 0) return ns;
  return sampleTypeIndex(profile, undefined, ['samples']);
}

interface Group {
  name: string;
  /** Root-first speedscope frame ids joined by ',' → index into stacks/weights. */
  index: Map<string, number>;
  stacks: number[][];
  weights: number[];
  total: number;
}

export function toSpeedscope(profile: Profile, opts: SpeedscopeOptions = {}): SpeedscopeFile {
  const wi = speedscopeSampleType(profile, opts.sampleType);
  const view = hasOffCpu(profile) ? ` — ${sampleTypeTitle(profile, wi)}` : '';
  const unit = profile.sampleTypes[wi]!.unit === 'nanoseconds' ? 'nanoseconds' : 'none';
  const frames = profile.frames;

  const shared: SpeedscopeFrame[] = [];
  const sharedIds = new Map<string, number>();
  const frameId = new Int32Array(frames.length).fill(-1);
  const idOf = (fi: number): number => {
    let id = frameId[fi];
    if (id === undefined) throw new RangeError(`stack refers to frame ${fi} of ${frames.length}`);
    if (id >= 0) return id;
    const f = frames[fi]!;
    const file = f.file ?? profile.mappings[f.mapping]?.file ?? (f.kind === 'kernel' ? '[kernel.kallsyms]' : undefined);
    const key = `${f.name}\0${file ?? ''}`;
    id = sharedIds.get(key) ?? -1;
    if (id < 0) {
      id = shared.length;
      const sf: SpeedscopeFrame = { name: f.name };
      if (file !== undefined) sf.file = file;
      shared.push(sf);
      sharedIds.set(key, id);
    }
    frameId[fi] = id;
    return id;
  };

  const groups = new Map<number, Group>();
  for (const s of profile.samples) {
    const weight = s.values[wi] ?? 0;
    if (weight === 0) continue;
    const pid = s.numLabels['process.pid'] ?? -1;
    let g = groups.get(pid);
    if (g === undefined) {
      const name = pid >= 0 ? `${processName(s.labels)} (pid ${pid})` : 'unknown process';
      g = { name, index: new Map(), stacks: [], weights: [], total: 0 };
      groups.set(pid, g);
    }
    const stack = new Array<number>(s.stack.length);
    for (let k = 0, n = s.stack.length; k < n; k++) stack[k] = idOf(s.stack[n - 1 - k]!);
    const key = stack.join(',');
    const at = g.index.get(key);
    if (at === undefined) {
      g.index.set(key, g.stacks.length);
      g.stacks.push(stack);
      g.weights.push(weight);
    } else {
      g.weights[at]! += weight;
    }
    g.total += weight;
  }

  // Rank shared frames by name once, so sorting stacks compares small integers.
  const rank = new Int32Array(shared.length);
  shared.map((_, i) => i)
    .sort((a, b) => cmp(shared[a]!.name, shared[b]!.name) || a - b)
    .forEach((id, r) => { rank[id] = r; });
  const byNames = (a: number[], b: number[]): number => {
    const n = Math.min(a.length, b.length);
    for (let k = 0; k < n; k++) {
      const d = rank[a[k]!]! - rank[b[k]!]!;
      if (d !== 0) return d;
    }
    return a.length - b.length;
  };

  const ordered = [...groups.values()].sort((a, b) => b.total - a.total || cmp(a.name, b.name));
  const profiles: SpeedscopeSampledProfile[] = ordered.map((g) => {
    const order = g.stacks.map((_, i) => i).sort((a, b) => byNames(g.stacks[a]!, g.stacks[b]!));
    return {
      type: 'sampled',
      name: g.name + view,
      unit,
      startValue: 0,
      endValue: g.total,
      samples: order.map((i) => g.stacks[i]!),
      weights: order.map((i) => g.weights[i]!),
    };
  });
  const name = `flamewire${view}` + (profile.comments.length > 0 ? `: ${profile.comments.join(', ')}` : '');
  if (profiles.length === 0) {
    // Keep one (empty) profile so the viewer has something to open and its name says why.
    profiles.push({ type: 'sampled', name: 'no samples' + view, unit, startValue: 0, endValue: 0, samples: [], weights: [] });
  }
  return { $schema: SPEEDSCOPE_SCHEMA, shared: { frames: shared }, profiles, name, activeProfileIndex: 0, exporter: 'flamewire' };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The speedscope JSON text. */
export function renderSpeedscope(profile: Profile, opts: SpeedscopeOptions = {}): string {
  return JSON.stringify(toSpeedscope(profile, opts));
}
