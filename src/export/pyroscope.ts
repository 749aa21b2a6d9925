// A window for Pyroscope's /ingest HTTP API, the one its own SDKs (pyroscope-go and the
// others) use and the only one servers before OTLP support take: one POST per process and kind
// of profile, the pprof in a multipart/form-data field "profile", what the profile is in the
// query string:
//
//   POST <endpoint>/ingest?name=<service>{label=value,...}&from=<unix s>&until=<unix s>
//        &sampleRate=<hz>&spyName=flamewire&units=samples&aggregationType=sum
//
// - name: the service (resource service.name, else the executable's name) and the process's
//   attributes as labels, named as Prometheus does (process.pid → process_pid). The server makes
//   the service its service_name label. Values lose ',' and '}' (the syntax has no escapes).
// - Kinds: the CPU profile holds the sample types samples/count and cpu/nanoseconds with
//   period_type cpu/nanoseconds and the period (as a Go CPU profile does: old servers read
//   samples, new ones show cpu), every sample with one value per type; with --off-cpu, blocked
//   time is a second upload, off_cpu/nanoseconds without a period. (The server names a profile
//   after its sample types: one pprof with wall in it would be filed as wall whole.) Wall time,
//   the sum of both, is not sent.
// - No format=pprof: with it, the server reads the body as a bare pprof; the multipart form is
//   read only when the format is left out (OG Pyroscope and Grafana Pyroscope alike).
// - At most 30 labels per series, the server's default, counted as the server does after it
//   adds __name__, __delta__, pyroscope_spy and service_name: the process's labels first, then
//   the samples' string labels (the server turns them into series labels) fill what is left.

import { randomBytes } from 'node:crypto';
import { redactor } from '../logger.js';
import { HttpConnections, httpPost, type ExportResult, type HttpPostOptions } from '../otlp/exporter.js';
import { PYROSCOPE_MAX_LABELS, PYROSCOPE_SERVER_LABELS, type Attributes, type OtlpOptions } from '../otlp/profiles.js';
import type { Profile, Sample } from '../profile-model.js';
import { labelName, processesOf, processPprof } from './process-pprof.js';

export const PYROSCOPE_SPY_NAME = 'flamewire';

/** One POST to /ingest. */
export interface PyroscopeUpload {
  /** The query string, without '?'. */
  query: string;
  contentType: string;
  body: Uint8Array;
}

/** The window's kinds of profile, as /ingest takes them (see the header). */
const KINDS = [
  { names: ['samples', 'cpu'], periodic: true },
  { names: ['off_cpu'], periodic: false },
];

export function toPyroscopeUploads(profile: Profile, opts: Pick<OtlpOptions, 'resource' | 'processAttributes'> & { maxLabels?: number }): PyroscopeUpload[] {
  const budget = (opts.maxLabels ?? PYROSCOPE_MAX_LABELS) - PYROSCOPE_SERVER_LABELS;
  const from = Math.floor(Number(profile.timeNanos / 1_000_000n) / 1000);
  const until = Math.max(from + 1, Math.ceil(Number((profile.timeNanos + profile.durationNanos) / 1_000_000n) / 1000));
  const sampleRate = profile.period > 0 ? Math.round(1e9 / profile.period) : 0;
  const uploads: PyroscopeUpload[] = [];
  for (const { attributes, samples } of processesOf(profile, opts)) {
    const labels = seriesLabels(attributes).slice(0, Math.max(0, budget));
    const trimmed = limitSampleLabels(samples, budget - labels.length);
    const name = `${serviceName(attributes)}{${labels.map(([k, v]) => `${k}=${v}`).join(',')}}`;
    for (const kind of KINDS) {
      const pprof = processPprof(profile, trimmed, kind);
      if (!pprof) continue;
      const query = new URLSearchParams({
        name,
        from: String(from),
        until: String(until),
        ...(sampleRate > 0 ? { sampleRate: String(sampleRate) } : {}),
        spyName: PYROSCOPE_SPY_NAME,
        units: 'samples',
        aggregationType: 'sum',
      });
      uploads.push({ query: query.toString(), ...multipart('profile', 'profile.pprof', pprof) });
    }
  }
  return uploads;
}

/** The service: service.name, else the executable, in the characters a service name may have. */
function serviceName(a: Attributes): string {
  const s = String(a['service.name'] ?? a['process.executable.name'] ?? PYROSCOPE_SPY_NAME).replace(/[^A-Za-z0-9_.\-/]/g, '_');
  return s || PYROSCOPE_SPY_NAME;
}

/** The process's attributes as [label, value], service.name aside (it is the name). */
function seriesLabels(a: Attributes): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const [key, v] of Object.entries(a)) {
    if (key === 'service.name') continue;
    const name = labelName(key);
    const value = String(v).replace(/[,}]/g, '_').trim();
    if (name.startsWith('__') || value === '') continue;
    out.push([name, value]);
  }
  return out;
}

/** The samples with at most `room` string labels each; process.name goes (the series has it). */
function limitSampleLabels(samples: Sample[], room: number): Sample[] {
  return samples.map((s) => {
    const keys = Object.keys(s.labels).filter((k) => k !== 'process.name');
    if (keys.length === Object.keys(s.labels).length && keys.length <= room) return s;
    return { ...s, labels: Object.fromEntries(keys.slice(0, Math.max(0, room)).map((k) => [k, s.labels[k]!])) };
  });
}

/** A multipart/form-data body with one file field. */
function multipart(field: string, filename: string, content: Uint8Array): { contentType: string; body: Uint8Array } {
  const boundary = randomBytes(15).toString('hex');
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`;
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    body: Buffer.concat([Buffer.from(head), content, Buffer.from(`\r\n--${boundary}--\r\n`)]),
  };
}

export interface PyroscopeOptions extends HttpPostOptions {
  /** Base URL of the server (http://pyroscope:4040); /ingest is appended. */
  endpoint: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** HTTP basic authentication (Grafana Cloud: the instance id and a token). */
  basicAuth?: { username: string; password: string };
  /** Authorization: Bearer <token>. */
  bearerToken?: string;
  /** X-Scope-OrgID, the tenant of a multi-tenant server. */
  tenantId?: string;
}

/** Sends uploads to one server. */
export interface PyroscopeSender {
  /** Every outcome is an ExportResult (see httpPost), its message free of the credentials. */
  send(upload: Pick<PyroscopeUpload, 'query' | 'contentType'>, body: Uint8Array, signal?: AbortSignal): Promise<ExportResult>;
  /** Ends the connections kept alive. */
  close(): void;
}

export function pyroscopeSender(opts: PyroscopeOptions): PyroscopeSender {
  const base = opts.endpoint.replace(/\/+$/, '');
  const auth: Record<string, string> = opts.basicAuth
    ? { authorization: `Basic ${Buffer.from(`${opts.basicAuth.username}:${opts.basicAuth.password}`).toString('base64')}` }
    : opts.bearerToken
      ? { authorization: `Bearer ${opts.bearerToken}` }
      : {};
  const fixed: Record<string, string> = { ...opts.headers, ...auth, ...(opts.tenantId ? { 'x-scope-orgid': opts.tenantId } : {}) };
  const redact = redactor([...Object.values(fixed), opts.bearerToken, opts.basicAuth?.password]);
  const connections = new HttpConnections();
  return {
    async send(upload, body, signal) {
      const r = await httpPost(
        new URL(`${base}/ingest?${upload.query}`),
        Buffer.from(body.buffer, body.byteOffset, body.byteLength),
        { ...fixed, 'content-type': upload.contentType },
        opts,
        (status) => ({ ok: true, retryable: false, code: status }),
        { signal, connections },
      );
      return r.message === undefined ? r : { ...r, message: redact(r.message) };
    },
    close: () => connections.close(),
  };
}
