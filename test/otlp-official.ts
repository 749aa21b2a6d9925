// What the tests' own OTLP servers on loopback speak: the profiles service messages from the
// OFFICIAL opentelemetry-proto files (so what they decode is what any collector would read), and
// google.rpc.Status with a RetryInfo detail, written here independently of proto/; and such a
// server over gRPC and over HTTP.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { repoRoot } from './helpers.js';

const root = new protobuf.Root();
root.resolvePath = (_o, t) => (t.startsWith('/') ? t : join(repoRoot, 'test', 'fixtures', 'otlp-proto', t));
root.loadSync('opentelemetry/proto/collector/profiles/v1development/profiles_service.proto');
export const Request = root.lookupType('opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest');
export const Response = root.lookupType('opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceResponse');

const rpc = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        rpc: {
          nested: {
            Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 }, details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 } } },
            RetryInfo: { fields: { retryDelay: { type: 'google.protobuf.Duration', id: 1 } } },
          },
        },
        protobuf: {
          nested: {
            Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } },
            Duration: { fields: { seconds: { type: 'int64', id: 1 }, nanos: { type: 'int32', id: 2 } } },
          },
        },
      },
    },
  },
});

/** The grpc-status-details-bin trailer of a status `code` whose RetryInfo asks for `retryDelayMs`. */
export function retryInfoStatus(code: number, retryDelayMs: number): Buffer {
  const RetryInfo = rpc.lookupType('google.rpc.RetryInfo');
  const Status = rpc.lookupType('google.rpc.Status');
  const info = RetryInfo.encode(RetryInfo.fromObject({ retryDelay: { seconds: Math.floor(retryDelayMs / 1000), nanos: (retryDelayMs % 1000) * 1e6 } })).finish();
  return Buffer.from(Status.encode(Status.fromObject({ code, message: 'slow down', details: [{ type_url: 'type.googleapis.com/google.rpc.RetryInfo', value: info }] })).finish());
}

/**
 * A gRPC server on a free loopback port with one unary method at `path`, in raw bytes: `answer`
 * gets each request and answers through `cb`; a success sends `response`.
 */
export async function rawGrpcServer(
  path: string,
  response: Uint8Array,
  answer: (request: Buffer, cb: grpc.sendUnaryData<unknown>) => void,
): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  server.addService(
    { Call: { path, requestStream: false, responseStream: false, requestSerialize: (v: Buffer) => v, requestDeserialize: (b: Buffer) => b, responseSerialize: () => Buffer.from(response), responseDeserialize: (b: Buffer) => b } },
    { Call: (call: grpc.ServerUnaryCall<Buffer, unknown>, cb: grpc.sendUnaryData<unknown>) => answer(call.request, cb) },
  );
  const port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
  return { server, port };
}

/** An OTLP profiles server over gRPC (ProfilesService/Export; a success is an empty response). */
export function otlpGrpcServer(answer: (request: Buffer, cb: grpc.sendUnaryData<unknown>) => void): Promise<{ server: grpc.Server; port: number }> {
  return rawGrpcServer('/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export', Response.encode(Response.create({})).finish(), answer);
}

/** An OTLP/HTTP server on loopback that hands every request (gunzipped) and its headers to `take`. */
export async function otlpHttpServer(take: (body: Buffer, headers: Record<string, string>) => void): Promise<{ port: number; close(): void }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      take(req.headers['content-encoding'] === 'gzip' ? gunzipSync(Buffer.concat(chunks)) : Buffer.concat(chunks), req.headers as Record<string, string>);
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end(Response.encode(Response.create({})).finish());
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return { port: (server.address() as AddressInfo).port, close: () => server.close() };
}
