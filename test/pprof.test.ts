import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { encodePprof, ProfileModelError, toPprof } from '../src/output/pprof.js';
import { EXE_BUILD_ID, knownProfile, largeProfile, LIBC_BUILD_ID, offCpuProfile, PERIOD, TOTAL_SAMPLES } from './fixtures/output-profile.js';
import { workDir } from './helpers.js';

const dir = workDir('pprof');

/** Runs the real `go tool pprof` on a file; -symbolize=none keeps it from looking for binaries. */
function goPprof(file: string, ...args: string[]): string {
  return execFileSync('go', ['tool', 'pprof', '-symbolize=none', ...args, file], {
    cwd: dir,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '', PPROF_TMPDIR: dir },
  });
}

function writeKnown(): string {
  const file = join(dir, 'known.pb.gz');
  writeFileSync(file, encodePprof(knownProfile()));
  return file;
}

interface Trace {
  labels: Map<string, string>;
  value: string;
  frames: string[];
}

/** Parses `go tool pprof -traces`: blocks of labels, then `value leaf`, then callers. */
function parseTraces(text: string): Trace[] {
  const blocks = text.split(/^-+\+-+$/m).slice(1);
  const traces: Trace[] = [];
  for (const block of blocks) {
    const lines = block.split('\n').filter((l) => l.trim() !== '');
    const t: Trace = { labels: new Map(), value: '', frames: [] };
    for (const line of lines) {
      const head = /^\s*(\d+(?:\.\d+)?[a-z]*)\s{3}(.+)$/.exec(line);
      if (t.value === '' && head !== null) {
        t.value = head[1]!;
        t.frames.push(head[2]!.trim());
      } else if (t.value === '') {
        const m = /^\s*([\w.]+):\s+(.*)$/.exec(line);
        if (m !== null) t.labels.set(m[1]!, m[2]!.trim());
      } else {
        t.frames.push(line.trim());
      }
    }
    if (t.value !== '') traces.push(t);
  }
  return traces;
}

/** Parses `go tool pprof -top` rows into name → [flat, cum]. */
function parseTop(text: string): Map<string, [string, string]> {
  const rows = new Map<string, [string, string]>();
  for (const line of text.split('\n')) {
    const m = /^\s*(\S+)\s+\S+%\s+\S+%\s+(\S+)\s+\S+%\s+(.+)$/.exec(line);
    if (m !== null) rows.set(m[3]!.trim(), [m[1]!, m[2]!]);
  }
  return rows;
}

describe('pprof', () => {
  it('is read back by go tool pprof with the same stacks, counts and labels', () => {
    const file = writeKnown();
    const traces = parseTraces(goPprof(file, '-traces', '-sample_index=samples'));
    const summary = traces.map((t) => `${t.labels.get('process.pid')}/${t.labels.get('thread.id')}/${t.labels.get('thread.name')}/${t.labels.get('process.name')} ${t.value} ${t.frames.join(' < ')}`).sort();
    assert.deepEqual(summary, [
      '100/101/myserver/myserver 1 odd;name < with newline < main',
      '100/101/myserver/myserver 3 parse_header (inline) < handle_request < main',
      '100/101/myserver/myserver 5 ksys_write < entry_SYSCALL_64 < write < handle_request < main',
      '100/102/worker/myserver 1 parse_header (inline) < handle_request < main',
      '100/102/worker/myserver 2 memcpy < handle_request < main',
      '200/200/other/other 4 [unknown]',
    ]);
  });

  it('carries cpu nanoseconds as the default sample type, period and comments', () => {
    const file = writeKnown();
    const top = goPprof(file, '-top', '-unit=ns', '-nodecount=100');
    assert.match(top, /^Type: cpu$/m);
    assert.match(top, /^frequency=99Hz$/m);
    assert.match(top, /^lost=0$/m);
    assert.match(top, new RegExp(`of ${TOTAL_SAMPLES * PERIOD}ns total`));
    const rows = parseTop(top);
    assert.deepEqual(rows.get('ksys_write'), [`${5 * PERIOD}ns`, `${5 * PERIOD}ns`]);
    assert.deepEqual(rows.get('parse_header (inline)'), [`${4 * PERIOD}ns`, `${4 * PERIOD}ns`]);
    assert.deepEqual(rows.get('handle_request'), ['0', `${11 * PERIOD}ns`]);
    assert.deepEqual(rows.get('main'), ['0', `${12 * PERIOD}ns`]);

    const counts = parseTop(goPprof(file, '-top', '-sample_index=samples', '-nodecount=100'));
    assert.deepEqual(counts.get('memcpy'), ['2', '2']);
    assert.deepEqual(counts.get('[unknown]'), ['4', '4']);
    assert.deepEqual(counts.get('write'), ['0', '5']);

    const raw = goPprof(file, '-raw');
    assert.match(raw, /^PeriodType: cpu nanoseconds$/m);
    assert.match(raw, new RegExp(`^Period: ${PERIOD}$`, 'm'));
    assert.match(raw, /^Duration: 2s$/m);
  });

  it('keeps thread and process labels that go tool pprof can filter on', () => {
    const file = writeKnown();
    const tags = goPprof(file, '-tags', '-sample_index=samples');
    assert.match(tags, /thread\.id: Total 16 of 16[^\n]*\n\s+9 \(56\.25%\): 101\n\s+4 \(25\.00%\): 200\n\s+3 \(18\.75%\): 102/);
    assert.match(tags, /process\.pid: Total 16 of 16[^\n]*\n\s+12 \(75\.00%\): 100\n\s+4 \(25\.00%\): 200/);
    const only = parseTop(goPprof(file, '-top', '-sample_index=samples', '-tagfocus=thread.name=worker', '-nodecount=100'));
    assert.deepEqual(only.get('memcpy'), ['2', '2']);
    assert.deepEqual(only.get('parse_header (inline)'), ['1', '1']);
    assert.equal(only.get('ksys_write'), undefined);
  });

  it('lists both mappings with their build ids and a kernel mapping', () => {
    const raw = goPprof(writeKnown(), '-raw');
    const mappings = raw.slice(raw.indexOf('\nMappings\n') + 10).trim().split('\n');
    assert.deepEqual(mappings, [
      `1: 0x400000/0x500000/0x0 /usr/bin/myserver ${EXE_BUILD_ID} [FN][FL][LN][IN]`,
      `2: 0x7f0000000000/0x7f0000200000/0x28000 /usr/lib/x86_64-linux-gnu/libc.so.6 ${LIBC_BUILD_ID} [FN]`,
      '3: 0xffffffff81000100/0xffffffff81200201/0x0 [kernel.kallsyms]  [FN]',
    ]);
    // The inlined pair is one location at one address, innermost first.
    assert.match(raw, /^\s+\d+: 0x401234 M=1 parse_header parse\.h:7:0 s=0\n\s+handle_request server\.c:45:0 s=0$/m);
    assert.match(raw, /^\s+\d+: 0xffffffff81200200 M=3 ksys_write :0:0 s=0$/m);
  });

  it('decodes with pprof-format to exactly the fields of the model', () => {
    const p = PprofProfile.decode(gunzipSync(encodePprof(knownProfile())));
    const s = (i: unknown): string => p.stringTable.strings[Number(i)]!;
    assert.deepEqual(p.sampleType.map((t) => `${s(t.type)}/${s(t.unit)}`), ['samples/count', 'cpu/nanoseconds']);
    assert.equal(s(p.defaultSampleType), 'cpu');
    assert.equal(`${s(p.periodType!.type)}/${s(p.periodType!.unit)}`, 'cpu/nanoseconds');
    assert.equal(Number(p.period), PERIOD);
    assert.equal(BigInt(p.timeNanos), 1_700_000_000_000_000_000n);
    assert.equal(BigInt(p.durationNanos), 2_000_000_000n);
    assert.deepEqual(p.comment.map(s), ['frequency=99Hz', 'lost=0']);

    // Functions are shared by (name, file): handle_request has two frames but one function.
    const fnames = p.function.map((f) => `${s(f.name)}@${s(f.filename)}`).sort();
    assert.deepEqual(fnames, [
      '[unknown]@', 'entry_SYSCALL_64@', 'handle_request@server.c', 'ksys_write@', 'main@main.c',
      'memcpy@', 'odd;name\nwith newline@', 'parse_header@parse.h', 'write@',
    ]);
    assert.equal(p.location.length, 9, 'one location per distinct address');

    const fn = new Map(p.function.map((f) => [Number(f.id), s(f.name)]));
    const loc = new Map(p.location.map((l) => [Number(l.id), l]));
    const first = p.sample[0]!;
    assert.deepEqual(first.value.map(Number), [3, 3 * PERIOD]);
    const inl = loc.get(Number(first.locationId[0]))!;
    assert.equal(BigInt(inl.address), 0x401234n);
    assert.equal(Number(inl.mappingId), 1);
    assert.deepEqual(inl.line.map((l) => [fn.get(Number(l.functionId)), Number(l.line)]), [['parse_header', 7], ['handle_request', 45]]);
    const labels = first.label.map((l) => Number(l.str) !== 0 ? `${s(l.key)}=${s(l.str)}` : `${s(l.key)}#${Number(l.num)}`);
    assert.deepEqual(labels.sort(), ['process.name=myserver', 'process.pid#100', 'thread.id#101', 'thread.name=myserver']);

    const kernel = p.mapping[2]!;
    assert.equal(s(kernel.filename), '[kernel.kallsyms]');
    const unknown = [...loc.values()].find((l) => fn.get(Number(l.line[0]!.functionId)) === '[unknown]')!;
    assert.equal(Number(unknown.mappingId), 0, 'a frame without a module has no mapping');
  });

  it('carries off-CPU time: four sample types, wall by default, thread.state labels', () => {
    const file = join(dir, 'offcpu.pb.gz');
    writeFileSync(file, encodePprof(offCpuProfile()));
    const wallNs = TOTAL_SAMPLES * PERIOD + 1_050_000_000;
    const raw = goPprof(file, '-raw');
    assert.match(raw, /^samples\/count cpu\/nanoseconds off_cpu\/nanoseconds wall\/nanoseconds\[dflt\]$/m);

    const top = goPprof(file, '-top', '-unit=ns', '-nodecount=100');
    assert.match(top, /^Type: wall$/m);
    assert.match(top, new RegExp(`of ${wallNs}ns total`));
    const wall = parseTop(top);
    assert.deepEqual(wall.get('schedule'), ['1050000000ns', '1050000000ns']);
    assert.deepEqual(wall.get('ksys_write'), [`${5 * PERIOD}ns`, `${5 * PERIOD + 300_000_000}ns`]);
    assert.deepEqual(wall.get('pthread_cond_wait'), ['0', '700000000ns']);
    assert.deepEqual(wall.get('futex_wait'), ['0', '700000000ns']);
    assert.deepEqual(wall.get('main'), ['0', `${12 * PERIOD + 1_000_000_000}ns`]);

    // The on-CPU views are those of the same profile recorded without off-CPU time.
    const cpu = goPprof(file, '-top', '-unit=ns', '-sample_index=cpu', '-nodecount=100');
    assert.match(cpu, new RegExp(`of ${TOTAL_SAMPLES * PERIOD}ns total`));
    assert.equal(parseTop(cpu).get('schedule'), undefined);
    assert.deepEqual(parseTop(goPprof(file, '-top', '-sample_index=samples', '-nodecount=100')), parseTop(goPprof(writeKnown(), '-top', '-sample_index=samples', '-nodecount=100')));

    const traces = parseTraces(goPprof(file, '-traces', '-sample_index=off_cpu')).filter((t) => t.value !== '0');
    assert.deepEqual(traces.map((t) => `${t.labels.get('thread.id')}/${t.labels.get('thread.name')}/${t.labels.get('thread.state')} ${t.value} ${t.frames.join(' < ')}`).sort(), [
      '101/myserver/uninterruptible 300ms schedule < ksys_write < entry_SYSCALL_64 < write < handle_request < main',
      '102/worker/sleeping 700ms schedule < futex_wait < pthread_cond_wait < handle_request < main',
      '200/other/runnable 50ms schedule < [unknown]',
    ]);
    const tags = goPprof(file, '-tags', '-sample_index=off_cpu');
    assert.match(tags, /thread\.state: Total 1\.05s of 1\.05s[^\n]*\n\s+700ms \(66\.67%\): sleeping\n\s+300ms \(28\.57%\): uninterruptible\n\s+50ms \( 4\.76%\): runnable/);
    const uninterruptible = parseTop(goPprof(file, '-top', '-unit=ns', '-sample_index=off_cpu', '-tagfocus=thread.state=uninterruptible', '-nodecount=100'));
    assert.deepEqual(uninterruptible.get('schedule'), ['300000000ns', '300000000ns']);
    assert.equal(uninterruptible.get('pthread_cond_wait'), undefined);

    const p = PprofProfile.decode(gunzipSync(encodePprof(offCpuProfile())));
    const s = (i: unknown): string => p.stringTable.strings[Number(i)]!;
    assert.deepEqual(p.sampleType.map((t) => `${s(t.type)}/${s(t.unit)}`), ['samples/count', 'cpu/nanoseconds', 'off_cpu/nanoseconds', 'wall/nanoseconds']);
    assert.equal(s(p.defaultSampleType), 'wall');
    const states = p.sample.map((x) => [x.value.map(Number).join(','), x.label.filter((l) => s(l.key) === 'thread.state').map((l) => s(l.str)).join()]);
    assert.deepEqual(states, [
      [`3,${3 * PERIOD},0,${3 * PERIOD}`, ''], [`2,${2 * PERIOD},0,${2 * PERIOD}`, ''], [`5,${5 * PERIOD},0,${5 * PERIOD}`, ''],
      [`1,${PERIOD},0,${PERIOD}`, ''], [`4,${4 * PERIOD},0,${4 * PERIOD}`, ''], [`1,${PERIOD},0,${PERIOD}`, ''],
      ['0,0,300000000,300000000', 'uninterruptible'], ['0,0,700000000,700000000', 'sleeping'], ['0,0,50000000,50000000', 'runnable'],
    ]);
  });

  it('rejects a stack that points past the frame table', () => {
    const bad = knownProfile();
    bad.samples[0]!.stack = [0, 99];
    assert.throws(() => encodePprof(bad), ProfileModelError);
    const values = knownProfile();
    values.samples[1]!.values = [1];
    assert.throws(() => encodePprof(values), /1 values for 2 sample types/);
  });

  it('encodes 100k distinct stacks in time that grows linearly', () => {
    const time = (n: number): number => {
      const prof = largeProfile(n, 24);
      let best = Infinity;
      for (let r = 0; r < 2; r++) {
        const t0 = process.hrtime.bigint();
        toPprof(prof).encode();
        best = Math.min(best, Number(process.hrtime.bigint() - t0));
      }
      return best;
    };
    time(5_000); // warm up the JIT
    const small = time(25_000);
    const large = time(100_000);
    // 4x the input: linear ≈ 4x, quadratic ≈ 16x. A wide margin absorbs a noisy machine.
    assert.ok(large / small < 9, `100k stacks took ${(large / small).toFixed(1)}x the time of 25k`);
    const decoded = PprofProfile.decode(toPprof(largeProfile(100_000, 24)).encode());
    assert.equal(decoded.sample.length, 100_000);
  });
});
