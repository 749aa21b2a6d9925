// The Kubernetes API as a pod sees it, what client-go's rest.InClusterConfig reads: the API
// server at KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT (set in every container), the pod's
// ServiceAccount token and the cluster's CA in /var/run/secrets/kubernetes.io/serviceaccount.
//
// Bound ServiceAccount tokens expire (an hour by default) and the kubelet rewrites the file well
// before, so the token is read again for every request and never kept; so is the CA, which the
// cluster may rotate too. FLAMEWIRE_SERVICEACCOUNT_DIR names another directory with the same
// files (a token projected elsewhere; the tests' fake API server).
//
// GET requests only, over TLS verified against that CA; the token goes in the Authorization
// header and nowhere else (no URL, no log line, no error message carries it).

import { existsSync, readFileSync } from 'node:fs';
import { request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';

export const SERVICEACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

type Env = Record<string, string | undefined>;

export interface InClusterConfig {
  host: string;
  port: number;
  tokenFile: string;
  caFile: string;
}

/** The in-cluster settings the environment gives, or why there are none (one line). */
export function inClusterConfig(env: Env = process.env): InClusterConfig | string {
  const host = env.KUBERNETES_SERVICE_HOST?.trim();
  const port = env.KUBERNETES_SERVICE_PORT?.trim();
  if (!host || !port) return 'not in a Kubernetes pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)';
  if (!/^\d{1,5}$/.test(port) || Number(port) === 0 || Number(port) > 65535) return `KUBERNETES_SERVICE_PORT='${port}' is not a port`;
  const dir = env.FLAMEWIRE_SERVICEACCOUNT_DIR?.trim() || SERVICEACCOUNT_DIR;
  const tokenFile = join(dir, 'token');
  if (!existsSync(tokenFile)) return `no ServiceAccount token at ${tokenFile} (automountServiceAccountToken: false?)`;
  return { host, port: Number(port), tokenFile, caFile: join(dir, 'ca.crt') };
}

/** An error answer of the API server: its HTTP status and the Status object's reason and message. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * GET `path` (with its query) from the API server. Resolves with the response once its head has
 * arrived (200 only); any other status rejects with an ApiError carrying the server's Status.
 * `idleMs`: the request fails when nothing arrives for that long (a half-open connection).
 */
export function apiGet(cfg: InClusterConfig, path: string, opts: { signal?: AbortSignal; idleMs: number }): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    let token: string;
    let ca: Buffer | undefined;
    try {
      token = readFileSync(cfg.tokenFile, 'utf8').trim();
      ca = existsSync(cfg.caFile) ? readFileSync(cfg.caFile) : undefined;
    } catch (e) {
      reject(new Error(`cannot read the ServiceAccount files: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`));
      return;
    }
    const options: RequestOptions = {
      host: cfg.host,
      port: cfg.port,
      path,
      method: 'GET',
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', 'user-agent': 'flamewire' },
      ...(ca ? { ca } : {}),
      signal: opts.signal,
    };
    const req = request(options, (res) => {
      if (res.statusCode === 200) {
        resolve(res);
        return;
      }
      // A Status object is a few hundred bytes; of anything else the start says enough.
      readBody(res, ERROR_BODY_BYTES, true).then(
        (body) => reject(statusError(res.statusCode ?? 0, body)),
        () => reject(statusError(res.statusCode ?? 0, '')),
      );
    });
    req.setTimeout(opts.idleMs, () => req.destroy(new Error(`no answer from the API server for ${Math.round(opts.idleMs / 1000)} s`)));
    req.on('error', reject);
    req.end();
  });
}

/** What is read of an error answer. */
export const ERROR_BODY_BYTES = 16 << 10;

/** An answer longer than what its reader takes. */
export class TooBig extends Error {
  override name = 'TooBig';
  constructor(readonly max: number) {
    super(`answer larger than ${max} bytes`);
  }
}

/**
 * The whole body of `res`, at most `max` bytes: more is a TooBig error, or with `truncate` the
 * first `max` bytes; either way the rest is not read (the connection is cut).
 */
export function readBody(res: IncomingMessage, max: number, truncate = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size > max) return;
      size += c.length;
      if (size <= max) chunks.push(c);
      else if (truncate) {
        chunks.push(c.subarray(0, c.length - (size - max)));
        resolve(Buffer.concat(chunks).toString('utf8'));
        res.destroy();
      } else res.destroy(new TooBig(max));
    });
    res.on('error', reject);
    res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.on('close', () => {
      if (!res.complete) reject(new Error('connection closed in the middle of the answer'));
    });
  });
}

/** An ApiError from a status and the body of a Status answer (or whatever else came). */
export function statusError(status: number, body: string): ApiError {
  let reason = '';
  let message = body.slice(0, 200).trim();
  try {
    const s = JSON.parse(body) as { reason?: string; message?: string; code?: number };
    reason = s.reason ?? '';
    message = s.message ?? message;
  } catch {
    // not a Status object: its first bytes say what it is
  }
  return new ApiError(status, reason, `API server answered ${status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`);
}
