// `flamewire agent` against the real backends, built from the Go module proxy (test/servers.ts):
// an OpenTelemetry Collector (OTLP over HTTP and gRPC, profiles written out by its file
// exporter) and Parca (its own WriteRaw API, and OTLP over gRPC with the "parca" preset, each
// followed by a query through Parca's API). The profiled
// program splits its time 3:1 between two callers of one frameless leaf: what the backend gives
// back must name them, carry the process's resource, and (Parca) hold the 75/25 split.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { repoRoot, workDir } from './helpers.js';
import { parcaQuery, startAll, startCollector, startParca, type Collector, type Parca } from './servers.js';
import { buildSplitWorkload } from './workloads.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('agent-backends');

/** Runs the agent on `pid` for a few seconds with the destinations of `exporters`. */
function runAgent(pid: number, exporters: unknown[]): Promise<{ code: number | null; stderr: string }> {
  const cfg = join(dir, `agent-${Date.now()}.json`);
  writeFileSync(cfg, JSON.stringify({ exporters }));
  const child = spawn(process.execPath, [cli, 'agent', '-p', String(pid), '-F', '199', '--interval', '2s', '-d', '5s', '--config', cfg, '--log-level', 'warn'], {
    env: { ...process.env, OTEL_SERVICE_NAME: 'split-service' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

/** Every string of the collector's output (the OTLP JSON of what it received). */
function stringsIn(lines: unknown[]): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.add(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(lines);
  return out;
}

describe('agent against the real backends', { timeout: 20 * 60_000 }, () => {
  let split: string;
  const jobs: ChildProcess[] = [];
  let collector: Collector | undefined;
  let parca: Parca | undefined;
  before(async () => {
    split = buildSplitWorkload(dir);
    [collector, parca] = await startAll<[Collector, Parca]>(startCollector({ name: 'agent-collector' }), startParca({ name: 'agent-parca' }));
  });
  after(async () => {
    for (const job of jobs) job.kill('SIGKILL');
    await collector?.stop();
    await parca?.stop();
  });

  /** A new run of the split program; its pid tells its profiles from the other tests'. */
  const startSplit = (): number => {
    const job = spawn(split, ['c', '20'], { stdio: 'ignore' });
    jobs.push(job);
    return job.pid!;
  };

  /** The split of process `pid`, as Parca itself merges and reports it (both ways of writing to
   * Parca name the profile flamewire: WriteRaw by __name__, OTLP after the scope). */
  const assertParcaSplit = async (pid: number): Promise<void> => {
    const byFunction = await parcaQuery(parca!, `flamewire:samples:count:cpu:nanoseconds:delta{process_pid="${pid}"}`);
    const major = byFunction.get('caller_major')?.cum ?? 0;
    const minor = byFunction.get('caller_minor')?.cum ?? 0;
    assert.ok(major + minor > 0, `Parca knows nothing of the callers: ${[...byFunction.keys()].join(', ')}`);
    const share = (100 * major) / (major + minor);
    assert.ok(Math.abs(share - 75) <= 6, `caller_major has ${share.toFixed(1)}% in Parca`);
  };

  it('delivers to the OpenTelemetry Collector over HTTP and gRPC, and to Parca through WriteRaw, with the 75/25 split', async () => {
    const pid = startSplit();
    const r = await runAgent(pid, [
      { type: 'otlp', protocol: 'http/protobuf', endpoint: collector!.http, compression: 'gzip' },
      { type: 'otlp', protocol: 'grpc', endpoint: `http://${collector!.grpc}` },
      { type: 'parca', endpoint: `http://${parca!.address}` },
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!/export failed/.test(r.stderr), r.stderr);

    // The collector: both protocols' windows (about three each) in its file exporter's output,
    // with the program's functions and the resource.
    for (let i = 0; i < 50 && collector!.received().length < 4; i++) await new Promise((ok) => setTimeout(ok, 200));
    const lines = collector!.received();
    assert.ok(lines.length >= 4, `${lines.length} requests reached the collector`);
    const strings = stringsIn(lines);
    for (const want of ['caller_major', 'caller_minor', 'leaf_work', 'split-service', 'samples', 'cpu', split]) {
      assert.ok(strings.has(want), `"${want}" not in what the collector received`);
    }

    await assertParcaSplit(pid);
  });

  it('delivers OTLP over gRPC to Parca with the "parca" preset, with the 75/25 split', async () => {
    const pid = startSplit();
    const r = await runAgent(pid, [{ type: 'otlp', preset: 'parca', endpoint: `http://${parca!.address}` }]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!/export failed/.test(r.stderr), r.stderr);
    // process_pid is a label only because the preset sends process.pid as a string.
    await assertParcaSplit(pid);
  });
});
