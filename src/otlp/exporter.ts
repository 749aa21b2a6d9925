// One OTLP Profiles export: a request over gRPC (@grpc/grpc-js, the method
// ProfilesService/Export) or over HTTP (POST <endpoint>/v1development/profiles, protobuf), with
// gzip, headers, TLS and a deadline per request. The answer is classified the way the OTLP
// specification says, so that the caller (the agent's queue) knows whether to retry and when:
//
// - gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and DATA_LOSS are
//   retryable; RESOURCE_EXHAUSTED only when the server sent a google.rpc.RetryInfo (its delay
//   is honoured); everything else is final.
// - HTTP: 429, 502, 503 and 504 are retryable (Retry-After honoured, in seconds or as a date);
//   other non-2xx answers are final.
// - A partial success (some profiles rejected) is a success that carries the count and message.
//
// Never throws for anything the network or the server does: every outcome is a result.

import * as grpc from '@grpc/grpc-js';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { EXPORT_SERVICE, PROTO_DIR, otlpTypes } from './proto.js';
import type { OtlpPreset, OtlpRequest } from './profiles.js';

export type OtlpProtocol = 'grpc' | 'http/protobuf';

export interface ExporterOptions {
  /** What the body is: an OTLP export request (default), or a Parca WriteRawRequest (gRPC only;
   * see export/parca.ts). */
  api?: 'otlp' | 'parca';
  /** A backend's rules (OTLP_PRESETS): 'pyroscope' keeps every series within its 30 labels;
   * 'parca' works around Parca's reading of function_index (gRPC only: Parca has no OTLP/HTTP). */
  preset?: OtlpPreset;
  /** gRPC: host:port or http(s)://host:port; HTTP: the base URL (…/v1development/profiles is
   * appended) unless `url` is given. */
  endpoint: string;
  protocol: OtlpProtocol;
  /** HTTP: the full URL to POST to (OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT is used as is). */
  url?: string;
  /** Extra request headers (gRPC metadata): authorization and the like. */
  headers?: Record<string, string>;
  compression?: 'gzip' | 'none';
  /** Per request; default 10 s. */
  timeoutMs?: number;
  /** Plain text even for an https:// endpoint is never done; `insecure` means no TLS for gRPC
   * endpoints given without a scheme. Default: TLS unless the endpoint says http://. */
  insecure?: boolean;
  /** PEM files: the CA to trust, and a client certificate and key for mTLS. */
  certificate?: string;
  clientCertificate?: string;
  clientKey?: string;
}

export interface ExportResult {
  ok: boolean;
  /** Worth sending again later (see the header). */
  retryable: boolean;
  /** When the server said when (Retry-After, RetryInfo). */
  retryAfterMs?: number;
  /** Profiles the server rejected in a partial success. */
  rejected?: number;
  /** What went wrong (or the partial success's message); never contains header values. */
  message?: string;
  /** The gRPC status code or HTTP status of the answer, when there was one. */
  code?: number;
}

const RETRYABLE_GRPC = new Set([
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.ABORTED,
  grpc.status.OUT_OF_RANGE,
  grpc.status.UNAVAILABLE,
  grpc.status.DATA_LOSS,
]);
const RETRYABLE_HTTP = new Set([429, 502, 503, 504]);
const RETRY_INFO = 'type.googleapis.com/google.rpc.RetryInfo';
export const PARCA_WRITE_RAW = '/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw';
export const HTTP_PATH = '/v1development/profiles';

let rpcTypes: { status: protobuf.Type; retryInfo: protobuf.Type } | undefined;
function rpc(): { status: protobuf.Type; retryInfo: protobuf.Type } {
  if (!rpcTypes) {
    const root = new protobuf.Root().loadSync(join(PROTO_DIR, 'rpc_status.proto'));
    rpcTypes = { status: root.lookupType('google.rpc.Status'), retryInfo: root.lookupType('google.rpc.RetryInfo') };
  }
  return rpcTypes;
}

export class OtlpExporter {
  private client: grpc.Client | undefined;

  constructor(private readonly opts: ExporterOptions) {}

  /** The request's protobuf bytes, for callers that queue them. */
  static encode(req: OtlpRequest): Uint8Array {
    const { request } = otlpTypes();
    return request.encode(request.fromObject(req)).finish();
  }

  /** Sends one encoded ExportProfilesServiceRequest. */
  send(body: Uint8Array): Promise<ExportResult> {
    return this.opts.protocol === 'grpc' || this.opts.api === 'parca' ? this.sendGrpc(body) : this.sendHttp(body);
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
  }

  private grpcClient(): grpc.Client {
    if (this.client) return this.client;
    const { address, tls } = grpcTarget(this.opts.endpoint, this.opts.insecure === true);
    const creds = tls
      ? grpc.credentials.createSsl(
          readOptional(this.opts.certificate),
          readOptional(this.opts.clientKey),
          readOptional(this.opts.clientCertificate),
        )
      : grpc.credentials.createInsecure();
    const options: grpc.ChannelOptions = this.opts.compression === 'gzip' ? { 'grpc.default_compression_algorithm': 2 } : {};
    this.client = new grpc.Client(address, creds, options);
    return this.client;
  }

  private sendGrpc(body: Uint8Array): Promise<ExportResult> {
    const { response } = otlpTypes();
    let client: grpc.Client;
    try {
      client = this.grpcClient();
    } catch (e) {
      return Promise.resolve({ ok: false, retryable: false, message: `cannot set up gRPC: ${(e as Error).message}` });
    }
    const metadata = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.opts.headers ?? {})) metadata.set(k.toLowerCase(), v);
    const deadline = Date.now() + (this.opts.timeoutMs ?? 10_000);
    return new Promise((done) => {
      const parca = this.opts.api === 'parca';
      client.makeUnaryRequest(
        parca ? PARCA_WRITE_RAW : `/${EXPORT_SERVICE}/Export`,
        (b: Uint8Array) => Buffer.from(b),
        // WriteRawResponse is empty: nothing to read.
        (b: Buffer) => (parca ? undefined : response.decode(b)),
        body,
        metadata,
        { deadline },
        (err, value) => {
          if (err) {
            done(grpcFailure(err));
            return;
          }
          done(partial(value ? response.toObject(value, { longs: Number }) : {}, grpc.status.OK));
        },
      );
    });
  }

  private sendHttp(body: Uint8Array): Promise<ExportResult> {
    const url = new URL(this.opts.url ?? this.opts.endpoint.replace(/\/+$/, '') + HTTP_PATH);
    const gzip = this.opts.compression === 'gzip';
    const payload = gzip ? gzipSync(body) : Buffer.from(body);
    const headers: Record<string, string> = {
      ...this.opts.headers,
      'content-type': 'application/x-protobuf',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    };
    return httpPost(url, payload, headers, this.opts, otlpHttpSuccess);
  }
}

/** What an HTTP destination needs besides the URL and the body. */
export type HttpPostOptions = Pick<ExporterOptions, 'timeoutMs' | 'certificate' | 'clientCertificate' | 'clientKey'>;

/**
 * POSTs `payload` and classifies the answer: a 2xx is what `success` makes of it; 429, 502,
 * 503 and 504 are retryable (Retry-After honoured); other statuses are final; a network
 * failure or no whole answer within the timeout is retryable. Never rejects.
 */
export function httpPost(
  url: URL,
  payload: Buffer,
  headers: Record<string, string>,
  opts: HttpPostOptions,
  success: (status: number, body: Buffer) => ExportResult,
): Promise<ExportResult> {
  const https = url.protocol === 'https:';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const tls = https ? { ca: readOptional(opts.certificate), cert: readOptional(opts.clientCertificate), key: readOptional(opts.clientKey) } : {};
  return new Promise((done) => {
    let settled = false;
    const finish = (r: ExportResult) => {
      if (!settled) {
        settled = true;
        clearTimeout(deadline);
        done(r);
      }
    };
    const req = (https ? httpsRequest : httpRequest)(url, { method: 'POST', headers: { ...headers, 'content-length': String(payload.length) }, ...tls }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', (e) => finish({ ok: false, retryable: true, message: `reading the answer: ${e.message}` }));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const body = Buffer.concat(chunks);
        finish(status >= 200 && status < 300 ? success(status, body) : httpFailure(status, res.headers['retry-after'], body));
      });
    });
    // One deadline for the whole exchange, as gRPC has: the socket's idle timeout would let a
    // server that trickles its answer hold the queue for as long as it likes.
    const deadline = setTimeout(() => {
      finish({ ok: false, retryable: true, message: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => finish({ ok: false, retryable: true, message: e.message }));
    req.end(payload);
  });
}

/** The gRPC address and whether to use TLS, from an OTLP endpoint. */
export function grpcTarget(endpoint: string, insecure: boolean): { address: string; tls: boolean } {
  const m = /^(https?):\/\/([^/]+)/.exec(endpoint);
  if (m) return { address: m[2]!, tls: m[1] === 'https' };
  return { address: endpoint.replace(/\/+$/, ''), tls: !insecure };
}

function readOptional(path: string | undefined): Buffer | undefined {
  return path ? readFileSync(path) : undefined;
}

/** A successful answer, possibly a partial success. */
function partial(resp: { partialSuccess?: { rejectedProfiles?: number; errorMessage?: string } }, code: number): ExportResult {
  const p = resp.partialSuccess;
  if (p && ((p.rejectedProfiles ?? 0) > 0 || p.errorMessage)) {
    return { ok: true, retryable: false, rejected: p.rejectedProfiles ?? 0, message: p.errorMessage || undefined, code };
  }
  return { ok: true, retryable: false, code };
}

function grpcFailure(err: grpc.ServiceError): ExportResult {
  const retryAfterMs = retryInfoDelay(err.metadata);
  const retryable = RETRYABLE_GRPC.has(err.code) || (err.code === grpc.status.RESOURCE_EXHAUSTED && retryAfterMs !== undefined);
  return { ok: false, retryable, retryAfterMs, code: err.code, message: `${grpc.status[err.code] ?? err.code}: ${err.details}` };
}

/** The delay of a google.rpc.RetryInfo in the status details, if the server sent one. */
function retryInfoDelay(md: grpc.Metadata | undefined): number | undefined {
  const raw = md?.get('grpc-status-details-bin')[0];
  if (!raw) return undefined;
  try {
    const { status, retryInfo } = rpc();
    const s = status.toObject(status.decode(Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'base64')), { longs: Number }) as { details?: Array<{ typeUrl: string; value: Uint8Array }> };
    for (const d of s.details ?? []) {
      if (d.typeUrl !== RETRY_INFO) continue;
      const r = retryInfo.toObject(retryInfo.decode(d.value), { longs: Number }) as { retryDelay?: { seconds?: number; nanos?: number } };
      return Math.round((r.retryDelay?.seconds ?? 0) * 1000 + (r.retryDelay?.nanos ?? 0) / 1e6);
    }
  } catch {
    // a garbled trailer is no RetryInfo
  }
  return undefined;
}

/** A 2xx answer to an OTLP export: an ExportProfilesServiceResponse, maybe a partial success. */
function otlpHttpSuccess(status: number, body: Buffer): ExportResult {
  try {
    const { response } = otlpTypes();
    return partial(body.length ? (response.toObject(response.decode(body), { longs: Number }) as never) : {}, status);
  } catch {
    return { ok: true, retryable: false, code: status };
  }
}

function httpFailure(status: number, retryAfter: string | undefined, body: Buffer): ExportResult {
  const retryable = RETRYABLE_HTTP.has(status);
  const text = body.toString('utf8', 0, Math.min(body.length, 200)).replace(/\s+/g, ' ').trim();
  return { ok: false, retryable, retryAfterMs: retryable ? retryAfterMs(retryAfter) : undefined, code: status, message: `HTTP ${status}${text ? `: ${text}` : ''}` };
}

/** Retry-After as delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
