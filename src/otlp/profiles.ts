// The profile model as an OTLP Profiles export request (proto/profiles_service.proto, the
// v1development layout of OTLP proto releases 1.10/1.11), as a plain object for protobufjs.
//
// Layout choices:
// - One ResourceProfiles per process (the model's samples carry process.pid), with the
//   process's attributes on its resource; one ScopeProfiles (flamewire) in each.
// - An OTLP profile has one sample type, so the model's types become separate profiles: on-CPU
//   (samples/count, with period_type cpu/nanoseconds and the period: what Pyroscope and the
//   OpenTelemetry eBPF profiler send) and, with off-CPU time, off_cpu/nanoseconds. A sample
//   goes into each profile where its value is not 0. (Wall time is their sum: not sent.)
// - One dictionary for the whole request. Every table starts with its zero value, which index 0
//   means (Parca rejects a dictionary without them; link_table[0] has empty trace and span ids).
// - Locations group inlined frames as pprof does (one address, lines innermost first); each
//   carries profile.frame.type. A mapping's GNU build id is its
//   process.executable.build_id.gnu attribute, a Go binary's Go build id its
//   process.executable.build_id.go.
// - 64-bit fields go to protobufjs as decimal strings: it would encode a bigint as 0.
// - Backends with rules of their own get a preset (OTLP_PRESETS): options that bend the request
//   to what they read. Without one, the request is as the specification says.

import { randomBytes } from 'node:crypto';
import type { Frame, Profile, Sample } from '../profile-model.js';
import { locationRuns } from '../output/locations.js';

/** Attributes of a resource (a process) or of the whole agent. */
export type Attributes = Record<string, string | number | boolean>;

export interface OtlpOptions {
  /** flamewire's version, for the instrumentation scope. */
  version: string;
  /** Attributes every resource gets (host.name, service.name, OTEL_RESOURCE_ATTRIBUTES). */
  resource?: Attributes;
  /** Attributes of process `pid` (process.executable.*, container.id, ...). */
  processAttributes?: (pid: number) => Attributes;
  /** 16 bytes identifying each profile (tests fix it). */
  profileId?: () => Uint8Array;
  /**
   * At most this many labels per series: resource attributes and a sample's attributes
   * together (Pyroscope takes 30). The resource's come first; a sample's fill what is left;
   * the resource's dropped_attributes_count says how many of its own went.
   */
  maxLabels?: number;
  /**
   * Write every Line.function_index one higher than the specification says, with a spare empty
   * entry at the end of function_table to keep the highest in range. Parca v0.28.0 reads
   * function_table[function_index - 1] (while it demands the empty entry at index 0), so this
   * makes it show the right functions, and no line makes it read the empty function_table[0]
   * (which crashes Parca's top query).
   */
  functionIndexPlusOne?: boolean;
  /** Resource attribute values as strings: Parca makes labels of string values only (process.pid). */
  stringResource?: boolean;
}

/** The backends whose rules the agent knows (the config file's "preset" of an OTLP exporter). */
/** Pyroscope's default max_label_names_per_series. */
export const PYROSCOPE_MAX_LABELS = 30;
/**
 * Labels Pyroscope adds to every series before it counts them: its OTLP receiver adds
 * __name__, __delta__, __otel__ and service_name (besides service.name, which it keeps as a
 * label of its own); its /ingest API __name__, __delta__, pyroscope_spy and service_name.
 */
export const PYROSCOPE_SERVER_LABELS = 4;

export type OtlpPreset = 'pyroscope' | 'parca';

/** What each preset changes in the request. */
export const OTLP_PRESETS: Record<OtlpPreset, Partial<OtlpOptions>> = {
  /** Pyroscope refuses series with more labels than its limit, counting the ones it adds. */
  pyroscope: { maxLabels: PYROSCOPE_MAX_LABELS - PYROSCOPE_SERVER_LABELS },
  parca: { functionIndexPlusOne: true, stringResource: true },
};

/** A KeyValue of the common proto, as protobufjs takes it. */
interface KeyValue {
  key: string;
  value: AnyValue;
}
type AnyValue = { stringValue: string } | { intValue: number } | { boolValue: boolean } | { doubleValue: number };

/** The request object (ExportProfilesServiceRequest) protobufjs encodes. */
export interface OtlpRequest {
  resourceProfiles: Array<{
    resource: { attributes: KeyValue[]; droppedAttributesCount?: number };
    scopeProfiles: Array<{ scope: { name: string; version: string }; profiles: OtlpProfile[] }>;
  }>;
  dictionary: OtlpDictionary;
}

export interface OtlpProfile {
  sampleType: { typeStrindex: number; unitStrindex: number };
  samples: Array<{ stackIndex: number; attributeIndices: number[]; values: string[] }>;
  timeUnixNano: string;
  durationNano: string;
  periodType?: { typeStrindex: number; unitStrindex: number };
  period?: string;
  profileId: Uint8Array;
}

export interface OtlpDictionary {
  mappingTable: Array<{ memoryStart?: string; memoryLimit?: string; fileOffset?: string; filenameStrindex?: number; attributeIndices?: number[] }>;
  locationTable: Array<{ mappingIndex?: number; address?: string; lines?: Array<{ functionIndex: number; line: string }>; attributeIndices?: number[] }>;
  functionTable: Array<{ nameStrindex?: number; systemNameStrindex?: number; filenameStrindex?: number }>;
  linkTable: Array<{ traceId: Uint8Array; spanId: Uint8Array }>;
  stringTable: string[];
  attributeTable: Array<{ keyStrindex?: number; value?: AnyValue }>;
  stackTable: Array<{ locationIndices: number[] }>;
}

/** Which model sample types become which OTLP profiles. */
interface Part {
  /** Index of the value in Sample.values. */
  value: number;
  type: string;
  unit: string;
  periodic: boolean;
}

/** Labels that describe the process: they go on the resource, not on every sample. */
const PROCESS_LABELS = new Set(['process.name']);
const PROCESS_NUM_LABELS = new Set(['process.pid']);

const FRAME_TYPE: Record<Frame['kind'], string> = { kernel: 'kernel', native: 'native', go: 'go', unknown: 'native' };

/** The window's samples per process (the model's process.pid label; 0 when a sample has none). */
export function samplesByProcess(profile: Profile): Map<number, Sample[]> {
  const byPid = new Map<number, Sample[]>();
  for (const s of profile.samples) {
    const pid = s.numLabels['process.pid'] ?? 0;
    let list = byPid.get(pid);
    if (!list) byPid.set(pid, (list = []));
    list.push(s);
  }
  return byPid;
}

/** What every destination says of a process: the agent's resource, then the process's own. */
export function processResource(pid: number, samples: Sample[], opts: Pick<OtlpOptions, 'resource' | 'processAttributes'>): Attributes {
  const name = samples[0]?.labels['process.name'];
  return {
    ...opts.resource,
    ...(pid > 0 ? { 'process.pid': pid } : {}),
    ...(name ? { 'process.executable.name': name } : {}),
    ...(pid > 0 ? opts.processAttributes?.(pid) : {}),
  };
}

export function toOtlpRequest(profile: Profile, opts: OtlpOptions): OtlpRequest {
  const dict = new Dictionary(opts.functionIndexPlusOne ? 1 : 0);
  const parts = partsOf(profile);
  const byPid = samplesByProcess(profile);
  const profileId = opts.profileId ?? (() => randomBytes(16));
  const stackOf = new Map<Sample['stack'], number>();
  const resourceProfiles: OtlpRequest['resourceProfiles'] = [];
  for (const [pid, samples] of byPid) {
    const profiles: OtlpProfile[] = [];
    for (const part of parts) {
      const out: OtlpProfile['samples'] = [];
      for (const s of samples) {
        const v = s.values[part.value]!;
        if (v === 0) continue;
        let stackIndex = stackOf.get(s.stack);
        if (stackIndex === undefined) stackOf.set(s.stack, (stackIndex = dict.stack(profile, s.stack)));
        out.push({ stackIndex, attributeIndices: dict.sampleAttributes(s), values: [String(Math.round(v))] });
      }
      if (out.length === 0) continue;
      profiles.push({
        sampleType: { typeStrindex: dict.string(part.type), unitStrindex: dict.string(part.unit) },
        samples: out,
        timeUnixNano: String(profile.timeNanos),
        durationNano: String(profile.durationNanos),
        ...(part.periodic
          ? {
              periodType: { typeStrindex: dict.string(profile.periodType.type), unitStrindex: dict.string(profile.periodType.unit) },
              period: String(profile.period),
            }
          : {}),
        profileId: profileId(),
      });
    }
    if (profiles.length === 0) continue;
    resourceProfiles.push({
      resource: limitResource(keyValues(processResource(pid, samples, opts), opts.stringResource), opts.maxLabels, profiles),
      scopeProfiles: [{ scope: { name: 'flamewire', version: opts.version }, profiles }],
    });
  }
  // The spare entry that the highest function_index + 1 points at.
  if (opts.functionIndexPlusOne) dict.tables.functionTable.push({});
  return { resourceProfiles, dictionary: dict.tables };
}

/** The OTLP profiles the model's sample types make (see the header). */
function partsOf(profile: Profile): Part[] {
  const at = (type: string) => profile.sampleTypes.findIndex((t) => t.type === type);
  const parts: Part[] = [];
  const samples = at('samples');
  if (samples >= 0) parts.push({ value: samples, type: 'samples', unit: 'count', periodic: true });
  const off = at('off_cpu');
  if (off >= 0) parts.push({ value: off, type: 'off_cpu', unit: profile.sampleTypes[off]!.unit, periodic: false });
  return parts;
}

/**
 * The resource, and the samples' attributes cut so that resource + sample labels stay within
 * `max` (see OtlpOptions.maxLabels).
 */
function limitResource(attrs: KeyValue[], max: number | undefined, profiles: OtlpProfile[]): { attributes: KeyValue[]; droppedAttributesCount?: number } {
  if (max === undefined) return { attributes: attrs };
  // The resource's identity comes first, service.name (Pyroscope's service_name) before the
  // rest; what does not fit of it is dropped.
  const kept = [...attrs.filter((a) => a.key === 'service.name'), ...attrs.filter((a) => a.key !== 'service.name')].slice(0, max);
  const room = max - kept.length;
  for (const p of profiles) for (const s of p.samples) if (s.attributeIndices.length > room) s.attributeIndices = s.attributeIndices.slice(0, room);
  return kept.length < attrs.length ? { attributes: kept, droppedAttributesCount: attrs.length - kept.length } : { attributes: kept };
}

function keyValues(a: Attributes, asStrings = false): KeyValue[] {
  return Object.entries(a).map(([key, v]) => ({ key, value: anyValue(asStrings ? String(v) : v) }));
}

function anyValue(v: string | number | boolean): AnyValue {
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  return Number.isInteger(v) ? { intValue: v } : { doubleValue: v };
}

/** The request's dictionary: every table with its zero entry first, entries deduplicated. */
class Dictionary {
  readonly tables: OtlpDictionary = {
    mappingTable: [{}],
    locationTable: [{}],
    functionTable: [{}],
    linkTable: [{ traceId: new Uint8Array(0), spanId: new Uint8Array(0) }],
    stringTable: [''],
    attributeTable: [{}],
    stackTable: [{ locationIndices: [] }],
  };
  private readonly strings = new Map<string, number>([['', 0]]);
  private readonly functions = new Map<string, number>();
  private readonly mappings = new Map<number, number>();
  private readonly locations = new Map<string, number>();
  /** Locations of one (not inlined) frame, by frame index: the common case, without a key. */
  private single: Int32Array | undefined;
  private readonly attributes = new Map<string, number>();
  private readonly stacks = new Map<string, number>();
  private kernelMapping = 0;

  /** `functionShift`: added to every Line.function_index (OtlpOptions.functionIndexPlusOne). */
  constructor(private readonly functionShift: number) {}

  string(s: string): number {
    let i = this.strings.get(s);
    if (i === undefined) {
      i = this.tables.stringTable.length;
      this.tables.stringTable.push(s);
      this.strings.set(s, i);
    }
    return i;
  }

  attribute(key: string, v: string | number | boolean): number {
    const k = `${key}\u0000${typeof v}\u0000${v}`;
    let i = this.attributes.get(k);
    if (i === undefined) {
      i = this.tables.attributeTable.length;
      this.tables.attributeTable.push({ keyStrindex: this.string(key), value: anyValue(v) });
      this.attributes.set(k, i);
    }
    return i;
  }

  sampleAttributes(s: Sample): number[] {
    const out: number[] = [];
    for (const key in s.labels) if (!PROCESS_LABELS.has(key)) out.push(this.attribute(key, s.labels[key]!));
    for (const key in s.numLabels) if (!PROCESS_NUM_LABELS.has(key)) out.push(this.attribute(key, s.numLabels[key]!));
    return out;
  }

  private function(f: Frame): number {
    const key = `${f.name}\u0000${f.file ?? ''}`;
    let i = this.functions.get(key);
    if (i === undefined) {
      i = this.tables.functionTable.length;
      const name = this.string(f.name);
      this.tables.functionTable.push({ nameStrindex: name, systemNameStrindex: name, filenameStrindex: this.string(f.file ?? '') });
      this.functions.set(key, i);
    }
    return i;
  }

  private mapping(profile: Profile, f: Frame): number {
    if (f.mapping < 0) {
      if (f.kind !== 'kernel') return 0;
      if (this.kernelMapping === 0) {
        this.kernelMapping = this.tables.mappingTable.length;
        this.tables.mappingTable.push({ filenameStrindex: this.string('[kernel.kallsyms]') });
      }
      return this.kernelMapping;
    }
    let i = this.mappings.get(f.mapping);
    if (i === undefined) {
      const m = profile.mappings[f.mapping]!;
      i = this.tables.mappingTable.length;
      this.tables.mappingTable.push({
        memoryStart: String(m.start),
        memoryLimit: String(m.end),
        fileOffset: String(m.offset),
        filenameStrindex: this.string(m.file),
        attributeIndices: [
          ...(m.buildId ? [this.attribute('process.executable.build_id.gnu', m.buildId)] : []),
          ...(m.goBuildId ? [this.attribute('process.executable.build_id.go', m.goBuildId)] : []),
        ],
      });
      this.mappings.set(f.mapping, i);
    }
    return i;
  }

  /** The location of frames stack[from..to) (inlined ones, then the physical one). */
  private location(profile: Profile, stack: number[], from: number, to: number): number {
    if (to - from === 1) {
      this.single ??= new Int32Array(profile.frames.length);
      const fi = stack[from]!;
      let i = this.single[fi]!;
      if (i === 0) this.single[fi] = i = this.newLocation(profile, stack, from, to);
      return i;
    }
    const key = stack.slice(from, to).join(',');
    let i = this.locations.get(key);
    if (i === undefined) {
      i = this.newLocation(profile, stack, from, to);
      this.locations.set(key, i);
    }
    return i;
  }

  private newLocation(profile: Profile, stack: number[], from: number, to: number): number {
    {
      const physical = profile.frames[stack[to - 1]!]!;
      const lines: Array<{ functionIndex: number; line: string }> = [];
      for (let k = from; k < to; k++) {
        const f = profile.frames[stack[k]!]!;
        lines.push({ functionIndex: this.function(f) + this.functionShift, line: String(f.line ?? 0) });
      }
      const i = this.tables.locationTable.length;
      this.tables.locationTable.push({
        mappingIndex: this.mapping(profile, physical),
        address: String(physical.address),
        lines,
        attributeIndices: [this.attribute('profile.frame.type', FRAME_TYPE[physical.kind])],
      });
      return i;
    }
  }

  stack(profile: Profile, stack: number[]): number {
    const locationIndices = locationRuns(stack, profile.frames).map(([from, to]) => this.location(profile, stack, from, to));
    const key = locationIndices.join(',');
    let i = this.stacks.get(key);
    if (i === undefined) {
      i = this.tables.stackTable.length;
      this.tables.stackTable.push({ locationIndices });
      this.stacks.set(key, i);
    }
    return i;
  }
}
