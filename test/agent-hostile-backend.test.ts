// `flamewire agent` against backends that misbehave on purpose, all on loopback, with the real
// agent process (BPF and all) profiling a small program that burns a tenth of a CPU:
//
// - an HTTP backend that answers 429 with Retry-After: 0 to everything (before: ~600 requests
//   and ~600 log lines a second), and backends whose delay is huge (Retry-After of 3000 years,
//   a gRPC RESOURCE_EXHAUSTED whose RetryInfo says 10^12 s; before: the timer overflowed and
//   fired after 1 ms);
// - backends that answer a gigabyte, generated as it is sent (an HTTP success, an HTTP error)
//   and a gRPC answer of 64 MiB (before: 2 GB of RSS);
// - settings that cannot work: a token with a trailing newline, endpoints that are not URLs or
//   have port 70000, missing or non-PEM TLS files (refused at start, in one line, status 2, the
//   secret never shown); servers that echo the token in their errors (redacted);
// - backends that take connections and calls and never answer, then SIGTERM or SIGHUP (before:
//   SIGTERM took 13.5 s with a 5 s shutdown timeout; SIGHUP killed the agent at once).
//
// No assertion bounds a duration by the clock alone: request counts are bounded by what the
// backoff's floor allows in the time the agent ran, memory by an absolute figure far below what
// the old code reached, and the shutdown by the configured timeout with a wide margin, together
// with what the servers saw (their connections closed) and what the agent counted.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { QueueStats } from '../src/export/queue.js';
import { buildC, repoRoot, workDir } from './helpers.js';
import { otlpGrpcServer, rawGrpcServer, retryInfoStatus } from './otlp-official.js';

const cli = join(repoRoot, 'dist', 'src', 'cli.js');
const dir = workDir('agent-hostile-backend');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** The longest wait for something that must happen. */
const PATIENCE_MS = 60_000;
const INTERVAL = '500ms';
const EXPORT_PATH = '/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export';

/** Burns 10 ms of CPU every 100 ms: windows with samples, at little cost to a shared machine. */
const BURNER = `
#include <time.h>
volatile unsigned long sink;
__attribute__((noinline)) void hostile_burn(void) { for (unsigned long i = 0; i < 100000; i++) sink += i; }
int main(void) {
  struct timespec t0, t, nap = {0, 90 * 1000000};
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do { hostile_burn(); clock_gettime(CLOCK_MONOTONIC, &t); } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 10);
    nanosleep(&nap, 0);
  }
}
`;

async function until(what: string, cond: () => boolean, agent?: RunningAgent): Promise<void> {
  const end = Date.now() + PATIENCE_MS;
  while (!cond()) {
    agent?.alive();
    if (Date.now() > end) assert.fail(`${what}: not within ${PATIENCE_MS} ms`);
    await sleep(50);
  }
}

interface Summary {
  reason: string;
  windows: number;
  sinks: Record<string, QueueStats>;
}

interface RunningAgent {
  child: ChildProcess;
  startedAt: number;
  logs(): Array<Record<string, any>>;
  stdout(): string;
  stderr(): string;
  alive(): void;
  /** The process's peak resident memory so far (VmHWM), MiB. */
  peakRssMiB(): number;
  /** Sends `signal`; resolves with the exit status, the summary and how long it took. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; summary: Summary; ms: number }>;
  kill(): void;
}

/** The agent on the burner, started: resolves once it has logged 'agent started'. */
async function startAgent(pid: number, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunningAgent> {
  const child = spawn(process.execPath, [cli, 'agent', '-p', String(pid), '-F', '99', '--interval', INTERVAL, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (err += String(d)));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  const logs = () => out.split('\n').slice(0, -1).map((l) => JSON.parse(l) as Record<string, any>);
  const agent: RunningAgent = {
    child,
    startedAt: 0,
    logs,
    stdout: () => out,
    stderr: () => err,
    alive: () => {
      if (child.exitCode !== null || child.signalCode !== null) assert.fail(`the agent exited (${child.exitCode ?? child.signalCode}): ${err.slice(-2000)}${out.slice(-2000)}`);
    },
    peakRssMiB: () => Number(/^VmHWM:\s+(\d+)/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024,
    stop: async (signal = 'SIGTERM') => {
      const t = Date.now();
      child.kill(signal);
      const end = await closed;
      return { ...end, ms: Date.now() - t, summary: logs().find((l) => l.msg === 'agent stopped') as Summary };
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
  await until('the agent starts', () => logs().some((l) => l.msg === 'agent started'), agent);
  agent.startedAt = Date.now();
  return agent;
}

/** Runs the agent with settings it must refuse: its exit status and what it printed. */
function refused(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, 'agent', '--interval', INTERVAL, '-d', '1s', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** One clear line on stderr, nothing on stdout, status 2; and `secret` nowhere. */
function assertRefused(r: { code: number | null; stdout: string; stderr: string }, want: RegExp, secret?: string): void {
  const all = r.stdout + r.stderr;
  if (secret !== undefined) {
    for (const form of [secret, secret.trim(), encodeURIComponent(secret)]) assert.ok(!all.includes(form), `the secret is shown: ${all}`);
  }
  assert.equal(r.code, 2, all);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^flamewire: [^\n]+\n$/, `not one line: ${r.stderr}`);
  assert.match(r.stderr, want);
}

/** An HTTP server on loopback; `handle` answers each request (its body read first). */
async function httpServer(handle: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ server: Server; url: string; requests: number }> {
  const s = { server: createServer(), url: '', requests: 0 };
  s.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      s.requests++;
      handle(req, res);
    });
  });
  await new Promise<void>((ok) => s.server.listen(0, '127.0.0.1', ok));
  s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
  return s;
}

function closeServer(s: Server): void {
  s.closeAllConnections();
  s.close();
}

/**
 * Streams `total` bytes of `status` without holding them (`chunked`: without a length), and
 * counts what was written until the connection went.
 */
function streamHuge(res: ServerResponse, status: number, total: number, sent: { bytes: number; closedEarly: boolean }, chunked = false): void {
  res.writeHead(status, { 'content-type': 'application/octet-stream', ...(chunked ? {} : { 'content-length': String(total) }) });
  const chunk = Buffer.alloc(1 << 20, 'x');
  const pump = () => {
    while (sent.bytes < total && !res.destroyed) {
      sent.bytes += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => {
    if (sent.bytes < total) sent.closedEarly = true;
  });
  pump();
}

const failedLines = (a: RunningAgent, sink: string) => a.logs().filter((l) => l.msg === 'export failed' && l.sink === sink);

describe('agent with a hostile backend', { timeout: 10 * 60_000 }, () => {
  let burner: ChildProcess;
  before(() => {
    burner = spawn(buildC(dir, 'hostile-burner', BURNER, ['-O1']), [], { stdio: 'ignore' });
  });
  after(() => burner.kill('SIGKILL'));

  it('asks a backend that answers 429 with Retry-After: 0 no faster than its backoff allows, and logs the failures once per 10 s with a count', async (t) => {
    const s = await httpServer((_req, res) => {
      res.writeHead(429, { 'retry-after': '0' });
      res.end();
    });
    t.after(() => closeServer(s.server));
    const sink = `otlp http/protobuf ${s.url}`;
    const agent = await startAgent(burner.pid!, ['--otlp-protocol', 'http/protobuf', '--otlp-endpoint', s.url, '--shutdown-timeout', '1s']);
    t.after(() => agent.kill());
    await until('the first refusal', () => s.requests >= 1, agent);
    const first = Date.now();
    await sleep(6000);
    const ranS = (Date.now() - first) / 1000;
    const requests = s.requests;
    const { code, summary } = await agent.stop();
    assert.equal(code, 0, agent.stderr());
    const lines = failedLines(agent, sink);
    t.diagnostic(`${requests} requests and ${lines.length} 'export failed' lines in ${ranS.toFixed(1)} s; ${summary.sinks[sink]!.retries} failures counted; waits ${lines.map((l) => l.retryInMs).join(', ')} ms`);
    // The backoff's floor is half a second and grows: never more than two requests a second.
    assert.ok(requests <= 2 + 2 * ranS, `${requests} requests in ${ranS} s`);
    // Every wait is the backoff's, however small the server's delay.
    for (const l of lines) assert.ok(l.retryInMs >= 500, JSON.stringify(l));
    // One line per 10 s per kind of failure, plus the last one held back (at shutdown), and
    // the lines account for every failure.
    assert.ok(lines.length <= 3, JSON.stringify(lines));
    assert.equal(lines.reduce((n, l) => n + 1 + (l.suppressed ?? 0), 0), summary.sinks[sink]!.retries);
    assert.ok(s.requests >= summary.sinks[sink]!.retries);
    assert.equal(summary.sinks[sink]!.sent, 0);
  });

  it('waits at most 5 minutes, not 1 ms, after a huge Retry-After (HTTP) or RetryInfo (gRPC RESOURCE_EXHAUSTED)', async (t) => {
    const h = await httpServer((_req, res) => {
      res.writeHead(429, { 'retry-after': '99999999999' });
      res.end();
    });
    t.after(() => closeServer(h.server));
    let calls = 0;
    const g = await otlpGrpcServer((_request, cb) => {
      calls++;
      const metadata = new grpc.Metadata();
      metadata.set('grpc-status-details-bin', retryInfoStatus(grpc.status.RESOURCE_EXHAUSTED, 1e15));
      cb({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'come back in 30000 years', metadata } as grpc.ServiceError);
    });
    t.after(() => g.server.forceShutdown());
    const cfg = join(dir, 'huge-delay.json');
    const grpcEndpoint = `http://127.0.0.1:${g.port}`;
    writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'http/protobuf', endpoint: h.url }, { type: 'otlp', protocol: 'grpc', endpoint: grpcEndpoint }] }));
    const agent = await startAgent(burner.pid!, ['--config', cfg, '--shutdown-timeout', '1s']);
    t.after(() => agent.kill());
    await until('a refusal from each', () => h.requests >= 1 && calls >= 1, agent);
    await sleep(3000);
    const during = [h.requests, calls];
    const { code, summary } = await agent.stop();
    assert.equal(code, 0, agent.stderr());
    t.diagnostic(`requests while running: HTTP ${during[0]}, gRPC ${during[1]}; at shutdown ${h.requests - during[0]!}, ${calls - during[1]!} more`);
    // One request each while running: the retry waits its 5 minutes (the shutdown tries once more).
    assert.deepEqual(during, [1, 1]);
    for (const sink of [`otlp http/protobuf ${h.url}`, `otlp grpc ${grpcEndpoint}`]) {
      const l = failedLines(agent, sink)[0]!;
      assert.ok(l, `no 'export failed' for ${sink}`);
      assert.equal(l.retryInMs, 5 * 60_000, JSON.stringify(l));
      assert.ok(summary.sinks[sink]!.droppedShutdown >= 1, JSON.stringify(summary));
    }
    assert.doesNotMatch(agent.stderr(), /TimeoutOverflowWarning/);
  });

  it('reads a few bytes of a 1 GB answer (HTTP success and error) and refuses a 64 MiB gRPC one, cutting the connections; memory stays small', async (t) => {
    const GB = 1 << 30;
    const okSent = { bytes: 0, closedEarly: false };
    const errSent = { bytes: 0, closedEarly: false };
    const ok = await httpServer((_req, res) => streamHuge(res, 200, GB, okSent, true));
    const bad = await httpServer((_req, res) => streamHuge(res, 503, GB, errSent));
    t.after(() => [ok, bad].forEach((s) => closeServer(s.server)));
    let grpcCalls = 0;
    const g = await rawGrpcServer(EXPORT_PATH, Buffer.alloc(64 << 20, 1), (_request, cb) => {
      grpcCalls++;
      cb(null, {});
    });
    t.after(() => g.server.forceShutdown());
    const grpcEndpoint = `http://127.0.0.1:${g.port}`;
    const cfg = join(dir, 'huge-answers.json');
    writeFileSync(
      cfg,
      JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'http/protobuf', endpoint: ok.url }, { type: 'otlp', protocol: 'http/protobuf', endpoint: bad.url }, { type: 'otlp', protocol: 'grpc', endpoint: grpcEndpoint }] }),
    );
    const agent = await startAgent(burner.pid!, ['--config', cfg]);
    t.after(() => agent.kill());
    const [okSink, badSink, grpcSink] = [`otlp http/protobuf ${ok.url}`, `otlp http/protobuf ${bad.url}`, `otlp grpc ${grpcEndpoint}`];
    await until('two answers from each', () => ok.requests >= 2 && bad.requests >= 2 && grpcCalls >= 2, agent);
    await until('the connections cut', () => okSent.closedEarly && errSent.closedEarly, agent);
    const peak = agent.peakRssMiB();
    const { code, summary } = await agent.stop();
    assert.equal(code, 0, agent.stderr());
    t.diagnostic(`peak RSS ${peak.toFixed(0)} MiB; written before the cut: ${(okSent.bytes / 2 ** 20).toFixed(0)} MiB (200), ${(errSent.bytes / 2 ** 20).toFixed(0)} MiB (503); ${grpcCalls} gRPC calls`);
    // Before: 2 GB. The agent profiling one small program stays near 100 MiB.
    assert.ok(peak < 300, `peak RSS ${peak} MiB`);
    // What the servers could write before the cut is what the sockets buffer, not the gigabyte.
    assert.ok(okSent.bytes < 128 << 20 && errSent.bytes < 128 << 20, JSON.stringify({ okSent, errSent }));
    // A success is a success (its body not read); an error is retried with a few bytes of its body in the log.
    assert.ok(summary.sinks[okSink]!.sent >= 2, JSON.stringify(summary));
    const err = failedLines(agent, badSink)[0]!;
    assert.equal(err.code, 503);
    assert.ok(err.message.length < 400, err.message);
    // gRPC: the channel takes 64 KiB; the answer ends the call, final (the server had answered).
    const g0 = failedLines(agent, grpcSink)[0]!;
    assert.equal(g0.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(g0.message, /larger than max/);
    assert.equal(g0.retryable, false);
    assert.ok(summary.sinks[grpcSink]!.droppedFinal >= 2);
  });

  it('refuses a token with a trailing newline at start, naming the header and never showing its value', async () => {
    const secret = `s3cr3t-${randomBytes(8).toString('hex')}\n`;
    const enc = encodeURIComponent(secret);
    assertRefused(await refused([], { OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${enc}` }), /OTEL_EXPORTER_OTLP_HEADERS: the value of header authorization has .*newline at the end.*not shown/, secret);
    assertRefused(await refused(['--otlp-header', `x-api-key=${enc}`]), /--otlp-header: the value of header x-api-key/, secret);
    const env = { TOKEN: secret };
    const cases: Array<[unknown, RegExp]> = [
      [{ type: 'otlp', endpoint: 'http://127.0.0.1:4317', headers: { authorization: 'Bearer ${TOKEN}' } }, /exporters\[0\]\.headers: the value of header authorization/],
      [{ type: 'pyroscope', endpoint: 'http://127.0.0.1:4040', bearerToken: '${TOKEN}' }, /exporters\[0\]\.bearerToken has .*newline/],
      [{ type: 'pyroscope', endpoint: 'http://127.0.0.1:4040', basicAuth: { username: 'u', password: '${TOKEN}' } }, /exporters\[0\]\.basicAuth\.password has .*newline/],
    ];
    for (const [exporter, want] of cases) {
      const cfg = join(dir, 'bad-token.json');
      writeFileSync(cfg, JSON.stringify({ exporters: [exporter] }));
      assertRefused(await refused(['--config', cfg], env), want, secret);
    }
    // A header without '=' is not quoted either (it may be the token itself).
    assertRefused(await refused([], { OTEL_EXPORTER_OTLP_HEADERS: 'Bearer s3cr3t-no-key' }), /OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value/, 's3cr3t-no-key');
  });

  it('never logs a token a server quotes back in its error, over HTTP or gRPC', async (t) => {
    const token = `tok-${randomBytes(12).toString('hex')}`;
    const h = await httpServer((req, res) => {
      res.writeHead(401, { 'content-type': 'text/plain' });
      res.end(`bad credentials: ${req.headers.authorization}`);
    });
    t.after(() => closeServer(h.server));
    const g = await otlpGrpcServer((_request, cb) => cb({ code: grpc.status.UNAUTHENTICATED, details: `token Bearer ${token} is not valid` } as grpc.ServiceError));
    t.after(() => g.server.forceShutdown());
    const cfg = join(dir, 'echo-token.json');
    writeFileSync(
      cfg,
      JSON.stringify({
        exporters: [
          { type: 'otlp', protocol: 'http/protobuf', endpoint: h.url, headers: { authorization: 'Bearer ${TOKEN}' } },
          { type: 'otlp', protocol: 'grpc', endpoint: `http://127.0.0.1:${g.port}`, headers: { authorization: 'Bearer ${TOKEN}' } },
          { type: 'pyroscope', endpoint: h.url, bearerToken: '${TOKEN}' },
        ],
      }),
    );
    const agent = await startAgent(burner.pid!, ['--config', cfg], { TOKEN: token });
    t.after(() => agent.kill());
    await until('refusals from each', () => agent.logs().filter((l) => l.msg === 'export failed').length >= 3, agent);
    const { code } = await agent.stop();
    assert.equal(code, 0);
    const all = agent.stdout() + agent.stderr();
    assert.ok(!all.includes(token), 'the token is in the logs');
    const failed = agent.logs().filter((l) => l.msg === 'export failed');
    assert.ok(failed.some((l) => l.code === 401 && /bad credentials: \[redacted\]/.test(l.message)), JSON.stringify(failed));
    assert.ok(failed.some((l) => l.code === grpc.status.UNAUTHENTICATED && /\[redacted\]/.test(l.message)), JSON.stringify(failed));
  });

  it('refuses endpoints that are not URLs or have port 70000, in one line with status 2', async () => {
    const cfg = join(dir, 'bad-endpoint.json');
    writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'http/protobuf', endpoint: 'http://127.0.0.1:70000' }] }));
    for (const [args, env, want] of [
      [[], { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' }, /OTEL_EXPORTER_OTLP_ENDPOINT='not a url': not a URL/],
      [[], { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://localhost:70000' }, /OTEL_EXPORTER_OTLP_ENDPOINT='http:\/\/localhost:70000': port 70000 is not a port/],
      [[], { OTEL_EXPORTER_OTLP_PROFILES_PROTOCOL: 'http/protobuf', OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT: 'localhost:4318/v1development/profiles' }, /OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT=.*not an http:\/\/ or https:\/\/ URL/],
      [[], { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:99999' }, /port 99999 is not a port/],
      [['--otlp-endpoint', 'http://localhost:70000'], {}, /--otlp-endpoint='http:\/\/localhost:70000': port 70000/],
      [['--otlp-endpoint', 'http://user:pw-secret@localhost:4317'], {}, /--otlp-endpoint='http:\/\/…@localhost:4317': has a user name or password/],
      [['--config', cfg], {}, /exporters\[0\]\.endpoint='http:\/\/127\.0\.0\.1:70000': port 70000/],
    ] as Array<[string[], NodeJS.ProcessEnv, RegExp]>) {
      assertRefused(await refused(args, env), want, 'pw-secret');
    }
  });

  it('refuses missing or non-PEM TLS files at start, and counts a CA file gone later as final over both protocols', async (t) => {
    const notPem = join(dir, 'not-a-cert.pem');
    writeFileSync(notPem, 'hello\n');
    const missing = join(dir, 'no-such-ca.pem');
    assertRefused(await refused([], { OTEL_EXPORTER_OTLP_CERTIFICATE: missing }), /OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read .*no-such-ca\.pem \(ENOENT\)/);
    assertRefused(await refused(['--otlp-protocol', 'http/protobuf'], { OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE: notPem }), /OTEL_EXPORTER_OTLP_PROFILES_CERTIFICATE: .*not-a-cert\.pem is not a PEM certificate/);
    const cfg = join(dir, 'bad-ca.json');
    writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'grpc', endpoint: 'https://127.0.0.1:4317', certificate: missing }] }));
    assertRefused(await refused(['--config', cfg]), /exporters\[0\]\.certificate: cannot read/);
    writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'pyroscope', endpoint: 'https://127.0.0.1:4040', clientCertificate: notPem }] }));
    assertRefused(await refused(['--config', cfg]), /exporters\[0\]\.clientCertificate: .*is not a PEM certificate/);

    // A real CA file, gone once the agent runs: every window fails for good, none is retried.
    const ca = join(dir, 'ca-that-goes.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'ca-that-goes.key'), '-out', ca, '-days', '1', '-subj', '/CN=gone'], { stdio: 'pipe' });
    writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'grpc', endpoint: 'https://127.0.0.1:9', certificate: ca }, { type: 'otlp', protocol: 'http/protobuf', endpoint: 'https://127.0.0.1:9', certificate: ca }] }));
    const agent = await startAgent(burner.pid!, ['--config', cfg]);
    t.after(() => agent.kill());
    rmSync(ca);
    await until('both refuse a window', () => ['grpc', 'http/protobuf'].every((p) => failedLines(agent, `otlp ${p} https://127.0.0.1:9`).length >= 1), agent);
    await sleep(1500);
    const { code, summary } = await agent.stop();
    assert.equal(code, 0);
    for (const p of ['grpc', 'http/protobuf']) {
      const sink = `otlp ${p} https://127.0.0.1:9`;
      const s = summary.sinks[sink]!;
      const l = failedLines(agent, sink)[0]!;
      assert.equal(l.retryable, false, JSON.stringify(l));
      assert.match(l.message, /cannot read the CA certificate .*ca-that-goes\.pem: ENOENT/);
      assert.equal(s.retries, 0, JSON.stringify(s));
      assert.ok(s.droppedFinal >= 2, JSON.stringify(s));
    }
  });

  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(`exits within --shutdown-timeout on ${signal} with backends that accept and never answer, cutting their calls and counting the windows as dropped at shutdown`, async (t) => {
      const SHUTDOWN_MS = 1000;
      // HTTP: takes every request, never answers; gRPC: takes every call, never answers.
      const held: ServerResponse[] = [];
      let httpClosed = 0;
      const h = await httpServer((_req, res) => {
        held.push(res);
        res.on('close', () => httpClosed++);
      });
      t.after(() => closeServer(h.server));
      let grpcCalls = 0;
      let grpcCancelled = 0;
      const server = new grpc.Server();
      server.addService(
        { Export: { path: EXPORT_PATH, requestStream: false, responseStream: false, requestSerialize: (v: Buffer) => v, requestDeserialize: (b: Buffer) => b, responseSerialize: (v: Buffer) => v, responseDeserialize: (b: Buffer) => b } },
        {
          Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>) => {
            grpcCalls++;
            call.on('cancelled', () => grpcCancelled++);
          },
        },
      );
      const port = await new Promise<number>((ok, fail) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? fail(e) : ok(p))));
      t.after(() => server.forceShutdown());
      const grpcEndpoint = `http://127.0.0.1:${port}`;
      const cfg = join(dir, `hung-${signal}.json`);
      // A request timeout far beyond the shutdown timeout: only the shutdown can end the calls.
      writeFileSync(cfg, JSON.stringify({ exporters: [{ type: 'otlp', protocol: 'http/protobuf', endpoint: h.url, timeout: '60s' }, { type: 'otlp', protocol: 'grpc', endpoint: grpcEndpoint, timeout: '60s' }] }));
      const metricsPort = await new Promise<number>((ok) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const p = (s.address() as AddressInfo).port;
          s.close(() => ok(p));
        });
      });
      const agent = await startAgent(burner.pid!, ['--config', cfg, '--shutdown-timeout', `${SHUTDOWN_MS}ms`, '--metrics-address', `127.0.0.1:${metricsPort}`]);
      t.after(() => agent.kill());
      await until('a call in flight at each backend', () => h.requests >= 1 && grpcCalls >= 1, agent);
      // A scraper that keeps its connection open.
      const keepAlive = new HttpAgent({ keepAlive: true });
      t.after(() => keepAlive.destroy());
      let scrapeClosed = false;
      await new Promise<void>((ok, fail) => {
        const req = request({ host: '127.0.0.1', port: metricsPort, path: '/metrics', agent: keepAlive }, (res) => {
          res.resume();
          res.on('end', ok);
        });
        req.on('socket', (s) => s.on('close', () => (scrapeClosed = true)));
        req.on('error', fail);
        req.end();
      });
      const { code, signal: killedBy, summary, ms } = await agent.stop(signal);
      t.diagnostic(`${signal}: exited after ${ms} ms (shutdown timeout ${SHUTDOWN_MS} ms, request timeout 60 s); summary ${JSON.stringify(summary?.sinks)}`);
      assert.deepEqual([code, killedBy], [0, null], agent.stderr());
      assert.equal(summary.reason, signal);
      // Well before any request's own timeout: the deadline cut the calls.
      assert.ok(ms < SHUTDOWN_MS + 8000, `${ms} ms`);
      assert.ok(httpClosed >= 1, 'the HTTP backend saw its request cut');
      await until('the gRPC backend sees its call cancelled', () => grpcCancelled >= 1 || grpcCalls === 0);
      assert.ok(grpcCancelled >= 1);
      await until('the metrics connection closed', () => scrapeClosed);
      for (const sink of [`otlp http/protobuf ${h.url}`, `otlp grpc ${grpcEndpoint}`]) {
        const s = summary.sinks[sink]!;
        // The last window is among them: the agent closed it and counted it.
        assert.ok(s.droppedShutdown >= 1, JSON.stringify(s));
        assert.equal(summary.windows, s.sent + s.droppedFull + s.droppedFinal + s.droppedShutdown, JSON.stringify(summary));
      }
      assert.ok(!agent.logs().some((l) => l.msg === 'still open after the shutdown; exiting'), 'the exit backstop was needed');
    });
  }
});
