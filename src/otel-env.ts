// The OpenTelemetry exporter environment, as the OTLP exporter specification defines it, for the
// profiles signal: OTEL_EXPORTER_OTLP_PROFILES_* wins over OTEL_EXPORTER_OTLP_*; plus
// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME. Bad values are UsageErrors naming the variable.
//
// - ENDPOINT: gRPC: the server (http(s)://host:port). HTTP: the signal-specific variable is the
//   full URL; the generic one is a base to which /v1development/profiles is appended.
// - PROTOCOL: grpc | http/protobuf (default grpc, like the other OTLP exporters' default port 4317).
// - HEADERS: key=value pairs separated by commas, values URL-encoded (W3C baggage style).
// - COMPRESSION: gzip | none. TIMEOUT: milliseconds (default 10000, at most 3600000: a request's
//   deadline is a setTimeout, which fires a delay over 24.8 days after 1 ms).
// - CERTIFICATE, CLIENT_CERTIFICATE, CLIENT_KEY: PEM files. INSECURE: true for plain-text gRPC.

import { UsageError } from './cli-args.js';
import type { ExporterOptions, OtlpProtocol } from './otlp/exporter.js';
import type { Attributes } from './otlp/profiles.js';

type Env = Record<string, string | undefined>;

export const DEFAULT_GRPC_ENDPOINT = 'http://localhost:4317';
export const DEFAULT_HTTP_ENDPOINT = 'http://localhost:4318';
/** The longest request timeout (OTEL_EXPORTER_OTLP_TIMEOUT, "timeout" in the config file): 1 h. */
export const MAX_EXPORT_TIMEOUT_MS = 3_600_000;

function pick(env: Env, name: string): { value: string; variable: string } | undefined {
  for (const variable of [`OTEL_EXPORTER_OTLP_PROFILES_${name}`, `OTEL_EXPORTER_OTLP_${name}`]) {
    const value = env[variable]?.trim();
    if (value) return { value, variable };
  }
  return undefined;
}

/** The OTLP exporter settings the environment gives (flags override them afterwards). */
export function otlpFromEnv(env: Env = process.env): ExporterOptions {
  const protocolVar = pick(env, 'PROTOCOL');
  const protocol = (protocolVar?.value ?? 'grpc') as OtlpProtocol;
  if (protocol !== 'grpc' && protocol !== 'http/protobuf') {
    throw new UsageError(`${protocolVar!.variable}='${protocolVar!.value}': flamewire speaks grpc or http/protobuf`);
  }
  const signal = env.OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT?.trim();
  const generic = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const endpoint = signal || generic || (protocol === 'grpc' ? DEFAULT_GRPC_ENDPOINT : DEFAULT_HTTP_ENDPOINT);
  const opts: ExporterOptions = { endpoint, protocol };
  if (protocol === 'http/protobuf' && signal) opts.url = signal;
  const headers = pick(env, 'HEADERS');
  if (headers) opts.headers = parseHeaders(headers.value, headers.variable);
  const compression = pick(env, 'COMPRESSION');
  if (compression) {
    if (compression.value !== 'gzip' && compression.value !== 'none') throw new UsageError(`${compression.variable}='${compression.value}': gzip or none`);
    opts.compression = compression.value;
  }
  const timeout = pick(env, 'TIMEOUT');
  if (timeout) {
    if (!/^\d+$/.test(timeout.value) || Number(timeout.value) <= 0 || Number(timeout.value) > MAX_EXPORT_TIMEOUT_MS) {
      throw new UsageError(`${timeout.variable}='${timeout.value}': milliseconds, e.g. 10000 (at most ${MAX_EXPORT_TIMEOUT_MS}, 1 h)`);
    }
    opts.timeoutMs = Number(timeout.value);
  }
  for (const [name, key] of [['CERTIFICATE', 'certificate'], ['CLIENT_CERTIFICATE', 'clientCertificate'], ['CLIENT_KEY', 'clientKey']] as const) {
    const v = pick(env, name);
    if (v) opts[key] = v.value;
  }
  const insecure = pick(env, 'INSECURE');
  if (insecure) opts.insecure = insecure.value.toLowerCase() === 'true';
  return opts;
}

/** key1=value1,key2=value2 with URL-encoded values. */
export function parseHeaders(text: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of text.split(',')) {
    if (!part.trim()) continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`${what}: '${part.trim().split('=')[0]}…' is not key=value`);
    try {
      out[decodeURIComponent(part.slice(0, eq).trim())] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      throw new UsageError(`${what}: a value is not URL-encoded properly`);
    }
  }
  return out;
}

/** OTEL_RESOURCE_ATTRIBUTES (same syntax as headers), with OTEL_SERVICE_NAME over service.name. */
export function resourceFromEnv(env: Env = process.env): Attributes {
  const attrs: Attributes = env.OTEL_RESOURCE_ATTRIBUTES ? parseHeaders(env.OTEL_RESOURCE_ATTRIBUTES, 'OTEL_RESOURCE_ATTRIBUTES') : {};
  const service = env.OTEL_SERVICE_NAME?.trim();
  if (service) attrs['service.name'] = service;
  return attrs;
}
