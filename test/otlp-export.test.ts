// OTLP export against real servers on loopback: a gRPC server (@grpc/grpc-js) and an HTTP
// server (node:http), both decoding with the OFFICIAL opentelemetry-proto files, so what
// arrives is what any collector would read. Checks what arrives (the request, headers, gzip)
// and how every kind of answer is classified: success, partial success, retryable failures
// (with the server's RetryInfo / Retry-After delay), final failures, a stalled server (the
// deadline), a server that is not there; hostile answers: bodies and messages far too big (read
// within bounds, the connection cut), errors that quote a header value (redacted); a send cut
// by its AbortSignal (the server sees the call end).

import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { ERROR_BODY_BYTES, HTTP_PATH, MAX_SUCCESS_BODY_BYTES, OtlpExporter, retryAfterMs } from '../src/otlp/exporter.js';
import { toOtlpRequest } from '../src/otlp/profiles.js';
import { knownProfile, largeProfile } from './fixtures/output-profile.js';
import { rawGrpcServer, Request, Response, retryInfoStatus } from './otlp-official.js';

const body = OtlpExporter.encode(toOtlpRequest(knownProfile(), { version: 'test', resource: { 'service.name': 'checkout' } }));
const bigBody = OtlpExporter.encode(toOtlpRequest(largeProfile(2000, 20), { version: 'test' }));
/** The name of the first function of the request, as the server decoded it. */
const firstFunction = (req: any): string => req.dictionary.stringTable[req.dictionary.functionTable[1].nameStrindex];

interface Received {
  request: any;
  headers: Record<string, string>;
}

/** How the gRPC server answers the next call. */
type GrpcAnswer = { ok: true; rejected?: number; message?: string } | { ok: false; code: grpc.status; retryDelayMs?: number } | { stall: true };

async function until(cond: () => boolean, what: string): Promise<void> {
  for (const end = Date.now() + 20_000; !cond(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('OTLP export over gRPC', () => {
  const server = new grpc.Server();
  let port = 0;
  let answer: GrpcAnswer = { ok: true };
  const received: Received[] = [];
  /** Stalled calls the client cancelled (or whose deadline passed). */
  let cancels = 0;
  before(async () => {
    const service: grpc.ServiceDefinition = {
      Export: {
        path: '/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: any) => Buffer.from(Request.encode(v).finish()),
        requestDeserialize: (b: Buffer) => Request.toObject(Request.decode(b), { longs: String }),
        responseSerialize: (v: any) => Buffer.from(Response.encode(Response.fromObject(v)).finish()),
        responseDeserialize: (b: Buffer) => Response.decode(b),
      },
    };
    server.addService(service, {
      Export: (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => {
        received.push({ request: call.request, headers: Object.fromEntries(Object.entries(call.metadata.getMap()).map(([k, v]) => [k, String(v)])) });
        const a = answer;
        if ('stall' in a) {
          call.on('cancelled', () => cancels++);
          return; // never answers
        }
        if (a.ok) {
          cb(null, a.rejected || a.message ? { partialSuccess: { rejectedProfiles: a.rejected ?? 0, errorMessage: a.message ?? '' } } : {});
          return;
        }
        const md = new grpc.Metadata();
        if (a.retryDelayMs !== undefined) md.set('grpc-status-details-bin', retryInfoStatus(a.code, a.retryDelayMs));
        cb({ code: a.code, details: 'refused', metadata: md } as grpc.ServiceError);
      },
    });
    port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
  });
  after(() => server.forceShutdown());

  const exporter = (extra: Partial<ConstructorParameters<typeof OtlpExporter>[0]> = {}) =>
    new OtlpExporter({ endpoint: `http://127.0.0.1:${port}`, protocol: 'grpc', compression: 'gzip', headers: { Authorization: 'Bearer s3cret' }, timeoutMs: 2000, ...extra });

  /** Bytes a client sent to the server through a counting proxy, for one export. */
  async function bytesOnTheWire(compression: 'gzip' | 'none'): Promise<number> {
    let sent = 0;
    const proxy = createTcpServer((c) => {
      const up = connect(port, '127.0.0.1');
      c.on('data', (d: Buffer) => (sent += d.length));
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
    const e = new OtlpExporter({ endpoint: `127.0.0.1:${(proxy.address() as AddressInfo).port}`, protocol: 'grpc', insecure: true, compression });
    try {
      assert.equal((await e.send(bigBody)).ok, true);
    } finally {
      e.close();
      proxy.close();
    }
    return sent;
  }

  it('delivers the request, gzipped, with its headers; a partial success says what was rejected', async () => {
    answer = { ok: true };
    const e = exporter();
    try {
      assert.deepEqual(await e.send(body), { ok: true, retryable: false, code: 0 });
      const got = received.at(-1)!;
      assert.equal(firstFunction(got.request), 'parse_header');
      assert.equal(got.request.resourceProfiles.length, 2);
      assert.equal(got.headers.authorization, 'Bearer s3cret');
      // gzip: the server's library takes the encoding header away, so count the bytes.
      const plain = await bytesOnTheWire('none');
      const gzipped = await bytesOnTheWire('gzip');
      assert.ok(gzipped < plain / 2, `${gzipped} bytes gzipped vs ${plain} plain`);
      answer = { ok: true, rejected: 1, message: 'one was too old' };
      const r = await e.send(body);
      assert.deepEqual(r, { ok: true, retryable: false, rejected: 1, message: 'one was too old', code: 0 });
    } finally {
      e.close();
    }
  });

  it('retries what the OTLP spec says, RESOURCE_EXHAUSTED only with RetryInfo, and honours its delay', async () => {
    const e = exporter();
    try {
      answer = { ok: false, code: grpc.status.RESOURCE_EXHAUSTED, retryDelayMs: 1500 };
      let r = await e.send(body);
      assert.equal(r.ok, false);
      assert.equal(r.retryable, true);
      assert.equal(r.retryAfterMs, 1500);
      assert.equal(r.code, grpc.status.RESOURCE_EXHAUSTED);
      answer = { ok: false, code: grpc.status.RESOURCE_EXHAUSTED };
      r = await e.send(body);
      assert.deepEqual([r.ok, r.retryable], [false, false]);
      for (const code of [grpc.status.UNAVAILABLE, grpc.status.ABORTED, grpc.status.DATA_LOSS]) {
        answer = { ok: false, code };
        assert.equal((await e.send(body)).retryable, true, grpc.status[code]);
      }
      for (const code of [grpc.status.INVALID_ARGUMENT, grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED]) {
        answer = { ok: false, code };
        const x = await e.send(body);
        assert.deepEqual([x.ok, x.retryable], [false, false], grpc.status[code]);
        assert.ok(!x.message?.includes('s3cret'));
      }
    } finally {
      e.close();
    }
  });

  it('gives up on a server that does not answer at the deadline (retryable)', async () => {
    answer = { stall: true };
    const e = exporter({ timeoutMs: 300 });
    try {
      const t = Date.now();
      const r = await e.send(body);
      assert.deepEqual([r.ok, r.retryable, r.code], [false, true, grpc.status.DEADLINE_EXCEEDED]);
      assert.ok(Date.now() - t < 5000);
    } finally {
      e.close();
    }
  });

  it('refuses an answer of more than 64 KiB (RESOURCE_EXHAUSTED, final) without reading it whole', async () => {
    const big = await rawGrpcServer('/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export', Buffer.alloc(16 << 20, 1), (_r, cb) => cb(null, {}));
    const e = new OtlpExporter({ endpoint: `http://127.0.0.1:${big.port}`, protocol: 'grpc', timeoutMs: 5000 });
    try {
      const r = await e.send(body);
      assert.deepEqual([r.ok, r.retryable, r.code], [false, false, grpc.status.RESOURCE_EXHAUSTED]);
      assert.match(r.message!, /larger than max \(\d+ vs 65536\)/);
    } finally {
      e.close();
      big.server.forceShutdown();
    }
  });

  it('never quotes a header value: one grpc-js refuses is named only, one the server quotes back is redacted', async () => {
    const token = 'Bearer tok-5ecret-value';
    const bad = await exporter({ headers: { authorization: `${token}\n` } }).send(body);
    assert.deepEqual([bad.ok, bad.retryable], [false, false]);
    assert.match(bad.message!, /header authorization cannot be sent/);
    assert.ok(!bad.message!.includes('5ecret'), bad.message);
    const echo = await rawGrpcServer('/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export', new Uint8Array(), (_r, cb) => cb({ code: grpc.status.UNAUTHENTICATED, details: `${token} is not a valid token` } as grpc.ServiceError));
    const e = new OtlpExporter({ endpoint: `http://127.0.0.1:${echo.port}`, protocol: 'grpc', headers: { authorization: token } });
    try {
      const r = await e.send(body);
      assert.equal(r.message, 'UNAUTHENTICATED: [redacted] is not a valid token');
    } finally {
      e.close();
      echo.server.forceShutdown();
    }
  });

  it('cancels a call in flight when its signal aborts: the server sees it cancelled', async () => {
    answer = { stall: true };
    const before = received.length;
    const cancelsBefore = cancels;
    const e = exporter({ timeoutMs: 60_000 });
    try {
      const abort = new AbortController();
      const sent = e.send(body, abort.signal);
      while (received.length === before) await new Promise((r) => setTimeout(r, 10));
      abort.abort();
      const r = await sent;
      assert.deepEqual([r.ok, r.retryable, r.message], [false, true, 'cut short at the shutdown deadline']);
      await until(() => cancels > cancelsBefore, 'the server to see the call cancelled');
    } finally {
      e.close();
    }
  });

  it('reports a server that is not there as retryable', async () => {
    const e = new OtlpExporter({ endpoint: '127.0.0.1:1', protocol: 'grpc', insecure: true, timeoutMs: 1000 });
    try {
      const r = await e.send(body);
      assert.deepEqual([r.ok, r.retryable], [false, true]);
    } finally {
      e.close();
    }
  });
});

describe('OTLP export over HTTP', () => {
  let server: Server;
  let base = '';
  let handler: (req: IncomingMessage, body: Buffer, res: ServerResponse) => void = () => undefined;
  const received: Received[] = [];
  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => handler(req, Buffer.concat(chunks), res));
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const decodeBody = (req: IncomingMessage, b: Buffer) => Request.toObject(Request.decode(req.headers['content-encoding'] === 'gzip' ? gunzipSync(b) : b), { longs: String });

  it('POSTs protobuf to /v1development/profiles, gzipped, with its headers; reads a partial success', async () => {
    handler = (req, b, res) => {
      received.push({ request: { path: req.url, ...decodeBody(req, b) }, headers: req.headers as Record<string, string> });
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end(Response.encode(Response.fromObject({ partialSuccess: { rejectedProfiles: 2, errorMessage: 'two out of range' } })).finish());
    };
    const e = new OtlpExporter({ endpoint: base, protocol: 'http/protobuf', compression: 'gzip', headers: { 'X-Scope-OrgID': 'tenant1' } });
    const r = await e.send(body);
    assert.deepEqual(r, { ok: true, retryable: false, rejected: 2, message: 'two out of range', code: 200 });
    const got = received.at(-1)!;
    assert.equal(got.request.path, HTTP_PATH);
    assert.equal(firstFunction(got.request), 'parse_header');
    assert.equal(got.headers['content-type'], 'application/x-protobuf');
    assert.equal(got.headers['content-encoding'], 'gzip');
    assert.equal(got.headers['x-scope-orgid'], 'tenant1');
  });

  it('retries 429/502/503/504 after Retry-After, not 400', async () => {
    const e = new OtlpExporter({ endpoint: base, protocol: 'http/protobuf' });
    for (const [status, retryable] of [[429, true], [503, true], [502, true], [504, true], [400, false], [401, false]] as const) {
      handler = (_req, _b, res) => {
        res.writeHead(status, { 'retry-after': '2' });
        res.end('nope');
      };
      const r = await e.send(body);
      assert.deepEqual([r.ok, r.retryable, r.code], [false, retryable, status]);
      assert.equal(r.retryAfterMs, retryable ? 2000 : undefined);
    }
    assert.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:05 GMT', Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')), 5000);
    assert.equal(retryAfterMs('soon'), undefined);
  });

  it('gives up on a stalled server at the deadline, and on one that is not there (both retryable)', async () => {
    handler = () => undefined; // never answers
    const stalled = await new OtlpExporter({ endpoint: base, protocol: 'http/protobuf', timeoutMs: 300 }).send(body);
    assert.deepEqual([stalled.ok, stalled.retryable], [false, true]);
    const gone = await new OtlpExporter({ endpoint: 'http://127.0.0.1:1', protocol: 'http/protobuf', timeoutMs: 1000 }).send(body);
    assert.deepEqual([gone.ok, gone.retryable], [false, true]);
  });

  it('reads at most 64 KiB of a success and 512 bytes of an error, then cuts the connection', async () => {
    const TOTAL = 256 << 20;
    let written = 0;
    let closedEarly = false;
    let status = 200;
    handler = (_req, _b, res) => {
      written = 0;
      closedEarly = false;
      res.writeHead(status, { 'content-type': 'application/x-protobuf' }); // chunked: no length to go by
      const chunk = Buffer.alloc(64 << 10, 0x41);
      const pump = () => {
        while (written < TOTAL && !res.destroyed) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('close', () => (closedEarly = written < TOTAL));
      pump();
    };
    const e = new OtlpExporter({ endpoint: base, protocol: 'http/protobuf', timeoutMs: 20_000 });
    try {
      const ok = await e.send(body);
      assert.deepEqual([ok.ok, ok.code, ok.message], [true, 200, `an answer of more than ${MAX_SUCCESS_BODY_BYTES} bytes, not read`]);
      await until(() => closedEarly, 'the connection cut');
      assert.ok(written < 64 << 20, `${written} bytes written`);
      status = 503;
      const err = await e.send(body);
      assert.deepEqual([err.ok, err.retryable, err.code], [false, true, 503]);
      assert.ok(err.message!.length < ERROR_BODY_BYTES, err.message);
      assert.match(err.message!, /^HTTP 503: A+/);
      await until(() => closedEarly, 'the connection cut');
    } finally {
      e.close();
    }
  });

  it('cuts a request in flight when its signal aborts: the server sees the connection close', async () => {
    let closed = false;
    handler = (_req, _b, res) => res.on('close', () => (closed = true)); // never answers
    const e = new OtlpExporter({ endpoint: base, protocol: 'http/protobuf', timeoutMs: 60_000 });
    try {
      const abort = new AbortController();
      setTimeout(() => abort.abort(), 200);
      const r = await e.send(body, abort.signal);
      assert.deepEqual([r.ok, r.retryable, r.message], [false, true, 'cut short at the shutdown deadline']);
      await until(() => closed, 'the server to see the close');
    } finally {
      e.close();
    }
  });

  it('redacts a header value the server quotes back; a CA file that cannot be read is final', async () => {
    handler = (req, _b, res) => {
      res.writeHead(401);
      res.end(`no such key: ${req.headers['x-api-key']}`);
    };
    const r = await new OtlpExporter({ endpoint: base, protocol: 'http/protobuf', headers: { 'x-api-key': 'key-5ecret-value' } }).send(body);
    assert.equal(r.message, 'HTTP 401: no such key: [redacted]');
    const gone = await new OtlpExporter({ endpoint: 'https://127.0.0.1:1', protocol: 'http/protobuf', certificate: '/nonexistent/ca.pem' }).send(body);
    assert.deepEqual([gone.ok, gone.retryable, gone.message], [false, false, 'cannot read the CA certificate /nonexistent/ca.pem: ENOENT']);
  });

  it('ends an answer that trickles in at the deadline, not when the trickle ends', async () => {
    let complete = false;
    handler = (_req, _b, res) => {
      res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': '50' });
      let n = 0;
      const t = setInterval(() => {
        res.write('\0');
        if (++n === 50) {
          res.end();
          complete = true;
        }
      }, 100);
      res.on('close', () => clearInterval(t));
    };
    const r = await new OtlpExporter({ endpoint: base, protocol: 'http/protobuf', timeoutMs: 500 }).send(body);
    assert.deepEqual([r.ok, r.retryable, r.message], [false, true, 'no answer within 500 ms']);
    assert.equal(complete, false, 'the answer ended first');
  });
});
