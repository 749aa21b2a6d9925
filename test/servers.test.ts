// The real backends of the export tests: built from the Go module proxy, started on loopback,
// and shown to accept profiles and give them back. The requests are encoded here by hand (a
// dozen lines of protobuf writer) so that this proves the servers, not our encoder.

import assert from 'node:assert/strict';
import { connect, type IncomingHttpHeaders } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Function as PprofFunction, Line, Location, Mapping, Profile as PprofProfile, Sample, StringTable, ValueType } from 'pprof-format';
import { buildCollector, buildParca, parcaQuery, startCollector, startParca, type Collector, type Parca } from './servers.js';

// ---- a protobuf writer, just enough for the requests below -----------------------------------

function varint(v: number | bigint): Buffer {
  let n = BigInt.asUintN(64, BigInt(v)); // negative int32/int64 are ten bytes, two's complement
  const out: number[] = [];
  do {
    let b = Number(n & 0x7fn);
    n >>= 7n;
    if (n !== 0n) b |= 0x80;
    out.push(b);
  } while (n !== 0n);
  return Buffer.from(out);
}
const tag = (field: number, wire: number): Buffer => varint((field << 3) | wire);
/** A varint field (int32, int64, uint64, bool, enum); zero is left out, as proto3 does. */
const num = (field: number, v: number | bigint): Buffer => (BigInt(v) === 0n ? Buffer.alloc(0) : Buffer.concat([tag(field, 0), varint(v)]));
const fixed64 = (field: number, v: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return Buffer.concat([tag(field, 1), b]);
};
/** A length-delimited field: a message (the concatenation of its fields), bytes or a string. */
const len = (field: number, ...body: Array<Buffer | string>): Buffer => {
  const b = Buffer.concat(body.map((x) => (typeof x === 'string' ? Buffer.from(x) : x)));
  return Buffer.concat([tag(field, 2), varint(b.length), b]);
};
const packed = (field: number, vs: number[]): Buffer => len(field, ...vs.map((v) => varint(v)));

// ---- one small CPU profile: main → flamewire_busy_leaf (3 samples), main alone (1) -----------

const LEAF = 'flamewire_busy_leaf';
const ROOT = 'flamewire_main';
const SERVICE = 'flamewire-servers-test';
const PERIOD = 52_631_578n; // 19 Hz
const EXPORT = 'opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export';
const WRITE_RAW = 'parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw';

interface OtlpOptions {
  /** service.name of the resource (default SERVICE). */
  service?: string;
  /** false: leave out link_table[0], which Parca insists on. */
  linkTable?: boolean;
  /**
   * Write every Line.function_index one higher than the spec says, with a spare entry at the end
   * of function_table to keep the highest in range: Parca v0.28.0 reads function_index as if
   * function_table had no zero entry (it looks up function_table[function_index - 1]), while its
   * own checks demand that zero entry.
   */
  parcaFunctionIndex?: boolean;
}

/**
 * An ExportProfilesServiceRequest (opentelemetry.proto.collector.profiles.v1development), shaped
 * to pass Parca's checks too: every dictionary table has a zero entry at index 0, a resource and
 * a scope are present (the scope name is Parca's profile name), one value per sample, attribute
 * keys and values as plain strings (Parca ignores key_strindex and string_value_strindex).
 */
function otlpRequest(now: bigint, opts: OtlpOptions = {}): Buffer {
  const strings = ['', 'samples', 'count', 'cpu', 'nanoseconds', ROOT, LEAF, 'app.c', '/usr/bin/flamewire-app'];
  const s = (x: string): number => strings.indexOf(x);
  const fi = (i: number): number => (opts.parcaFunctionIndex ? i + 1 : i);
  const valueType = (field: number, type: string, unit: string): Buffer => len(field, num(1, s(type)), num(2, s(unit)));
  const zero = (field: number): Buffer => len(field);
  const dictionary = len(
    2,
    zero(1), // mapping_table[0]
    len(1, num(1, 0x400000), num(2, 0x500000), num(4, s('/usr/bin/flamewire-app'))),
    zero(2), // location_table[0]
    len(2, num(1, 1), num(2, 0x401000), len(3, num(1, fi(1)), num(2, 10))), // location 1: ROOT
    len(2, num(1, 1), num(2, 0x402000), len(3, num(1, fi(2)), num(2, 20))), // location 2: LEAF
    zero(3), // function_table[0]
    len(3, num(1, s(ROOT)), num(2, s(ROOT)), num(3, s('app.c'))), // function 1
    len(3, num(1, s(LEAF)), num(2, s(LEAF)), num(3, s('app.c'))), // function 2
    opts.parcaFunctionIndex ? zero(3) : Buffer.alloc(0), // the spare entry
    opts.linkTable === false ? Buffer.alloc(0) : zero(4), // link_table[0]: empty trace and span ids
    ...strings.map((x) => len(5, x)),
    zero(6), // attribute_table[0]
    zero(7), // stack_table[0]
    len(7, packed(1, [2, 1])), // stack 1: LEAF ← ROOT (leaf first)
    len(7, packed(1, [1])), // stack 2: ROOT
  );
  const start = now - 1_000_000_000n;
  const profile = len(
    2,
    valueType(1, 'samples', 'count'),
    len(2, num(1, 1), packed(4, [3])),
    len(2, num(1, 2), packed(4, [1])),
    fixed64(3, start),
    num(4, 1_000_000_000),
    valueType(5, 'cpu', 'nanoseconds'),
    num(6, PERIOD),
  );
  const resource = len(1, len(1, len(1, 'service.name'), len(2, len(1, opts.service ?? SERVICE))));
  const scope = len(1, len(1, 'flamewire'), len(2, '0.1.0'));
  return Buffer.concat([len(1, resource, len(2, scope, profile)), dictionary]);
}

/** The same profile as gzipped pprof, for Parca's WriteRaw. */
function pprofProfile(now: bigint): Buffer {
  const st = new StringTable();
  const fn = (id: number, name: string): PprofFunction => new PprofFunction({ id, name: st.dedup(name), systemName: st.dedup(name), filename: st.dedup('app.c') });
  const p = new PprofProfile({
    sampleType: [new ValueType({ type: st.dedup('samples'), unit: st.dedup('count') })],
    mapping: [new Mapping({ id: 1, memoryStart: 0x400000, memoryLimit: 0x500000, filename: st.dedup('/usr/bin/flamewire-app'), hasFunctions: true })],
    function: [fn(1, ROOT), fn(2, LEAF)],
    location: [
      new Location({ id: 1, mappingId: 1, address: 0x401000, line: [new Line({ functionId: 1, line: 10 })] }),
      new Location({ id: 2, mappingId: 1, address: 0x402000, line: [new Line({ functionId: 2, line: 20 })] }),
    ],
    sample: [new Sample({ locationId: [2, 1], value: [3] }), new Sample({ locationId: [1], value: [1] })],
    periodType: new ValueType({ type: st.dedup('cpu'), unit: st.dedup('nanoseconds') }),
    period: Number(PERIOD),
    timeNanos: now - 1_000_000_000n,
    durationNanos: 1_000_000_000,
    stringTable: st,
  });
  return gzipSync(p.encode());
}

/** A parca.profilestore.v1alpha1.WriteRawRequest with one series of one pprof profile. */
function writeRawRequest(labels: Record<string, string>, pprof: Buffer): Buffer {
  const labelSet = len(1, ...Object.entries(labels).map(([k, v]) => len(1, len(1, k), len(2, v))));
  return len(2, labelSet, len(2, len(1, pprof)));
}

// ---- unary gRPC calls, without a gRPC library ------------------------------------------------
// A message travels as one frame: a flag byte (1 = compressed; we send 0), its length (4 bytes,
// big-endian), the protobuf bytes. The status comes in the trailers (or, on an early failure, in
// the headers): grpc-status 0 is OK.

function frame(message: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

function checkStatus(method: string, status: string | undefined, detail: string | undefined): void {
  if (status !== '0') throw new Error(`${method}: grpc-status ${status}: ${decodeURIComponent(detail ?? '')}`);
}

/** One unary gRPC call over cleartext HTTP/2 (node:http2); resolves to the response message. */
async function grpcCall(address: string, method: string, message: Buffer): Promise<Buffer> {
  const session = connect(`http://${address}`);
  try {
    const req = session.request({ ':method': 'POST', ':path': `/${method}`, 'content-type': 'application/grpc+proto', te: 'trailers' });
    const chunks: Buffer[] = [];
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders = {};
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', (c: Buffer) => chunks.push(c));
    const done = new Promise<void>((resolve, reject) => {
      req.on('end', resolve);
      req.on('error', reject);
    });
    req.end(frame(message));
    await done;
    const status = (trailers['grpc-status'] ?? headers['grpc-status']) as string | undefined;
    checkStatus(method, status, (trailers['grpc-message'] ?? headers['grpc-message']) as string | undefined);
    const body = Buffer.concat(chunks);
    return body.length >= 5 ? body.subarray(5, 5 + body.readUInt32BE(1)) : Buffer.alloc(0);
  } finally {
    session.close();
  }
}

/**
 * One unary gRPC-web call over HTTP/1.1 (fetch), which Parca's HTTP server also takes: the same
 * framing, and the trailers come as a last frame with flag 0x80 holding "name: value" lines.
 */
async function grpcWeb(url: string, method: string, message: Buffer): Promise<Buffer> {
  const res = await fetch(`${url}/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' },
    body: frame(message),
  });
  const body = Buffer.from(await res.arrayBuffer());
  let status = res.headers.get('grpc-status') ?? undefined;
  let detail = res.headers.get('grpc-message') ?? undefined;
  let data = Buffer.alloc(0);
  for (let off = 0; off + 5 <= body.length; ) {
    const n = body.readUInt32BE(off + 1);
    const payload = body.subarray(off + 5, off + 5 + n);
    if (body[off]! & 0x80) {
      for (const line of payload.toString().split('\r\n')) {
        const m = /^([^:]+):\s*(.*)$/.exec(line);
        if (m?.[1]!.toLowerCase() === 'grpc-status') status = m[2]!;
        if (m?.[1]!.toLowerCase() === 'grpc-message') detail = m[2]!;
      }
    } else data = payload;
    off += 5 + n;
  }
  assert.equal(res.status, 200, `${method}: HTTP ${res.status}`);
  checkStatus(method, status, detail);
  return data;
}

/** An ExportProfilesServiceResponse without rejections: empty, or an empty partial_success (the collector's). */
const allAccepted = (reply: Buffer): boolean => reply.length === 0 || reply.equals(len(1));

// ---- reading back -------------------------------------------------------------------------------

interface OtlpJson {
  resourceProfiles?: Array<{ resource?: { attributes?: Array<{ key?: string; keyStrindex?: number; value?: { stringValue?: string; stringValueStrindex?: number } }> } }>;
  dictionary?: { stringTable?: string[]; functionTable?: Array<{ nameStrindex?: number }> };
}

/** Function names and resource attributes (key → every value seen) of the ProfilesData lines the file exporter wrote. */
function namesIn(lines: unknown[]): { functions: Set<string>; attributes: Map<string, Set<string>> } {
  const functions = new Set<string>();
  const attributes = new Map<string, Set<string>>();
  for (const l of lines as OtlpJson[]) {
    const st = l.dictionary?.stringTable ?? [];
    for (const f of l.dictionary?.functionTable ?? []) functions.add(st[f.nameStrindex ?? 0] ?? '');
    // The collector interns attribute keys and string values into the dictionary (key_strindex,
    // string_value_strindex) on the way through, so either form can come out.
    for (const rp of l.resourceProfiles ?? []) {
      for (const a of rp.resource?.attributes ?? []) {
        const key = a.key ?? st[a.keyStrindex ?? 0] ?? '';
        const values = attributes.get(key) ?? new Set<string>();
        values.add(a.value?.stringValue ?? st[a.value?.stringValueStrindex ?? 0] ?? '');
        attributes.set(key, values);
      }
    }
  }
  return { functions, attributes };
}

async function until<T>(what: string, get: () => T | Promise<T>, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(v, (_k, x) => (x instanceof Set || x instanceof Map ? [...x] : x))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---- the tests ----------------------------------------------------------------------------------

describe('test servers', () => {
  describe('the OpenTelemetry Collector', () => {
    let collector: Collector | undefined;
    before(async () => {
      collector = await startCollector({ name: 'servers', debug: true });
    });
    after(async () => {
      await collector?.stop();
    });

    it('accepts a gzipped OTLP profile over HTTP and writes out its functions and resource', async () => {
      const c = collector!;
      const res = await fetch(`${c.http}/v1development/profiles`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf', 'content-encoding': 'gzip' },
        body: gzipSync(otlpRequest(BigInt(Date.now()) * 1_000_000n)),
      });
      assert.equal(res.status, 200, await res.clone().text());
      assert.equal(res.headers.get('content-type'), 'application/x-protobuf');
      const ack = Buffer.from(await res.arrayBuffer());
      assert.ok(allAccepted(ack), `response ${ack.toString('hex')}`);
      const seen = await until('the file exporter output', () => namesIn(c.received()), (n) => n.functions.has(LEAF));
      assert.ok(seen.functions.has(ROOT));
      assert.ok(seen.attributes.get('service.name')?.has(SERVICE));
      await until('the debug exporter printing the profile too', () => c.log().includes(LEAF), (v) => v);
    });

    it('accepts the same profile over gRPC (ProfilesService/Export)', async () => {
      const c = collector!;
      const service = `${SERVICE}-grpc`;
      const reply = await grpcCall(c.grpc, EXPORT, otlpRequest(BigInt(Date.now()) * 1_000_000n, { service }));
      assert.ok(allAccepted(reply), `response ${reply.toString('hex')}`);
      await until('the gRPC export in the output', () => namesIn(c.received()).attributes.get('service.name'), (v) => v?.has(service) === true);
    });

    it('rejects a request that is not a profile with 400', async () => {
      const res = await fetch(`${collector!.http}/v1development/profiles`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf' },
        body: Buffer.from([0xff, 0xff, 0xff]),
      });
      assert.equal(res.status, 400);
    });

    it('is built once: the second build is the cached binary', async () => {
      const t0 = performance.now();
      const again = await buildCollector();
      assert.ok(performance.now() - t0 < 1000);
      assert.match(again, /otelcol-flamewire$/);
    });
  });

  describe('Parca', () => {
    const p1 = Number(PERIOD); // Parca reports samples:count as CPU time: each sample is worth one period
    let parca: Parca | undefined;
    before(async () => {
      parca = await startParca({ name: 'servers' });
    });
    after(async () => {
      await parca?.stop();
    });

    it('takes pprof through ProfileStoreService/WriteRaw and returns its functions with their shares', async () => {
      const p = parca!;
      const reply = await grpcCall(p.address, WRITE_RAW, writeRawRequest({ __name__: 'process_cpu', job: SERVICE }, pprofProfile(BigInt(Date.now()) * 1_000_000n)));
      assert.equal(reply.length, 0); // WriteRawResponse has no fields
      const top = await until('the WriteRaw profile in a query', () => parcaQuery(p, `process_cpu:samples:count:cpu:nanoseconds:delta{job="${SERVICE}"}`), (t) => t.has(LEAF));
      assert.deepEqual(top.get(LEAF), { flat: 3 * p1, cum: 3 * p1 });
      assert.deepEqual(top.get(ROOT), { flat: 1 * p1, cum: 4 * p1 });
    });

    it('takes WriteRaw over gRPC-web on HTTP/1.1 too', async () => {
      const p = parca!;
      const job = `${SERVICE}-web`;
      await grpcWeb(p.url, WRITE_RAW, writeRawRequest({ __name__: 'process_cpu', job }, pprofProfile(BigInt(Date.now()) * 1_000_000n)));
      const top = await until('the gRPC-web profile in a query', () => parcaQuery(p, `process_cpu:samples:count:cpu:nanoseconds:delta{job="${job}"}`), (t) => t.has(LEAF));
      assert.deepEqual(top.get(LEAF), { flat: 3 * p1, cum: 3 * p1 });
    });

    it('answers WriteRaw without a __name__ label with INVALID_ARGUMENT', async () => {
      const p = parca!;
      await assert.rejects(grpcCall(p.address, WRITE_RAW, writeRawRequest({ job: SERVICE }, pprofProfile(BigInt(Date.now()) * 1_000_000n))), /grpc-status 3: missing __name__ label/);
    });

    it('takes OTLP through ProfilesService/Export, names the profile after the scope, and reads function_index one off', async () => {
      const p = parca!;
      const service = `${SERVICE}-spec`;
      assert.ok(allAccepted(await grpcCall(p.address, EXPORT, otlpRequest(BigInt(Date.now()) * 1_000_000n, { service }))));
      const types = (await (await fetch(`${p.url}/api/profiles/types`)).json()) as { types?: Array<{ name: string; sampleType: string; delta: boolean }> };
      assert.ok(types.types?.some((t) => t.name === 'flamewire' && t.sampleType === 'samples' && t.delta), JSON.stringify(types));
      const got = await until('the OTLP profile in a query', () => parcaQuery(p, `flamewire:samples:count:cpu:nanoseconds:delta{service_name="${service}"}`), (t) => t.size > 0);
      // The leaf's line says function 2 (LEAF) and Parca shows function 1 (ROOT); the root's line
      // says function 1 and Parca shows function_table[0], the empty one. When this fails, Parca
      // reads function_index as the spec says and the agent's Parca preset should stop adding 1.
      assert.deepEqual(
        [...got].sort(),
        [
          ['', { flat: 1 * p1, cum: 4 * p1 }],
          [ROOT, { flat: 3 * p1, cum: 3 * p1 }],
        ],
      );
    });

    it('returns the functions and their shares for OTLP written with function_index + 1', async () => {
      const p = parca!;
      const service = `${SERVICE}-parca`;
      await grpcCall(p.address, EXPORT, otlpRequest(BigInt(Date.now()) * 1_000_000n, { service, parcaFunctionIndex: true }));
      const top = await until('the OTLP profile in a query', () => parcaQuery(p, `flamewire:samples:count:cpu:nanoseconds:delta{service_name="${service}"}`), (t) => t.has(LEAF));
      assert.deepEqual(top.get(LEAF), { flat: 3 * p1, cum: 3 * p1 });
      assert.deepEqual(top.get(ROOT), { flat: 1 * p1, cum: 4 * p1 });
    });

    it('answers a request with an empty link table with UNKNOWN (not INVALID_ARGUMENT), and keeps running', async () => {
      const p = parca!;
      // Without link_table[0]: Parca insists on the zero entry in every table.
      const bad = otlpRequest(BigInt(Date.now()) * 1_000_000n, { linkTable: false });
      await assert.rejects(grpcCall(p.address, EXPORT, bad), /grpc-status 2: invalid request: invalid dictionary: link table is empty/);
      assert.equal((await fetch(`${p.url}/api/profiles/types`)).status, 200);
    });

    it('is built once: the second build is the cached binary', async () => {
      const t0 = performance.now();
      const again = await buildParca();
      assert.ok(performance.now() - t0 < 1000);
      assert.match(again, /parca$/);
    });
  });
});
