// `flamewire agent` when its backend fails, against the real OpenTelemetry Collector
// (test/servers.ts) wherever the collector can play the fault: down when the agent starts,
// killed (SIGKILL) mid-run and started again on the same ports, stalled (SIGSTOP: the kernel
// still accepts connections and takes requests, nothing answers, so only the per-request
// deadline ends a call), away long enough for a small queue to overflow, and behind a TCP proxy
// that resets connections, answers garbage or trickles an answer before it lets requests through.
//
// RESOURCE_EXHAUSTED with RetryInfo comes from a gRPC server on loopback: the collector v0.162.0
// never sends it. Its OTLP receiver passes on the gRPC status of a pipeline error that carries
// one and answers every other error with UNAVAILABLE (INTERNAL if permanent), with no details
// (receiver/otlpreceiver/internal/errors: GetStatusFromError); the memory_limiter's refusal is a
// plain error, so UNAVAILABLE, and nothing in the core or in the file exporter makes a RetryInfo.
//
// The agent profiles one program (the 3:1 split workload) in windows of 1 s; each window is one
// request with one profile, known in the backend's output by its start time. Every test checks
// the books at a quiet moment (nothing queued), through /metrics: every window closed was sent
// or counted as dropped, and what was sent is exactly what arrived (a request the collector takes
// while stalled and answers too late arrives twice; a window counts once). Then SIGTERM: exit 0,
// and the agent's last summary agrees with what arrived. No assertion bounds a duration; waits
// give up only after PATIENCE_MS, well beyond the longest backoff.

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { QueueStats } from '../src/export/queue.js';
import { repoRoot, workDir } from './helpers.js';
import { otlpGrpcServer, Request, retryInfoStatus } from './otlp-official.js';
import { buildCollector, freePort, startAll, startCollector, type Collector } from './servers.js';
import { buildSplitWorkload } from './workloads.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('agent-faults');
const INTERVAL_MS = 1000;
/** The longest wait for something that must happen (a retry's backoff is capped at 30 s). */
const PATIENCE_MS = 90_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const nowNs = (): bigint => BigInt(Date.now()) * 1_000_000n;

/** A window as the backend got it: start and end, ns since the epoch. */
interface Window {
  start: bigint;
  end: bigint;
}

/** The distinct windows of OTLP requests (the collector's JSON lines, or decoded protobuf), oldest first. */
function windowsIn(requests: unknown[]): Window[] {
  const byStart = new Map<bigint, Window>();
  for (const r of requests as Array<{ resourceProfiles?: any[] }>) {
    for (const rp of r.resourceProfiles ?? []) {
      for (const sp of rp.scopeProfiles ?? []) {
        for (const p of sp.profiles ?? []) {
          const start = BigInt(p.timeUnixNano);
          byStart.set(start, { start, end: start + BigInt(p.durationNano ?? 0) });
        }
      }
    }
  }
  return [...byStart.values()].sort((a, b) => (a.start < b.start ? -1 : 1));
}

/** How far a window's end (monotonic clock) and the next one's start (wall clock) may disagree. */
const SLACK_NS = BigInt(INTERVAL_MS / 2) * 1_000_000n;
const INTERVAL_NS = BigInt(INTERVAL_MS) * 1_000_000n;

/** Where windows are missing: between two that do not follow each other. */
function gapsIn(ws: Window[]): Window[] {
  const gaps: Window[] = [];
  for (let i = 1; i < ws.length; i++) if (ws[i]!.start - ws[i - 1]!.end > SLACK_NS) gaps.push({ start: ws[i - 1]!.end, end: ws[i]!.start });
  return gaps;
}

/** JSON with bigints, for assertion messages. */
const show = (v: unknown): string => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? String(x) : x));

type Metrics = Array<{ name: string; labels: Record<string, string>; value: number }>;

function parseMetrics(text: string): Metrics {
  const out: Metrics = [];
  for (const line of text.split('\n')) {
    const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the series of `name` whose labels include `labels`. */
function metric(m: Metrics, name: string, labels: Record<string, string> = {}): number {
  return m.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
}

const QUEUE_DROPS = ['queue_full', 'refused', 'shutdown'];
/**
 * Windows the agent counted as dropped after it made them (the reasons of the export queues),
 * by one destination or by all; the per-destination counts add up to the total.
 */
function windowDrops(m: Metrics, sink?: string): number {
  const all = QUEUE_DROPS.reduce((n, reason) => n + metric(m, 'flamewire_dropped_total', { reason }), 0);
  const bySink = metric(m, 'flamewire_windows_dropped_total', sink === undefined ? {} : { sink });
  if (sink === undefined) assert.equal(bySink, all, 'drops by destination do not add up to the total');
  return bySink;
}

interface Summary {
  windows: number;
  sinks: Record<string, QueueStats>;
}

interface Agent {
  child: ChildProcess;
  /** Its JSON log lines so far. */
  logs(): Array<Record<string, any>>;
  scrape(): Promise<Metrics>;
  /** The status of GET /healthz (200 while windows keep closing). */
  health(): Promise<number>;
  /** Resident memory, KiB. */
  rssKiB(): number;
  /** Throws when it is no longer running. */
  alive(): void;
  /** SIGTERM: its exit status and the summary it logged. */
  stop(): Promise<{ code: number | null; summary: Summary; stderr: string }>;
  kill(): void;
}

/** Polls `cond` until it holds; fails after PATIENCE_MS, or at once when `agent` has died. */
async function until(what: string, cond: () => boolean | Promise<boolean>, agent?: Agent, everyMs = 200): Promise<void> {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    agent?.alive();
    if (await Promise.resolve().then(cond).catch(() => false)) return;
    if (Date.now() > deadline) assert.fail(`${what}: not within ${PATIENCE_MS} ms`);
    await sleep(everyMs);
  }
}

/** Starts the agent on `pid` with 1 s windows and /metrics on a free port; resolves once it is ready. */
async function startAgent(pid: number, args: string[]): Promise<Agent> {
  const port = await freePort();
  const child = spawn(process.execPath, [cli, 'agent', '-p', String(pid), '-F', '99', '--interval', `${INTERVAL_MS}ms`, '--metrics-address', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (err += String(d)));
  const closed = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const logs = () => out.split('\n').slice(0, -1).map((l) => JSON.parse(l) as Record<string, any>);
  const agent: Agent = {
    child,
    logs,
    scrape: async () => parseMetrics(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()),
    health: async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).status,
    rssKiB: () => Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]),
    alive: () => {
      if (child.exitCode !== null || child.signalCode !== null) assert.fail(`the agent exited (${child.exitCode ?? child.signalCode}): ${err.slice(-2000)}`);
    },
    stop: async () => {
      child.kill('SIGTERM');
      const code = await closed;
      return { code, summary: logs().find((l) => l.msg === 'agent stopped') as Summary, stderr: err };
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  await until('the agent is ready', async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, agent);
  return agent;
}

/** What arrived at each destination (by the agent's name of it). */
type Arrivals = Record<string, () => Window[]>;

/**
 * Waits for a quiet moment (nothing queued) at which the books balance for every destination:
 * windows closed = sent + dropped, and sent = the distinct windows that arrived (the same before
 * and after the scrape). Returns the metrics and the arrivals of that moment.
 */
async function settle(agent: Agent, sinks: Arrivals): Promise<{ m: Metrics; arrived: Record<string, Window[]> }> {
  let last = '';
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    agent.alive();
    const read = () => Object.fromEntries(Object.entries(sinks).map(([k, f]) => [k, f()]));
    const before = read();
    const m = await agent.scrape();
    const arrived = read();
    const windows = metric(m, 'flamewire_windows_total');
    const books = Object.keys(sinks).map((s) => ({
      sink: s,
      windows,
      sent: metric(m, 'flamewire_exports_total', { sink: s, outcome: 'ok' }),
      dropped: windowDrops(m, s),
      arrived: arrived[s]!.length,
      arrivedBefore: before[s]!.length,
    }));
    last = JSON.stringify({ queued: metric(m, 'flamewire_queue_bytes'), books });
    const balanced = books.every((b) => b.arrived === b.arrivedBefore && b.arrived === b.sent && b.windows === b.sent + b.dropped);
    if (metric(m, 'flamewire_queue_bytes') === 0 && balanced) return { m, arrived };
    if (Date.now() > deadline) assert.fail(`the books never balanced: ${last}`);
    await sleep(250);
  }
}

/** SIGTERM; then exit 0, every window closed is sent or dropped, and every window sent arrived. */
async function finish(agent: Agent, sinks: Arrivals): Promise<Summary> {
  const { code, summary, stderr } = await agent.stop();
  assert.equal(code, 0, stderr);
  for (const [name, arrived] of Object.entries(sinks)) {
    const s = summary.sinks[name]!;
    assert.ok(s, `no summary of ${name}: ${JSON.stringify(summary)}`);
    assert.equal(summary.windows, s.sent + s.droppedFull + s.droppedFinal + s.droppedShutdown, JSON.stringify(summary));
    await until(`${name}: the ${s.sent} windows sent are written out`, () => arrived().length >= s.sent);
    assert.equal(arrived().length, s.sent, name);
  }
  return summary;
}

/** The ports of a collector, for one that comes back in its place. */
const portsOf = (c: Collector) => ({ grpc: Number(c.grpc.split(':')[1]), http: Number(new URL(c.http).port) });

describe('agent when the backend fails', { timeout: 10 * 60_000 }, () => {
  let job: ChildProcess;
  before(async () => {
    job = spawn(buildSplitWorkload(dir), ['c', '3600'], { stdio: 'ignore' });
    await buildCollector();
  });
  after(() => job.kill('SIGKILL'));

  it('delivers the windows made while the collector was down once it is up, counting failed attempts as retries, not drops', async (t) => {
    const ports = { grpc: await freePort(), http: await freePort() };
    const endpoint = `http://127.0.0.1:${ports.grpc}`;
    const sink = `otlp grpc ${endpoint}`;
    const agent = await startAgent(job.pid!, ['--otlp-endpoint', endpoint]);
    t.after(() => agent.kill());
    let down: Metrics = [];
    await until('windows close and attempts fail while the collector is down', async () => {
      down = await agent.scrape();
      return metric(down, 'flamewire_windows_total') >= 3 && metric(down, 'flamewire_exports_total', { outcome: 'retry' }) >= 1;
    }, agent);
    assert.equal(metric(down, 'flamewire_exports_total', { outcome: 'ok' }), 0);
    assert.equal(windowDrops(down), 0);

    const upAt = nowNs();
    const collector = await startCollector({ name: 'agent-faults', ports });
    t.after(() => collector.stop());
    const arrivals = { [sink]: () => windowsIn(collector.received()) };
    const { m, arrived } = await settle(agent, arrivals);
    const w = arrived[sink]!;
    const madeWhileDown = w.filter((x) => x.end <= upAt).length;
    t.diagnostic(`${metric(down, 'flamewire_windows_total')} windows and ${metric(down, 'flamewire_exports_total', { outcome: 'retry' })} failed attempts while down; then ${w.length} windows arrived (${madeWhileDown} made while down), ${metric(m, 'flamewire_exports_total', { outcome: 'retry' })} retries in all`);
    assert.ok(madeWhileDown >= metric(down, 'flamewire_windows_total'), `${madeWhileDown} windows made while down arrived`);
    assert.deepEqual(gapsIn(w), []);
    assert.equal(windowDrops(m), 0);
    assert.equal(metric(m, 'flamewire_exports_total', { outcome: 'failed' }), 0);
    await finish(agent, arrivals);
  });

  it('keeps running when the collector is killed, and delivers the windows of the outage after it restarts', async (t) => {
    const first = await startCollector({ name: 'agent-faults' });
    t.after(() => first.stop());
    const endpoint = `http://${first.grpc}`;
    const sink = `otlp grpc ${endpoint}`;
    const agent = await startAgent(job.pid!, ['--otlp-endpoint', endpoint]);
    t.after(() => agent.kill());
    const before = () => windowsIn(first.received()).length;
    await until('two windows arrive', () => before() >= 2, agent);
    // Killed just after it wrote a window out: what it acknowledged is on disk, and the next
    // window is most of an interval away.
    const n = before();
    await until('the next window arrives', () => before() > n, agent, 20);
    first.child.kill('SIGKILL');
    const killedAt = nowNs();
    await first.stop();
    const beforeKill = before();
    let down: Metrics = [];
    await until('windows close and attempts fail while the collector is dead', async () => {
      down = await agent.scrape();
      return metric(down, 'flamewire_exports_total', { outcome: 'retry' }) >= 2;
    }, agent);
    await sleep(4 * INTERVAL_MS);
    assert.equal(await agent.health(), 200);

    const restartAt = nowNs();
    const second = await startCollector({ name: 'agent-faults', ports: portsOf(first) });
    t.after(() => second.stop());
    const arrivals = { [sink]: () => windowsIn([...first.received(), ...second.received()]) };
    const { m, arrived } = await settle(agent, arrivals);
    const w = arrived[sink]!;
    const outage = w.filter((x) => x.start >= killedAt && x.end <= restartAt);
    t.diagnostic(`${beforeKill} windows before the kill, ${outage.length} made during the outage; ${w.length} arrived in all, ${metric(m, 'flamewire_exports_total', { outcome: 'retry' })} retries, ${windowDrops(m)} dropped`);
    assert.ok(outage.length >= 3, `${outage.length} windows of the outage arrived`);
    assert.ok(windowsIn(second.received()).length >= outage.length);
    assert.deepEqual(gapsIn(w), []);
    assert.equal(windowDrops(m), 0);
    await finish(agent, arrivals);
  });

  it('ends calls to a stalled collector at the deadline, over gRPC and HTTP, and delivers once it answers again', async (t) => {
    const [a, b] = await startAll<[Collector, Collector]>(startCollector({ name: 'agent-faults' }), startCollector({ name: 'agent-faults' }));
    const resume = () => [a, b].forEach((c) => c.child.kill('SIGCONT'));
    t.after(async () => {
      resume();
      await Promise.all([a.stop(), b.stop()]);
    });
    const cfg = join(dir, 'stall.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        exporters: [
          { type: 'otlp', protocol: 'grpc', endpoint: `http://${a.grpc}`, timeout: '500ms' },
          { type: 'otlp', protocol: 'http/protobuf', endpoint: b.http, timeout: '500ms' },
        ],
      }),
    );
    const grpcSink = `otlp grpc http://${a.grpc}`;
    const httpSink = `otlp http/protobuf ${b.http}`;
    const arrivals = { [grpcSink]: () => windowsIn(a.received()), [httpSink]: () => windowsIn(b.received()) };
    const agent = await startAgent(job.pid!, ['--config', cfg]);
    t.after(() => agent.kill());
    await until('two windows arrive at each collector', () => Object.values(arrivals).every((f) => f().length >= 2), agent);

    // Stopped, each still accepts connections (the kernel does) and takes requests; nothing answers.
    a.child.kill('SIGSTOP');
    b.child.kill('SIGSTOP');
    const stalledAt = nowNs();
    const w0 = metric(await agent.scrape(), 'flamewire_windows_total');
    let stalled: Metrics = [];
    await until('deadlines pass on both destinations while windows keep closing', async () => {
      stalled = await agent.scrape();
      return (
        metric(stalled, 'flamewire_windows_total') >= w0 + 4 &&
        [grpcSink, httpSink].every((sink) => metric(stalled, 'flamewire_exports_total', { sink, outcome: 'retry' }) >= 2)
      );
    }, agent);
    assert.equal(await agent.health(), 200);
    const failed = agent.logs().filter((l) => l.msg === 'export failed');
    assert.ok(failed.some((l) => l.sink === grpcSink && l.code === grpc.status.DEADLINE_EXCEEDED && l.retryable), JSON.stringify(failed));
    assert.ok(failed.some((l) => l.sink === httpSink && /no answer within 500 ms/.test(l.message) && l.retryable), JSON.stringify(failed));
    assert.equal(windowDrops(stalled), 0);

    const resumedAt = nowNs();
    resume();
    const { m, arrived } = await settle(agent, arrivals);
    for (const sink of [grpcSink, httpSink]) {
      const w = arrived[sink]!;
      const stall = w.filter((x) => x.start >= stalledAt && x.end <= resumedAt);
      t.diagnostic(`${sink}: ${metric(stalled, 'flamewire_exports_total', { sink, outcome: 'retry' })} deadlines during the stall, ${stall.length} windows of the stall arrived, ${w.length} in all`);
      assert.ok(stall.length >= 3, `${sink}: ${stall.length} windows of the stall arrived`);
      assert.deepEqual(gapsIn(w), [], sink);
    }
    assert.equal(windowDrops(m), 0);
    await finish(agent, arrivals);
  });

  it('waits as long as RetryInfo asks after RESOURCE_EXHAUSTED, then delivers; without RetryInfo the window is refused and counted', async (t) => {
    const DELAY_MS = 2500;
    // Calls 0 and 1: RESOURCE_EXHAUSTED with RetryInfo; call 4: RESOURCE_EXHAUSTED alone (final);
    // every other call is accepted.
    const calls: Array<{ at: number; window: Window; code: grpc.status }> = [];
    const { server, port } = await otlpGrpcServer((request, cb) => {
      const n = calls.length;
      const code = n < 2 || n === 4 ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.OK;
      calls.push({ at: Date.now(), window: windowsIn([Request.toObject(Request.decode(request), { longs: String })])[0]!, code });
      if (code === grpc.status.OK) return cb(null, {});
      const metadata = new grpc.Metadata();
      if (n < 2) metadata.set('grpc-status-details-bin', retryInfoStatus(code, DELAY_MS));
      cb({ code, details: 'over quota', metadata } as grpc.ServiceError);
    });
    t.after(() => server.forceShutdown());
    const endpoint = `http://127.0.0.1:${port}`;
    const sink = `otlp grpc ${endpoint}`;
    const accepted = () => windowsIn(calls.filter((c) => c.code === grpc.status.OK).map((c) => ({ resourceProfiles: [{ scopeProfiles: [{ profiles: [{ timeUnixNano: c.window.start, durationNano: c.window.end - c.window.start }] }] }] })));
    const agent = await startAgent(job.pid!, ['--otlp-endpoint', endpoint]);
    t.after(() => agent.kill());
    await until('six calls', () => calls.length >= 6, agent);
    const { m, arrived } = await settle(agent, { [sink]: accepted });

    // The first window: refused twice, each time tried again no sooner than RetryInfo said (the
    // backoff alone would wait at most 1 s, then 2 s), then accepted.
    const [c0, c1, c2] = calls as [typeof calls[0], typeof calls[0], typeof calls[0]];
    assert.deepEqual([c0.window.start, c1.window.start], [c2.window.start, c2.window.start]);
    const waits = [c1.at - c0.at, c2.at - c1.at];
    t.diagnostic(`waits after RESOURCE_EXHAUSTED with a RetryInfo of ${DELAY_MS} ms: ${waits.join(', ')} ms`);
    for (const w of waits) assert.ok(w >= DELAY_MS, `tried again after ${w} ms`);
    // The fifth call's window: refused for good, never tried again, counted as refused.
    const refused = calls[4]!.window;
    assert.equal(calls.filter((c) => c.window.start === refused.start).length, 1);
    assert.equal(metric(m, 'flamewire_dropped_total', { reason: 'refused' }), 1);
    assert.equal(metric(m, 'flamewire_exports_total', { sink, outcome: 'failed' }), 1);
    assert.equal(metric(m, 'flamewire_exports_total', { sink, outcome: 'retry' }), 2);
    // What arrived: every window but that one.
    const gaps = gapsIn(arrived[sink]!);
    assert.equal(gaps.length, 1, show(gaps));
    assert.ok(gaps[0]!.start - SLACK_NS <= refused.start && refused.end <= gaps[0]!.end + SLACK_NS, show({ gaps, refused }));
    t.diagnostic(`${arrived[sink]!.length} windows accepted, 1 refused, ${calls.length} calls`);
    await finish(agent, { [sink]: accepted });
  });

  it('drops the oldest windows, counted, when the queue fills while the collector is away; the newest arrive; memory stays flat', async (t) => {
    const QUEUE_BYTES = 4096; // a window of the workload is 1 to 1.5 KiB
    const first = await startCollector({ name: 'agent-faults' });
    t.after(() => first.stop());
    const sink = `otlp http/protobuf ${first.http}`;
    const agent = await startAgent(job.pid!, ['--otlp-protocol', 'http/protobuf', '--otlp-endpoint', first.http, '--queue-size', String(QUEUE_BYTES)]);
    t.after(() => agent.kill());
    await until('two windows arrive', () => windowsIn(first.received()).length >= 2, agent);
    const awayAt = nowNs();
    await first.stop(); // SIGTERM: it writes out what it took

    // Away: the queue fills, then every new window pushes the oldest out.
    const samples: Array<{ queued: number; dropped: number; rssKiB: number }> = [];
    const w0 = metric(await agent.scrape(), 'flamewire_windows_total');
    await until('windows are dropped from the full queue', async () => {
      const m = await agent.scrape();
      samples.push({ queued: metric(m, 'flamewire_queue_bytes'), dropped: metric(m, 'flamewire_dropped_total', { reason: 'queue_full' }), rssKiB: agent.rssKiB() });
      return metric(m, 'flamewire_windows_total') >= w0 + 10 && samples.at(-1)!.dropped >= 4;
    }, agent, 500);
    const second = await startCollector({ name: 'agent-faults', ports: portsOf(first) });
    t.after(() => second.stop());
    const arrivals = { [sink]: () => windowsIn([...first.received(), ...second.received()]) };
    const { m, arrived } = await settle(agent, arrivals);
    const w = arrived[sink]!;

    // Bounded: never more queued than the queue holds.
    const maxQueued = Math.max(...samples.map((s) => s.queued));
    assert.ok(maxQueued <= QUEUE_BYTES, `${maxQueued} bytes queued`);
    // The oldest windows of the outage are the ones missing (one gap, from the outage on), as
    // many as were counted; the newest, from the gap to the last window, arrived. (Which ones
    // are newest when delivery resumes depends on the backoff, so no time bounds the gap's end.)
    const dropped = metric(m, 'flamewire_dropped_total', { reason: 'queue_full' });
    assert.ok(dropped >= 4, `${dropped} dropped`);
    assert.equal(windowDrops(m), dropped);
    const gaps = gapsIn(w);
    assert.equal(gaps.length, 1, show({ gaps, w }));
    assert.ok(gaps[0]!.start >= awayAt - 2n * INTERVAL_NS, show({ gaps, awayAt }));
    const newest = w.filter((x) => x.start >= gaps[0]!.end);
    assert.ok(newest.length >= 2, `${newest.length} windows after the gap`);
    // Memory: what the agent holds does not grow with the windows it drops.
    const full = samples.find((s) => s.dropped > 0)!;
    const rss = [full.rssKiB, agent.rssKiB()];
    t.diagnostic(`queue at most ${maxQueued} of ${QUEUE_BYTES} bytes; ${dropped} windows dropped, ${newest.length} newest after them, ${w.length} arrived in all; RSS ${rss[0]} KiB at the first drop, ${rss[1]} KiB ${dropped - full.dropped} drops later`);
    assert.ok(rss[1]! < rss[0]! * 1.25, `RSS grew from ${rss[0]} to ${rss[1]} KiB`);
    await finish(agent, arrivals);
  });

  it('survives a backend that resets connections, answers garbage, trickles, and delivers once a real collector is behind it', async (t) => {
    const [a, b] = await startAll<[Collector, Collector]>(startCollector({ name: 'agent-faults' }), startCollector({ name: 'agent-faults' }));
    t.after(() => Promise.all([a.stop(), b.stop()]));
    // In front of each collector a TCP proxy that first resets every connection, then answers
    // whatever comes with bytes that are neither HTTP/1.1 nor HTTP/2, then with an HTTP/1.1
    // answer that trickles in a byte at a time (garbage to gRPC), and at last passes through.
    let mode: 'reset' | 'garbage' | 'trickle' | 'pass' = 'reset';
    const sockets = new Set<Socket>();
    const proxy = async (port: number): Promise<Server> => {
      const server = createTcpServer((c) => {
        sockets.add(c);
        c.on('close', () => sockets.delete(c));
        c.on('error', () => undefined);
        if (mode === 'reset') return void c.resetAndDestroy();
        if (mode === 'garbage') return void c.once('data', () => c.end(randomBytes(256)));
        if (mode === 'trickle') {
          return void c.once('data', () => {
            c.write('HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000\r\n\r\n');
            const drip = setInterval(() => c.write('\0'), 100);
            c.on('close', () => clearInterval(drip));
          });
        }
        const up = connect(port, '127.0.0.1');
        sockets.add(up);
        up.on('close', () => sockets.delete(up));
        up.on('error', () => c.destroy());
        c.on('error', () => up.destroy());
        c.pipe(up).pipe(c);
      });
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
      return server;
    };
    const [pa, pb] = await Promise.all([proxy(portsOf(a).grpc), proxy(portsOf(b).http)]);
    t.after(() => {
      for (const s of sockets) s.destroy();
      pa.close();
      pb.close();
    });
    const grpcEndpoint = `http://127.0.0.1:${(pa.address() as AddressInfo).port}`;
    const httpEndpoint = `http://127.0.0.1:${(pb.address() as AddressInfo).port}`;
    const cfg = join(dir, 'garbage.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        exporters: [
          { type: 'otlp', protocol: 'grpc', endpoint: grpcEndpoint, timeout: '1s' },
          { type: 'otlp', protocol: 'http/protobuf', endpoint: httpEndpoint, timeout: '1s' },
        ],
      }),
    );
    const grpcSink = `otlp grpc ${grpcEndpoint}`;
    const httpSink = `otlp http/protobuf ${httpEndpoint}`;
    const agent = await startAgent(job.pid!, ['--config', cfg]);
    t.after(() => agent.kill());

    const retries = async () => {
      const m = await agent.scrape();
      return [grpcSink, httpSink].map((sink) => metric(m, 'flamewire_exports_total', { sink, outcome: 'retry' }));
    };
    await until('attempts fail on reset connections', async () => (await retries()).every((n) => n >= 1), agent);
    const afterResets = await retries();
    mode = 'garbage';
    for (const s of sockets) s.destroy(); // a kept-alive connection would bypass the new mode
    await until('attempts fail on garbage', async () => (await retries()).every((n, i) => n > afterResets[i]!), agent);
    const afterGarbage = await retries();
    mode = 'trickle';
    for (const s of sockets) s.destroy();
    await until('attempts fail on a trickle', async () => (await retries()).every((n, i) => n > afterGarbage[i]!), agent);
    const afterTrickle = await retries();
    const failed = agent.logs().filter((l) => l.msg === 'export failed');
    assert.ok(failed.every((l) => l.retryable), JSON.stringify(failed.filter((l) => !l.retryable)));
    // The trickle ends at the request's deadline, long before its 1000 bytes are in.
    assert.ok(failed.some((l) => l.sink === httpSink && l.message === 'no answer within 1000 ms'), JSON.stringify(failed));
    mode = 'pass';
    for (const s of sockets) s.destroy();

    const arrivals = { [grpcSink]: () => windowsIn(a.received()), [httpSink]: () => windowsIn(b.received()) };
    const { m, arrived } = await settle(agent, arrivals);
    for (const [i, sink] of [grpcSink, httpSink].entries()) {
      t.diagnostic(`${sink}: ${afterResets[i]} failed attempts on resets, ${afterGarbage[i]! - afterResets[i]!} on garbage, ${afterTrickle[i]! - afterGarbage[i]!} on a trickle; then ${arrived[sink]!.length} windows arrived`);
      assert.deepEqual(gapsIn(arrived[sink]!), [], sink);
      assert.ok(arrived[sink]!.length >= 3, sink);
    }
    assert.equal(windowDrops(m), 0);
    await finish(agent, arrivals);
  });
});
