// flamewire's own OTLP Profiles definitions (proto/) against the official opentelemetry-proto
// files (test/fixtures/otlp-proto, OTLP proto release 1.10/1.11 layout): every message has the
// same fields (names, numbers, types, repeated, oneofs) both ways, the service is the same
// method, and a request that sets every field encodes to the same bytes and decodes to the same
// values with either. Then the profile model's OTLP request, decoded with the official files.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { EXPORT_SERVICE, otlpTypes } from '../src/otlp/proto.js';
import { OTLP_PRESETS, toOtlpRequest, type OtlpOptions } from '../src/otlp/profiles.js';
import { EXE_BUILD_ID, knownProfile, offCpuProfile, PERIOD } from './fixtures/output-profile.js';
import { repoRoot } from './helpers.js';

const OFFICIAL = join(repoRoot, 'test', 'fixtures', 'otlp-proto');
const PACKAGES = [
  'opentelemetry.proto.common.v1',
  'opentelemetry.proto.resource.v1',
  'opentelemetry.proto.profiles.v1development',
  'opentelemetry.proto.collector.profiles.v1development',
];
const REQUEST = 'opentelemetry.proto.collector.profiles.v1development.ExportProfilesServiceRequest';

function official(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (target.startsWith('/') ? target : join(OFFICIAL, target));
  root.loadSync('opentelemetry/proto/collector/profiles/v1development/profiles_service.proto');
  return root;
}

/** Every message type of a package, by full name. */
function messages(root: protobuf.Root): Map<string, protobuf.Type> {
  const out = new Map<string, protobuf.Type>();
  for (const pkg of PACKAGES) {
    const ns = root.lookup(pkg) as protobuf.Namespace;
    for (const t of ns.nestedArray) if (t instanceof protobuf.Type) out.set(`${pkg}.${t.name}`, t);
  }
  return out;
}

/** What the wire cares about in a field. */
function shape(f: protobuf.Field): string {
  f.resolve();
  const type = f.resolvedType ? f.resolvedType.fullName : f.type;
  return `${f.id} ${f.name} ${f.repeated ? 'repeated ' : ''}${type}${f.partOf ? ` oneof ${f.partOf.name}` : ''}`;
}

const DECODE: protobuf.IConversionOptions = { longs: String, bytes: String, defaults: false, arrays: true, oneofs: true };

/** A request with every field of every message set (each oneof case of AnyValue once). */
function everyField(): Record<string, unknown> {
  const kv = (key: string, value: Record<string, unknown>) => ({ key, value, keyStrindex: 3 });
  const values = [
    { stringValue: 's' },
    { boolValue: true },
    { intValue: '-9007199254740993' },
    { doubleValue: 1.5 },
    { arrayValue: { values: [{ stringValue: 'a' }, { intValue: '2' }] } },
    { kvlistValue: { values: [kv('k', { boolValue: false })] } },
    { bytesValue: Buffer.from([1, 2, 3]) },
    { stringValueStrindex: 4 },
  ];
  return {
    resourceProfiles: [
      {
        resource: {
          attributes: values.map((v, i) => kv(`a${i}`, v)),
          droppedAttributesCount: 1,
          entityRefs: [{ schemaUrl: 'u', type: 'process', idKeys: ['process.pid'], descriptionKeys: ['process.executable.name'] }],
        },
        scopeProfiles: [
          {
            scope: { name: 'flamewire', version: '1', attributes: [kv('x', { stringValue: 'y' })], droppedAttributesCount: 2 },
            profiles: [
              {
                sampleType: { typeStrindex: 1, unitStrindex: 2 },
                samples: [{ stackIndex: 1, attributeIndices: [1, 2], linkIndex: 1, values: ['5', '-6'], timestampsUnixNano: ['18446744073709551615', '1'] }],
                timeUnixNano: '1700000000000000000',
                durationNano: '18446744073709551615',
                periodType: { typeStrindex: 3, unitStrindex: 2 },
                period: '10101010',
                profileId: Buffer.alloc(16, 7),
                droppedAttributesCount: 3,
                originalPayloadFormat: 'pprof',
                originalPayload: Buffer.from('raw'),
                attributeIndices: [1],
              },
            ],
            schemaUrl: 'https://opentelemetry.io/schemas/1.30.0',
          },
        ],
        schemaUrl: 'https://opentelemetry.io/schemas/1.30.0',
      },
    ],
    dictionary: {
      mappingTable: [{}, { memoryStart: '4194304', memoryLimit: '18446744073709551615', fileOffset: '4096', filenameStrindex: 5, attributeIndices: [1] }],
      locationTable: [{}, { mappingIndex: 1, address: '18446744071578845184', lines: [{ functionIndex: 1, line: '42', column: '7' }], attributeIndices: [2] }],
      functionTable: [{}, { nameStrindex: 6, systemNameStrindex: 6, filenameStrindex: 7, startLine: '40' }],
      linkTable: [{}, { traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2) }],
      stringTable: ['', 'samples', 'count', 'cpu', 'x', '/bin/app', 'main', 'main.c'],
      attributeTable: [{}, { keyStrindex: 4, value: { stringValue: 'v' }, unitStrindex: 2 }],
      stackTable: [{}, { locationIndices: [1, 1] }],
    },
  };
}

describe('OTLP definitions', () => {
  const ours = otlpTypes().root;
  const theirs = official();

  it('have every message of the official files with the same fields, and nothing else', () => {
    const a = messages(ours);
    const b = messages(theirs);
    assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
    for (const [name, t] of b) {
      assert.deepEqual(a.get(name)!.fieldsArray.map(shape).sort(), t.fieldsArray.map(shape).sort(), name);
    }
  });

  it('define the same export method', () => {
    const m = (root: protobuf.Root) => {
      const svc = root.lookupService(EXPORT_SERVICE);
      return Object.values(svc.methods).map((x) => {
        x.resolve();
        return `${x.name}(${x.resolvedRequestType!.fullName}) ${x.resolvedResponseType!.fullName}`;
      });
    };
    assert.deepEqual(m(ours), m(theirs));
  });

  it('encode a request with every field set to the same bytes, and decode each other', () => {
    const obj = everyField();
    const A = ours.lookupType(REQUEST);
    const B = theirs.lookupType(REQUEST);
    const bytesA = A.encode(A.fromObject(obj)).finish();
    const bytesB = B.encode(B.fromObject(obj)).finish();
    assert.ok(bytesA.length > 500);
    assert.deepEqual(Buffer.from(bytesA), Buffer.from(bytesB));
    const viaB = B.toObject(B.decode(bytesA), DECODE);
    const viaA = A.toObject(A.decode(bytesB), DECODE);
    assert.deepEqual(viaA, viaB);
    // Nothing lost on the way: 64-bit extremes, negative values, bytes.
    const p = (viaB as any).resourceProfiles[0].scopeProfiles[0].profiles[0];
    assert.equal(p.durationNano, '18446744073709551615');
    assert.deepEqual(p.samples[0].values, ['5', '-6']);
    assert.equal((viaB as any).dictionary.locationTable[1].address, '18446744071578845184');
  });
});

describe('OTLP export request of a profile', () => {
  const theirs = official().lookupType(REQUEST);
  const decode = (p: ReturnType<typeof knownProfile>, preset: Partial<OtlpOptions> = {}) => {
    const req = toOtlpRequest(p, { version: '0.1.0', resource: { 'host.name': 'h' }, profileId: () => new Uint8Array(16).fill(9), ...preset });
    const { request } = otlpTypes();
    return theirs.toObject(theirs.decode(request.encode(request.fromObject(req)).finish()), { ...DECODE, defaults: true }) as any;
  };

  it('has a dictionary whose seven tables start with their zero entry, links without ids', () => {
    const d = decode(knownProfile()).dictionary;
    for (const t of ['mappingTable', 'locationTable', 'functionTable', 'linkTable', 'stringTable', 'attributeTable', 'stackTable']) {
      assert.ok(d[t].length >= 1, t);
    }
    assert.equal(d.stringTable[0], '');
    assert.equal(d.linkTable[0].traceId, '');
    assert.equal(d.linkTable[0].spanId, '');
    assert.equal(d.mappingTable[0].filenameStrindex, 0);
    assert.deepEqual(d.stackTable[0].locationIndices, []);
  });

  it('puts each process in its own resource, with a CPU profile of counts per stack', () => {
    const r = decode(knownProfile());
    const d = r.dictionary;
    const str = (i: number) => d.stringTable[i];
    const attr = (list: any[]) => Object.fromEntries(list.map((kv: any) => [kv.key, kv.value.stringValue ?? Number(kv.value.intValue)]));
    const resources = r.resourceProfiles.map((rp: any) => attr(rp.resource.attributes));
    assert.deepEqual(resources, [
      { 'host.name': 'h', 'process.pid': 100, 'process.executable.name': 'myserver' },
      { 'host.name': 'h', 'process.pid': 200, 'process.executable.name': 'other' },
    ]);
    const prof = r.resourceProfiles[0].scopeProfiles[0].profiles[0];
    assert.equal(r.resourceProfiles[0].scopeProfiles[0].scope.name, 'flamewire');
    assert.equal(str(prof.sampleType.typeStrindex), 'samples');
    assert.equal(str(prof.periodType.typeStrindex), 'cpu');
    assert.equal(str(prof.periodType.unitStrindex), 'nanoseconds');
    assert.equal(prof.period, String(PERIOD));
    // pid 100's samples: 3 + 2 + 5 + 1 + 1 = 12, each sample one value.
    assert.equal(prof.samples.reduce((n: number, s: any) => n + Number(s.values[0]), 0), 12);
    assert.ok(prof.samples.every((s: any) => s.values.length === 1));
    // Sample attributes: thread.name and thread.id; the process's went to the resource.
    const keys = new Set(prof.samples.flatMap((s: any) => s.attributeIndices.map((i: number) => str(d.attributeTable[i].keyStrindex))));
    assert.deepEqual([...keys].sort(), ['thread.id', 'thread.name']);
    // The inlined frame: one location, lines innermost first.
    const stackOf = (s: any) => d.stackTable[s.stackIndex].locationIndices.map((li: number) => d.locationTable[li].lines.map((l: any) => str(d.functionTable[l.functionIndex].nameStrindex)));
    const inlined = prof.samples.map(stackOf).find((st: string[][]) => st[0]!.length === 2);
    assert.deepEqual(inlined, [['parse_header', 'handle_request'], ['main']]);
    // Kernel frames: the kernel mapping, frame type kernel; the build id on the executable's.
    const loc = (name: string) => d.locationTable.find((l: any) => l.lines.some((x: any) => str(d.functionTable[x.functionIndex].nameStrindex) === name));
    const frameType = (l: any) => l.attributeIndices.map((i: number) => d.attributeTable[i]).find((a: any) => str(a.keyStrindex) === 'profile.frame.type').value.stringValue;
    assert.equal(frameType(loc('ksys_write')), 'kernel');
    assert.equal(str(d.mappingTable[loc('ksys_write').mappingIndex].filenameStrindex), '[kernel.kallsyms]');
    assert.equal(loc('ksys_write').address, String(0xffffffff81200200n));
    assert.equal(frameType(loc('main')), 'native');
    const exe = d.mappingTable[loc('main').mappingIndex];
    assert.equal(str(exe.filenameStrindex), '/usr/bin/myserver');
    const build = exe.attributeIndices.map((i: number) => d.attributeTable[i]);
    assert.deepEqual(build.map((a: any) => [str(a.keyStrindex), a.value.stringValue]), [['process.executable.build_id.gnu', EXE_BUILD_ID]]);
  });

  it('keeps resource and sample labels within a limit (Pyroscope: 30), counting what it dropped', () => {
    const { request } = otlpTypes();
    const resource = Object.fromEntries(Array.from({ length: 28 }, (_, i) => [`k${i}`, 'v']));
    const req = toOtlpRequest(knownProfile(), { version: 'x', resource, maxLabels: 30 });
    const r = theirs.toObject(theirs.decode(request.encode(request.fromObject(req)).finish()), { ...DECODE, defaults: true }) as any;
    for (const rp of r.resourceProfiles) {
      // 28 + process.pid + process.executable.name = 30: nothing of the resource dropped, and no
      // room left for the samples' thread.name and thread.id.
      assert.equal(rp.resource.attributes.length, 30);
      assert.equal(rp.resource.droppedAttributesCount, 0);
      for (const s of rp.scopeProfiles[0].profiles[0].samples) assert.deepEqual(s.attributeIndices, []);
    }
    const tight = toOtlpRequest(knownProfile(), { version: 'x', resource, maxLabels: 20 });
    assert.equal(tight.resourceProfiles[0]!.resource.attributes.length, 20);
    assert.equal(tight.resourceProfiles[0]!.resource.droppedAttributesCount, 10);
    const roomy = toOtlpRequest(knownProfile(), { version: 'x', maxLabels: 30 });
    assert.equal(roomy.resourceProfiles[0]!.scopeProfiles[0]!.profiles[0]!.samples[0]!.attributeIndices.length, 2);
  });

  it('for Parca, writes every function_index one higher with a spare last function, and the resource as strings', () => {
    const spec = decode(knownProfile());
    const parca = decode(knownProfile(), OTLP_PRESETS.parca);
    const names = (r: any, shift: number) => {
      const d = r.dictionary;
      return d.locationTable.slice(1).map((l: any) => l.lines.map((x: any) => d.stringTable[d.functionTable[x.functionIndex - shift].nameStrindex]));
    };
    // Read the way Parca v0.28.0 reads it (function_table[function_index - 1]), the Parca request
    // names the same functions as the spec's request read the spec's way.
    assert.deepEqual(names(parca, 1), names(spec, 0));
    assert.ok(names(spec, 0).flat().includes('parse_header'));
    const lines = parca.dictionary.locationTable.slice(1).flatMap((l: any) => l.lines);
    // None points at function_table[0] or [1] (which Parca would read as no function, or the empty one).
    assert.ok(lines.every((x: any) => x.functionIndex >= 2));
    const fns = parca.dictionary.functionTable;
    assert.equal(fns.length, spec.dictionary.functionTable.length + 1);
    assert.equal(Math.max(...lines.map((x: any) => x.functionIndex)), fns.length - 1);
    assert.deepEqual(fns.at(-1), fns[0]);
    // Parca makes labels of string values only: process.pid must be one.
    assert.deepEqual(parca.resourceProfiles[0].resource.attributes.find((kv: any) => kv.key === 'process.pid').value, { stringValue: '100', value: 'stringValue' });
    assert.ok(parca.resourceProfiles.every((rp: any) => rp.resource.attributes.every((kv: any) => kv.value.value === 'stringValue')));
    // Everything else is the same request.
    assert.deepEqual(parca.dictionary.stackTable, spec.dictionary.stackTable);
    assert.deepEqual(parca.resourceProfiles[0].scopeProfiles, spec.resourceProfiles[0].scopeProfiles);
  });

  it('sends off-CPU time as its own profile of nanoseconds', () => {
    const p = offCpuProfile();
    const r = decode(p);
    const str = (i: number) => r.dictionary.stringTable[i];
    const types = r.resourceProfiles.flatMap((rp: any) => rp.scopeProfiles[0].profiles.map((x: any) => `${str(x.sampleType.typeStrindex)}/${str(x.sampleType.unitStrindex)}`));
    assert.ok(types.includes('off_cpu/nanoseconds'), types.join(','));
    const off = p.sampleTypes.findIndex((t) => t.type === 'off_cpu');
    const want = p.samples.reduce((n, s) => n + s.values[off]!, 0);
    const got = r.resourceProfiles
      .flatMap((rp: any) => rp.scopeProfiles[0].profiles)
      .filter((x: any) => str(x.sampleType.typeStrindex) === 'off_cpu')
      .flatMap((x: any) => x.samples)
      .reduce((n: number, s: any) => n + Number(s.values[0]), 0);
    assert.equal(got, want);
  });
});
