// The profile model as a pprof protobuf (profile.proto), gzipped as `go tool pprof` expects.
//
// Layout choices, all dictated by pprof's own conventions:
// - A Location is one machine address. Inlined frames share that address, so a run of frames
//   `inlined, inlined, …, physical` (leaf first) becomes ONE Location whose Line entries are
//   innermost first, last = the function the others were inlined into (see locations.ts).
// - Functions are shared by every location that names the same (name, file).
// - Kernel frames without a module get a synthetic `[kernel.kallsyms]` mapping, so they stay
//   distinguishable from user code (pprof treats `[…]` file names as not symbolizable).
// - Model mapping i is pprof mapping id i + 1 (pprof ids start at 1; 0 means "none").

import { gzipSync } from 'node:zlib';
import {
  Function as PprofFunction,
  Label,
  Line,
  Location,
  Mapping as PprofMapping,
  Profile as PprofProfile,
  Sample as PprofSample,
  StringTable,
  ValueType as PprofValueType,
} from 'pprof-format';
import type { Frame, Profile } from '../profile-model.js';
import { locationRuns, ProfileModelError } from './locations.js';

export { ProfileModelError };

const KERNEL_MAPPING_FILE = '[kernel.kallsyms]';

/** Builds the pprof message (not yet encoded); useful to callers that post-process it. */
export function toPprof(profile: Profile): PprofProfile {
  const strings = new StringTable();
  const str = (s: string): number => strings.dedup(s);
  const nTypes = profile.sampleTypes.length;
  if (nTypes === 0) throw new ProfileModelError('profile has no sample types');
  if (profile.defaultSampleType < 0 || profile.defaultSampleType >= nTypes) {
    throw new ProfileModelError(`default sample type ${profile.defaultSampleType} out of range (${nTypes} types)`);
  }

  const mappings: PprofMapping[] = profile.mappings.map((m, i) => new PprofMapping({
    id: i + 1,
    memoryStart: m.start,
    memoryLimit: m.end,
    fileOffset: m.offset,
    filename: str(m.file),
    buildId: str(m.buildId),
    hasFunctions: m.hasFunctions,
    hasFilenames: m.hasFilenames,
    hasLineNumbers: m.hasLineNumbers,
    hasInlineFrames: false,
  }));
  let kernelMapping: PprofMapping | undefined =
    mappings[profile.mappings.findIndex((m) => m.file === KERNEL_MAPPING_FILE)];
  const syntheticKernel = kernelMapping === undefined;

  const frames = profile.frames;
  const functionIds = new Map<string, number>();
  const functions: PprofFunction[] = [];
  // Per frame index: its pprof function id (0 = not yet resolved).
  const frameFunction = new Uint32Array(frames.length);
  const functionOf = (fi: number): number => {
    let id = frameFunction[fi]!;
    if (id !== 0) return id;
    const f = frames[fi]!;
    const file = f.file ?? '';
    const key = f.name + '\0' + file;
    id = functionIds.get(key) ?? 0;
    if (id === 0) {
      id = functions.length + 1;
      const name = str(f.name);
      functions.push(new PprofFunction({ id, name, systemName: name, filename: str(file) }));
      functionIds.set(key, id);
    }
    frameFunction[fi] = id;
    return id;
  };

  let kernelMin = -1n;
  let kernelMax = 0n;
  const mappingIdOf = (f: Frame): number => {
    if (f.mapping >= 0) {
      if (f.mapping >= mappings.length) {
        throw new ProfileModelError(`frame "${f.name}" refers to mapping ${f.mapping} of ${mappings.length}`);
      }
      return f.mapping + 1;
    }
    if (f.kind !== 'kernel') return 0;
    if (syntheticKernel) {
      if (kernelMin < 0n || f.address < kernelMin) kernelMin = f.address;
      if (f.address > kernelMax) kernelMax = f.address;
    }
    kernelMapping ??= new PprofMapping({
      id: mappings.length + 1,
      filename: str(KERNEL_MAPPING_FILE),
      buildId: str(''),
      hasFunctions: true,
    });
    return Number(kernelMapping.id);
  };

  const locations: Location[] = [];
  // Single-frame locations (the common case) are keyed by frame index; inlined runs by the
  // joined frame indices. Either way each distinct location is built once.
  const singleLocation = new Uint32Array(frames.length);
  const inlinedLocation = new Map<string, number>();
  const makeLocation = (stack: number[], from: number, to: number): number => {
    const physical = frames[stack[to - 1]!]!;
    const line: Line[] = [];
    for (let k = from; k < to; k++) {
      const fi = stack[k]!;
      line.push(new Line({ functionId: functionOf(fi), line: frames[fi]!.line ?? 0 }));
    }
    const id = locations.length + 1;
    const mappingId = mappingIdOf(physical);
    if (to - from > 1 && mappingId !== 0) {
      const m = mappingId <= mappings.length ? mappings[mappingId - 1]! : kernelMapping!;
      m.hasInlineFrames = true;
    }
    locations.push(new Location({ id, mappingId, address: physical.address, line }));
    return id;
  };

  const samples: PprofSample[] = [];
  for (const s of profile.samples) {
    if (s.values.length !== nTypes) {
      throw new ProfileModelError(`sample has ${s.values.length} values for ${nTypes} sample types`);
    }
    const stack = s.stack;
    const locationId: number[] = [];
    for (const [from, k] of locationRuns(stack, frames)) {
      if (k - from === 1) {
        const fi = stack[from]!;
        let id = singleLocation[fi]!;
        if (id === 0) singleLocation[fi] = id = makeLocation(stack, from, k);
        locationId.push(id);
      } else {
        const key = stack.slice(from, k).join(',');
        let id = inlinedLocation.get(key);
        if (id === undefined) inlinedLocation.set(key, id = makeLocation(stack, from, k));
        locationId.push(id);
      }
    }
    const label: Label[] = [];
    for (const key in s.labels) label.push(new Label({ key: str(key), str: str(s.labels[key]!) }));
    for (const key in s.numLabels) label.push(new Label({ key: str(key), num: s.numLabels[key]! }));
    samples.push(new PprofSample({ locationId, value: s.values.slice(), label }));
  }

  if (kernelMapping !== undefined && syntheticKernel) {
    if (kernelMin >= 0n) {
      kernelMapping.memoryStart = kernelMin;
      kernelMapping.memoryLimit = kernelMax + 1n;
    }
    mappings.push(kernelMapping);
  }

  return new PprofProfile({
    sampleType: profile.sampleTypes.map((t) => new PprofValueType({ type: str(t.type), unit: str(t.unit) })),
    sample: samples,
    mapping: mappings,
    location: locations,
    function: functions,
    stringTable: strings,
    timeNanos: profile.timeNanos,
    durationNanos: profile.durationNanos,
    periodType: new PprofValueType({ type: str(profile.periodType.type), unit: str(profile.periodType.unit) }),
    period: profile.period,
    comment: profile.comments.map(str),
    defaultSampleType: str(profile.sampleTypes[profile.defaultSampleType]!.type),
  });
}

/** The gzipped pprof bytes, ready for a `.pb.gz` file or an HTTP body. */
export function encodePprof(profile: Profile): Uint8Array {
  return gzipSync(toPprof(profile).encode());
}
