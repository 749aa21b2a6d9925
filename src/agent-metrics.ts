// The agent's own metrics (prom-client) and its Kubernetes probes, on one HTTP port:
//   GET /metrics   Prometheus text: samples, drops by reason, windows, exports by outcome,
//                  queue bytes, symbol-cache hits and misses, processes tracked and files
//                  held open; in Kubernetes the pods known, the pod watch's restarts and
//                  the API answers refused for their size; user stacks by how they were
//                  walked and those cut short by reason; the kernel's unwind tables' memory
//   GET /healthz   200 while windows keep closing (the last one less than 3 intervals ago)
//   GET /readyz    200 once the sampler is attached
// Counters that live in BPF or in the queues are read when scraped.

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { QueueStats } from './export/queue.js';
import type { PodWatcherStats } from './k8s/pod-watcher.js';
import type { WalkCounts } from './capture.js';
import type { OnCpuStats } from './native.js';
import type { SymbolizerStats } from './symbolizer.js';
import type { KernelTablesStats } from './unwind/kernel-tables.js';

/** A queue's lost windows by the reason the metrics give. */
function queueDrops(s: QueueStats): Array<[string, number]> {
  return [
    ['queue_full', s.droppedFull],
    ['refused', s.droppedFinal],
    ['shutdown', s.droppedShutdown],
  ];
}

export interface MetricsSources {
  sampler: () => OnCpuStats | undefined;
  queues: () => Array<{ sink: string; stats: QueueStats }>;
  symbolizer: () => SymbolizerStats | undefined;
  /** Processes (and replaced images) whose maps are kept, and the files held open for them. */
  processes?: () => { tracked: number; openFiles: number };
  /** The pod watcher's, when Kubernetes metadata is on. */
  kubernetes?: () => PodWatcherStats | undefined;
  /** How user stacks were walked and why they ended early (the capture's, since the start). */
  walks?: () => WalkCounts;
  /** The kernel's unwind tables, when the table walk is in use. */
  unwindTables?: () => { stats: KernelTablesStats; mapBytes: number } | undefined;
}

/** What a counter's source said at the last scrape, so that it grows by the difference. */
class Deltas {
  private readonly last = new Map<string, number>();
  inc(c: Counter<string>, labels: Record<string, string>, value: number): void {
    const key = `${(c as unknown as { name: string }).name}${JSON.stringify(labels)}`;
    const d = value - (this.last.get(key) ?? 0);
    this.last.set(key, value);
    // Also by 0: a series exists from the first scrape on, so that a 0 reads as 0, not absent.
    c.inc(labels, Math.max(0, d));
  }
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly windows: Counter<string>;
  private readonly windowSamples: Counter<string>;
  private ready = false;
  private lastWindowAt = Date.now();
  private server: Server | undefined;

  constructor(
    sources: MetricsSources,
    private readonly intervalMs: number,
  ) {
    const reg = this.registry;
    const deltas = new Deltas();
    this.windows = new Counter({ name: 'flamewire_windows_total', help: 'Windows closed.', registers: [reg] });
    this.windowSamples = new Counter({ name: 'flamewire_window_samples_total', help: 'On-CPU samples in the windows closed.', registers: [reg] });
    new Counter({
      name: 'flamewire_samples_total',
      help: 'Records written by the BPF programs, by kind.',
      labelNames: ['kind'],
      registers: [reg],
      collect() {
        const s = sources.sampler();
        if (!s) return;
        deltas.inc(this, { kind: 'on_cpu' }, s.samples);
        deltas.inc(this, { kind: 'off_cpu' }, s.offCpuRecords);
        deltas.inc(this, { kind: 'goroutine_wait' }, s.goWaitRecords);
      },
    });
    new Counter({
      name: 'flamewire_dropped_total',
      help: 'What was lost, by reason: ring buffer full (per record kind), queue full, refused by the destination, left at shutdown.',
      labelNames: ['reason'],
      registers: [reg],
      collect() {
        const s = sources.sampler();
        if (s) {
          deltas.inc(this, { reason: 'ring_buffer_full' }, s.ringBufferFull + s.eventRingBufferFull);
          deltas.inc(this, { reason: 'off_cpu_ring_buffer_full' }, s.offCpuRingBufferFull);
          deltas.inc(this, { reason: 'goroutine_wait_ring_buffer_full' }, s.goWaitRingBufferFull);
        }
        // Every reason is there from the start, at 0, with or without destinations.
        const byReason = new Map<string, number>([['queue_full', 0], ['refused', 0], ['shutdown', 0]]);
        for (const q of sources.queues()) {
          for (const [reason, n] of queueDrops(q.stats)) byReason.set(reason, (byReason.get(reason) ?? 0) + n);
        }
        for (const [reason, n] of byReason) deltas.inc(this, { reason }, n);
      },
    });
    new Counter({
      name: 'flamewire_windows_dropped_total',
      help: 'Windows a destination lost, by destination and reason (queue full, refused, left at shutdown); their sum over destinations is in flamewire_dropped_total.',
      labelNames: ['sink', 'reason'],
      registers: [reg],
      collect() {
        for (const q of sources.queues()) {
          for (const [reason, n] of queueDrops(q.stats)) deltas.inc(this, { sink: q.sink, reason }, n);
        }
      },
    });
    new Counter({
      name: 'flamewire_exports_total',
      help: 'Export attempts per destination and outcome (ok, retry, failed).',
      labelNames: ['sink', 'outcome'],
      registers: [reg],
      collect() {
        for (const q of sources.queues()) {
          deltas.inc(this, { sink: q.sink, outcome: 'ok' }, q.stats.sent);
          deltas.inc(this, { sink: q.sink, outcome: 'retry' }, q.stats.retries);
          deltas.inc(this, { sink: q.sink, outcome: 'failed' }, q.stats.droppedFinal);
        }
      },
    });
    new Gauge({
      name: 'flamewire_queue_bytes',
      help: 'Bytes of windows waiting for each destination.',
      labelNames: ['sink'],
      registers: [reg],
      collect() {
        for (const q of sources.queues()) this.set({ sink: q.sink }, q.stats.queuedBytes);
      },
    });
    new Counter({
      name: 'flamewire_symbol_cache_total',
      help: 'Addresses symbolized from the cache (hit) or by parsing files (miss).',
      labelNames: ['result'],
      registers: [reg],
      collect() {
        const s = sources.symbolizer();
        if (!s) return;
        deltas.inc(this, { result: 'hit' }, s.cacheHits);
        deltas.inc(this, { result: 'miss' }, s.cacheMisses);
      },
    });
    new Counter({
      name: 'flamewire_user_stacks_total',
      help: 'User stacks by how they were walked: unwind_tables, frame_pointers (their process\'s tables were not loaded yet), bpf_get_stack (kernels without the table walk).',
      labelNames: ['walk'],
      registers: [reg],
      collect() {
        const w = sources.walks?.();
        if (!w) return;
        deltas.inc(this, { walk: 'unwind_tables' }, w.tableWalks);
        deltas.inc(this, { walk: 'frame_pointers' }, w.noTables);
        deltas.inc(this, { walk: 'bpf_get_stack' }, w.kernelWalks);
      },
    });
    new Counter({
      name: 'flamewire_user_stacks_truncated_total',
      help: 'User stacks walked with unwind tables that ended before the outermost frame, by why: frame_cap (deeper than 127 frames), unreadable_memory, no_unwind_rule, bad_frame (a frame outside the stack), lost_rbp.',
      labelNames: ['reason'],
      registers: [reg],
      collect() {
        const t = sources.walks?.().truncated;
        if (!t) return;
        deltas.inc(this, { reason: 'frame_cap' }, t.frameCap);
        deltas.inc(this, { reason: 'unreadable_memory' }, t.unreadable);
        deltas.inc(this, { reason: 'no_unwind_rule' }, t.noRule);
        deltas.inc(this, { reason: 'bad_frame' }, t.badFrame);
        deltas.inc(this, { reason: 'lost_rbp' }, t.noRbp);
      },
    });
    new Counter({
      name: 'flamewire_unwind_tables_not_fitting_total',
      help: 'What the kernel\'s unwind tables had no room for, by kind: file (its code is walked by frame pointers), mapping (a process\'s mapping).',
      labelNames: ['kind'],
      registers: [reg],
      collect() {
        const u = sources.unwindTables?.();
        if (!u) return;
        deltas.inc(this, { kind: 'file' }, u.stats.filesNotFitting);
        deltas.inc(this, { kind: 'mapping' }, u.stats.mappingsNotFitting);
      },
    });
    /** A gauge read from a source when scraped; left unset while the source has nothing. */
    const gauge = (name: string, help: string, read: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers: [reg],
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    gauge(
      'flamewire_processes_tracked',
      'Processes whose maps the agent keeps: the live ones it sampled, and those that exited in the last two windows.',
      () => sources.processes?.().tracked,
    );
    gauge(
      'flamewire_open_files',
      'Executable files the agent holds open for symbolization (one per binary that a tracked process maps).',
      () => sources.processes?.().openFiles,
    );
    gauge('flamewire_unwind_table_bytes', 'Bytes of BPF map memory the unwind tables use now (rows, page index, process mappings).', () => sources.unwindTables?.()?.mapBytes);
    gauge('flamewire_unwind_table_files', 'Files whose unwind tables are in the kernel.', () => sources.unwindTables?.()?.stats.filesLoaded);
    gauge('flamewire_kubernetes_pods', 'Pods of this node the agent knows from the Kubernetes API (0 when it does not watch them).', () => sources.kubernetes?.()?.pods);
    new Counter({
      name: 'flamewire_kubernetes_watch_restarts_total',
      help: 'Pod watches that ended, by why: closed (by the server, as it does every few minutes), error (broken or refused; retried with backoff), gone (410: the pods were listed again).',
      labelNames: ['reason'],
      registers: [reg],
      collect() {
        const k = sources.kubernetes?.();
        if (!k) return;
        for (const reason of ['closed', 'error', 'gone'] as const) deltas.inc(this, { reason }, k.restarts[reason]);
      },
    });
    new Counter({
      name: 'flamewire_kubernetes_refused_total',
      help: 'Answers of the Kubernetes API refused for their size, by kind: page (a page of the pod list; asked for again in smaller pages), event (a watch event; skipped).',
      labelNames: ['kind'],
      registers: [reg],
      collect() {
        const k = sources.kubernetes?.();
        if (!k) return;
        for (const kind of ['page', 'event'] as const) deltas.inc(this, { kind }, k.refused[kind]);
      },
    });
  }

  windowClosed(samples: number): void {
    this.windows.inc();
    this.windowSamples.inc(samples);
    this.lastWindowAt = Date.now();
  }

  setReady(): void {
    this.ready = true;
    this.lastWindowAt = Date.now();
  }

  /** Serves /metrics, /healthz and /readyz on `address` (host:port, or :port for every interface). */
  async listen(address: string): Promise<AddressInfo> {
    const m = /^(.*):(\d+)$/.exec(address);
    if (!m) throw new Error(`metrics address '${address}' is not host:port`);
    const host = m[1] || '0.0.0.0';
    this.server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        this.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.registry.contentType });
            res.end(text);
          },
          (e: Error) => {
            res.writeHead(500);
            res.end(e.message);
          },
        );
      } else if (path === '/healthz') {
        const ok = Date.now() - this.lastWindowAt < 3 * this.intervalMs + 10_000;
        res.writeHead(ok ? 200 : 503);
        res.end(ok ? 'ok\n' : 'no window closed lately\n');
      } else if (path === '/readyz') {
        res.writeHead(this.ready ? 200 : 503);
        res.end(this.ready ? 'ready\n' : 'starting\n');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((ok, fail) => {
      this.server!.once('error', fail);
      this.server!.listen(Number(m[2]), host, ok);
    });
    return this.server.address() as AddressInfo;
  }

  /** Stops serving, and ends the connections kept alive (a scraper's would keep the process up). */
  close(): void {
    this.server?.close();
    this.server?.closeAllConnections();
  }
}
