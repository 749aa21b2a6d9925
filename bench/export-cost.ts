// What a window costs to encode for a backend, for a large machine: 1,000 processes with 1,000
// distinct stacks each (20 frames from a shared pool of 5,000 functions), as OTLP Profiles (one
// request: a resource per process, one dictionary) and as pprof (one gzipped profile per
// process, as Pyroscope's /ingest and Parca's WriteRaw take them; and one for the whole
// window). Prints nothing.

import { gzipSync } from 'node:zlib';
import { OtlpExporter } from '../src/otlp/exporter.js';
import { toOtlpRequest } from '../src/otlp/profiles.js';
import { encodePprof } from '../src/output/pprof.js';
import type { Profile } from '../src/profile-model.js';
import { largeProfile } from '../test/fixtures/output-profile.js';

export interface ExportCost {
  processes: number;
  stacksPerProcess: number;
  otlpMs: number;
  otlpBytes: number;
  otlpGzipBytes: number;
  pprofPerProcessMs: number;
  pprofPerProcessBytes: number;
  pprofWholeMs: number;
  pprofWholeBytes: number;
}

/** The window: largeProfile's stacks dealt out to `processes` pids. */
function windowOf(processes: number, stacks: number): Profile {
  const p = largeProfile(processes * stacks, 20);
  p.samples.forEach((s, i) => {
    s.numLabels['process.pid'] = 1 + (i % processes);
    s.labels['process.name'] = `proc${i % processes}`;
  });
  return p;
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export function measureExportCost(processes = 1000, stacks = 1000): ExportCost {
  const profile = windowOf(processes, stacks);
  // Warm-up on a small window: the protobuf types and the code paths.
  OtlpExporter.encode(toOtlpRequest(windowOf(10, 10), { version: 'bench' }));

  let t = process.hrtime.bigint();
  const otlp = OtlpExporter.encode(toOtlpRequest(profile, { version: 'bench' }));
  const otlpMs = ms(t);
  const otlpGzipBytes = gzipSync(otlp).length;

  // Per process: the same model split by pid (the split itself is not timed).
  const byPid = new Map<number, Profile>();
  for (const s of profile.samples) {
    const pid = s.numLabels['process.pid']!;
    let sub = byPid.get(pid);
    if (!sub) byPid.set(pid, (sub = { ...profile, samples: [] }));
    sub.samples.push(s);
  }
  t = process.hrtime.bigint();
  let perProcessBytes = 0;
  for (const sub of byPid.values()) perProcessBytes += encodePprof(sub).length;
  const pprofPerProcessMs = ms(t);

  t = process.hrtime.bigint();
  const whole = encodePprof(profile).length;
  const pprofWholeMs = ms(t);
  return {
    processes,
    stacksPerProcess: stacks,
    otlpMs,
    otlpBytes: otlp.length,
    otlpGzipBytes,
    pprofPerProcessMs,
    pprofPerProcessBytes: perProcessBytes,
    pprofWholeMs,
    pprofWholeBytes: whole,
  };
}
