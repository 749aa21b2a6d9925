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
// Never throws for anything the network or the server does: every outcome is a result. What a
// server sends back is read within bounds, since the answer is for us to classify, not to keep:
// - HTTP: a success's body (an ExportProfilesServiceResponse, a few bytes) is read up to
//   MAX_SUCCESS_BODY_BYTES, an error's up to ERROR_BODY_BYTES (it is only for the log); then the
//   connection is cut, so a server that streams a gigabyte costs nothing.
// - gRPC: the channel takes messages up to MAX_GRPC_RESPONSE_BYTES (grpc-js's default is
//   4 MiB); a longer one ends the call (RESOURCE_EXHAUSTED, final: the server answered, so the
//   window is not sent again).
// - A result's message never carries a configured header value: grpc-js and node:http quote
//   what they were given in some errors, so every message goes through a redactor of them.
// A send takes an AbortSignal: the agent's shutdown deadline cuts a call in flight (gRPC:
// cancelled; HTTP: the socket destroyed), and close() ends the channel and the kept-alive
// connections, so nothing of a destination outlives the agent's deadline.

import * as grpc from '@grpc/grpc-js';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import protobuf from 'protobufjs';
import { redactor } from '../logger.js';
import { timerDelay } from '../timers.js';
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
/** What is read of an HTTP answer: a success's body (decoded), an error's (for the log). */
export const MAX_SUCCESS_BODY_BYTES = 64 << 10;
export const ERROR_BODY_BYTES = 512;
/** The longest gRPC message taken (an Export response is a few bytes; WriteRaw's is empty). */
export const MAX_GRPC_RESPONSE_BYTES = 64 << 10;
/** Of a server's error message, what goes in a result. */
const MAX_MESSAGE_CHARS = 300;
export const DEFAULT_TIMEOUT_MS = 10_000;
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
  private readonly http = new HttpConnections();
  private readonly redact: (text: string) => string;

  constructor(private readonly opts: ExporterOptions) {
    this.redact = redactor(Object.values(opts.headers ?? {}));
  }

  /** The request's protobuf bytes, for callers that queue them. */
  static encode(req: OtlpRequest): Uint8Array {
    const { request } = otlpTypes();
    return request.encode(request.fromObject(req)).finish();
  }

  /** Sends one encoded ExportProfilesServiceRequest; `signal` cuts the call short. */
  async send(body: Uint8Array, signal?: AbortSignal): Promise<ExportResult> {
    const r = await (this.opts.protocol === 'grpc' || this.opts.api === 'parca' ? this.sendGrpc(body, signal) : this.sendHttp(body, signal));
    return r.message === undefined ? r : { ...r, message: this.redact(r.message) };
  }

  /** Ends the gRPC channel and the HTTP connections kept alive. */
  close(): void {
    this.client?.close();
    this.client = undefined;
    this.http.close();
  }

  private grpcClient(): grpc.Client {
    if (this.client) return this.client;
    const { address, tls } = grpcTarget(this.opts.endpoint, this.opts.insecure === true);
    const creds = tls
      ? grpc.credentials.createSsl(
          readTlsFile(this.opts.certificate, 'the CA certificate'),
          readTlsFile(this.opts.clientKey, 'the client key'),
          readTlsFile(this.opts.clientCertificate, 'the client certificate'),
        )
      : grpc.credentials.createInsecure();
    const options: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': MAX_GRPC_RESPONSE_BYTES,
      // Its own connections, closed with the channel (the global pool would keep them).
      'grpc.use_local_subchannel_pool': 1,
      ...(this.opts.compression === 'gzip' ? { 'grpc.default_compression_algorithm': 2 } : {}),
    };
    this.client = new grpc.Client(address, creds, options);
    return this.client;
  }

  private sendGrpc(body: Uint8Array, signal: AbortSignal | undefined): Promise<ExportResult> {
    const { response } = otlpTypes();
    let client: grpc.Client;
    try {
      client = this.grpcClient();
    } catch (e) {
      return Promise.resolve({ ok: false, retryable: false, message: `cannot set up gRPC: ${(e as Error).message}` });
    }
    let metadata: grpc.Metadata;
    try {
      metadata = grpcMetadata(this.opts.headers ?? {});
    } catch (e) {
      return Promise.resolve({ ok: false, retryable: false, message: (e as Error).message });
    }
    const deadline = Date.now() + timerDelay(this.opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    if (signal?.aborted) return Promise.resolve(cutShort());
    return new Promise((done) => {
      const parca = this.opts.api === 'parca';
      const call = client.makeUnaryRequest(
        parca ? PARCA_WRITE_RAW : `/${EXPORT_SERVICE}/Export`,
        (b: Uint8Array) => Buffer.from(b),
        // WriteRawResponse is empty: nothing to read.
        (b: Buffer) => (parca ? undefined : response.decode(b)),
        body,
        metadata,
        { deadline },
        (err, value) => {
          signal?.removeEventListener('abort', cancel);
          if (err) {
            done(signal?.aborted ? cutShort() : grpcFailure(err));
            return;
          }
          done(partial(value ? response.toObject(value, { longs: Number }) : {}, grpc.status.OK));
        },
      );
      const cancel = () => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
    });
  }

  private sendHttp(body: Uint8Array, signal: AbortSignal | undefined): Promise<ExportResult> {
    let url: URL;
    try {
      url = new URL(this.opts.url ?? this.opts.endpoint.replace(/\/+$/, '') + HTTP_PATH);
    } catch {
      return Promise.resolve({ ok: false, retryable: false, message: 'the endpoint is not a URL' });
    }
    const gzip = this.opts.compression === 'gzip';
    const payload = gzip ? gzipSync(body) : Buffer.from(body);
    const headers: Record<string, string> = {
      ...this.opts.headers,
      'content-type': 'application/x-protobuf',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
    };
    return httpPost(url, payload, headers, this.opts, otlpHttpSuccess, { signal, connections: this.http });
  }
}

/** The request headers as gRPC metadata ('-bin' names carry bytes). Throws naming the header, never its value. */
function grpcMetadata(headers: Record<string, string>): grpc.Metadata {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) {
    const key = k.toLowerCase();
    try {
      if (key.endsWith('-bin')) metadata.set(key, Buffer.from(v));
      else metadata.set(key, v);
    } catch {
      throw new Error(`header ${key} cannot be sent as gRPC metadata (its value is not shown)`);
    }
  }
  return metadata;
}

/** What a call cut by the shutdown deadline resolves to. */
function cutShort(): ExportResult {
  return { ok: false, retryable: true, message: 'cut short at the shutdown deadline' };
}

/**
 * The kept-alive connections of one destination: its own agents (the global ones would keep
 * sockets no one closes), destroyed by close().
 */
export class HttpConnections {
  private http: HttpAgent | undefined;
  private https: HttpsAgent | undefined;

  agent(https: boolean): HttpAgent | HttpsAgent {
    if (https) return (this.https ??= new HttpsAgent({ keepAlive: true, maxSockets: 2 }));
    return (this.http ??= new HttpAgent({ keepAlive: true, maxSockets: 2 }));
  }

  close(): void {
    this.http?.destroy();
    this.https?.destroy();
    this.http = this.https = undefined;
  }
}

/** What an HTTP destination needs besides the URL and the body. */
export type HttpPostOptions = Pick<ExporterOptions, 'timeoutMs' | 'certificate' | 'clientCertificate' | 'clientKey'>;

/** Per call: what cuts it short, and whose connections it uses. */
export interface HttpCall {
  signal?: AbortSignal;
  connections?: HttpConnections;
}

/**
 * POSTs `payload` and classifies the answer: a 2xx is what `success` makes of it; 429, 502,
 * 503 and 504 are retryable (Retry-After honoured); other statuses are final; a network
 * failure or no whole answer within the timeout is retryable; TLS files that cannot be read are
 * final. Reads at most MAX_SUCCESS_BODY_BYTES of a success and ERROR_BODY_BYTES of an error,
 * then cuts the connection. Never rejects.
 */
export function httpPost(
  url: URL,
  payload: Buffer,
  headers: Record<string, string>,
  opts: HttpPostOptions,
  success: (status: number, body: Buffer) => ExportResult,
  call: HttpCall = {},
): Promise<ExportResult> {
  const https = url.protocol === 'https:';
  const timeoutMs = timerDelay(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  let tls = {};
  try {
    if (https) tls = { ca: readTlsFile(opts.certificate, 'the CA certificate'), cert: readTlsFile(opts.clientCertificate, 'the client certificate'), key: readTlsFile(opts.clientKey, 'the client key') };
  } catch (e) {
    return Promise.resolve({ ok: false, retryable: false, message: (e as Error).message });
  }
  if (call.signal?.aborted) return Promise.resolve(cutShort());
  return new Promise((done) => {
    let settled = false;
    const finish = (r: ExportResult) => {
      if (!settled) {
        settled = true;
        clearTimeout(deadline);
        call.signal?.removeEventListener('abort', abort);
        done(r);
      }
    };
    const options = { method: 'POST', headers: { ...headers, 'content-length': String(payload.length) }, ...tls, ...(call.connections ? { agent: call.connections.agent(https) } : {}) };
    let req: ReturnType<typeof httpRequest>;
    try {
      req = (https ? httpsRequest : httpRequest)(url, options, (res) => readAnswer(res, success, (r) => {
        finish(r);
        // Whatever is left of the answer is not read: the connection goes with it.
        if (!res.complete) req.destroy();
      }));
    } catch (e) {
      // node:http refuses a header it cannot send (its message names the header, not the value).
      done({ ok: false, retryable: false, message: `cannot send the request: ${(e as Error).message}` });
      return;
    }
    // One deadline for the whole exchange, as gRPC has: the socket's idle timeout would let a
    // server that trickles its answer hold the queue for as long as it likes.
    const deadline = setTimeout(() => {
      finish({ ok: false, retryable: true, message: `no answer within ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    const abort = () => {
      finish(cutShort());
      req.destroy();
    };
    call.signal?.addEventListener('abort', abort, { once: true });
    req.on('error', (e) => finish({ ok: false, retryable: true, message: e.message }));
    req.end(payload);
  });
}

/** Reads an answer within the bounds of the header, and hands its result to `finish` once. */
function readAnswer(res: IncomingMessage, success: (status: number, body: Buffer) => ExportResult, finish: (r: ExportResult) => void): void {
  const status = res.statusCode ?? 0;
  const ok = status >= 200 && status < 300;
  const max = ok ? MAX_SUCCESS_BODY_BYTES : ERROR_BODY_BYTES;
  const chunks: Buffer[] = [];
  let size = 0;
  let done = false;
  const end = () => {
    if (done) return;
    done = true;
    const body = Buffer.concat(chunks).subarray(0, max);
    finish(ok ? (size > max ? { ok: true, retryable: false, code: status, message: `an answer of more than ${max} bytes, not read` } : success(status, body)) : httpFailure(status, res.headers['retry-after'], body));
  };
  const declared = Number(res.headers['content-length']);
  if (ok && declared > max) {
    size = declared;
    end();
    return;
  }
  res.on('data', (c: Buffer) => {
    if (done) return;
    size += c.length;
    chunks.push(c);
    if (size >= max && (size > max || !ok)) end();
  });
  res.on('error', (e) => {
    if (done) return;
    done = true;
    finish({ ok: false, retryable: true, message: `reading the answer: ${e.message}` });
  });
  res.on('end', end);
}

/** The gRPC address and whether to use TLS, from an OTLP endpoint. */
export function grpcTarget(endpoint: string, insecure: boolean): { address: string; tls: boolean } {
  const m = /^(https?):\/\/([^/]+)/.exec(endpoint);
  if (m) return { address: m[2]!, tls: m[1] === 'https' };
  return { address: endpoint.replace(/\/+$/, ''), tls: !insecure };
}

/** A TLS file (`what` names it in the error), or undefined when none is configured. */
function readTlsFile(path: string | undefined, what: string): Buffer | undefined {
  if (!path) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
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
  return { ok: false, retryable, retryAfterMs, code: err.code, message: `${grpc.status[err.code] ?? err.code}: ${oneLine(String(err.details ?? ''))}` };
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
  const text = oneLine(body.toString('utf8', 0, Math.min(body.length, 200)));
  return { ok: false, retryable, retryAfterMs: retryable ? retryAfterMs(retryAfter) : undefined, code: status, message: `HTTP ${status}${text ? `: ${text}` : ''}` };
}

/** A server's text on one line, cut short. */
function oneLine(text: string): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > MAX_MESSAGE_CHARS ? `${t.slice(0, MAX_MESSAGE_CHARS)}…` : t;
}

/** Retry-After as delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}
