// The profile model as folded stacks, the input of flamegraph.pl and inferno-flamegraph:
//
//   <process name>;<outermost frame>;…;<leaf frame> <value>\n
//
// Chosen to match `perf script | stackcollapse-perf.pl --kernel`, so existing tooling and
// habits carry over:
// - the root frame is the process name: the `process.name` label, else
//   `process.executable.name`, else the thread name (`thread.name`, the comm perf prints),
//   else `[unknown]`; all threads of a process share one root;
// - frames follow outermost first, so user frames come before the kernel frames they called;
//   kernel frames carry stackcollapse-perf's `_[k]` suffix, which flamegraph.pl colours;
// - inlined frames are ordinary frames (they are real calls in the source);
// - `;` inside a name would split it, so it becomes `:`; line breaks and tabs become spaces;
// - identical folded stacks are merged, lines are sorted, zero values are left out.
//
// A profile with off-CPU time is written in its default sample type (wall: on-CPU plus
// off-CPU nanoseconds), not in sample counts, which cover on-CPU time only. Its file then starts
// with one comment line naming the value, e.g.
//
//   # flamewire folded stacks: wall nanoseconds (on-CPU + off-CPU time)
//
// flamegraph.pl, inferno and speedscope skip lines that do not end in a number, and this one
// ends in `)`. On-CPU profiles get no comment, so their files stay plain stackcollapse output.

import type { Profile } from '../profile-model.js';
import { hasOffCpu, sampleTypeIndex, sampleTypeTitle } from './sample-type.js';

export interface FoldedOptions {
  /**
   * Which sample type gives the value: its index or its `type` name. Default: for a profile
   * with off-CPU time its default sample type (wall), else `samples` (the count, as
   * stackcollapse-perf prints), else the profile's default sample type.
   */
  sampleType?: number | string;
}

/** The sample type renderFolded writes for `choice` (see FoldedOptions). */
export function foldedSampleType(profile: Profile, choice?: number | string): number {
  return sampleTypeIndex(profile, choice, hasOffCpu(profile) ? [] : ['samples']);
}

/** The root frame for a sample's labels (see the file comment). */
export function processName(labels: Record<string, string>): string {
  return labels['process.name'] || labels['process.executable.name'] || labels['thread.name'] || '[unknown]';
}

export function sanitizeFoldedName(name: string): string {
  return name.replace(/;/g, ':').replace(/[\r\n\t]+/g, ' ');
}

/** The folded-stacks text: one line per unique stack, each ending in `\n`. */
export function renderFolded(profile: Profile, opts: FoldedOptions = {}): string {
  const vi = foldedSampleType(profile, opts.sampleType);
  const frames = profile.frames;
  const names: (string | undefined)[] = new Array(frames.length);
  const nameOf = (fi: number): string => {
    let n = names[fi];
    if (n === undefined) {
      const f = frames[fi];
      if (f === undefined) throw new RangeError(`stack refers to frame ${fi} of ${frames.length}`);
      n = sanitizeFoldedName(f.name) + (f.kind === 'kernel' ? '_[k]' : '');
      names[fi] = n;
    }
    return n;
  };

  const totals = new Map<string, number>();
  const parts: string[] = [];
  for (const s of profile.samples) {
    const value = s.values[vi] ?? 0;
    if (value === 0) continue;
    parts.length = 0;
    parts.push(sanitizeFoldedName(processName(s.labels)));
    for (let k = s.stack.length - 1; k >= 0; k--) parts.push(nameOf(s.stack[k]!));
    const key = parts.join(';');
    totals.set(key, (totals.get(key) ?? 0) + value);
  }
  const keys = [...totals.keys()].sort();
  let out = hasOffCpu(profile) ? `# flamewire folded stacks: ${sampleTypeTitle(profile, vi)}\n` : '';
  for (const key of keys) out += `${key} ${totals.get(key)}\n`;
  return out;
}
