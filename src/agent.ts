// `flamewire agent`: continuous profiling of the whole machine (or of some processes), cut into
// windows of --interval; every window becomes one OTLP export request (a resource per process),
// one Parca WriteRaw request or one Pyroscope /ingest upload per process, each going through a
// bounded queue to its destination, and/or one pprof file in a directory.
// Inside Kubernetes a pod watcher (k8s/pod-watcher.ts) names each process by its pod and container.
// Logs are pino JSON lines on stdout; a line a backend can make repeat fast ('export failed')
// is rate-limited per destination, with the count of the lines held back.
//
// SIGTERM, SIGINT and SIGHUP (a closed terminal, or a supervisor's stop: there is nothing to
// reload) close the current window and deliver what they can within --shutdown-timeout; at the
// deadline the sends in flight are cut, the channels and connections closed, and what was not
// delivered is counted as dropped at shutdown, so the process exits then even if a backend
// never answers. Nothing collected is dropped without being counted.

import { randomBytes } from 'node:crypto';
import { closeSync, constants as fsConstants, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { AgentMetrics } from './agent-metrics.js';
import { OnCpuCapture } from './capture.js';
import type { AgentOptions } from './cli-args.js';
import { cgroupTracker, type CgroupIds, type CgroupTracker } from './container-id.js';
import { baseName, type ProcessTable } from './process-table.js';
import { formatDuration } from './duration.js';
import { closeFileRanges } from './elf/file-bytes.js';
import { collectGarbage } from './gc.js';
import { toParcaWriteRaw } from './export/parca.js';
import { pyroscopeSender, toPyroscopeUploads, type PyroscopeOptions } from './export/pyroscope.js';
import { ExportQueue, type QueueItem, type QueueStats } from './export/queue.js';
import { GoRegistry } from './go-processes.js';
import { PodWatcher } from './k8s/pod-watcher.js';
import { configureLogger, logger, rateLimitedLog } from './logger.js';
import { openOnCpuSampler, pinMmapThreshold, trimMemory, type OnCpuSampler } from './native.js';
import { OtlpExporter, type ExportResult } from './otlp/exporter.js';
import { OTLP_PRESETS, toOtlpRequest, type Attributes } from './otlp/profiles.js';
import { showUrl } from './otel-env.js';
import { encodePprof } from './output/pprof.js';
import type { Profile } from './profile-model.js';
import { goWaitPeriodNs, goWaitVisits, RecordError, runningPids } from './record.js';
import { btfProblem, privilegeProblem } from './system-checks.js';
import { longTimeout } from './timers.js';
import { kernelTablesFor } from './unwind/kernel-tables.js';

/** (file, address) answers the agent's symbolizer keeps between windows (~150 bytes each). */
const AGENT_SYMBOL_CACHE = 200_000;
/** Unwind-table bytes (.eh_frame, .debug_frame) the agent keeps between windows. */
const AGENT_UNWIND_BYTES = 32 << 20;
/** A repeated log line of a destination ('export failed' …) at most once per this long. */
const REPEATED_LOG_MS = 10_000;
/** How long the process may take to exit once everything is closed, before it is made to. */
const EXIT_GRACE_MS = 1000;
const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
/** Bytes of one perf map read per window: a map written faster than this is read over several. */
const AGENT_PERF_MAP_BYTES = 64 << 20;

/** One destination of the windows. */
interface Sink {
  name: string;
  /** `processAttributes`: the window's processes' own resource attributes. */
  take(profile: Profile, processAttributes: (pid: number) => Attributes): void;
  drain(deadlineMs: number): Promise<void>;
  summary(): Record<string, number>;
  /** Destinations with a queue. */
  queue?: () => QueueStats;
}

export async function runAgent(opts: AgentOptions, version: string): Promise<number> {
  configureLogger(opts.logLevel, 1);
  const log = logger();
  const priv = privilegeProblem();
  if (priv) throw new RecordError(priv);
  const btf = btfProblem();
  if (btf) throw new RecordError(btf);

  const resource: Attributes = { 'host.name': hostname(), ...opts.resource, ...(opts.kubernetes ? { 'k8s.node.name': opts.kubernetes.nodeName } : {}) };
  const sinks: Sink[] = [];
  for (const e of opts.otlp) sinks.push(otlpSink(e, opts, resource, version));
  for (const p of opts.pyroscope) sinks.push(pyroscopeSink(p, opts, resource));
  for (const d of opts.outputDirs) sinks.push(directorySink(d));

  let go: GoRegistry | undefined;
  const cgroups = cgroupTracker();
  const capture = new OnCpuCapture({
    frequency: opts.frequency,
    offCpu: opts.offCpu,
    onProcess: (pid, event) => {
      go?.update(pid, event);
      if (event !== 'exit') cgroups.seen(pid);
    },
    goWaitReason: (pid, code) => go?.waitReason(pid, code),
    // Bounded for a process that runs for months: (file, address) answers and unwind tables
    // kept for later windows. Go tables are read a page at a time (elf/file-bytes.ts).
    symbolizer: { cacheEntries: AGENT_SYMBOL_CACHE },
    unwindBytes: AGENT_UNWIND_BYTES,
    perfMapReadBudget: AGENT_PERF_MAP_BYTES,
  });
  // Read before the sampler and the symbolizer's worker start: the load's scratch is collected
  // while the process is small, instead of adding to the first window's peak.
  capture.loadKernelSymbols();
  collectGarbage();
  let sampler: OnCpuSampler;
  try {
    pinMmapThreshold();
    sampler = openOnCpuSampler({
      frequency: opts.frequency,
      pids: opts.pids.length > 0 ? opts.pids : undefined,
      offCpu: opts.offCpu,
      goWaits: opts.offCpu,
      goWaitPeriodNs: goWaitPeriodNs(opts.frequency),
      goWaitMaxVisits: goWaitVisits(opts.frequency),
      onLog: (level, message) => log[level]({ libbpf: message.trim() }, 'libbpf'),
    });
  } catch (e) {
    throw new RecordError(`cannot start the sampler: ${(e as Error).message.split('\n')[0]}`);
  }
  capture.kernelTables = kernelTablesFor(sampler);
  go = new GoRegistry(sampler);
  let stopped = false;
  // Deleted pods stay known while windows may still hold their processes' samples.
  const pods = opts.kubernetes ? new PodWatcher({ ...opts.kubernetes, deletedRetentionMs: Math.max(5 * 60_000, 4 * opts.intervalMs) }) : undefined;
  const metrics = new AgentMetrics(
    {
      sampler: () => (stopped ? undefined : sampler.stats()),
      queues: () => sinks.flatMap((s) => (s.queue ? [{ sink: s.name, stats: s.queue() }] : [])),
      symbolizer: () => capture.symbolizerStats,
      processes: () => ({ tracked: capture.processes.size, openFiles: capture.processes.openFiles }),
      kubernetes: () => pods?.stats,
      walks: () => capture.walks,
      unwindTables: () => capture.kernelTables && { stats: capture.kernelTables.stats, mapBytes: capture.kernelTables.mapBytes },
    },
    opts.intervalMs,
  );
  if (opts.metricsAddress !== undefined) {
    try {
      const a = await metrics.listen(opts.metricsAddress);
      log.info({ address: `${a.address}:${a.port}` }, 'serving /metrics, /healthz, /readyz');
    } catch (e) {
      sampler.stop();
      throw new RecordError(`cannot serve metrics on ${opts.metricsAddress}: ${(e as Error).message}`);
    }
  }
  sampler.start((batch) => capture.addBatch(batch));
  // Processes already running: their tables load now rather than on their first sample.
  capture.syncRunning(opts.pids.length > 0 ? opts.pids : runningPids());
  pods?.start();
  metrics.setReady();
  for (const pid of opts.pids.length > 0 ? opts.pids : opts.offCpu ? runningPids() : []) go.update(pid, 'start');
  log.info(
    { frequency: opts.frequency, offCpu: opts.offCpu, interval: formatDuration(opts.intervalMs), pids: opts.pids, sinks: sinks.map((s) => s.name), kubernetesNode: opts.kubernetes?.nodeName, info: sampler.info() },
    'agent started',
  );

  let windowStart = process.hrtime.bigint();
  let windowWall = BigInt(Date.now()) * 1_000_000n;
  let windows = 0;
  let closing: Promise<void> = Promise.resolve();
  /** How long a window waits for the pods of its new containers (PodWatcher.whenKnown). */
  const podGraceMs = Math.min(1000, opts.intervalMs / 4);
  const closeWindow = async (deadlineMs = Infinity): Promise<void> => {
    const end = process.hrtime.bigint();
    const endWall = BigInt(Date.now()) * 1_000_000n;
    // The window's counts first: finish() starts the next window.
    const samples = capture.sampleCount;
    const offCpu = capture.offCpuRecords;
    const profile = await capture.finish({ timeNanos: windowWall, durationNanos: end - windowStart, comments: [`flamewire agent window ${windows + 1}`] });
    capture.resetWindow();
    windowStart = end;
    windowWall = endWall;
    windows++;
    metrics.windowClosed(samples);
    const ids = cgroupsOf(profile, cgroups);
    if (pods) await pods.whenKnown([...ids.values()], Math.min(podGraceMs, deadlineMs - Date.now()));
    const attrs = processAttributesFor(capture.processes, ids, pods, resource['service.name'] !== undefined);
    for (const s of sinks) s.take(profile, attrs);
    cgroups.windowDone();
    log.info({ window: windows, samples, offCpuRecords: offCpu, stacks: profile.samples.length }, 'window closed');
  };

  // What a window dropped goes back once it is closed (and its profile unreferenced): the JS
  // garbage first, then what that and the native threads freed in the malloc arenas. The
  // unwind tables reopen their files when a later window needs a page.
  const releaseMemory = () => {
    collectGarbage();
    trimMemory();
    closeFileRanges();
  };

  const stopReason = await new Promise<string>((resolve) => {
    const tick = setInterval(() => {
      closing = closing
        .then(() => closeWindow())
        .catch((e: Error) => log.error({ err: e.message }, 'window lost'))
        .then(releaseMemory);
    }, opts.intervalMs);
    const stopAfter = opts.durationMs === undefined ? undefined : longTimeout(() => done('duration'), opts.durationMs);
    const done = (why: string) => {
      clearInterval(tick);
      stopAfter?.clear();
      for (const s of STOP_SIGNALS) process.off(s, onSignal);
      resolve(why);
    };
    // A second signal while stopping takes the default action (the process ends at once).
    const onSignal = (signal: NodeJS.Signals) => done(signal);
    for (const s of STOP_SIGNALS) process.on(s, onSignal);
  });

  // The last window: everything until now, then delivery within the shutdown timeout.
  const deadline = Date.now() + opts.shutdownTimeoutMs;
  sampler.stop();
  stopped = true;
  await closing;
  await closeWindow(deadline).catch((e: Error) => log.error({ err: e.message }, 'last window lost'));
  pods?.stop();
  metrics.close();
  await Promise.all(sinks.map((s) => s.drain(deadline)));
  await capture.close();
  const stats = sampler.stats();
  log.info(
    { reason: stopReason, windows, sinks: Object.fromEntries(sinks.map((s) => [s.name, s.summary()])), ringBufferFull: stats.ringBufferFull, offCpuDropped: stats.offCpuRingBufferFull },
    'agent stopped',
  );
  // Everything is closed: the process ends as soon as its last callbacks have run. Should a
  // handle still hold it (a library's socket), it is made to end, saying what was left.
  setTimeout(() => {
    log.warn({ open: process.getActiveResourcesInfo() }, 'still open after the shutdown; exiting');
    process.exit(process.exitCode ?? 0);
  }, EXIT_GRACE_MS).unref();
  return 0;
}

/** What a destination with a queue makes of a window: one item or several. */
interface QueuedItem {
  body: Uint8Array;
  profiles: number;
  request?: QueueItem['request'];
}

/** Windows to a network destination, through its own bounded queue. */
function queuedSink(
  name: string,
  opts: AgentOptions,
  encode: (profile: Profile, processAttributes: (pid: number) => Attributes) => QueuedItem[],
  send: (item: QueueItem, signal: AbortSignal) => Promise<ExportResult>,
  close: () => void = () => {},
): Sink {
  const log = logger().child({ sink: name });
  // The same failure again and again is one line per REPEATED_LOG_MS, with a count. Its key is
  // what the agent makes of the answer (the status, or for a network error its message), never
  // the server's own text, which a hostile server could make new every time.
  const limited = rateLimitedLog(log, REPEATED_LOG_MS);
  const queue = new ExportQueue({
    maxBytes: opts.queueBytes,
    send,
    onResult: (r, item, attempt, retryInMs) => {
      if (r.ok && r.rejected) limited.log('warn', 'partial', { rejected: r.rejected, message: r.message }, 'partial success');
      else if (r.ok) log.debug({ bytes: item.body.length, attempt }, 'exported');
      else {
        const key = `failed ${r.retryable} ${r.code ?? r.message}`;
        limited.log('warn', key, { retryable: r.retryable, retryAfterMs: r.retryAfterMs, retryInMs, code: r.code, message: r.message, attempt }, 'export failed');
      }
    },
  });
  return {
    name,
    take(profile, processAttributes) {
      for (const item of encode(profile, processAttributes)) {
        if (item.profiles === 0) continue;
        if (!queue.push(item.body, item.profiles, item.request)) limited.log('warn', 'full', { queueBytes: opts.queueBytes }, 'window dropped: queue full');
      }
    },
    async drain(deadlineMs) {
      await queue.drain(deadlineMs);
      close();
      limited.flush();
    },
    summary: () => ({ ...queue.stats }),
    queue: () => queue.stats,
  };
}

/** Windows to an OTLP destination (or Parca's WriteRaw): one request per window. */
function otlpSink(e: AgentOptions['otlp'][number], opts: AgentOptions, resource: Attributes, version: string): Sink {
  const exporter = new OtlpExporter(e);
  const name = e.api === 'parca' ? `parca ${showUrl(e.endpoint)}` : `otlp ${e.protocol} ${showUrl(e.url ?? e.endpoint)}`;
  const encode = (profile: Profile, processAttributes: (pid: number) => Attributes): QueuedItem[] => {
    if (e.api === 'parca') {
      const { body, series } = toParcaWriteRaw(profile, { resource, processAttributes });
      return [{ body, profiles: series }];
    }
    const req = toOtlpRequest(profile, { version, resource, processAttributes, ...(e.preset ? OTLP_PRESETS[e.preset] : {}) });
    const profiles = req.resourceProfiles.reduce((n, r) => n + r.scopeProfiles.reduce((m, s) => m + s.profiles.length, 0), 0);
    return [{ body: OtlpExporter.encode(req), profiles }];
  };
  return queuedSink(name, opts, encode, (item, signal) => exporter.send(item.body, signal), () => exporter.close());
}

/** Windows to Pyroscope's /ingest: one upload per process and kind of profile. */
function pyroscopeSink(p: PyroscopeOptions, opts: AgentOptions, resource: Attributes): Sink {
  const sender = pyroscopeSender(p);
  return queuedSink(
    `pyroscope ${showUrl(p.endpoint)}`,
    opts,
    (profile, processAttributes) =>
      toPyroscopeUploads(profile, { resource, processAttributes }).map(({ body, query, contentType }) => ({ body, profiles: 1, request: { query, contentType } })),
    (item, signal) => sender.send(item.request!, item.body, signal),
    () => sender.close(),
  );
}

/** The container (pod, service unit) of each of the window's processes, from /proc/PID/cgroup. */
function cgroupsOf(profile: Profile, cgroups: CgroupTracker): Map<number, CgroupIds> {
  const out = new Map<number, CgroupIds>();
  for (const s of profile.samples) {
    const pid = s.numLabels['process.pid'];
    if (pid !== undefined && pid > 0 && !out.has(pid)) out.set(pid, cgroups.get(pid));
  }
  return out;
}

/**
 * The resource attributes of a window's processes, found once per process and window for every
 * destination: the executable from the capture's process table (read when the process was first
 * seen, so it outlives the process), the container from /proc/PID/cgroup (also read when the
 * process was first seen), and in Kubernetes its pod's metadata (with the pod's service.name,
 * over the agent's own). A systemd service's
 * process outside containers is named after its unit, unless the agent has a service.name.
 *
 * A pod is looked up when the window closes: the window waits (briefly, see whenKnown) for the
 * pods of containers the watcher has not heard of yet, once per container, so a pod whose first
 * samples came before the API server told of it is named in that window if the answer comes
 * within the wait, and in every later window anyway.
 */
function processAttributesFor(processes: ProcessTable, cgroups: Map<number, CgroupIds>, pods: PodWatcher | undefined, agentNamed: boolean): (pid: number) => Attributes {
  const known = new Map<number, Attributes>();
  return (pid) => {
    let a = known.get(pid);
    if (a === undefined) {
      a = {};
      const ids = cgroups.get(pid) ?? {};
      if (ids.containerId) a['container.id'] = ids.containerId;
      const exe = processes.get(pid)?.exePath;
      if (exe) {
        a['process.executable.path'] = exe;
        a['process.executable.name'] = baseName(exe);
      }
      Object.assign(a, pods?.attributes(ids));
      if (a['service.name'] === undefined && !agentNamed && !ids.containerId && ids.systemdUnit) a['service.name'] = ids.systemdUnit;
      known.set(pid, a);
    }
    return a;
  };
}

/**
 * One pprof file per window: the offline mode. The names are predictable (the window's start),
 * so each file is created new (O_EXCL, O_NOFOLLOW): never written through a symlink or into a
 * file that someone planted there. A name already taken gets a random suffix instead.
 */
function directorySink(dir: string): Sink {
  mkdirSync(dir, { recursive: true });
  let written = 0;
  let failed = 0;
  const log = logger().child({ sink: `directory ${dir}` });
  const { O_CREAT, O_EXCL, O_NOFOLLOW, O_WRONLY } = fsConstants;
  const create = (file: string): number => openSync(file, O_CREAT | O_EXCL | O_NOFOLLOW | O_WRONLY, 0o644);
  return {
    name: `directory ${dir}`,
    take(profile) {
      const stem = join(dir, `flamewire-${new Date(Number(profile.timeNanos / 1_000_000n)).toISOString().replace(/[:.]/g, '-')}`);
      let file = `${stem}.pb.gz`;
      let fd: number | undefined;
      try {
        try {
          fd = create(file);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
          log.warn({ file }, 'a file of that name is already there; the window gets another name');
          file = `${stem}-${randomBytes(6).toString('hex')}.pb.gz`;
          fd = create(file);
        }
        writeFileSync(fd, encodePprof(profile));
        written++;
      } catch (e) {
        failed++;
        log.error({ file, err: (e as Error).message }, 'cannot write the window');
      } finally {
        if (fd !== undefined) closeSync(fd);
      }
    },
    drain: () => Promise.resolve(),
    summary: () => ({ written, failed }),
  };
}
