// A window cut into one gzipped pprof per process, for the backends whose native APIs take
// pprof (Parca's WriteRaw, Pyroscope's /ingest): each process's samples, the attributes that
// name it (the same as its OTLP resource) and those attributes as Prometheus-style labels.
// Optionally only some of the window's sample types, for a backend that wants one kind of
// profile per upload.

import { processResource, samplesByProcess, type Attributes, type OtlpOptions } from '../otlp/profiles.js';
import { encodePprof } from '../output/pprof.js';
import type { Profile, Sample } from '../profile-model.js';

export interface ProcessSamples {
  pid: number;
  /** What names the process: the agent's resource, then the process's own attributes. */
  attributes: Attributes;
  /** The process's samples in the window (all sample types). */
  samples: Sample[];
}

/** The window's processes, each with its attributes (see processResource). */
export function processesOf(profile: Profile, opts: Pick<OtlpOptions, 'resource' | 'processAttributes'>): ProcessSamples[] {
  return [...samplesByProcess(profile)].map(([pid, samples]) => ({ pid, attributes: processResource(pid, samples, opts), samples }));
}

/** A Prometheus label name for an attribute key (dots and the like become underscores). */
export function labelName(key: string): string {
  const n = key.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(n) ? n : `_${n}`;
}

/**
 * The gzipped pprof of `samples` within the window. With `types`, only those sample types (in
 * the window's order) and only the samples with a value other than 0 in one of them; the
 * window's period stays only when `periodic`. Undefined when no sample is left.
 */
export function processPprof(profile: Profile, samples: Sample[], types?: { names: string[]; periodic: boolean }): Uint8Array | undefined {
  if (!types) return samples.length > 0 ? encodePprof({ ...profile, samples }) : undefined;
  const keep = profile.sampleTypes.flatMap((t, i) => (types.names.includes(t.type) ? [i] : []));
  if (keep.length === 0) return undefined;
  const picked: Sample[] = [];
  for (const s of samples) {
    const values = keep.map((i) => s.values[i]!);
    if (values.some((v) => v !== 0)) picked.push({ ...s, values });
  }
  if (picked.length === 0) return undefined;
  const def = keep.indexOf(profile.defaultSampleType);
  return encodePprof({
    ...profile,
    sampleTypes: keep.map((i) => profile.sampleTypes[i]!),
    defaultSampleType: def >= 0 ? def : keep.length - 1,
    samples: picked,
    ...(types.periodic ? {} : { periodType: { type: '', unit: '' }, period: 0 }),
  });
}
