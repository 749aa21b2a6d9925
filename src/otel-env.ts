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
//
// What would fail on every request is refused at start, in one line that never shows a secret:
// an endpoint that is not a URL (or has no port a socket can take), a header value a header
// cannot carry (a token with a trailing newline: grpc-js would quote it in every retry's
// error), TLS files that cannot be read or are not PEM. The checks are exported for the flags
// and the config file.

import { readFileSync, statSync } from 'node:fs';
import { UsageError } from './cli-args.js';
import type { ExporterOptions, OtlpProtocol } from './otlp/exporter.js';
import type { Attributes } from './otlp/profiles.js';

type Env = Record<string, string | undefined>;

export const DEFAULT_GRPC_ENDPOINT = 'http://localhost:4317';
export const DEFAULT_HTTP_ENDPOINT = 'http://localhost:4318';

function pick(env: Env, name: string): { value: string; variable: string } | undefined {
  for (const variable of [`OTEL_EXPORTER_OTLP_PROFILES_${name}`, `OTEL_EXPORTER_OTLP_${name}`]) {
    const value = env[variable]?.trim();
    if (value) return { value, variable };
  }
  return undefined;
}

/**
 * The OTLP exporter settings the environment gives (flags override them afterwards).
 * `checkFiles`: the TLS files must be readable PEM files (the agent checks them at start).
 */
export function otlpFromEnv(env: Env = process.env, { checkFiles = false }: { checkFiles?: boolean } = {}): ExporterOptions {
  const protocolVar = pick(env, 'PROTOCOL');
  const protocol = (protocolVar?.value ?? 'grpc') as OtlpProtocol;
  if (protocol !== 'grpc' && protocol !== 'http/protobuf') {
    throw new UsageError(`${protocolVar!.variable}='${protocolVar!.value}': flamewire speaks grpc or http/protobuf`);
  }
  const signal = env.OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT?.trim();
  const generic = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const endpoint = signal || generic || (protocol === 'grpc' ? DEFAULT_GRPC_ENDPOINT : DEFAULT_HTTP_ENDPOINT);
  const from = endpointVariable(env);
  if (from) checkEndpoint(endpoint, protocol, from);
  const opts: ExporterOptions = { endpoint, protocol };
  if (protocol === 'http/protobuf' && signal) opts.url = signal;
  const headers = pick(env, 'HEADERS');
  if (headers) opts.headers = checkHeaders(parseHeaders(headers.value, headers.variable), headers.variable);
  const compression = pick(env, 'COMPRESSION');
  if (compression) {
    if (compression.value !== 'gzip' && compression.value !== 'none') throw new UsageError(`${compression.variable}='${compression.value}': gzip or none`);
    opts.compression = compression.value;
  }
  const timeout = pick(env, 'TIMEOUT');
  if (timeout) {
    if (!/^\d+$/.test(timeout.value) || Number(timeout.value) <= 0) throw new UsageError(`${timeout.variable}='${timeout.value}': milliseconds, e.g. 10000`);
    if (Number(timeout.value) > MAX_REQUEST_TIMEOUT_MS) throw new UsageError(`${timeout.variable}='${timeout.value}': at most ${MAX_REQUEST_TIMEOUT_MS} (an hour)`);
    opts.timeoutMs = Number(timeout.value);
  }
  const files: TlsFiles = { certificate: 'OTEL_EXPORTER_OTLP_CERTIFICATE', clientCertificate: 'OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE', clientKey: 'OTEL_EXPORTER_OTLP_CLIENT_KEY' };
  for (const [name, key] of [['CERTIFICATE', 'certificate'], ['CLIENT_CERTIFICATE', 'clientCertificate'], ['CLIENT_KEY', 'clientKey']] as const) {
    const v = pick(env, name);
    if (v) {
      opts[key] = v.value;
      files[key] = v.variable;
    }
  }
  if (checkFiles) checkTlsFiles(opts, files);
  const insecure = pick(env, 'INSECURE');
  if (insecure) opts.insecure = insecure.value.toLowerCase() === 'true';
  return opts;
}

/** The variable that sets the endpoint, if one does. */
export function endpointVariable(env: Env = process.env): string | undefined {
  return ['OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'].find((v) => env[v]?.trim());
}

/** The longest per-request timeout taken (a timer's limit is 24 days; an hour is plenty). */
export const MAX_REQUEST_TIMEOUT_MS = 3_600_000;

/**
 * An endpoint the exporter can use, or a UsageError naming `what`: a http:// or https:// URL
 * with a host and a port from 1 to 65535 if it has one, no user:password (credentials go in
 * headers: the endpoint is in every log line); for gRPC also host:port without a scheme.
 */
export function checkEndpoint(value: string, protocol: OtlpProtocol | 'pyroscope', what: string): void {
  const shown = showUrl(value);
  const fail = (why: string): never => {
    throw new UsageError(`${what}='${shown}': ${why}`);
  };
  if (/\s/.test(value)) fail('not a URL (it has white space)');
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value);
  if (!withScheme && protocol === 'grpc' && /^[^/:]+:\d+$/.test(value)) {
    const port = Number(value.split(':')[1]);
    if (port < 1 || port > 65535) fail(`port ${port} is not a port (1 to 65535)`);
    return;
  }
  const example = protocol === 'grpc' ? 'http://collector:4317' : protocol === 'pyroscope' ? 'http://pyroscope:4040' : 'http://collector:4318';
  if (!/^https?:\/\//i.test(value)) fail(`not an http:// or https:// URL (e.g. ${example})`);
  const port = /^https?:\/\/(?:[^/@]*@)?(?:\[[^\]]*\]|[^/:]*):(\d+)(?:[/?#]|$)/i.exec(value)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) fail(`port ${port} is not a port (1 to 65535)`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail(`not a URL (e.g. ${example})`);
  }
  if (!url.hostname) fail(`no host (e.g. ${example})`);
  if (url.username || url.password) fail('has a user name or password in it; give credentials as headers');
}

/** A URL as logs and errors show it: without a user:password or a query, which may hold secrets. */
export function showUrl(value: string): string {
  return value.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@]*@/, '$1…@').replace(/\?.*$/s, '?…');
}

/** A header name: an HTTP token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What a value may hold to go as an HTTP header and as gRPC metadata alike: printable ASCII. */
const HEADER_VALUE = /^[\x20-\x7e]*$/;

/**
 * `headers` when every name and value can be sent; else a UsageError naming `what` and the
 * header, never the value (it is often a token).
 */
export function checkHeaders(headers: Record<string, string>, what: string): Record<string, string> {
  Object.entries(headers).forEach(([name, value], i) => {
    if (!HEADER_NAME.test(name)) throw new UsageError(`${what}: header ${i + 1} has a name a header cannot have (letters, digits and !#$%&'*+-.^_\`|~ only)`);
    if (!HEADER_VALUE.test(value)) throw new UsageError(`${what}: the value of header ${name} has a character a header cannot carry (${badChar(value)}); the value is not shown`);
  });
  return headers;
}

/**
 * A secret (a token, a password) checked as a header value would be; `encoded`: it goes in
 * encoded (a basic-auth password, in base64), so only control characters are refused.
 */
export function checkSecret(value: string, what: string, encoded = false): string {
  const bad = encoded ? /[\x00-\x1f\x7f]/.test(value) : !HEADER_VALUE.test(value);
  if (bad) throw new UsageError(`${what} has a character it cannot have (${badChar(value)}); the value is not shown`);
  return value;
}

/** What is wrong with a header value, without showing it. */
function badChar(value: string): string {
  const c = [...value].find((ch) => !HEADER_VALUE.test(ch))!;
  const code = c.codePointAt(0)!;
  const where = value.endsWith(c) ? 'at the end' : value.startsWith(c) ? 'at the start' : 'inside';
  const name = code === 10 ? 'a newline' : code === 13 ? 'a carriage return' : code === 9 ? 'a tab' : code < 32 || code === 127 ? `control character U+${code.toString(16).padStart(4, '0').toUpperCase()}` : 'a character outside printable ASCII';
  return `${name} ${where}`;
}

/** Which variable or field gave each TLS file, for the errors. */
export type TlsFiles = Partial<Record<'certificate' | 'clientCertificate' | 'clientKey', string>>;

/** The most a PEM file may hold (a CA bundle is a few hundred KiB). */
const MAX_PEM_BYTES = 4 << 20;

/**
 * The TLS files of `opts` are readable PEM files (a certificate, a private key), and the client
 * certificate comes with its key; else a UsageError naming the variable or field (`names`).
 * Never shows what a file holds.
 */
export function checkTlsFiles(opts: { certificate?: string; clientCertificate?: string; clientKey?: string }, names: TlsFiles): void {
  const kinds = { certificate: 'CERTIFICATE', clientCertificate: 'CERTIFICATE', clientKey: 'PRIVATE KEY' } as const;
  for (const key of ['certificate', 'clientCertificate', 'clientKey'] as const) {
    const path = opts[key];
    if (path === undefined) continue;
    const what = names[key] ?? key;
    let text: string;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw new UsageError(`${what}: ${path} is not a file`);
      if (st.size > MAX_PEM_BYTES) throw new UsageError(`${what}: ${path} is too big for a PEM file (${st.size} bytes)`);
      text = readFileSync(path, 'latin1');
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`${what}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (!new RegExp(`-----BEGIN [A-Z0-9 ]*${kinds[key]}-----`).test(text)) {
      throw new UsageError(`${what}: ${path} is not a PEM ${kinds[key] === 'CERTIFICATE' ? 'certificate' : 'private key'} (no -----BEGIN …${kinds[key]}----- line)`);
    }
  }
  if ((opts.clientCertificate === undefined) !== (opts.clientKey === undefined)) {
    const [given, missing] = opts.clientCertificate !== undefined ? (['clientCertificate', 'clientKey'] as const) : (['clientKey', 'clientCertificate'] as const);
    throw new UsageError(`${names[given] ?? given} is given without ${names[missing] ?? missing}: a client certificate needs its key`);
  }
}

/** key1=value1,key2=value2 with URL-encoded values. Errors never quote the text (it may be a token). */
export function parseHeaders(text: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  let n = 0;
  for (const part of text.split(',')) {
    if (!part.trim()) continue;
    n++;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new UsageError(`${what}: entry ${n} is not key=value`);
    try {
      out[decodeURIComponent(part.slice(0, eq).trim())] = decodeURIComponent(part.slice(eq + 1).trim());
    } catch {
      throw new UsageError(`${what}: entry ${n} is not URL-encoded properly`);
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
