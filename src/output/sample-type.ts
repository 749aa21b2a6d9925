// Which value an output shows, chosen and described the same way by every format. A profile
// recorded with --off-cpu has four sample types (samples, cpu, off_cpu, wall, wall shown first);
// its files say which one they hold, because a flame graph of wall time and one of CPU time look
// alike and answer different questions.

import type { Profile } from '../profile-model.js';

interface KnownType {
  /** Short name for a menu ("Value: Off-CPU"). */
  label: string;
  /** What the value measures, in words. */
  meaning: string;
}

/** The sample types flamewire writes, keyed by `type/unit` (see profile-builder.ts). */
const KNOWN: Record<string, KnownType> = {
  'samples/count': { label: 'Samples', meaning: 'on-CPU sample count' },
  'cpu/nanoseconds': { label: 'CPU', meaning: 'on-CPU time' },
  'off_cpu/nanoseconds': { label: 'Off-CPU', meaning: 'off-CPU time: blocked or waiting for a CPU' },
  'wall/nanoseconds': { label: 'Wall (CPU + off-CPU)', meaning: 'on-CPU + off-CPU time' },
};

function known(profile: Profile, index: number): { type: string; unit: string; known: KnownType | undefined } {
  const t = profile.sampleTypes[index];
  if (t === undefined) throw new RangeError(`sample type ${index} out of range (profile has ${profile.sampleTypes.length})`);
  // Type names end up in one-line texts (a folded comment, a status line).
  const type = t.type.replace(/[\r\n\t]+/g, ' ');
  const unit = t.unit.replace(/[\r\n\t]+/g, ' ');
  return { type, unit, known: KNOWN[`${t.type}/${t.unit}`] };
}

/** True for a profile recorded with off-CPU time (it has an `off_cpu` sample type). */
export function hasOffCpu(profile: Profile): boolean {
  return profile.sampleTypes.some((t) => t.type === 'off_cpu');
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

/**
 * One line saying what sample type `index` holds, e.g. "wall nanoseconds: on-CPU + off-CPU
 * time" or "samples: on-CPU sample count"; unknown types read "type unit".
 */
export function describeSampleType(profile: Profile, index: number): string {
  const { type, unit, known: k } = known(profile, index);
  const head = unit === '' || unit === 'count' ? type : `${type} ${unit}`;
  return k === undefined ? head : `${head}: ${k.meaning}`;
}

/**
 * The same as a title, with the meaning in parentheses: "wall nanoseconds (on-CPU + off-CPU
 * time)". Always ends in `)`, never in a digit, so a folded-stacks comment made of it is never
 * read as a stack with a value.
 */
export function sampleTypeTitle(profile: Profile, index: number): string {
  const { type, unit, known: k } = known(profile, index);
  if (k === undefined) return `${type} (${unit || 'no unit'})`;
  return `${unit === 'count' ? type : `${type} ${unit}`} (${k.meaning})`;
}

/** A menu label: "CPU", "Off-CPU", "Wall (CPU + off-CPU)", "Samples"; else "type (unit)". */
export function sampleTypeLabel(profile: Profile, index: number): string {
  const { type, unit, known: k } = known(profile, index);
  return k?.label ?? (unit ? `${type} (${unit})` : type);
}
