// A window for Parca's native write API (ProfileStoreService/WriteRaw, proto/
// parca_profilestore.proto): one series per process, labelled like the OTLP resource (names in
// Prometheus form: dots become underscores) under __name__="flamewire", holding that process's
// samples as one gzipped pprof. Parca reads the sample types from the pprof, so its profile
// types read flamewire:samples:count:cpu:nanoseconds (and off_cpu, wall with --off-cpu).

import { join } from 'node:path';
import protobuf from 'protobufjs';
import type { OtlpOptions } from '../otlp/profiles.js';
import { PROTO_DIR } from '../otlp/proto.js';
import type { Profile } from '../profile-model.js';
import { labelName, processesOf, processPprof } from './process-pprof.js';

let type: protobuf.Type | undefined;
function writeRawRequest(): protobuf.Type {
  type ??= new protobuf.Root().loadSync(join(PROTO_DIR, 'parca_profilestore.proto')).lookupType('parca.profilestore.v1alpha1.WriteRawRequest');
  return type;
}

export const PARCA_PROFILE_NAME = 'flamewire';

/** The encoded WriteRawRequest of a window, and how many series (processes) it holds. */
export function toParcaWriteRaw(profile: Profile, opts: Pick<OtlpOptions, 'resource' | 'processAttributes'>): { body: Uint8Array; series: number } {
  const series = [];
  for (const { attributes, samples } of processesOf(profile, opts)) {
    const labels = [{ name: '__name__', value: PARCA_PROFILE_NAME }, ...Object.entries(attributes).map(([k, v]) => ({ name: labelName(k), value: String(v) }))];
    labels.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    series.push({ labels: { labels }, samples: [{ rawProfile: processPprof(profile, samples)! }] });
  }
  const t = writeRawRequest();
  return { body: t.encode(t.fromObject({ series, normalized: false })).finish(), series: series.length };
}
