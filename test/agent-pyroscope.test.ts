// `flamewire agent` to Pyroscope.
//
// Its /ingest API on a loopback HTTP server that reads the multipart form with the platform's
// own parser (undici's Request.formData) and the pprof with pprof-format: one upload per process
// and kind, the service and the process's labels in the name, the window's bounds in unix
// seconds, CPU as samples/count + cpu/nanoseconds with the period, off-CPU time as an upload of
// its own, the 3:1 split of the workload, basic auth and the tenant header, and a 429 with
// Retry-After retried through the queue.
//
// Then the real Grafana Pyroscope (test/servers.ts builds it from the Go module proxy), fed
// through /ingest, OTLP over HTTP and OTLP over gRPC on its one port, and asked through its own
// query API (SelectMergeProfile) for the split; off-CPU time and a resource with more labels
// than Pyroscope takes must be accepted too. And the config file's pyroscope exporter.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import { parseAgentConfig } from '../src/agent-config.js';
import { UsageError } from '../src/cli-args.js';
import { repoRoot, workDir } from './helpers.js';
import { pyroscopeProfileTypes, pyroscopeQuery, startPyroscope, type Pyroscope } from './servers.js';
import { buildSplitWorkload } from './workloads.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('agent-pyroscope');

/** Runs the agent on `pid` with the destinations of `exporters`; JSON log lines from stdout. */
function runAgent(pid: number, exporters: unknown[], env: NodeJS.ProcessEnv = {}, args: string[] = []): Promise<{ code: number | null; logs: any[]; stderr: string }> {
  const cfg = join(dir, `agent-${process.hrtime.bigint()}.json`);
  writeFileSync(cfg, JSON.stringify({ exporters }));
  const child = spawn(process.execPath, [cli, 'agent', '-p', String(pid), '-F', '199', '--interval', '2s', '-d', '5s', ...args, '--config', cfg], {
    env: { ...process.env, OTEL_SERVICE_NAME: 'split-service', PYRO_PASSWORD: 'pa55', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stderr = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (stderr += String(d)));
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code, logs: out.split('\n').filter(Boolean).map((l) => JSON.parse(l)), stderr })),
  );
}

/** Per function: the samples whose stack holds it, summed over the values of sample type `type`. */
function cumulative(p: PprofProfile, type: string): Map<string, number> {
  const strings = p.stringTable.strings;
  const vi = p.sampleType.findIndex((t) => strings[Number(t.type)] === type);
  assert.ok(vi >= 0, `no sample type ${type}`);
  const fnName = new Map(p.function.map((f) => [Number(f.id), strings[Number(f.name)] ?? '']));
  const locNames = new Map(p.location.map((l) => [Number(l.id), l.line.map((ln) => fnName.get(Number(ln.functionId)) ?? '')]));
  const out = new Map<string, number>();
  for (const s of p.sample) {
    const names = new Set(s.locationId.flatMap((id) => locNames.get(Number(id)) ?? []));
    for (const n of names) out.set(n, (out.get(n) ?? 0) + Number(s.value[vi]));
  }
  return out;
}

/** caller_major's share of the two callers, in percent. */
function majorShare(byFunction: Map<string, number>): number {
  const major = byFunction.get('caller_major') ?? 0;
  const minor = byFunction.get('caller_minor') ?? 0;
  assert.ok(major + minor > 0, `no callers among ${[...byFunction.keys()].slice(0, 20).join(', ')}`);
  return (100 * major) / (major + minor);
}

interface Upload {
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The multipart form's field names. */
  fields: string[];
  pprof: PprofProfile;
  /** Date.now() when it arrived. */
  at: number;
}

describe('agent to Pyroscope /ingest (loopback server)', { timeout: 5 * 60_000 }, () => {
  let split: string;
  let job: ChildProcess | undefined;
  let server: Server;
  let port: number;
  const uploads: Upload[] = [];
  /** Answers to give before 200s, in order. */
  const answers: Array<{ status: number; headers?: Record<string, string> }> = [];
  const refused: number[] = [];
  before(async () => {
    split = buildSplitWorkload(dir);
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const next = answers.shift();
        if (next) {
          refused.push(Date.now());
          res.writeHead(next.status, next.headers).end('slow down');
          return;
        }
        try {
          const url = new URL(req.url!, 'http://localhost');
          assert.equal(url.pathname, '/ingest');
          // The platform's multipart parser: what any server's would make of the body.
          const form = await new Request('http://localhost/', { method: 'POST', headers: { 'content-type': req.headers['content-type']! }, body: Buffer.concat(chunks) }).formData();
          const file = form.get('profile') as Blob;
          const pprof = PprofProfile.decode(gunzipSync(Buffer.from(await file.arrayBuffer())));
          uploads.push({ query: url.searchParams, headers: req.headers, fields: [...form.keys()], pprof, at: Date.now() });
          res.writeHead(200).end();
        } catch (e) {
          res.writeHead(400).end(String(e));
        }
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    port = (server.address() as AddressInfo).port;
  });
  after(() => {
    job?.kill('SIGKILL');
    server.close();
  });

  it('posts each window of the process as a pprof form field, named, timed and split 3:1, retrying a 429', async () => {
    job = spawn(split, ['c', '20'], { stdio: 'ignore' });
    const pid = job.pid!;
    answers.push({ status: 429, headers: { 'retry-after': '1' } });
    const started = Date.now();
    const r = await runAgent(pid, [{ type: 'pyroscope', endpoint: `http://127.0.0.1:${port}/`, basicAuth: { username: 'tenant-1', password: '${PYRO_PASSWORD}' }, tenantId: 'team-a' }]);
    const ended = Date.now();
    assert.equal(r.code, 0, r.stderr);

    // The 429 was retried after the second it asked for, and nothing was lost.
    assert.equal(refused.length, 1);
    assert.ok(uploads[0]!.at - refused[0]! >= 900, `retried ${uploads[0]!.at - refused[0]!} ms after the 429`);
    const sink = r.logs.find((l) => l.msg === 'agent stopped').sinks[`pyroscope http://127.0.0.1:${port}/`];
    assert.ok(sink, JSON.stringify(r.logs.at(-1)));
    assert.equal(sink.retries, 1);
    assert.equal(sink.droppedFull + sink.droppedFinal + sink.droppedShutdown, 0, JSON.stringify(sink));
    assert.equal(sink.sent, uploads.length);
    assert.ok(uploads.length >= 2, `${uploads.length} uploads`);
    assert.ok(!JSON.stringify(r.logs).includes('pa55'));

    let previousUntil = 0;
    for (const u of uploads) {
      assert.deepEqual(u.fields, ['profile']);
      assert.equal(u.headers.authorization, `Basic ${Buffer.from('tenant-1:pa55').toString('base64')}`);
      assert.equal(u.headers['x-scope-orgid'], 'team-a');
      // name = service{labels}: the process's attributes, Prometheus-style.
      const m = /^([^{]+)\{(.*)\}$/.exec(u.query.get('name')!);
      assert.ok(m, u.query.get('name')!);
      assert.equal(m[1], 'split-service');
      const labels = Object.fromEntries(m[2]!.split(',').map((kv) => kv.split('=') as [string, string]));
      assert.equal(labels.process_pid, String(pid));
      assert.equal(labels.process_executable_name, 'split');
      assert.equal(labels.process_executable_path, split);
      assert.ok(Object.keys(labels).length + 4 <= 30);
      assert.equal(u.query.get('spyName'), 'flamewire');
      assert.equal(u.query.get('sampleRate'), '199');
      assert.equal(u.query.get('format'), null);
      // Unix seconds, within the run, one window after another.
      const from = Number(u.query.get('from'));
      const until = Number(u.query.get('until'));
      assert.ok(from >= Math.floor(started / 1000) - 1 && until <= Math.ceil(ended / 1000) + 1, `${from}..${until} outside the run`);
      assert.ok(until > from && until - from <= 4, `${from}..${until}`);
      assert.ok(from >= previousUntil - 1, 'windows out of order');
      previousUntil = until;
      // CPU: two sample types, one value each per sample, the period of 199 Hz.
      const p = u.pprof;
      const str = (i: number | bigint) => p.stringTable.strings[Number(i)];
      assert.deepEqual(p.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`), ['samples/count', 'cpu/nanoseconds']);
      assert.equal(`${str(p.periodType!.type)}/${str(p.periodType!.unit)}`, 'cpu/nanoseconds');
      assert.equal(Number(p.period), Math.round(1e9 / 199));
      for (const s of p.sample) {
        assert.equal(s.value.length, 2);
        assert.equal(Number(s.value[1]), Number(s.value[0]) * Number(p.period));
        // The process is the series: its name is no sample label.
        assert.ok(!s.label.some((l) => str(l.key) === 'process.name'));
      }
    }
    // All windows together: the 3:1 split.
    const merged = new Map<string, number>();
    for (const u of uploads) for (const [k, v] of cumulative(u.pprof, 'cpu')) merged.set(k, (merged.get(k) ?? 0) + v);
    const share = majorShare(merged);
    assert.ok(Math.abs(share - 75) <= 6, `caller_major has ${share.toFixed(1)}%`);
  });

  it('with --off-cpu, sends blocked time as an upload of its own: off_cpu nanoseconds, no period', async () => {
    uploads.length = 0;
    // On CPU a little, then asleep: both kinds every window.
    const sleeper = spawn('python3', ['-c', 'import time\nwhile True:\n    sum(range(20000))\n    time.sleep(0.005)'], { stdio: 'ignore' });
    try {
      const r = await runAgent(sleeper.pid!, [{ type: 'pyroscope', endpoint: `http://127.0.0.1:${port}` }], {}, ['--off-cpu']);
      assert.equal(r.code, 0, r.stderr);
    } finally {
      sleeper.kill('SIGKILL');
    }
    const kinds = new Map<string, PprofProfile[]>();
    for (const u of uploads) {
      const str = (i: number | bigint) => u.pprof.stringTable.strings[Number(i)];
      const key = u.pprof.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`).join(',');
      kinds.set(key, [...(kinds.get(key) ?? []), u.pprof]);
      if (key === 'off_cpu/nanoseconds') {
        assert.equal(Number(u.pprof.period), 0);
        for (const s of u.pprof.sample) assert.ok(s.value.length === 1 && Number(s.value[0]) > 0);
      }
    }
    assert.deepEqual([...kinds.keys()].sort(), ['off_cpu/nanoseconds', 'samples/count,cpu/nanoseconds']);
    // The sleeps: most of the blocked time is in time.sleep's nanosleep.
    const offCpu = new Map<string, number>();
    for (const p of kinds.get('off_cpu/nanoseconds')!) for (const [k, v] of cumulative(p, 'off_cpu')) offCpu.set(k, (offCpu.get(k) ?? 0) + v);
    const total = Math.max(...offCpu.values());
    const sleeping = Math.max(0, ...[...offCpu].filter(([k]) => /nanosleep/.test(k)).map(([, v]) => v));
    assert.ok(sleeping >= 0.5 * total, [...offCpu.keys()].slice(0, 10).join(', '));
  });
});

/** The agent's summary of its one sink, asserting that it delivered everything. */
function deliveredAll(r: { code: number | null; logs: any[]; stderr: string }): Record<string, number> {
  assert.equal(r.code, 0, r.stderr);
  const failed = r.logs.filter((l) => l.msg === 'export failed');
  assert.deepEqual(failed, [], JSON.stringify(failed[0]));
  const sink = Object.values(r.logs.find((l) => l.msg === 'agent stopped').sinks)[0] as Record<string, number>;
  assert.ok(sink.sent! >= 2, JSON.stringify(sink));
  assert.equal(sink.droppedFull! + sink.droppedFinal! + sink.droppedShutdown! + sink.rejectedProfiles!, 0, JSON.stringify(sink));
  return sink;
}

describe('agent to the real Grafana Pyroscope', { timeout: 40 * 60_000 }, () => {
  let split: string;
  let job: ChildProcess | undefined;
  let pyroscope: Pyroscope | undefined;
  before(async () => {
    split = buildSplitWorkload(dir);
    pyroscope = await startPyroscope({ name: 'agent-pyroscope-server' });
  });
  after(async () => {
    job?.kill('SIGKILL');
    await pyroscope?.stop();
  });

  /** The 3:1 split of `selector`'s CPU time as Pyroscope merges it (polled: ingestion is asynchronous). */
  async function splitIn(selector: string): Promise<number> {
    const type = 'process_cpu:cpu:nanoseconds:cpu:nanoseconds';
    let byFunction = new Map<string, number>();
    for (let i = 0; i < 50; i++) {
      byFunction = await pyroscopeQuery(pyroscope!, type, selector);
      if (byFunction.has('caller_major') && byFunction.has('caller_minor')) break;
      await new Promise((ok) => setTimeout(ok, 200));
    }
    if (!byFunction.has('caller_major')) {
      assert.fail(`${type}${selector}: ${[...byFunction.keys()].slice(0, 10).join(', ') || 'nothing'}; types: ${(await pyroscopeProfileTypes(pyroscope!)).join(', ')}`);
    }
    return majorShare(byFunction);
  }

  it('takes /ingest, OTLP over HTTP and OTLP over gRPC on its one port, and gives back the 3:1 split', async (t) => {
    job = spawn(split, ['c', '120'], { stdio: 'ignore' });
    const pid = job.pid!;
    const base = pyroscope!.url;
    const runs: Array<[string, unknown]> = [
      ['split-ingest', { type: 'pyroscope', endpoint: base }],
      ['split-otlp-http', { type: 'otlp', preset: 'pyroscope', protocol: 'http/protobuf', endpoint: base }],
      ['split-otlp-grpc', { type: 'otlp', preset: 'pyroscope', protocol: 'grpc', endpoint: base }],
    ];
    for (const [service, exporter] of runs) deliveredAll(await runAgent(pid, [exporter], { OTEL_SERVICE_NAME: service }));
    for (const [service] of runs) {
      const share = await splitIn(`{service_name="${service}"}`);
      t.diagnostic(`${service}: caller_major ${share.toFixed(1)}%`);
      assert.ok(Math.abs(share - 75) <= 6, `${service}: caller_major has ${share.toFixed(1)}% in Pyroscope`);
    }
    // /ingest's labels: the process's attributes, as the name's labels.
    const share = await splitIn(`{service_name="split-ingest",process_pid="${pid}",process_executable_name="split"}`);
    assert.ok(Math.abs(share - 75) <= 6);
  });

  it('takes off-CPU time through /ingest as a profile type of its own', async () => {
    const sleeper = spawn('python3', ['-c', 'import time\nwhile True:\n    sum(range(20000))\n    time.sleep(0.005)'], { stdio: 'ignore' });
    try {
      deliveredAll(await runAgent(sleeper.pid!, [{ type: 'pyroscope', endpoint: pyroscope!.url }], { OTEL_SERVICE_NAME: 'sleeper-ingest' }, ['--off-cpu']));
    } finally {
      sleeper.kill('SIGKILL');
    }
    // The server names it after its sample type (process_cpu, since the type says cpu).
    let types: string[] = [];
    for (let i = 0; i < 50 && !types.some((t) => t.includes(':off_cpu:nanoseconds')); i++) {
      types = await pyroscopeProfileTypes(pyroscope!);
      await new Promise((ok) => setTimeout(ok, 200));
    }
    assert.ok(types.includes('process_cpu:off_cpu:nanoseconds::'), types.join(', '));
  });

  it('keeps within its 30 labels per series when the resource has more', async () => {
    const many = Array.from({ length: 32 }, (_, i) => `extra.attr${i}=v${i}`).join(',');
    const runs: Array<[string, unknown]> = [
      ['many-ingest', { type: 'pyroscope', endpoint: pyroscope!.url }],
      ['many-otlp', { type: 'otlp', preset: 'pyroscope', protocol: 'http/protobuf', endpoint: pyroscope!.url }],
    ];
    for (const [service, exporter] of runs) {
      deliveredAll(await runAgent(job!.pid!, [exporter], { OTEL_SERVICE_NAME: service, OTEL_RESOURCE_ATTRIBUTES: many }));
      const share = await splitIn(`{service_name="${service}"}`);
      assert.ok(Math.abs(share - 75) <= 6, `${service}: caller_major has ${share.toFixed(1)}%`);
    }
  });
});

describe('the pyroscope exporter in the config file', () => {
  it('takes the endpoint, authentication, tenant, headers and timeout, secrets from the environment', () => {
    const cfg = parseAgentConfig(
      {
        exporters: [
          { type: 'pyroscope', endpoint: 'https://pyro:4040', basicAuth: { username: 'u', password: '${P}' }, tenantId: 't', headers: { 'x-a': 'b' }, timeout: '3s', certificate: '/ca.pem' },
          { type: 'pyroscope', endpoint: 'http://pyro:4040', bearerToken: '${P}' },
        ],
      },
      'cfg.json',
      { P: 'secret' },
    );
    assert.deepEqual(cfg.pyroscope, [
      { endpoint: 'https://pyro:4040', basicAuth: { username: 'u', password: 'secret' }, tenantId: 't', headers: { 'x-a': 'b' }, timeoutMs: 3000, certificate: '/ca.pem' },
      { endpoint: 'http://pyro:4040', bearerToken: 'secret' },
    ]);
    assert.deepEqual(cfg.otlp, []);
  });

  it('names the exporter and the field that is wrong, in one line', () => {
    const bad = (e: unknown, want: RegExp) =>
      assert.throws(
        () => parseAgentConfig({ exporters: [{ type: 'directory', path: '/d' }, e] }, 'cfg.json', {}),
        (err: Error) => err instanceof UsageError && want.test(err.message) && !err.message.includes('\n'),
      );
    bad({ type: 'pyroscope' }, /exporters\[1\]\.endpoint is missing/);
    bad({ type: 'pyroscope', endpoint: 'pyro:4040' }, /exporters\[1\]\.endpoint must be a URL such as http:\/\/pyroscope:4040/);
    bad({ type: 'pyroscope', endpoint: 'http://p', protocol: 'grpc' }, /exporters\[1\] has an unknown field "protocol"/);
    bad({ type: 'pyroscope', endpoint: 'http://p', basicAuth: 'u:p' }, /exporters\[1\]\.basicAuth must be/);
    bad({ type: 'pyroscope', endpoint: 'http://p', basicAuth: { username: 'u' } }, /exporters\[1\]\.basicAuth must be/);
    bad({ type: 'pyroscope', endpoint: 'http://p', basicAuth: { username: 'u', password: 'p' }, bearerToken: 't' }, /exporters\[1\]\.bearerToken: give basicAuth or bearerToken, not both/);
    bad({ type: 'pyroscope', endpoint: 'http://p', bearerToken: '${NOPE}' }, /exporters\[1\]\.bearerToken names the environment variable NOPE/);
    bad({ type: 'pyroscope', endpoint: 'http://p', timeout: 'soon' }, /exporters\[1\]\.timeout must be a duration/);
    bad({ type: 'pyroscope', endpoint: 'http://p', tenantId: '' }, /exporters\[1\]\.tenantId must be a non-empty string/);
    bad({ type: 'pyroscopes', endpoint: 'http://p' }, /exporters\[1\]\.type must be "otlp", "parca", "pyroscope" or "directory"/);
  });
});
