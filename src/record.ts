// `flamewire record`: start the sampler (filtered in the kernel), stream batches through the
// capture pipeline, stop on duration / command exit / Ctrl-C / SIGTERM / SIGHUP, then symbolize
// the unique addresses once and write the output. Whatever was collected is written even when
// the run ends early; a failure to write falls back to a new file in a private temporary
// directory, never to nothing.

import { accessSync, existsSync, constants as fsConstants, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError, type RecordOptions } from './cli-args.js';
import { findCommand, spawnGated, type GatedCommand } from './command-runner.js';
import { OnCpuCapture, truncationSummary } from './capture.js';
import { formatDuration, formatNs } from './duration.js';
import { longTimeout } from './timers.js';
import { goBinaryOffsets, GoRegistry } from './go-processes.js';
import { logger, memoryFigures } from './logger.js';
import { openOnCpuSampler, pinMmapThreshold, type OnCpuSampler, type OnCpuStats } from './native.js';
import { checkTarget, OutputWriteError, writeOutput } from './output/write-output.js';
import type { MappedFile } from './process-table.js';
import { StatusLine } from './status-line.js';
import { kernelTablesFor } from './unwind/kernel-tables.js';
import { btfProblem, maxSampleRate, privilegeProblem } from './system-checks.js';

/** A failure of the run itself (not of the command line): exit status 1, or the shell's 126/127 for a command that cannot run. */
export class RecordError extends Error {
  override name = 'RecordError';
  constructor(message: string, readonly exitStatus = 1) {
    super(message);
  }
}

/** Runs a recording; resolves with the process exit status. */
export async function record(opts: RecordOptions, out: NodeJS.WriteStream = process.stderr): Promise<number> {
  // A closed stderr (a pipe to `head`, a terminal hung up) makes a write fail, and an
  // unhandled error event would end the run before the output is written.
  out.on('error', () => {});
  if (out !== process.stderr) process.stderr.on('error', () => {});
  const exe = await checkPreconditions(opts);

  let sampler: OnCpuSampler | undefined;
  // Go processes known to the sampler (set once it is open).
  let go: GoRegistry | undefined;
  // Whether the command's exec happened: when the shell's exec fails after findCommand said
  // yes (the file went away, a missing ELF interpreter) it exits 127 or 126 without one.
  let commandExeced = false;
  const capture = new OnCpuCapture({
    frequency: opts.frequency,
    offCpu: opts.offCpu,
    oneShot: true,
    // Go programs: samples carry goroutine ids once the sampler knows the runtime's offsets.
    onProcess: (pid, event) => {
      if (event === 'exec' && pid === command?.pid) commandExeced = true;
      go?.update(pid, event);
    },
    goWaitReason: (pid, code) => go?.waitReason(pid, code),
  });
  const startWall = process.hrtime.bigint();
  const timeNanos = BigInt(Date.now()) * 1_000_000n;

  let command: GatedCommand | undefined;
  const filterPids = opts.pids.length > 0 ? opts.pids : undefined;
  try {
    // First: loading the BPF object parses the kernel's BTF, the first big allocations of a run.
    pinMmapThreshold();
    if (opts.command.length > 0) command = spawnGated(opts.command);
    sampler = openOnCpuSampler({
      frequency: opts.frequency,
      pids: command ? [command.pid] : filterPids,
      followChildren: command !== undefined,
      offCpu: opts.offCpu,
      offCpuThresholdNs: opts.offCpuThresholdNs,
      // For tests and comparisons: the raw_tp flavour even where tp_btf works.
      offCpuFlavour: process.env.FLAMEWIRE_OFF_CPU_FLAVOUR === 'raw_tp' ? 'raw_tp' : 'auto',
      // Off-CPU time of goroutines: their waits, sampled as often as the CPUs (1000 Hz at most).
      goWaits: opts.offCpu,
      goWaitPeriodNs: goWaitPeriodNs(opts.frequency),
      goWaitMaxVisits: goWaitVisits(opts.frequency),
    });
  } catch (e) {
    command?.kill('SIGKILL');
    throw new RecordError(`cannot start the sampler: ${(e as Error).message.split('\n')[0]}`);
  }
  capture.kernelTables = kernelTablesFor(sampler);
  if (command && capture.kernelTables) await prepareCommandTables(capture, exe);
  // Processes already running: their tables load now, not on their first sample.
  if (!command) capture.syncRunning(filterPids ?? runningPids());
  // Before sampling starts (at most PREPARE_CAP_MS, as for a command): their first samples
  // would otherwise be walked by frame pointers while the files convert, and lose their callers.
  if (filterPids && capture.kernelTables) await settleTables(capture.kernelTables);
  go = new GoRegistry(sampler);

  sampler.start((batch) => capture.addBatch(batch));
  // Go processes already running: their goroutines may all be waiting, so no sample would
  // introduce them. The whole machine's only with off-CPU time, where their waits count.
  for (const pid of filterPids ?? (opts.offCpu && !command ? runningPids() : [])) go.update(pid, 'start');
  if (command) {
    // A Go command gets goroutine ids from its first sample: its pid is the gate shell's, and
    // the exec record would come a poll interval late.
    const offsets = exe === undefined ? undefined : goBinaryOffsets(exe);
    if (offsets) go.set(command.pid, offsets);
  }
  command?.release();
  logger().debug({ frequency: opts.frequency, pids: filterPids, command: opts.command }, 'recording');

  const status = new StatusLine(() => ({
    elapsedMs: Number(process.hrtime.bigint() - startWall) / 1e6,
    samples: capture.sampleCount,
    drops: dropCount(sampler.stats()),
    processes: capture.processCount,
  }));
  if (!opts.quiet) status.start();

  // Wait for the first of: duration, command exit, all -p processes gone, SIGINT/SIGTERM/SIGHUP.
  // SIGTERM and SIGHUP go on to the command (a hang-up of the terminal sends the command its
  // own SIGHUP too; a second one changes nothing). From then on until the output is written,
  // more of them are passed on to the command but do not end flamewire: the shell of a
  // terminal that hangs up repeats the kernel's SIGHUP, and a `kill` in a loop must not lose
  // the profile. A second Ctrl-C still ends flamewire at once.
  const forward = (signal: NodeJS.Signals) => () => command?.kill(signal);
  const lateSignals = { SIGTERM: forward('SIGTERM'), SIGHUP: forward('SIGHUP') };
  const stopReason = await new Promise<string>((resolveStop) => {
    const cancels: (() => void)[] = [];
    const done = (why: string) => {
      for (const cancel of cancels) cancel();
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      process.off('SIGHUP', onHup);
      for (const [signal, handler] of Object.entries(lateSignals)) process.on(signal, handler);
      resolveStop(why);
    };
    const onInt = () => done('interrupted');
    const onTerm = () => {
      command?.kill('SIGTERM');
      done('terminated');
    };
    const onHup = () => {
      command?.kill('SIGHUP');
      done('hung up');
    };
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    process.on('SIGHUP', onHup);
    // Any length: setTimeout alone fires a delay over 24.8 days after 1 ms.
    if (opts.durationMs !== undefined) {
      const stop = longTimeout(() => done('duration'), opts.durationMs);
      cancels.push(() => stop.clear());
    }
    if (command) command.exited.then(() => done('command exited'));
    if (filterPids) {
      const poll = setInterval(() => {
        if (filterPids.every((p) => !existsSync(`/proc/${p}`))) done('processes exited');
      }, 200);
      cancels.push(() => clearInterval(poll));
    }
  });

  sampler.stop();
  status.stop();
  const stats = sampler.stats();
  const durationNanos = process.hrtime.bigint() - startWall;

  // With a command: after Ctrl-C the command got SIGINT from the terminal too, so it is
  // finishing; its exit status becomes ours. When the duration ran out first it keeps running:
  // the output is written now and we wait for it afterwards (see below).
  if (command && (stopReason === 'interrupted' || stopReason === 'terminated' || stopReason === 'hung up')) {
    const code = await Promise.race([command.exited, delay(5000).then(() => -1)]);
    if (code === -1) command.kill('SIGKILL');
  }

  const what = opts.offCpu ? `on-CPU and off-CPU (blocks of ${formatNs(opts.offCpuThresholdNs)} and longer)` : 'on-CPU';
  const comments = [
    `flamewire record: ${what}, ${opts.frequency} Hz per CPU, ${formatDuration(Number(durationNanos) / 1e6)}, stopped: ${stopReason}`,
    `target: ${command ? `command ${opts.command.join(' ')} and its descendants` : filterPids ? `pids ${filterPids.join(',')}` : 'whole machine'}`,
    dropComment(stats),
  ];
  if (opts.offCpu) comments.push(offCpuComment(stats));
  if (opts.offCpu && (stats.goWaitWalks > 0 || stats.goIdleBlocks > 0)) comments.push(goWaitComment(stats));
  const profile = await capture.finish({ timeNanos, durationNanos, comments });

  logger().debug(memoryFigures(), 'profile built');
  const written = await writeWithFallback(profile, opts, out);
  logger().debug(memoryFigures(), 'output written');
  const execFailed = command !== undefined && command.done && !commandExeced && [126, 127].includes(await command.exited);
  if (execFailed) out.write(`flamewire: ${opts.command[0]} did not start: the shell could not execute it (status ${await command!.exited})\n`);
  else if (capture.sampleCount === 0 && capture.offCpuRecords === 0) out.write('flamewire: no samples were recorded (was the target idle?)\n');
  if (!opts.quiet) {
    const blocks = capture.offCpuRecords - capture.goWaitRecords;
    const goWaits = capture.goWaitRecords > 0 ? `, ${capture.goWaitRecords.toLocaleString('en-US')} goroutine waits (${formatNs(capture.goWaitNs)})` : '';
    const offCpu = opts.offCpu
      ? `${goWaits} and ${blocks.toLocaleString('en-US')} off-CPU blocks (${formatNs(capture.offCpuNs - capture.goWaitNs)} blocked; ${offCpuDetail(stats)})`
      : '';
    out.write(
      `flamewire: ${capture.sampleCount.toLocaleString('en-US')} samples${offCpu} from ${capture.processCount} processes, ${dropCount(stats)} dropped` +
        ` (${dropDetail(stats)}); wrote ${written.path}${opts.offCpu && written.view ? ` (${written.view})` : ''}\n`,
    );
    if (capture.sampleCount + capture.offCpuRecords > 0) out.write(`flamewire: ${truncationSummary(capture.walks)}\n`);
  }
  await capture.close();
  let exitCode = 0;
  if (command) {
    if (!command.done && !opts.quiet) out.write(`flamewire: recording stopped; waiting for ${opts.command[0]} to exit\n`);
    exitCode = await command.exited;
  }
  for (const [signal, handler] of Object.entries(lateSignals)) process.off(signal, handler);
  if (!written.ok) return 1;
  return exitCode;
}

/** Throws UsageError or RecordError for what would make the run fail; resolves with the command's file, if there is a command. */
async function checkPreconditions(opts: RecordOptions): Promise<string | undefined> {
  const priv = privilegeProblem();
  if (priv) throw new RecordError(priv);
  const btf = btfProblem();
  if (btf) throw new RecordError(btf);
  const max = maxSampleRate();
  if (max !== undefined && opts.frequency > max) {
    throw new UsageError(`frequency ${opts.frequency} Hz is above the kernel's limit of ${max} Hz (kernel.perf_event_max_sample_rate)`);
  }
  for (const pid of opts.pids) {
    if (!existsSync(`/proc/${pid}`)) throw new UsageError(`no process with pid ${pid}`);
    // /proc/TID exists for every thread too, but the filter is by process.
    const tgid = threadGroupOf(pid);
    if (tgid !== undefined && tgid !== pid) throw new UsageError(`${pid} is a thread of process ${tgid}: give -p ${tgid}`);
  }
  const dir = dirname(resolve(opts.output));
  try {
    if (!statSync(dir).isDirectory()) throw new Error('not a directory');
    accessSync(dir, fsConstants.W_OK);
  } catch {
    throw new UsageError(`cannot write ${opts.output}: directory ${dir} does not exist or is not writable`);
  }
  if (existsSync(opts.output) && statSync(opts.output).isDirectory()) throw new UsageError(`cannot write ${opts.output}: it is a directory`);
  // A symlink or FIFO that someone else planted in /tmp (see write-output.ts).
  try {
    await checkTarget(opts.output);
  } catch (e) {
    if (e instanceof OutputWriteError) throw new UsageError(e.message);
    throw e;
  }
  if (opts.command.length === 0) return undefined;
  // As a shell says it, before the sampler starts: 127 when there is no such command, 126
  // when it is there but cannot be run.
  const found = findCommand(opts.command[0]!);
  if ('status' in found) throw new RecordError(found.message, found.status);
  return found.path;
}

/** How long a command waits at most for its tables to be converted before it starts. */
const PREPARE_CAP_MS = 2000;

/**
 * Converts the command's executable and the shared libraries flamewire itself maps (libc, the
 * dynamic loader, the C++ runtime, the vDSO: what most commands map too) before the command
 * starts, so that its first samples keep their callers. The rest load on first sight.
 */
async function prepareCommandTables(capture: OnCpuCapture, exe: string | undefined): Promise<void> {
  const tables = capture.kernelTables!;
  const files: MappedFile[] = [];
  const own = capture.processes.ensure(process.pid);
  capture.processes.forget(process.pid);
  // The first mapping is the executable's (node): like the addon, not what the command runs.
  const self = own?.mappings[0]?.path;
  for (const m of own?.mappings ?? []) {
    if (!m.file || !m.perms.includes('x') || m.path === self || m.path.endsWith('.node')) continue;
    if (!files.includes(m.file)) files.push(m.file);
  }
  const exeFile = exe === undefined ? undefined : capture.processes.openFile(exe);
  if (exeFile) files.push(exeFile);
  tables.prepare(files);
  await settleTables(tables);
}

/** Waits for the conversions asked for so far, PREPARE_CAP_MS at most. */
async function settleTables(tables: NonNullable<OnCpuCapture['kernelTables']>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const cap = new Promise<void>((resolve) => (timer = setTimeout(resolve, PREPARE_CAP_MS)));
  await Promise.race([tables.settled(), cap]);
  clearTimeout(timer);
}

/** The process a pid (or thread id) belongs to, from /proc/PID/status; undefined when unreadable. */
function threadGroupOf(pid: number): number | undefined {
  try {
    const m = /^Tgid:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes the output to -o, or when that fails to a file of the same name in a new private
 * directory: mkdtemp makes it (mode 0700, a random name), and the file is created there with
 * O_EXCL|O_NOFOLLOW and mode 0600. No name in /tmp is predictable, so a link or file someone
 * planted there cannot be followed or overwritten.
 */
async function writeWithFallback(profile: Parameters<typeof writeOutput>[0], opts: RecordOptions, out: NodeJS.WritableStream): Promise<{ ok: boolean; path: string; view?: string }> {
  const wopts = { format: opts.format, sampleType: opts.value, html: opts.value === undefined ? undefined : { sampleType: profile.sampleTypes.findIndex((t) => t.type === opts.value) } };
  try {
    const { view }: { format: unknown; view?: string } = await writeOutput(profile, opts.output, wopts);
    return { ok: true, path: opts.output, view };
  } catch (e) {
    const why = (e as Error).message;
    let dir: string;
    try {
      dir = await mkdtemp(join(tmpdir(), 'flamewire-'));
    } catch (e2) {
      throw new RecordError(`${why}; no fallback either: cannot make a directory in ${tmpdir()} (${(e2 as NodeJS.ErrnoException).code ?? (e2 as Error).message})`);
    }
    const fallback = join(dir, basename(opts.output) || 'flamewire.out');
    out.write(`flamewire: ${why}; saving to ${fallback} instead\n`);
    const { view }: { format: unknown; view?: string } = await writeOutput(profile, fallback, { ...wopts, exclusive: true });
    return { ok: false, path: fallback, view };
  }
}

export function dropCount(s: OnCpuStats): number {
  return s.ringBufferFull + s.pidMapFull;
}

export function dropDetail(s: OnCpuStats): string {
  return `ring buffer full ${s.ringBufferFull}, kernel stack failed ${s.kernelStackErrors}, user stack failed ${s.userStackErrors}, stack snapshot failed ${s.snapshotErrors}`;
}

/** Off-CPU time not in the profile: blocks under the threshold, and records dropped. */
export function offCpuDetail(s: OnCpuStats): string {
  return (
    `${s.offCpuShort.toLocaleString('en-US')} shorter blocks (${formatNs(s.offCpuShortNs)}) not recorded, ` +
    `${s.offCpuRingBufferFull} dropped (${formatNs(s.offCpuDroppedNs)}), ${s.offCpuNoStorage} switch-outs not tracked`
  );
}

function offCpuComment(s: OnCpuStats): string {
  return `off-CPU: ${s.offCpuRecords} blocks (${formatNs(s.offCpuNs)}) recorded; ${offCpuDetail(s)}`;
}

/** Goroutine waits, and the Go threads' idle time left out for them. */
export function goWaitComment(s: OnCpuStats): string {
  return (
    `goroutine waits: ${s.goWaitRecords} records (${formatNs(s.goWaitNs)}) from ${s.goWaitWalks} walks over ${s.goWaitVisited} goroutines, ` +
    `${s.goWaitRingBufferFull} dropped (${formatNs(s.goWaitDroppedNs)}), ${s.goWaitUnreadable} unreadable, ${s.goWaitMoved} moved while read; ` +
    `Go threads idle in the scheduler, left out: ${s.goIdleBlocks} blocks (${formatNs(s.goIdleNs)})`
  );
}

function dropComment(s: OnCpuStats): string {
  return `dropped samples: ${dropCount(s)} (${dropDetail(s)})`;
}

/** Goroutine waits are walked at the sampling frequency, but at most 1000 times a second. */
export function goWaitPeriodNs(frequency: number): number {
  return Math.round(1e9 / Math.min(frequency, 1000));
}

/**
 * Goroutines looked at per walk (shared among the Go processes): a budget of
 * GO_WAIT_VISITS_PER_SECOND a second (a look costs 2-7 µs of kernel time: ~1-3% of a CPU),
 * but at least 16 a walk, so that a small program is seen whole at every walk.
 */
export const GO_WAIT_VISITS_PER_SECOND = 4000;
export function goWaitVisits(frequency: number): number {
  return Math.max(16, Math.ceil(GO_WAIT_VISITS_PER_SECOND / Math.min(frequency, 1000)));
}

/** Every process now running, but flamewire itself. */
export function runningPids(procRoot = '/proc'): number[] {
  try {
    return readdirSync(procRoot)
      .filter((n) => /^\d+$/.test(n))
      .map(Number)
      .filter((p) => p !== process.pid);
  } catch {
    return [];
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
