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

import type { Profile } from '../profile-model.js';

export interface FoldedOptions {
  /**
   * Which sample type gives the value: its index or its `type` name. Default: `samples`
   * (the count, as stackcollapse-perf prints), else the profile's default sample type.
   */
  sampleType?: number | string;
}

/** Resolves a sample type by index or name; throws RangeError naming the choices. */
export function sampleTypeIndex(profile: Profile, choice: number | string | undefined, fallbackNames: string[]): number {
  const types = profile.sampleTypes;
  if (typeof choice === 'number') {
    if (Number.isInteger(choice) && choice >= 0 && choice < types.length) return choice;
  } else if (typeof choice === 'string') {
    const i = types.findIndex((t) => t.type === choice);
    if (i >= 0) return i;
  } else {
    for (const name of fallbackNames) {
      const i = types.findIndex((t) => t.type === name);
      if (i >= 0) return i;
    }
    if (profile.defaultSampleType >= 0 && profile.defaultSampleType < types.length) return profile.defaultSampleType;
  }
  throw new RangeError(`unknown sample type ${JSON.stringify(choice)}: the profile has ${types.map((t) => t.type).join(', ') || 'none'}`);
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
  const vi = sampleTypeIndex(profile, opts.sampleType, ['samples']);
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
  let out = '';
  for (const key of keys) out += `${key} ${totals.get(key)}\n`;
  return out;
}
