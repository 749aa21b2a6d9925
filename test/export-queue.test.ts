// The export queue in front of a real OTLP/HTTP destination on loopback (node:http, decoding
// with the official proto files): a backend that is down at first and comes up later gets
// everything; a backend that says 503 + Retry-After gets the window again; a refusal drops
// only that window; a full queue drops the oldest windows and counts them; shutdown stops by
// its deadline, cuts the send in flight and counts what was left. The wait before a retry is
// never less than the backoff's floor (Retry-After: 0 is not "at once") nor more than the
// ceiling (a huge Retry-After neither overflows the timer nor stops delivery for good). Each window is told apart by its service.name.

import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { ExportQueue } from '../src/export/queue.js';
import { OtlpExporter } from '../src/otlp/exporter.js';
import { toOtlpRequest } from '../src/otlp/profiles.js';
import { knownProfile } from './fixtures/output-profile.js';
import { Request } from './otlp-official.js';

/** Window `name`: the known profile, its resources named `name`, padded to about `pad` bytes. */
function windowBody(name: string, pad = 0): Uint8Array {
  return OtlpExporter.encode(toOtlpRequest(knownProfile(), { version: 'test', resource: { 'service.name': name, padding: 'x'.repeat(pad) } }));
}

/** A destination whose answers the test scripts: each request takes the next status (then 200). */
class Backend {
  readonly arrived: string[] = [];
  statuses: number[] = [];
  /** How long each answer takes. */
  answerAfterMs = 0;
  /** The Retry-After of a 429 or 503. */
  retryAfter = '0';
  /** When each request came (Date.now()). */
  readonly at: number[] = [];
  /** Called when a connection closes before its answer was sent. */
  onClose: (() => void) | undefined;
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.at.push(Date.now());
        const status = this.statuses.shift() ?? 200;
        if (status === 200) {
          const r = Request.toObject(Request.decode(Buffer.concat(chunks))) as any;
          this.arrived.push(r.resourceProfiles[0].resource.attributes.find((a: any) => a.key === 'service.name').value.stringValue);
        }
        const t = setTimeout(() => {
          res.writeHead(status, status === 503 || status === 429 ? { 'retry-after': this.retryAfter } : {});
          res.end();
        }, this.answerAfterMs);
        res.on('close', () => {
          if (!res.writableFinished) {
            clearTimeout(t);
            this.onClose?.();
          }
        });
      });
    });
    await new Promise<void>((ok) => this.server!.listen(port, '127.0.0.1', ok));
    this.port = (this.server!.address() as AddressInfo).port;
  }

  stop(): Promise<void> {
    this.server!.closeAllConnections();
    return new Promise((ok) => this.server!.close(() => ok()));
  }
}

/** A free loopback port (listened on and closed again). */
async function freePort(): Promise<number> {
  const b = new Backend();
  await b.start();
  const port = b.port;
  await b.stop();
  return port;
}

function queueTo(port: number, maxBytes?: number): ExportQueue {
  const exporter = new OtlpExporter({ endpoint: `http://127.0.0.1:${port}`, protocol: 'http/protobuf', timeoutMs: 2000 });
  return new ExportQueue({ send: (item) => exporter.send(item.body), maxBytes, initialBackoffMs: 50, maxBackoffMs: 200 });
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  for (const end = Date.now() + ms; !cond(); ) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('export queue', () => {
  it('keeps windows while the backend is down and delivers them, in order, once it is up', async () => {
    const port = await freePort();
    const q = queueTo(port);
    for (const n of ['w1', 'w2', 'w3']) q.push(windowBody(n), 2);
    await until(() => q.stats.retries >= 3, 'a few failed attempts');
    const b = new Backend();
    await b.start(port);
    try {
      await until(() => b.arrived.length === 3, 'the three windows');
      assert.deepEqual(b.arrived, ['w1', 'w2', 'w3']);
      const s = q.stats;
      assert.deepEqual([s.sent, s.queued, s.queuedBytes, s.droppedFull, s.droppedFinal], [3, 0, 0, 0, 0]);
      assert.ok(s.retries >= 3);
    } finally {
      await q.drain(Date.now());
      await b.stop();
    }
  });

  it('sends a window again after 503, and drops only the one the backend refuses (400)', async () => {
    const b = new Backend();
    await b.start();
    const q = queueTo(b.port);
    try {
      b.statuses = [503, 503, 200, 400];
      q.push(windowBody('again'), 2);
      q.push(windowBody('refused'), 2);
      q.push(windowBody('after'), 2);
      await until(() => q.stats.queued === 0, 'an empty queue');
      assert.deepEqual(b.arrived, ['again', 'after']);
      const s = q.stats;
      assert.deepEqual([s.sent, s.retries, s.droppedFinal], [2, 2, 1]);
    } finally {
      await q.drain(Date.now());
      await b.stop();
    }
  });

  it("waits the longer of its backoff and the server's delay: after Retry-After: 0, never less than half of each backoff step", async () => {
    const b = new Backend();
    await b.start();
    b.statuses = [429, 429, 429, 503, 200];
    const exporter = new OtlpExporter({ endpoint: `http://127.0.0.1:${b.port}`, protocol: 'http/protobuf', timeoutMs: 2000 });
    const waits: Array<number | undefined> = [];
    // random 0: the shortest wait the jitter allows, half of each step (100, 200, 400, 800 ms).
    const q = new ExportQueue({ send: (item, signal) => exporter.send(item.body, signal), initialBackoffMs: 200, random: () => 0, onResult: (_r, _i, _a, w) => waits.push(w) });
    try {
      q.push(windowBody('patient'), 2);
      await until(() => q.stats.sent === 1, 'the window delivered');
      assert.deepEqual(waits, [100, 200, 400, 800, undefined]);
      const gaps = b.at.slice(1).map((t, i) => t - b.at[i]!);
      for (const [i, g] of gaps.entries()) assert.ok(g >= waits[i]! - 5, `request ${i + 1} came ${g} ms after the one before`);
      assert.deepEqual(b.arrived, ['patient']);
    } finally {
      await q.drain(Date.now());
      exporter.close();
      await b.stop();
    }
  });

  it('waits at most maxRetryDelayMs after a huge Retry-After, and then tries again (no timer overflow)', async () => {
    const b = new Backend();
    await b.start();
    b.statuses = [429];
    b.retryAfter = '99999999999'; // 3000 years; in ms, far past a timer's 2^31-1
    const exporter = new OtlpExporter({ endpoint: `http://127.0.0.1:${b.port}`, protocol: 'http/protobuf', timeoutMs: 2000 });
    const seen: Array<[number | undefined, number | undefined]> = [];
    const q = new ExportQueue({ send: (item, signal) => exporter.send(item.body, signal), maxRetryDelayMs: 300, onResult: (r, _i, _a, w) => seen.push([r.retryAfterMs, w]) });
    try {
      q.push(windowBody('later'), 2);
      await until(() => q.stats.sent === 1, 'the window delivered');
      assert.deepEqual(seen, [[99999999999000, 300], [undefined, undefined]]);
      assert.ok(b.at[1]! - b.at[0]! >= 295, `tried again after ${b.at[1]! - b.at[0]!} ms`);
    } finally {
      await q.drain(Date.now());
      exporter.close();
      await b.stop();
    }
  });

  it('drops the oldest windows when full, and counts them', async () => {
    const port = await freePort();
    const size = windowBody('w0', 10_000).length;
    // Room for three windows and a bit: ten pushed while the backend is down.
    const q = queueTo(port, Math.floor(size * 3.5));
    for (let i = 0; i < 10; i++) q.push(windowBody(`w${i}`, 10_000), 2);
    // The first may be in flight (it stays); of the rest only the newest fit.
    const s = q.stats;
    assert.ok(s.queuedBytes <= size * 3.5);
    assert.equal(s.droppedFull + s.queued, 10);
    assert.ok(s.droppedFull >= 6, `dropped ${s.droppedFull}`);
    const b = new Backend();
    await b.start(port);
    try {
      await until(() => q.stats.queued === 0, 'an empty queue');
      assert.deepEqual(b.arrived.slice(-2), ['w8', 'w9']);
      assert.equal(q.stats.sent + q.stats.droppedFull, 10);
      // A window bigger than the whole queue is refused at once.
      assert.equal(q.push(new Uint8Array(size * 4), 1), false);
    } finally {
      await q.drain(Date.now());
      await b.stop();
    }
  });

  it('drops a window waiting for its retry first when full: it is the oldest', async () => {
    const port = await freePort();
    const size = windowBody('w0', 10_000).length;
    const exporter = new OtlpExporter({ endpoint: `http://127.0.0.1:${port}`, protocol: 'http/protobuf', timeoutMs: 2000 });
    // A first backoff of 1 s: w0 waits for its retry while the others come.
    const q = new ExportQueue({ send: (item) => exporter.send(item.body), maxBytes: Math.floor(size * 3.5), initialBackoffMs: 1000, random: () => 1 });
    q.push(windowBody('w0', 10_000), 2);
    await until(() => q.stats.retries === 1, 'the first failed attempt');
    for (let i = 1; i < 5; i++) q.push(windowBody(`w${i}`, 10_000), 2);
    assert.equal(q.stats.droppedFull, 2);
    const b = new Backend();
    await b.start(port);
    try {
      await until(() => q.stats.queued === 0, 'an empty queue');
      assert.deepEqual(b.arrived, ['w2', 'w3', 'w4']);
      assert.equal(q.stats.sent + q.stats.droppedFull, 5);
    } finally {
      await q.drain(Date.now());
      await b.stop();
    }
  });

  it('cuts a send still in flight at the shutdown deadline, and counts its window once, as left at shutdown', async () => {
    const b = new Backend();
    b.answerAfterMs = 60_000;
    await b.start();
    const exporter = new OtlpExporter({ endpoint: `http://127.0.0.1:${b.port}`, protocol: 'http/protobuf', timeoutMs: 30_000 });
    const results: unknown[] = [];
    const q = new ExportQueue({ send: (item, signal) => exporter.send(item.body, signal), onResult: (r) => results.push(r) });
    try {
      q.push(windowBody('slow'), 2);
      await until(() => b.arrived.length === 1, 'the request at the backend');
      const closed = new Promise<void>((ok) => b.onClose = ok);
      await q.drain(Date.now() + 100);
      // The backend sees the connection go (long before its answer or the request's timeout).
      await closed;
      const s = q.stats;
      assert.deepEqual([s.sent, s.retries, s.droppedShutdown], [0, 0, 1]);
      assert.deepEqual(results, [], 'a send cut at shutdown is no outcome to report');
    } finally {
      exporter.close();
      await b.stop();
    }
  });

  it('stops at the shutdown deadline with the backend down, and counts what was left', async () => {
    const port = await freePort();
    const q = queueTo(port);
    for (const n of ['a', 'b']) q.push(windowBody(n), 2);
    await q.drain(Date.now() + 300);
    const s = q.stats;
    assert.deepEqual([s.sent, s.queued, s.droppedShutdown], [0, 0, 2]);
    assert.equal(q.push(windowBody('late'), 2), false);
  });
});
