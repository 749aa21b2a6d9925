// The one profile model. Every output (pprof, folded, speedscope, HTML) is written from it,
// so they always agree. Built by the aggregator after symbolization.

export type FrameKind = 'kernel' | 'native' | 'go' | 'unknown';

/** One symbolized frame. Inlined functions expand into several frames sharing an address. */
export interface Frame {
  /** Function name, demangled; for unknown code `[unknown]` or `module+0xoffset`. */
  name: string;
  kind: FrameKind;
  /** Index into Profile.mappings, or -1 (kernel frames without a module, unknown). */
  mapping: number;
  /** Address as seen in the process (runtime virtual address). */
  address: bigint;
  file?: string;
  line?: number;
  /** True when this frame was inlined into its caller (the next frame outwards). */
  inlined?: boolean;
}

export interface Mapping {
  start: bigint;
  end: bigint;
  /** File offset of `start`. */
  offset: bigint;
  /** Path as the process sees it (or `[kernel.kallsyms]`, `[module]`). */
  file: string;
  /** Hex GNU build id, or '' when the file has none. */
  buildId: string;
  /** Go's build id (as `go tool buildid` prints it) of a Go binary. */
  goBuildId?: string;
  hasFunctions: boolean;
  hasFilenames: boolean;
  hasLineNumbers: boolean;
}

export interface ValueType {
  type: string;
  unit: string;
}

export interface Sample {
  /** Indices into Profile.frames, leaf first (pprof order). */
  stack: number[];
  /** One value per Profile.sampleTypes entry. */
  values: number[];
  /** String labels, e.g. `thread.name`. */
  labels: Record<string, string>;
  /** Numeric labels, e.g. `thread.id`, `process.pid`. */
  numLabels: Record<string, number>;
}

export interface Profile {
  sampleTypes: ValueType[];
  /** Index of the sample type shown by default (pprof default_sample_type). */
  defaultSampleType: number;
  periodType: ValueType;
  period: number;
  /** Wall-clock start in nanoseconds since the Unix epoch. */
  timeNanos: bigint;
  durationNanos: bigint;
  frames: Frame[];
  mappings: Mapping[];
  samples: Sample[];
  /** Free-form notes (drops, settings); pprof `comment`, HTML footer, speedscope name. */
  comments: string[];
}
