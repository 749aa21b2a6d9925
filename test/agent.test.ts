// `flamewire agent` end to end, against real OTLP servers on loopback (gRPC and HTTP, decoding
// with the official proto files): windows of a CPU-burning program arrive every interval with
// the program's functions and its resource attributes (pid, executable path, service.name from
// OTEL_SERVICE_NAME, host.name), headers from OTEL_EXPORTER_OTLP_HEADERS; SIGTERM delivers the
// last window and exits 0; a backend that is not there costs nothing but counted drops; the
// directory sink writes one pprof file per window. Logs are JSON lines on stdout.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, lchownSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile as PprofProfile } from 'pprof-format';
import protobuf from 'protobufjs';
import { ElfFile } from '../src/elf/elf-file.js';
import { buildC, buildGo, goToolBuildId, repoRoot, workDir } from './helpers.js';
import { otlpGrpcServer, otlpHttpServer, rawGrpcServer, Request } from './otlp-official.js';
import { GO_SPIN } from './workloads.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('agent');

const BURNER = `
volatile unsigned long sink;
__attribute__((noinline)) void agent_burn(void) { for (unsigned long i = 0; i < 100000; i++) sink += i; }
int main(void) { for (;;) agent_burn(); }
`;

/** Burns the CPU for argv[1] milliseconds, then exits. */
const SHORT = `
#include <stdlib.h>
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void short_burn(void) { for (unsigned long i = 0; i < 100000; i++) sink += i; }
int main(int argc, char **argv) {
  struct timespec t0, t;
  long ms = argc > 1 ? atol(argv[1]) : 300;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  do { short_burn(); clock_gettime(CLOCK_MONOTONIC, &t); } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
  return 0;
}
`;

interface Window {
  resources: Array<Record<string, string | number>>;
  /** Function names of every sample of the CPU profiles, per resource pid. */
  functions: Map<number, Set<string>>;
  sampleTypes: string[];
  headers: Record<string, string>;
}

function decodeWindow(bytes: Buffer, headers: Record<string, string>): Window {
  const r = Request.toObject(Request.decode(bytes), { longs: Number, defaults: true }) as any;
  const d = r.dictionary;
  const str = (i: number) => d.stringTable[i];
  const functions = new Map<number, Set<string>>();
  const sampleTypes: string[] = [];
  const resources = r.resourceProfiles.map((rp: any) => {
    const attrs = Object.fromEntries(rp.resource.attributes.map((kv: any) => [kv.key, kv.value.stringValue ?? Number(kv.value.intValue)]));
    const names = new Set<string>();
    for (const p of rp.scopeProfiles[0].profiles) {
      sampleTypes.push(`${str(p.sampleType.typeStrindex)}/${str(p.sampleType.unitStrindex)}`);
      for (const s of p.samples) {
        for (const li of d.stackTable[s.stackIndex].locationIndices) for (const l of d.locationTable[li].lines) names.add(str(d.functionTable[l.functionIndex].nameStrindex));
      }
    }
    functions.set(Number(attrs['process.pid']), names);
    return attrs;
  });
  return { resources, functions, sampleTypes, headers };
}

/** Runs the agent; resolves with its exit status and its stdout's JSON log lines. */
function agent(args: string[], env: NodeJS.ProcessEnv = {}, onStart?: (child: ChildProcess) => void): Promise<{ code: number | null; logs: any[]; stderr: string }> {
  const child = spawn(process.execPath, [cli, 'agent', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (err += String(d)));
  onStart?.(child);
  return new Promise((resolve) => {
    child.on('close', (code) => {
      const logs = out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
      resolve({ code, logs, stderr: err });
    });
  });
}

describe('flamewire agent', () => {
  let burner: ChildProcess;
  let burnerPath: string;
  before(() => {
    burnerPath = buildC(dir, 'agent-burner', BURNER, ['-O2', '-fno-omit-frame-pointer']);
    burner = spawn(burnerPath, [], { stdio: 'ignore' });
  });
  after(() => burner.kill('SIGKILL'));

  it('sends a window of the program every interval over OTLP/HTTP, with its resource attributes', async () => {
    const windows: Window[] = [];
    const server = await otlpHttpServer((body, headers) => windows.push(decodeWindow(body, headers)));
    try {
      const port = server.port;
      const r = await agent(['-p', String(burner.pid), '--interval', '1s', '-d', '3500ms', '--otlp-protocol', 'http/protobuf', '--otlp-endpoint', `http://127.0.0.1:${port}`], {
        OTEL_SERVICE_NAME: 'checkout',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=test',
        OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20s3cret',
        OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
      });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(windows.length >= 3, `${windows.length} windows arrived`);
      for (const w of windows) {
        assert.deepEqual(w.resources, [
          {
            'host.name': hostname(),
            'deployment.environment': 'test',
            'service.name': 'checkout',
            'process.pid': burner.pid!,
            'process.executable.name': 'agent-burner',
            'process.executable.path': burnerPath,
          },
        ]);
        assert.ok(w.functions.get(burner.pid!)!.has('agent_burn'), [...w.functions.get(burner.pid!)!].join(','));
        assert.deepEqual(w.sampleTypes, ['samples/count']);
        assert.equal(w.headers.authorization, 'Bearer s3cret');
        assert.equal(w.headers['content-encoding'], 'gzip');
      }
      // JSON lines on stdout; the summary says what went where; secrets stay out of the logs.
      const stopped = r.logs.find((l) => l.msg === 'agent stopped');
      assert.equal(stopped.reason, 'duration');
      const sink = Object.values(stopped.sinks)[0] as any;
      assert.equal(sink.sent, windows.length);
      assert.equal(sink.droppedFull + sink.droppedFinal + sink.droppedShutdown, 0);
      assert.ok(!JSON.stringify(r.logs).includes('s3cret'));
    } finally {
      server.close();
    }
  });

  it("labels a Go binary's mappings with its Go build id, as go tool buildid prints it, and a C program's with its GNU one only", async () => {
    const goBin = buildGo(dir, 'agent-go-spin', `package main\n\n${GO_SPIN}\nfunc main() {\n\tfor {\n\t\tsink += spin(1 << 20)\n\t}\n}\n`);
    const goJob = spawn(goBin, [], { stdio: 'ignore' });
    /** Build id attributes (key → value) of each mapping by file name, over every window. */
    const buildIds = new Map<string, Record<string, string>>();
    const server = await otlpHttpServer((body) => {
      const d = (Request.toObject(Request.decode(body), { defaults: true }) as any).dictionary;
      for (const m of d.mappingTable.slice(1)) {
        const attrs = m.attributeIndices.map((i: number) => d.attributeTable[i]).filter((a: any) => /build_id/.test(d.stringTable[a.keyStrindex]));
        buildIds.set(d.stringTable[m.filenameStrindex], Object.fromEntries(attrs.map((a: any) => [d.stringTable[a.keyStrindex], a.value.stringValue])));
      }
    });
    try {
      const r = await agent(['-p', `${burner.pid},${goJob.pid}`, '--interval', '1s', '-d', '2500ms', '--otlp-protocol', 'http/protobuf', '--otlp-endpoint', `http://127.0.0.1:${server.port}`]);
      assert.equal(r.code, 0, r.stderr);
      // This Go's linker writes a GNU build id note as well.
      const gnu = (bin: string) => ElfFile.withFile(bin, (e) => e.buildId);
      assert.match(gnu(burnerPath), /^[0-9a-f]{40}$/);
      assert.deepEqual(buildIds.get(goBin), { 'process.executable.build_id.gnu': gnu(goBin), 'process.executable.build_id.go': goToolBuildId(goBin) });
      assert.deepEqual(buildIds.get(burnerPath), { 'process.executable.build_id.gnu': gnu(burnerPath) });
    } finally {
      goJob.kill('SIGKILL');
      server.close();
    }
  });

  it('on SIGTERM sends the last window over gRPC and exits 0', async () => {
    const windows: Window[] = [];
    const { server, port } = await otlpGrpcServer((request, cb) => {
      windows.push(decodeWindow(request, {}));
      cb(null, {});
    });
    try {
      // A long interval: only the window SIGTERM closes can arrive.
      const r = await agent(['-p', String(burner.pid), '--interval', '1m', '--otlp-endpoint', `http://127.0.0.1:${port}`], {}, (child) => {
        setTimeout(() => child.kill('SIGTERM'), 2500);
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(windows.length, 1);
      assert.ok(windows[0]!.functions.get(burner.pid!)!.has('agent_burn'));
      assert.equal(r.logs.find((l) => l.msg === 'agent stopped').reason, 'SIGTERM');
    } finally {
      server.forceShutdown();
    }
  });

  it('with the backend down, stops within the shutdown timeout and counts what it could not send', async () => {
    const t = Date.now();
    const r = await agent(['-p', String(burner.pid), '--interval', '500ms', '-d', '1500ms', '--shutdown-timeout', '500ms', '--otlp-endpoint', 'http://127.0.0.1:1']);
    assert.equal(r.code, 0, r.stderr);
    const sink = Object.values(r.logs.find((l) => l.msg === 'agent stopped').sinks)[0] as any;
    assert.equal(sink.sent, 0);
    assert.ok(sink.droppedShutdown >= 1, JSON.stringify(sink));
    assert.ok(r.logs.some((l) => l.msg === 'export failed' && l.retryable === true));
    // Bounded by the shutdown timeout, not by the backend (generous: the machine is shared).
    assert.ok(Date.now() - t < 30_000);
  });

  it('serves Prometheus metrics, /healthz and /readyz while it runs', async () => {
    let scraped = '';
    let health = 0;
    let ready = 0;
    const port = 19000 + (process.pid % 1000);
    const r = await agent(['-p', String(burner.pid), '--interval', '500ms', '-d', '4s', '--no-otlp', '--output-dir', join(dir, 'metrics-windows'), '--metrics-address', `127.0.0.1:${port}`], {}, () => {
      setTimeout(async () => {
        try {
          scraped = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
          health = (await fetch(`http://127.0.0.1:${port}/healthz`)).status;
          ready = (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
        } catch {
          // asserted below
        }
      }, 3000);
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([health, ready], [200, 200]);
    const value = (name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\d+)`, 'm').exec(scraped)?.[1]);
    assert.ok(value('flamewire_windows_total') >= 1, scraped);
    assert.ok(value('flamewire_samples_total{kind="on_cpu"}') > 0, scraped);
    assert.match(scraped, /^flamewire_dropped_total\{reason="ring_buffer_full"\} 0$/m);
    assert.match(scraped, /^flamewire_symbol_cache_total\{result="miss"\} \d+$/m);
    assert.ok(value('flamewire_processes_tracked') >= 1, scraped);
    assert.ok(value('flamewire_open_files') >= 1, scraped);
    // The burner's stacks are walked with unwind tables; none of them cut short.
    assert.ok(value('flamewire_user_stacks_total{walk="unwind_tables"}') > 0, scraped);
    for (const reason of ['frame_cap', 'unreadable_memory', 'no_unwind_rule', 'bad_frame', 'lost_rbp']) {
      assert.equal(value(`flamewire_user_stacks_truncated_total{reason="${reason}"}`), 0, scraped);
    }
    assert.ok(value('flamewire_unwind_table_bytes') > 0, scraped);
    assert.ok(value('flamewire_unwind_table_files') >= 2, scraped);
    assert.equal(value('flamewire_unwind_tables_not_fitting_total{kind="file"}'), 0, scraped);
  });

  it('writes one pprof file per window to --output-dir', async () => {
    const out = join(dir, 'windows');
    rmSync(out, { recursive: true, force: true });
    const r = await agent(['-p', String(burner.pid), '--interval', '1s', '-d', '2500ms', '--no-otlp', '--output-dir', out]);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(out).filter((f) => f.endsWith('.pb.gz'));
    assert.ok(files.length >= 2, files.join(','));
    const p = PprofProfile.decode(gunzipSync(readFileSync(join(out, files[0]!))));
    assert.ok(p.stringTable.strings.includes('agent_burn'));
  });

  it('creates each window file new in --output-dir, never through a link planted at its name', async () => {
    // A shared directory (sticky, world-writable) where nobody planted a symlink at the name of
    // every millisecond of the next 20 seconds, all pointing at a file that must stay untouched.
    const base = join(dir, 'planted-windows');
    rmSync(base, { recursive: true, force: true });
    const out = join(base, 'shared');
    mkdirSync(out, { recursive: true });
    chmodSync(out, 0o1777);
    const victim = join(base, 'victim');
    writeFileSync(victim, 'untouched\n');
    const from = Date.now();
    const planted = new Set<string>();
    for (let ms = from; ms < from + 20_000; ms++) {
      const name = `flamewire-${new Date(ms).toISOString().replace(/[:.]/g, '-')}.pb.gz`;
      symlinkSync(victim, join(out, name));
      lchownSync(join(out, name), 65534, 65534);
      planted.add(name);
    }
    const r = await agent(['-p', String(burner.pid), '--interval', '1s', '-d', '2500ms', '--no-otlp', '--output-dir', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched\n');
    const windows = readdirSync(out).filter((f) => !planted.has(f));
    assert.ok(windows.length >= 2, windows.join(','));
    for (const f of windows) {
      assert.match(f, /^flamewire-[\dT-]+Z-[0-9a-f]{12}\.pb\.gz$/, 'each planted name was taken, so each window got another');
      assert.ok(lstatSync(join(out, f)).isFile());
      assert.ok(PprofProfile.decode(gunzipSync(readFileSync(join(out, f)))).stringTable.strings.includes('agent_burn'));
    }
    assert.equal(r.logs.filter((l) => l.msg === 'a file of that name is already there; the window gets another name').length, windows.length);
  });

  it('forgets the processes that exited a window ago and closes the files only they mapped', async () => {
    // Short-lived programs, each its own file (its own build id), as a busy node runs them.
    const built = buildC(dir, 'agent-short', SHORT, ['-O2', '-fno-omit-frame-pointer']);
    const note = ElfFile.withFile(built, (e) => e.section('.note.gnu.build-id')!);
    const copies = join(dir, 'short-lived');
    rmSync(copies, { recursive: true, force: true });
    mkdirSync(copies);
    const paths: string[] = [];
    for (let i = 0; i < 8; i++) {
      const b = readFileSync(built);
      b.writeUInt32LE(0xf1a3e000 + i, note.offset + 16); // the first bytes of the build id
      const path = join(copies, `short-${i}`);
      writeFileSync(path, b, { mode: 0o755 });
      paths.push(path);
    }
    const out = join(dir, 'short-windows');
    rmSync(out, { recursive: true, force: true });
    const openCopies = (pid: number) =>
      readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(copies);
        } catch {
          return false;
        }
      }).length;
    let openedRightAfter = -1;
    let openedLater = -1;
    const r = await agent(['-F', '99', '--interval', '1s', '-d', '9s', '--no-otlp', '--output-dir', out], {}, (child) => {
      child.stdout!.once('data', async () => {
        for (const p of paths) await new Promise((ok) => spawn(p, ['300'], { stdio: 'ignore' }).once('exit', ok));
        openedRightAfter = openCopies(child.pid!);
        await new Promise((ok) => setTimeout(ok, 3500));
        openedLater = openCopies(child.pid!);
      });
    });
    assert.equal(r.code, 0, r.stderr);
    // Until their samples are symbolized, the exited programs' files stay open; then they go.
    assert.ok(openedRightAfter >= 1, `files open right after: ${openedRightAfter}`);
    assert.equal(openedLater, 0, 'files of exited programs still open');
    // And their samples were named, window by window.
    const names = new Set<string>();
    for (const f of readdirSync(out).filter((n) => n.endsWith('.pb.gz'))) {
      const p = PprofProfile.decode(gunzipSync(readFileSync(join(out, f))));
      const strings = p.stringTable.strings;
      for (const m of p.mapping) if (strings[Number(m.filename)]?.startsWith(copies)) names.add(strings[Number(m.filename)]!);
      assert.ok(!strings.some((s) => s.startsWith(copies)) || strings.includes('short_burn'), `${f}: a short-lived program's samples are not named`);
    }
    assert.ok(names.size >= 6, `only ${names.size} of 8 programs in the windows`);
  });

  it('sends to every destination of a config file', async () => {
    let arrived = 0;
    const server: Server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        arrived++;
        res.writeHead(200);
        res.end();
      });
    });
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    try {
      const out = join(dir, 'config-windows');
      rmSync(out, { recursive: true, force: true });
      const cfg = join(dir, 'agent.json');
      const port = (server.address() as AddressInfo).port;
      writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'http/protobuf', endpoint: `http://127.0.0.1:${port}` }, { type: 'directory', path: out }] }));
      const r = await agent(['-p', String(burner.pid), '--interval', '1s', '-d', '2500ms', '--config', cfg]);
      assert.equal(r.code, 0, r.stderr);
      const files = readdirSync(out).length;
      assert.ok(arrived >= 2 && files >= 2, `${arrived} requests, ${files} files`);
      assert.equal(arrived, files);
    } finally {
      server.close();
    }
  });

  it("sends gzipped pprof per process through Parca's WriteRaw API (gRPC)", async () => {
    // WriteRawRequest as Parca defines it, written here independently of proto/.
    const parca = protobuf.Root.fromJSON({
      nested: {
        WriteRawRequest: { fields: { tenant: { type: 'string', id: 1 }, series: { rule: 'repeated', type: 'RawProfileSeries', id: 2 }, normalized: { type: 'bool', id: 3 } } },
        RawProfileSeries: { fields: { labels: { type: 'LabelSet', id: 1 }, samples: { rule: 'repeated', type: 'RawSample', id: 2 } } },
        LabelSet: { fields: { labels: { rule: 'repeated', type: 'Label', id: 1 } } },
        Label: { fields: { name: { type: 'string', id: 1 }, value: { type: 'string', id: 2 } } },
        RawSample: { fields: { raw_profile: { type: 'bytes', id: 1 } } },
      },
    }).lookupType('WriteRawRequest');
    const series: Array<{ labels: Record<string, string>; functions: Set<string> }> = [];
    const { server, port } = await rawGrpcServer('/parca.profilestore.v1alpha1.ProfileStoreService/WriteRaw', new Uint8Array(0), (request, cb) => {
      const req = parca.toObject(parca.decode(request)) as any;
      for (const s of req.series) {
        const p = PprofProfile.decode(gunzipSync(s.samples[0].raw_profile));
        const strings = p.stringTable.strings;
        const names = new Set<string>(p.function.map((f) => strings[Number(f.name)]!));
        series.push({ labels: Object.fromEntries(s.labels.labels.map((l: any) => [l.name, l.value])), functions: names });
      }
      cb(null, {});
    });
    try {
      const cfg = join(dir, 'parca.json');
      writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'parca', endpoint: `http://127.0.0.1:${port}` }] }));
      const r = await agent(['-p', String(burner.pid), '--interval', '1s', '-d', '2500ms', '--config', cfg], { OTEL_SERVICE_NAME: 'checkout' });
      assert.equal(r.code, 0, r.stderr);
      assert.ok(series.length >= 2, `${series.length} series`);
      for (const s of series) {
        assert.equal(s.labels.__name__, 'flamewire');
        assert.equal(s.labels.process_pid, String(burner.pid));
        assert.equal(s.labels.service_name, 'checkout');
        assert.equal(s.labels.process_executable_path, burnerPath);
        assert.ok(s.functions.has('agent_burn'));
      }
    } finally {
      server.forceShutdown();
    }
  });

  it('refuses bad settings with one line', async () => {
    for (const [args, env, want] of [
      [['--otlp-protocol', 'thrift'], {}, /--otlp-protocol 'thrift'/],
      [['--no-otlp'], {}, /nowhere to send/],
      [[], { OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }, /OTEL_EXPORTER_OTLP_PROTOCOL='http\/json'/],
      [['--queue-size', 'lots'], {}, /--queue-size 'lots'/],
      [['--config', '/nonexistent.json'], {}, /cannot read the config file \/nonexistent.json: ENOENT/],
    ] as const) {
      const r = await agent([...args], env);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr.trim(), want);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
  });
});
