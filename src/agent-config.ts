// The agent's config file (--config FILE, JSON), for sending to several destinations at once:
//
//   {
//     "exporters": [
//       { "type": "otlp", "protocol": "grpc", "endpoint": "http://collector:4317",
//         "headers": { "authorization": "Bearer ${COLLECTOR_TOKEN}" }, "compression": "gzip",
//         "timeout": "10s", "insecure": false,
//         "certificate": "/etc/ca.pem", "clientCertificate": "...", "clientKey": "..." },
//       { "type": "otlp", "preset": "pyroscope", "protocol": "http/protobuf", "endpoint": "http://pyroscope:4040" },
//       { "type": "otlp", "preset": "parca", "endpoint": "http://parca:7070" },
//       { "type": "parca", "endpoint": "http://parca:7070", "insecure": true },
//       { "type": "pyroscope", "endpoint": "https://profiles.example.com",
//         "basicAuth": { "username": "1234", "password": "${PYROSCOPE_TOKEN}" },
//         "tenantId": "team-a", "headers": { ... }, "timeout": "10s",
//         "certificate": "/etc/ca.pem", "clientCertificate": "...", "clientKey": "..." },
//       { "type": "directory", "path": "/var/lib/flamewire" }
//     ]
//   }
//
// "preset" fits an OTLP exporter to a backend's rules (otlp/profiles.ts OTLP_PRESETS): "pyroscope"
// keeps its 30-label limit; "parca" works around how Parca reads the request (gRPC only).
//
// "pyroscope" is Pyroscope's own /ingest API (export/pyroscope.ts), for servers without OTLP:
// every window is one pprof upload per process (and one more for off-CPU time), named after the
// service (service.name, else the executable) with the process's attributes as labels, at most
// 30 per series. Authentication: "basicAuth" or "bearerToken" (not both); "tenantId" is sent as
// X-Scope-OrgID. A Pyroscope new enough for OTLP can take { "type": "otlp", "preset":
// "pyroscope" } instead, over gRPC or HTTP on the same port (4040).
//
// ${NAME} in a string is replaced by the environment variable NAME, so secrets can stay in the
// environment (a Kubernetes Secret) rather than in the file. Every mistake is a UsageError
// that names the exporter and the field.

import { readFileSync } from 'node:fs';
import { UsageError } from './cli-args.js';
import { parseDuration } from './duration.js';
import type { PyroscopeOptions } from './export/pyroscope.js';
import type { ExporterOptions } from './otlp/exporter.js';
import { MAX_EXPORT_TIMEOUT_MS } from './otel-env.js';
import { OTLP_PRESETS, type OtlpPreset } from './otlp/profiles.js';

export interface AgentConfig {
  otlp: ExporterOptions[];
  pyroscope: PyroscopeOptions[];
  outputDirs: string[];
}

type Env = Record<string, string | undefined>;

export function readAgentConfig(path: string, env: Env = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`config file ${path} is not JSON: ${(e as Error).message}`);
  }
  return parseAgentConfig(json, path, env);
}

export function parseAgentConfig(json: unknown, where: string, env: Env = process.env): AgentConfig {
  const fail = (what: string): never => {
    throw new UsageError(`config file ${where}: ${what}`);
  };
  if (!isObject(json) || !Array.isArray(json.exporters) || json.exporters.length === 0) fail('needs "exporters": [ … ] with at least one');
  const cfg: AgentConfig = { otlp: [], pyroscope: [], outputDirs: [] };
  const expand = (s: string, field: string): string =>
    s.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, name: string) => {
      const v = env[name];
      if (v === undefined) fail(`${field} names the environment variable ${name}, which is not set`);
      return v!;
    });
  (json as { exporters: unknown[] }).exporters.forEach((e, i) => {
    const at = `exporters[${i}]`;
    if (!isObject(e)) fail(`${at} is not an object`);
    const o = e as Record<string, unknown>;
    const str = (k: string, required = false): string | undefined => {
      const v = o[k];
      if (v === undefined) return required ? fail(`${at}.${k} is missing`) : undefined;
      if (typeof v !== 'string' || v === '') return fail(`${at}.${k} must be a non-empty string`);
      return expand(v, `${at}.${k}`);
    };
    if (o.type === 'directory') {
      cfg.outputDirs.push(str('path', true)!);
      return;
    }
    const only = (known: string[]): void => {
      const extra = Object.keys(o).find((k) => !known.includes(k));
      if (extra) fail(`${at} has an unknown field "${extra}"`);
    };
    const endpointOf = (example: string): string => {
      const endpoint = str('endpoint', true)!;
      if (!/^https?:\/\/[^/]+/.test(endpoint)) fail(`${at}.endpoint must be a URL such as ${example}`);
      return endpoint;
    };
    const headersOf = (): Record<string, string> | undefined => {
      if (o.headers === undefined) return undefined;
      if (!isObject(o.headers) || Object.values(o.headers).some((v) => typeof v !== 'string')) fail(`${at}.headers must map names to strings`);
      return Object.fromEntries(Object.entries(o.headers as Record<string, string>).map(([k, v]) => [k, expand(v, `${at}.headers.${k}`)]));
    };
    const timeoutOf = (): number | undefined => {
      const timeout = str('timeout');
      if (timeout === undefined) return undefined;
      const ms = parseDuration(timeout);
      if (ms === undefined || ms <= 0) fail(`${at}.timeout must be a duration such as 10s`);
      if (ms! > MAX_EXPORT_TIMEOUT_MS) fail(`${at}.timeout must be at most 1h`);
      return ms;
    };
    const tlsFiles = ['certificate', 'clientCertificate', 'clientKey'] as const;
    if (o.type === 'pyroscope') {
      only(['type', 'endpoint', 'headers', 'basicAuth', 'bearerToken', 'tenantId', 'timeout', ...tlsFiles]);
      const p: PyroscopeOptions = { endpoint: endpointOf('http://pyroscope:4040') };
      const headers = headersOf();
      if (headers) p.headers = headers;
      if (o.basicAuth !== undefined) {
        const b = o.basicAuth;
        if (!isObject(b) || typeof b.username !== 'string' || typeof b.password !== 'string' || Object.keys(b).length !== 2) {
          fail(`${at}.basicAuth must be { "username": "...", "password": "..." }`);
        }
        const { username, password } = b as { username: string; password: string };
        p.basicAuth = { username: expand(username, `${at}.basicAuth.username`), password: expand(password, `${at}.basicAuth.password`) };
      }
      const bearer = str('bearerToken');
      if (bearer !== undefined) {
        if (p.basicAuth) fail(`${at}.bearerToken: give basicAuth or bearerToken, not both`);
        p.bearerToken = bearer;
      }
      const tenant = str('tenantId');
      if (tenant !== undefined) p.tenantId = tenant;
      const timeoutMs = timeoutOf();
      if (timeoutMs !== undefined) p.timeoutMs = timeoutMs;
      for (const k of tlsFiles) {
        const v = str(k);
        if (v !== undefined) p[k] = v;
      }
      cfg.pyroscope.push(p);
      return;
    }
    if (o.type !== 'otlp' && o.type !== 'parca') fail(`${at}.type must be "otlp", "parca", "pyroscope" or "directory"`);
    // parca: Parca's own WriteRaw API (gRPC), gzipped pprof per process.
    const protocol = str('protocol') ?? 'grpc';
    if (o.type === 'parca' && protocol !== 'grpc') fail(`${at}: Parca's WriteRaw is gRPC only`);
    if (protocol !== 'grpc' && protocol !== 'http/protobuf') fail(`${at}.protocol must be grpc or http/protobuf`);
    const endpoint = endpointOf('http://collector:4317');
    const x: ExporterOptions = { endpoint, protocol: protocol as ExporterOptions['protocol'], ...(o.type === 'parca' ? { api: 'parca' as const } : {}) };
    const url = str('url');
    if (url) x.url = url;
    const headers = headersOf();
    if (headers) x.headers = headers;
    const compression = str('compression');
    if (compression !== undefined) {
      if (compression !== 'gzip' && compression !== 'none') fail(`${at}.compression must be gzip or none`);
      x.compression = compression as 'gzip' | 'none';
    }
    const timeoutMs = timeoutOf();
    if (timeoutMs !== undefined) x.timeoutMs = timeoutMs;
    if (o.insecure !== undefined) {
      if (typeof o.insecure !== 'boolean') fail(`${at}.insecure must be true or false`);
      x.insecure = o.insecure as boolean;
    }
    for (const k of tlsFiles) {
      const v = str(k);
      if (v !== undefined) x[k] = v;
    }
    const preset = str('preset');
    if (preset !== undefined) {
      if (o.type !== 'otlp') fail(`${at}.preset is for exporters of type "otlp"`);
      if (!Object.hasOwn(OTLP_PRESETS, preset)) fail(`${at}.preset must be ${Object.keys(OTLP_PRESETS).map((p) => `"${p}"`).join(' or ')}`);
      if (preset === 'parca' && protocol !== 'grpc') fail(`${at}: Parca takes OTLP over gRPC only (protocol "grpc")`);
      x.preset = preset as OtlpPreset;
    }
    only(['type', 'preset', 'protocol', 'endpoint', 'url', 'headers', 'compression', 'timeout', 'insecure', ...tlsFiles]);
    cfg.otlp.push(x);
  });
  return cfg;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
